"""The gap study as a log-log picture (a PNG; needs matplotlib, an optional dependency)."""

from __future__ import annotations

import math
from typing import Sequence

from .gap import GAP_ROUTES, GapRow


def plot_gap_study(rows: Sequence[GapRow], path: str) -> None:
    """Write the gap study as a log-log PNG to ``path`` (needs matplotlib; imported here only).

    The exact tie (gap 0) is drawn at the left edge, one decade below the smallest positive gap,
    and labelled ``0``; a non-finite error is drawn at the top edge and marked ``x``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = [r.gap for r in rows if r.gap > 0]
    zero_at = min(positive) / 10.0 if positive else 1e-13
    xs = [r.gap if r.gap > 0 else zero_at for r in rows]
    finite = [e for r in rows for e in r.errors.values() if e is not None and e > 0]
    top = max(finite) * 10.0 if finite else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (name, label), marker in zip(GAP_ROUTES, ("o", "s", "^")):
        ys = [r.errors[name] for r in rows]
        ax.plot(
            [x for x, y in zip(xs, ys) if y is not None],
            [max(y, 1e-18) for y in ys if y is not None],
            marker=marker,
            label=label,
        )
        bad = [x for x, y in zip(xs, ys) if y is None]
        if bad:
            ax.plot(bad, [top] * len(bad), linestyle="none", marker="x", color="black")
    ax.plot(
        xs,
        [r.numeric_uncertainty for r in rows],
        linestyle=":",
        color="grey",
        label="numerical reference's own error estimate",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ticks = sorted(set(xs))
    ax.set_xticks(ticks)
    ax.set_xticklabels(
        ["0" if t == zero_at else f"1e{round(math.log10(t))}" for t in ticks], rotation=45
    )
    ax.set_xlabel("gap between two eigenvalues of Sigma (1 and 1 + gap; others 4, 16)")
    ax.set_ylabel("relative error of dL/dX vs Richardson")
    ax.set_title("DBN backward near equal eigenvalues (x: non-finite)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["plot_gap_study"]

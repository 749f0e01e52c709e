"""The default screen's trade-off, measured: directions against what a check resolves.

Prints the Markdown table of ``docs/estimators.md`` ("What the default resolves, at what cost"):
for a tanh layer on 64x32 inputs (gradient entries of one scale: |x| < 1, dy = +-1), the
single-entry and whole-gradient relative errors each screen resolves (miss probability at most
1e-6), its forward evaluations, and how many of 20 seeds catch one entry wrong by a relative
1e-6. Run: ``python docs/tradeoff.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from gradcheck import check_layer

SEEDS = range(20)


class Tanh:
    """``tanh`` with a backward wrong by ``wrong`` (relative) at entry ``(17, 5)`` only."""

    def __init__(self, wrong: float = 0.0) -> None:
        self.wrong = wrong

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        g = (1.0 - self.y**2) * dy
        g[17, 5] *= 1.0 + self.wrong
        return g


def row(label: str, mode: str, directions: Optional[int]) -> str:
    caught = 0
    entry: List[float] = []
    whole: List[float] = []
    evaluations: List[int] = []
    for seed in SEEDS:
        rng = np.random.default_rng(100 + seed)
        x = rng.uniform(-1.0, 1.0, (64, 32))
        dy = rng.choice([-1.0, 1.0], size=x.shape)
        wrong = check_layer(Tanh(1e-6), x, dy=dy, seed=seed, mode=mode, directions=directions)
        caught += wrong.status == "fail"
        right = check_layer(Tanh(), x, dy=dy, seed=seed, mode=mode, directions=directions)
        arg = right.input
        assert arg is not None and right.status == "pass", right.summary()
        entry.append(arg.resolves_entry or float("nan"))
        whole.append(arg.resolves_gradient or float("nan"))
        evaluations.append(arg.evaluations)
    return (
        f"| {label} | {np.median(evaluations):.0f} | {np.median(entry):.1e} | "
        f"{np.median(whole):.1e} | {caught}/{len(SEEDS)} |"
    )


def main() -> None:
    print(
        "| screen | forward evaluations (median) | resolves one entry wrong by "
        "(median) | resolves the whole gradient wrong by | one entry wrong by 1e-6 caught |"
    )
    print("|---|---|---|---|---|")
    for k in (3, 8, 16, 32, 64):
        print(row(f"directional, {k} directions", "directional", k))
    print(row("directional, adaptive (default)", "directional", None))
    print(row("auto (the default check)", "auto", None))
    print(row("full", "full", None))


if __name__ == "__main__":
    main()

"""The paper study's report as plain text, Markdown (as pasted into docs/paper-errata.md) or JSON.

Every renderer takes a :class:`~gradcheck.paper.suite.PaperReport` and returns the whole
document as a string ending in a newline; :data:`RENDERERS` maps ``--format`` to them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .gap import GAP_ROUTES, GapRow
from .suite import PaperReport
from .verdicts import VariantVerdict

Array = np.ndarray


def _fmt_err(value: Optional[float]) -> str:
    if value is None:
        return "non-finite"
    return f"{value:.2e}"


def _fmt_gap(gap: float) -> str:
    return "0 (tie)" if gap == 0 else f"{gap:.0e}"


def _b1(v: VariantVerdict) -> str:
    return "D^T G" if v.transpose_fix else "D G (printed)"


def _sym(v: VariantVerdict) -> str:
    return "symmetrized" if v.symmetrize else "as is (printed)"


def _diagnosis_lines(report: PaperReport) -> List[str]:
    """One line per variant with failing checks: their mistake signatures, counted."""
    return [
        f"diagnosis of {v.variant}'s failing checks: "
        + ", ".join(f"{label} {n}/{sum(v.diagnoses.values())}" for label, n in v.diagnoses.items())
        for v in report.verdicts
        if v.diagnoses
    ]


def _counter_cell(v: VariantVerdict) -> str:
    if v.counterexample is not None:
        return v.counterexample.short()
    return f"none in {v.search_examples} cases" if v.search_examples else "not searched"


def _matrix_text(x: Array) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{val:g}" for val in row) + "]" for row in x) + "]"


def render_text(report: PaperReport) -> str:
    """Plain-text tables: the verdicts, the counterexamples and (if run) the gap study."""
    lines = [
        "DBN paper backward chain (B1)-(B7): four variants against the numerical gradient",
        f"seed {report.seed}; {report.config.get('draws', '')}",
        f"check: {report.config.get('check', '')}, rtol = {report.config.get('rtol', 0):.2e}",
        "",
    ]
    header = (
        "variant",
        "(B1)",
        "dL/dSigma",
        "passed",
        "worst rel. error",
        "verdict",
        "expected",
        "smallest counterexample",
    )
    rows = [
        (
            v.variant,
            _b1(v),
            _sym(v),
            f"{v.statuses.get('pass', 0)}/{v.n_checks}",
            f"{v.worst_rel_error:.2e}",
            v.verdict,
            v.expected,
            _counter_cell(v),
        )
        for v in report.verdicts
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if _diagnosis_lines(report):
        lines += ["", *_diagnosis_lines(report)]
    for v in report.verdicts:
        c = v.counterexample
        if c is None:
            continue
        lines += [
            "",
            f"counterexample for {v.variant} ({c.examples_tried} cases evaluated by the search):",
            f"  {c.case.describe()}; x (N x D, rows are examples) = {_matrix_text(c.case.x)}",
            f"  {c.reason}",
        ]
    if report.gap_rows is not None:
        lines += ["", render_gap_text(report.gap_rows)]
    verdict = "match" if report.ok else "DO NOT match"
    lines += [
        "",
        f"measured verdicts {verdict} the derivation's prediction ({report.elapsed:.1f} s)",
    ]
    return "\n".join(lines) + "\n"


def render_gap_text(rows: Sequence[GapRow]) -> str:
    """The gap study as a plain-text table."""
    lines = [
        "gap study: eigenvalues 1, 1 + gap, 4, 16 of Sigma (eps = 1e-5 added), N = 16, "
        "worst of 3 batches; relative error vs Richardson"
    ]
    for name, label in GAP_ROUTES:
        lines.append(f"  {name}: {label}")
    header = ("gap", "computed gap", *[name for name, _ in GAP_ROUTES], "numeric uncertainty")
    body = [
        (
            _fmt_gap(r.gap),
            f"{r.computed_gap:.1e}",
            *[_fmt_err(r.errors[n]) for n, _ in GAP_ROUTES],
            f"{r.numeric_uncertainty:.1e}",
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def render_markdown(report: PaperReport) -> str:
    """Markdown tables, as pasted into docs/paper-errata.md."""
    out = [
        "| Variant | (B1) | dL/dSigma | Checks passed | Worst relative error | Verdict | "
        "Smallest counterexample (Hypothesis) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report.verdicts:
        out.append(
            f"| {v.variant} | `{'D^T G' if v.transpose_fix else 'D G'}` | "
            f"{'symmetrized' if v.symmetrize else 'as is'} | "
            f"{v.statuses.get('pass', 0)}/{v.n_checks} "
            f"| {v.worst_rel_error:.2e} | **{v.verdict}** | {_counter_cell(v)} |"
        )
    out += [
        "",
        f"Seed {report.seed}. Draws: {report.config.get('draws', '')}. "
        f"Search: {report.config.get('search', '')}.",
    ]
    if _diagnosis_lines(report):
        out += ["", *(f"- {line}" for line in _diagnosis_lines(report))]
    for v in report.verdicts:
        c = v.counterexample
        if c is None:
            continue
        out += [
            "",
            f"**{v.variant}**: {c.case.describe()} (found after {c.examples_tried} cases), "
            f"relative error {c.rel_error:.2e}",
            "",
            "```",
            f"x = {_matrix_text(c.case.x)}",
            c.reason,
            "```",
        ]
    if report.gap_rows is not None:
        out += ["", render_gap_markdown(report.gap_rows)]
    return "\n".join(out) + "\n"


def render_gap_markdown(rows: Sequence[GapRow]) -> str:
    """The gap study as a Markdown table."""
    head = (
        "| gap | computed gap | "
        + " | ".join(label for _, label in GAP_ROUTES)
        + " | numeric uncertainty |"
    )
    sep = "|" + "---|" * (len(GAP_ROUTES) + 3)
    body = [
        f"| {_fmt_gap(r.gap)} | {r.computed_gap:.1e} | "
        + " | ".join(_fmt_err(r.errors[n]) for n, _ in GAP_ROUTES)
        + f" | {r.numeric_uncertainty:.1e} |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])


def render_json(report: PaperReport) -> str:
    def safe(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: safe(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [safe(v) for v in obj]
        return obj

    return json.dumps(safe(report.to_dict()), indent=2) + "\n"


RENDERERS: Dict[str, Callable[[PaperReport], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}


__all__ = [
    "RENDERERS",
    "render_gap_markdown",
    "render_gap_text",
    "render_json",
    "render_markdown",
    "render_text",
]

"""The gradient-error report: its data model and its renderers (text, JSON, Markdown, JUnit XML).

The JSON document follows ``docs/report-schema.json`` (``schema_version`` 1)::

    {"schema_version": 1, "tool": {...}, "config": {...},
     "results": [{"layer", "shape", "seed", "status", "max_abs_error", "rel_error", ...}],
     "summary": {"total", "pass", "fail", "error", "inconclusive", "ok"},
     "load_errors": [{"entry_point", "error"}]}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple
from xml.sax.saxutils import escape, quoteattr

from .result import STATUS_ORDER, CheckResult

SCHEMA_VERSION = 1
FORMATS: Tuple[str, ...] = ("text", "json", "markdown", "junit")


@dataclass
class Report:
    """Results of a run, the configuration that produced them, and entry points that failed."""

    results: List[CheckResult]
    config: Dict[str, Any] = field(default_factory=dict)
    load_errors: List[Tuple[str, str]] = field(default_factory=list)
    strict: bool = False
    elapsed: float = 0.0

    def counts(self) -> Dict[str, int]:
        counts = {s: 0 for s in STATUS_ORDER}
        for r in self.results:
            counts[r.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """All checks passed (inconclusive counts as failing only under ``strict``)."""
        bad = {"fail", "error"} | ({"inconclusive"} if self.strict else set())
        return not self.load_errors and not any(r.status in bad for r in self.results)

    def summary(self) -> Dict[str, Any]:
        c = self.counts()
        return {
            "total": len(self.results),
            **c,
            "ok": self.ok,
            "strict": self.strict,
            "elapsed": self.elapsed,
        }

    def summary_line(self) -> str:
        c = self.counts()
        parts = [
            f"{len(self.results)} checks",
            f"{c['pass']} passed",
            f"{c['fail']} failed",
            f"{c['error']} errors",
        ]
        parts.append(
            f"{c['inconclusive']} inconclusive"
            + (" (strict: counted as failures)" if self.strict else "")
        )
        if self.load_errors:
            parts.append(f"{len(self.load_errors)} entry points failed to load")
        verdict = "OK" if self.ok else "FAILED"
        return f"{verdict}: " + ", ".join(parts) + f" in {self.elapsed:.2f} s"

    def to_dict(self) -> Dict[str, Any]:
        from . import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "gradcheck", "version": __version__},
            "config": self.config,
            "results": [_json_safe(r.to_dict()) for r in self.results],
            "summary": self.summary(),
            "load_errors": [{"entry_point": n, "error": e} for n, e in self.load_errors],
        }


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats (not valid JSON) with strings that say what they were."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _fmt(value: float) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2e}"
    )


def _shape(r: CheckResult) -> str:
    return "x".join(str(s) for s in r.shape)


def _abs_err(r: CheckResult) -> float:
    return r.max_abs_error if r.arguments else float("nan")


def _rel_err(r: CheckResult) -> float:
    return r.rel_error if r.arguments else float("nan")


_COLOURS = {"pass": "32", "inconclusive": "33", "fail": "31", "error": "35"}


def render_text(report: Report, colour: bool = False) -> str:
    """An aligned table, one row per check, then details of every check that did not pass."""
    headers = ("layer", "shape", "seed", "mode", "max abs err", "rel err", "tolerance", "status")
    rows = []
    for r in report.results:
        tol = r.tolerance
        tol_s = f"rtol {tol['rtol']:.1e}" if tol else "-"
        mode = r.worst.mode if r.worst is not None else r.mode
        rows.append(
            (
                r.layer,
                _shape(r),
                str(r.seed),
                mode,
                _fmt(_abs_err(r)),
                _fmt(_rel_err(r)),
                tol_s,
                r.status,
            )
        )
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        if colour:
            cells[-1] = f"\033[{_COLOURS[row[-1]]}m{row[-1]}\033[0m"
        lines.append("  ".join(cells).rstrip())
    details = [r for r in report.results if r.status != "pass"]
    if details:
        lines.append("")
        lines.append("Details of checks that did not pass:")
        for r in details:
            lines.append("")
            lines.append(r.explain())
    for name, err in report.load_errors:
        lines.append(f"entry point {name} failed to load: {err}")
    lines.append("")
    lines.append(report.summary_line())
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def render_markdown(report: Report) -> str:
    """A Markdown table and failure details, suitable for a CI job summary."""
    lines = [f"### gradcheck report: {report.summary_line()}", ""]
    lines.append("| layer | shape | seed | mode | max abs err | rel err | status |")
    lines.append("|---|---|---|---|---:|---:|---|")
    for r in report.results:
        mode = r.worst.mode if r.worst is not None else r.mode
        mark = {
            "pass": "pass",
            "fail": "**FAIL**",
            "error": "**ERROR**",
            "inconclusive": "_inconclusive_",
        }[r.status]
        lines.append(
            f"| `{r.layer}` | {_shape(r)} | {r.seed} | {mode} | {_fmt(_abs_err(r))} "
            f"| {_fmt(_rel_err(r))} | {mark} |"
        )
    for r in (r for r in report.results if r.status != "pass"):
        lines += [
            "",
            f"<details><summary>{r.layer} {_shape(r)} seed {r.seed}: {r.status}</summary>",
            "",
            "```",
        ]
        lines.append(r.explain())
        lines += ["```", "", "</details>"]
    for name, err in report.load_errors:
        lines.append(f"\n- entry point `{name}` failed to load: {err}")
    return "\n".join(lines) + "\n"


def render_junit(report: Report) -> str:
    """JUnit XML: one testsuite, one testcase per check; failures and errors carry the details."""
    c = report.counts()
    failures = c["fail"] + (c["inconclusive"] if report.strict else 0)
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    out.append(
        f'<testsuites><testsuite name="gradcheck" tests="{len(report.results)}" '
        f'failures="{failures}" errors="{c["error"]}" '
        f'skipped="{0 if report.strict else c["inconclusive"]}" time="{report.elapsed:.3f}">'
    )
    for r in report.results:
        name = quoteattr(f"{_shape(r)} seed {r.seed}")
        out.append(
            f"<testcase classname={quoteattr('gradcheck.' + r.layer)} name={name} "
            f'time="{r.elapsed:.4f}">'
        )
        body = escape(r.explain())
        message = quoteattr(r.reason or r.status)
        if r.status == "fail" or (r.status == "inconclusive" and report.strict):
            out.append(f"<failure message={message}>{body}</failure>")
        elif r.status == "error":
            out.append(f"<error message={message}>{body}</error>")
        elif r.status == "inconclusive":
            out.append(f"<skipped message={message}/>")
        out.append("</testcase>")
    out.append("</testsuite></testsuites>")
    return "\n".join(out) + "\n"


def render(report: Report, fmt: str, colour: bool = False) -> str:
    if fmt == "text":
        return render_text(report, colour=colour)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "junit":
        return render_junit(report)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".gradcheck-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

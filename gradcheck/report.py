"""The gradient-error report: its data model and its renderers (text, JSON, Markdown, JUnit XML).

The JSON document follows ``docs/report-schema.json`` (``schema_version`` 2)::

    {"schema_version": 2, "tool": {...}, "config": {...}, "notes": [...],
     "results": [{"layer", "shape", "seed", "status", "max_abs_error", "rel_error",
                  "arguments": [{"name", "kind", "worst": [...], "diagnosis"}], "findings",
                  ..., "plot" (with --plots)}],
     "summary": {"total", "pass", "fail", "error", "inconclusive", "ok", ...},
     "load_errors": [{"entry_point", "error"}]}

Adding an optional key is compatible; renaming, removing or retyping one, or adding a required
one, bumps ``SCHEMA_VERSION`` (2 added each argument's ``diagnosis``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .result import STATUS_ORDER, ArgumentResult, CheckResult
from .result import explain_check as explain
from .result import printable as _printable
from .version import __version__

SCHEMA_VERSION = 2
FORMATS: Tuple[str, ...] = ("text", "json", "markdown", "junit")


@dataclass
class Report:
    """Results of a run, the configuration that produced them, and entry points that failed.

    ``notes`` are sentences every renderer shows above the summary (for example the looser
    tolerance that ``--allow-float32`` implies). ``interrupted``: the run was stopped (Ctrl-C)
    and ``results`` holds only the checks that finished; such a report is never ``ok``.
    ``plots`` maps the index of a result in ``results`` to the path of its error picture
    (``--plots``), as the reports link it.
    """

    results: List[CheckResult]
    config: Dict[str, Any] = field(default_factory=dict)
    load_errors: List[Tuple[str, str]] = field(default_factory=list)
    strict: bool = False
    elapsed: float = 0.0
    notes: List[str] = field(default_factory=list)
    interrupted: bool = False
    plots: Dict[int, str] = field(default_factory=dict)

    def counts(self) -> Dict[str, int]:
        counts = {s: 0 for s in STATUS_ORDER}
        for r in self.results:
            counts[r.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """All checks ran and passed (inconclusive counts as failing only under ``strict``)."""
        bad = {"fail", "error"} | ({"inconclusive"} if self.strict else set())
        if self.interrupted or self.load_errors:
            return False
        return not any(r.status in bad for r in self.results)

    def summary(self) -> Dict[str, Any]:
        c = self.counts()
        return {
            "total": len(self.results),
            **c,
            "load_errors": len(self.load_errors),
            "ok": self.ok,
            "strict": self.strict,
            "elapsed": self.elapsed,
            "interrupted": self.interrupted,
        }

    def summary_line(self) -> str:
        c = self.counts()
        parts = [
            _count(len(self.results), "check"),
            f"{c['pass']} passed",
            f"{c['fail']} failed",
            _count(c["error"], "error"),
        ]
        parts.append(
            f"{c['inconclusive']} inconclusive"
            + (" (strict: counted as failures)" if self.strict else "")
        )
        if self.load_errors:
            parts.append(f"{_count(len(self.load_errors), 'entry point')} failed to load")
        verdict = "INTERRUPTED" if self.interrupted else "OK" if self.ok else "FAILED"
        return f"{verdict}: " + ", ".join(parts) + f" in {self.elapsed:.2f} s"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "gradcheck", "version": __version__},
            "config": _json_safe(self.config),
            "notes": list(self.notes),
            "results": [
                _json_safe({**r.to_dict(), **({"plot": self.plots[i]} if i in self.plots else {})})
                for i, r in enumerate(self.results)
            ],
            "summary": self.summary(),
            "load_errors": [{"entry_point": n, "error": e} for n, e in self.load_errors],
        }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats (not valid JSON) with strings that say what they were."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        # A NumPy scalar that slipped into a result (a user layer's spectrum, say).
        return _json_safe(obj.item())
    return obj


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2e}"


def _shape(r: CheckResult) -> str:
    return "x".join(str(s) for s in r.shape)


def _abs_err(r: CheckResult) -> float:
    return r.max_abs_error if r.arguments else float("nan")


def _rel_err(r: CheckResult) -> float:
    return r.rel_error if r.arguments else float("nan")


def decisive_tolerance(r: CheckResult) -> Optional[Tuple[str, float]]:
    """Which term of the tolerance decided the check, and its value: ``("atol", 2.1e-09)`` or
    ``("rtol", 1.5e-08)``.

    The deciding entry is the worst argument's worst entry (the one nearest to, or furthest
    beyond, what it may differ by); its tolerance is ``atol_i + rtol * |numeric_i|``, and the
    larger term is what allowed (or refused) it. Reading the entry's own tolerance rather than
    the comparison's ``atol`` keeps this right for a per-entry absolute floor. ``None`` when
    nothing was compared.
    """
    w = r.worst
    if w is None:
        return None
    c = w.comparison
    if not c.worst:
        return ("rtol", c.rtol)
    e = c.worst[0]
    relative = c.rtol * abs(e.numeric)
    absolute = e.tolerance - relative
    return ("atol", absolute) if absolute > relative else ("rtol", c.rtol)


def _tolerance_cell(r: CheckResult) -> str:
    decisive = decisive_tolerance(r)
    return "-" if decisive is None else f"{decisive[0]} {decisive[1]:.1e}"


def _diagnosed(r: CheckResult) -> List[ArgumentResult]:
    return [a for a in r.arguments if a.diagnosis is not None]


_COLOURS = {"pass": "32", "inconclusive": "33", "fail": "31", "error": "35"}


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def _warnings_of_passes(results: Sequence[CheckResult]) -> Dict[Tuple[str, str, str], List[str]]:
    """The warnings of passing checks, each once with the seeds that gave it: a pass gets no
    details, and a warning (a gradient right only at the parameters given, an input the
    check could not move) is what the user must still read."""
    warned: Dict[Tuple[str, str, str], List[str]] = {}
    for r in results:
        if r.status != "pass":
            continue
        for f in r.findings:
            if f.severity == "warning":
                checked = f"{r.layer} {_shape(r)}"
                warned.setdefault((checked, f.code, f.message), []).append(str(r.seed))
    return warned


def render_text(report: Report, colour: bool = False) -> str:
    """An aligned table, one row per check, then details of every check that did not pass."""
    headers = ("layer", "shape", "seed", "mode", "max abs err", "rel err", "tolerance", "status")
    rows = []
    for r in report.results:
        tol_s = _tolerance_cell(r)
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
    for r, row in zip(report.results, rows):
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        # Colour the last cell only, and after padding, so escape codes never skew the columns.
        cells[-1] = _paint(row[-1], _COLOURS[row[-1]], colour)
        lines.append("  ".join(cells).rstrip())
        for a in _diagnosed(r):
            lines.append(_printable(f"  diagnosis of {a.name}: {a.diagnosis.message}"))  # type: ignore[union-attr]
    warned = _warnings_of_passes(report.results)
    if warned:
        lines.append("")
        lines.append("Warnings of checks that passed:")
        for (layer, code, message), seeds in warned.items():
            lines.append(_printable(f"  {layer} (seed {', '.join(seeds)}) [{code}]: {message}"))
    details = [(i, r) for i, r in enumerate(report.results) if r.status != "pass"]
    if details:
        lines.append("")
        lines.append("Details of checks that did not pass:")
        for i, r in details:
            lines.append("")
            lines.append(explain(r))
            if i in report.plots:
                lines.append(f"  error picture: {report.plots[i]}")
    if report.load_errors:
        lines.append("")
    for name, err in report.load_errors:
        lines.append(f"entry point {name} failed to load: {err}")
    if report.notes:
        lines.append("")
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append("")
    lines.append(_paint(report.summary_line(), "32" if report.ok else "31", colour))
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    # allow_nan=False: a stray non-finite number must fail here, not in the reader's parser.
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    """A Markdown table and failure details, suitable for a CI job summary."""
    lines = [f"### gradcheck report: {report.summary_line()}", ""]
    lines.append("| layer | shape | seed | mode | max abs err | rel err | tolerance | status |")
    lines.append("|---|---|---|---|---:|---:|---:|---|")
    for r in report.results:
        mode = r.worst.mode if r.worst is not None else r.mode
        mark = {
            "pass": "pass",
            "fail": "**FAIL**",
            "error": "**ERROR**",
            "inconclusive": "_inconclusive_",
        }[r.status]
        lines.append(
            f"| `{_md_cell(r.layer)}` | {_shape(r)} | {r.seed} | {mode} | {_fmt(_abs_err(r))} "
            f"| {_fmt(_rel_err(r))} | {_tolerance_cell(r)} | {mark} |"
        )
        for a in _diagnosed(r):
            # A row of its own under the failing one: Markdown tables have no spanning cells.
            message = _md_cell(_printable(a.diagnosis.message))  # type: ignore[union-attr]
            lines.append(f"| ↳ `{_md_cell(a.name)}`: {message} | | | | | | | |")
    for i, r in enumerate(report.results):
        if r.status == "pass":
            continue
        picture = []
        if i in report.plots:
            alt = f"error picture of {r.layer} {_shape(r)} seed {r.seed}"
            picture = [f"![{_md_cell(alt)}]({report.plots[i]})", ""]
        lines += [
            "",
            f"<details><summary>{_md_cell(r.layer)} {_shape(r)} seed {r.seed}: "
            f"{r.status}</summary>",
            "",
            *picture,
            "```text",
            explain(r),
            "```",
            "",
            "</details>",
        ]
    if report.load_errors:
        lines.append("")
    for name, err in report.load_errors:
        lines.append(f"- entry point `{name}` failed to load: {err}")
    if report.notes:
        lines.append("")
    for note in report.notes:
        lines.append(f"> {note}")
    return "\n".join(lines) + "\n"


# Characters XML 1.0 forbids even when escaped; an exception message can carry them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(_XML_ILLEGAL.sub("?", text))


def _xml_attr(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(_XML_ILLEGAL.sub("?", text))


def render_junit(report: Report) -> str:
    """JUnit XML: one testsuite, one testcase per check.

    ``fail`` is a ``<failure>``, ``error`` an ``<error>``, ``inconclusive`` a ``<skipped>``
    (a ``<failure>`` under ``--strict``); an entry point that failed to load is one more
    testcase with an ``<error>``, so a CI reporter shows it rather than an all-green suite.
    """
    c = report.counts()
    failures = c["fail"] + (c["inconclusive"] if report.strict else 0)
    errors = c["error"] + len(report.load_errors)
    skipped = 0 if report.strict else c["inconclusive"]
    tests = len(report.results) + len(report.load_errors)
    counts = (
        f'tests="{tests}" failures="{failures}" errors="{errors}" skipped="{skipped}" '
        f'time="{report.elapsed:.3f}"'
    )
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    out.append(f'<testsuites name="gradcheck" {counts}>')
    out.append(f'<testsuite name="gradcheck" {counts}>')
    if report.config:
        out.append("<properties>")
        for key, value in report.config.items():
            text = value if isinstance(value, str) else json.dumps(_json_safe(value))
            out.append(f"<property name={_xml_attr(key)} value={_xml_attr(text)}/>")
        out.append("</properties>")
    for r in report.results:
        name = _xml_attr(f"{_shape(r)} seed {r.seed}")
        out.append(
            f"<testcase classname={_xml_attr('gradcheck.' + r.layer)} name={name} "
            f'time="{r.elapsed:.4f}">'
        )
        body = _xml_text(explain(r))
        message = _xml_attr(r.reason or r.status)
        if r.status == "fail" or (r.status == "inconclusive" and report.strict):
            out.append(f'<failure message={message} type="{r.status}">{body}</failure>')
        elif r.status == "error":
            out.append(f'<error message={message} type="error">{body}</error>')
        elif r.status == "inconclusive":
            out.append(f"<skipped message={message}/>")
        out.append("</testcase>")
    for ep, err in report.load_errors:
        out.append(
            f'<testcase classname="gradcheck.entry-points" name={_xml_attr(ep)} time="0">'
            f'<error message={_xml_attr(err)} type="load-error">'
            f"{_xml_text(f'entry point {ep} failed to load: {err}')}</error></testcase>"
        )
    out.append("</testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def render(report: Report, fmt: str, colour: bool = False) -> str:
    """The report in ``fmt`` (one of ``FORMATS``); ``colour`` applies to text only."""
    if fmt == "text":
        return render_text(report, colour=colour)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "junit":
        return render_junit(report)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


Content = Union[str, bytes, Callable[[IO[Any]], object]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str, content: Content) -> None:
    """Write ``content`` to ``path`` through a temporary file in the same folder and a rename.

    ``content`` is text, bytes, or a callable that writes to the open file (text mode unless
    the callable is marked ``binary = True``): rendering inside the callable means a renderer
    that fails half-way leaves neither a truncated ``path`` nor a temporary file behind. A reader
    of ``path`` sees the old file or the complete new one, never a partial one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    binary = isinstance(content, bytes) or bool(getattr(content, "binary", False))
    fd, tmp = tempfile.mkstemp(prefix=".gradcheck-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file private (0600); give the report the mode the user's umask
        # (or the file it replaces) would have given it.
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

"""What a check returns: its verdict, the per-argument comparisons and the named findings.

Statuses, from best to worst: ``"pass"``, ``"inconclusive"`` (the numerical estimate could not
resolve the tolerance; never counted as a pass), ``"fail"`` (the backward is wrong or misbehaves),
``"error"`` (the check could not be carried out: the layer raised, returned garbage, NaN or Inf).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .compare import Comparison

STATUS_ORDER = ("pass", "inconclusive", "fail", "error")


def worst_status(statuses: List[str]) -> str:
    """The worst of ``statuses`` in the order pass < inconclusive < fail < error."""
    return max(statuses, key=STATUS_ORDER.index, default="pass")


@dataclass(frozen=True)
class Finding:
    """A named observation about the layer's behaviour, apart from the numeric comparison.

    ``severity`` is ``"error"`` (the check cannot proceed), ``"fail"`` (a contract is broken:
    mutation of an argument, non-determinism, non-linearity in ``dy``), ``"warning"`` or ``"info"``.
    """

    code: str
    severity: str
    message: str

    def to_dict(self) -> Dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class Diagnosis:
    """What kind of mistake a failing gradient contains: a *mistake signature*.

    Found by :mod:`gradcheck.diagnosis`, and only ever reported when the analytic gradient,
    corrected by the signature, passes the very comparison the check made. ``kind`` is one of
    :data:`gradcheck.diagnosis.KINDS`; ``message`` is one human sentence. The other fields belong
    to particular kinds and are ``None`` elsewhere:

    ``factor``, ``factor_name``  scale: analytic = numeric x factor; the name ("-1", "1/N", ...)
                                 when the factor is one of the named constants
    ``axis``                     offset: the discrepancy is the same along this axis
    ``axes``                     transpose: the permutation that takes the analytic gradient
                                 (or, with ``operand == "dy"``, dy) to the numeric layout
    ``operand``                  transpose: ``"gradient"`` or ``"dy"`` (backward(dy^T) is right)
    ``rows``, ``columns``        rows / columns: where the discrepancy is confined
    ``entries``                  entries: the indices it is confined to
    ``other``                    swapped: the argument whose numeric gradient this one equals
    ``count``                    zero: how many entries are zero where the gradient is not
    """

    kind: str
    message: str
    factor: Optional[float] = None
    factor_name: Optional[str] = None
    axis: Optional[int] = None
    axes: Optional[Tuple[int, ...]] = None
    operand: Optional[str] = None
    rows: Optional[Tuple[int, ...]] = None
    columns: Optional[Tuple[int, ...]] = None
    entries: Optional[Tuple[Tuple[int, ...], ...]] = None
    other: Optional[str] = None
    count: Optional[int] = None

    @property
    def label(self) -> str:
        """The kind, with the factor's name for a named scale: ``"scale 1/N"``, ``"offset"``."""
        return f"{self.kind} {self.factor_name}" if self.factor_name else self.kind

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"kind": self.kind, "message": self.message}
        for key in ("factor", "factor_name", "axis", "operand", "other", "count"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for key in ("axes", "rows", "columns"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value)
        if self.entries is not None:
            out["entries"] = [list(e) for e in self.entries]
        return out


@dataclass(frozen=True)
class ArgumentResult:
    """The comparison for one differentiated argument: the input ``x`` or one parameter."""

    name: str  # "x" for the input, otherwise the parameter's key
    kind: str  # "input" | "param"
    mode: str  # "full" | "directional" | "localized" (auto mode, bisection within the budget)
    method: str
    comparison: Comparison
    evaluations: int  # points at which the forward was evaluated for the estimate
    directions: Optional[int] = None  # directional mode: how many random directions
    miss_probability: Optional[float] = None  # directional: P(a 1e-4 relative error slips through)
    # The smallest relative errors this comparison resolves: a single entry wrong by
    # ``resolves_entry`` times a typical entry, or the whole gradient wrong by
    # ``resolves_gradient`` relative, slips through with probability at most 1e-6 (directional;
    # in full mode, not at all).
    resolves_entry: Optional[float] = None
    resolves_gradient: Optional[float] = None
    # Full mode only: the compared arrays (shape of the argument), kept for the diagnosis and
    # the error pictures; not part of the JSON report, which stays small.
    analytic: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    numeric: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    error_estimate: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    # A failing full-mode argument's mistake signature (gradcheck.diagnosis), or None.
    diagnosis: Optional[Diagnosis] = None

    @property
    def status(self) -> str:
        return self.comparison.status

    def to_dict(self) -> Dict[str, Any]:
        c = self.comparison
        return {
            "name": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "method": self.method,
            "status": c.status,
            "max_abs_error": c.max_abs_error,
            "rel_error": c.rel_error,
            "rtol": c.rtol,
            "atol": c.atol,
            "n_entries": c.n_entries,
            "n_failed": c.n_failed,
            "n_inconclusive": c.n_inconclusive,
            "max_error_estimate": c.max_error_estimate,
            "evaluations": self.evaluations,
            "directions": self.directions,
            "miss_probability": self.miss_probability,
            "resolves_entry": self.resolves_entry,
            "resolves_gradient": self.resolves_gradient,
            "worst": [
                {
                    "index": list(e.index),
                    "analytic": e.analytic,
                    "numeric": e.numeric,
                    "error_estimate": e.error_estimate,
                    "tolerance": e.tolerance,
                }
                for e in c.worst
            ],
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
        }


@dataclass
class CheckResult:
    """The outcome of checking one layer on one input.

    ``arguments`` holds one comparison per differentiated argument (the input first, then the
    parameters in key order). In ``auto`` mode an argument that did not pass the directional
    screen appears with its full-mode comparison, which names the wrong entries.
    """

    layer: str
    shape: Tuple[int, ...]
    seed: int
    mode: str
    method: str
    status: str
    arguments: List[ArgumentResult] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    reason: Optional[str] = None
    spectrum: Optional[Dict[str, float]] = None
    elapsed: float = 0.0
    reproduce: Optional[str] = None
    # Comparisons superseded by the final ones: auto mode's directional screen, and estimates
    # that were repeated with richardson because they could not resolve the tolerance.
    screen: List[ArgumentResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def params(self) -> Dict[str, ArgumentResult]:
        return {a.name: a for a in self.arguments if a.kind == "param"}

    @property
    def input(self) -> Optional[ArgumentResult]:
        return next((a for a in self.arguments if a.kind == "input"), None)

    @property
    def max_abs_error(self) -> float:
        return max((a.comparison.max_abs_error for a in self.arguments), default=float("nan"))

    @property
    def rel_error(self) -> float:
        return max((a.comparison.rel_error for a in self.arguments), default=float("nan"))

    @property
    def worst(self) -> Optional[ArgumentResult]:
        """The argument with the worst verdict (then the largest relative error)."""
        if not self.arguments:
            return None
        return max(
            self.arguments,
            key=lambda a: (STATUS_ORDER.index(a.status), a.comparison.rel_error),
        )

    @property
    def worst_index(self) -> Optional[Tuple[int, ...]]:
        w = self.worst
        return w.comparison.worst_index if w is not None else None

    @property
    def tolerance(self) -> Optional[Dict[str, float]]:
        w = self.worst
        if w is None:
            return None
        return {"rtol": w.comparison.rtol, "atol": w.comparison.atol}

    def to_dict(self) -> Dict[str, Any]:
        worst = self.worst
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "seed": self.seed,
            "mode": self.mode,
            "method": self.method,
            "status": self.status,
            "max_abs_error": None if worst is None else self.max_abs_error,
            "rel_error": None if worst is None else self.rel_error,
            "worst_argument": None if worst is None else worst.name,
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "tolerance": self.tolerance,
            "reason": self.reason,
            "spectrum": self.spectrum,
            "elapsed": self.elapsed,
            "reproduce": self.reproduce,
            "arguments": [a.to_dict() for a in self.arguments],
            "screen": [a.to_dict() for a in self.screen],
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        """One human line: what was checked and the verdict with its evidence."""
        shape = "x".join(str(s) for s in self.shape)
        head = f"{self.layer} [{shape}, seed {self.seed}]: {self.status}"
        if self.reason:
            return f"{head}: {self.reason}"
        return f"{head} (rel error {self.rel_error:.2e}, max abs error {self.max_abs_error:.2e})"

    def explain(self) -> str:
        """A multi-line account: the verdict, for every argument that did not pass its worst
        entries side by side (named ``x[1, 0]``, ``gamma[2]``), the findings, the reproduce
        command. The same text as the report's failure details."""
        return explain_check(self)


def entry_label(a: ArgumentResult, index: Sequence[int]) -> str:
    """``W[2, 1]`` for an entry of a full-mode comparison, ``x dir 0`` for a direction."""
    if a.mode == "directional":
        return f"{a.name} dir {index[0] if len(index) == 1 else tuple(index)}"
    return f"{a.name}[{', '.join(str(i) for i in index)}]"


# Control characters a layer's exception message may carry (terminal escapes, NUL): shown as
# escapes so that they can neither restyle a terminal nor corrupt a saved report.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_ENTRY_HEADERS = ("entry", "analytic", "numeric", "|diff|", "tolerance", "est.err")


def explain_check(r: CheckResult) -> str:
    """A multi-line account of one check: the verdict, then for every argument that did not pass
    its worst entries side by side, each named by the input or parameter it belongs to, then the
    findings and the command that reproduces the check."""
    lines = [r.summary()]
    for a in r.arguments:
        c = a.comparison
        unit = "directions" if a.mode == "directional" else "entries"
        lines.append(
            f"  {a.kind} {a.name!r} ({a.mode}, {a.method}): {c.status}, "
            f"rel error {c.rel_error:.3e}, rtol {c.rtol:.2e}, atol {c.atol:.2e}, "
            f"{c.n_failed}/{c.n_entries} {unit} beyond tolerance"
        )
        if a.diagnosis is not None:
            lines.append(f"    diagnosis ({a.diagnosis.kind}): {a.diagnosis.message}")
        if a.status == "pass" or not c.worst:
            continue
        rows = [
            (
                entry_label(a, e.index),
                f"{e.analytic:.6e}",
                f"{e.numeric:.6e}",
                f"{e.abs_error:.2e}",
                f"{e.tolerance:.2e}",
                f"{e.error_estimate:.2e}",
            )
            for e in c.worst
        ]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(_ENTRY_HEADERS)]
        # The entry name is text, read left to right; the numbers line up on the right.
        lines.append(
            "    "
            + "  ".join(
                h.ljust(w) if i == 0 else h.rjust(w)
                for i, (h, w) in enumerate(zip(_ENTRY_HEADERS, widths))
            )
        )
        for row in rows:
            lines.append(
                "    "
                + "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths))
                )
            )
        if a.mode == "directional":
            lines.append(
                f"    (each row is <gradient of {a.name}, v> for one random direction v; "
                "rerun with --mode full to name the wrong entries)"
            )
    for f in r.findings:
        lines.append(f"  [{f.severity}] {f.code}: {f.message}")
    if r.reproduce:
        lines.append(f"  reproduce: {r.reproduce}")
    return printable("\n".join(lines))

"""The verdicts: a variant is ``"correct"`` when every check passes, ``"wrong"`` when any fails.

Nothing here presumes an answer: the derivation's prediction (:data:`EXPECTED`) is only compared
with the measured verdict afterwards, for the exit code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from .cases import EPS, SWITCHES, PaperCase, run_case
from .search import SEARCH_EXAMPLES, Counterexample, find_counterexample

#: What the derivation in docs/paper-errata.md predicts; compared with the measured verdicts.
EXPECTED: Dict[str, str] = {
    "printed": "wrong",
    "transpose-only": "wrong",
    "symmetrize-only": "wrong",
    "corrected": "correct",
}


@dataclass
class VariantVerdict:
    """The measured verdict of one variant over the drawn cases, and its counterexample search."""

    variant: str
    transpose_fix: bool
    symmetrize: bool
    statuses: Dict[str, int]
    worst_rel_error: float
    worst_case: str
    verdict: str
    expected: str
    counterexample: Optional[Counterexample]
    search_examples: int
    failures: List[str] = field(default_factory=list)
    # Failing checks by mistake signature (gradcheck.diagnosis), "none" where none explains it.
    diagnoses: Dict[str, int] = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        return self.verdict == self.expected

    @property
    def n_checks(self) -> int:
        return sum(self.statuses.values())

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.variant,
            "b1": "D^T G" if self.transpose_fix else "D G",
            "symmetrize": self.symmetrize,
            "checks": self.n_checks,
            "statuses": dict(self.statuses),
            "worst_rel_error": self.worst_rel_error,
            "worst_case": self.worst_case,
            "verdict": self.verdict,
            "expected": self.expected,
            "matches_expected": self.matches,
            "counterexample": None
            if self.counterexample is None
            else self.counterexample.to_dict(),
            "search_examples": self.search_examples,
            "failures": self.failures[:5],
            "diagnoses": dict(self.diagnoses),
        }


def verdict_of(statuses: Dict[str, int]) -> str:
    """``"correct"`` if every check passed, ``"wrong"`` if any failed, else what stopped it."""
    if statuses.get("fail", 0):
        return "wrong"
    if statuses.get("error", 0):
        return "error"
    if statuses.get("inconclusive", 0):
        return "inconclusive"
    return "correct"


def measure_variant(
    variant: str,
    cases: Sequence[PaperCase],
    *,
    seed: int = 0,
    search: bool = True,
    search_examples: int = SEARCH_EXAMPLES,
    eps: float = EPS,
    on_step: Optional[Callable[[str], None]] = None,
) -> VariantVerdict:
    """Check ``variant`` on every case; then, if ``search``, find its smallest counterexample.

    ``on_step(label)``, when given, is called before each check and before the search, with a
    label that says what runs next (for a progress display).
    """
    statuses: Dict[str, int] = {}
    worst, worst_case = 0.0, ""
    failures: List[str] = []
    diagnoses: Dict[str, int] = {}
    for k, case in enumerate(cases):
        if on_step is not None:
            on_step(f"{variant}: draw {k + 1}/{len(cases)}, {case.describe()}")
        result = run_case(variant, case, eps)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        if result.status == "fail":
            label = next((a.diagnosis.label for a in result.arguments if a.diagnosis), "none")
            diagnoses[label] = diagnoses.get(label, 0) + 1
        rel = result.rel_error
        if not math.isnan(rel) and rel >= worst:
            worst, worst_case = rel, case.describe()
        if result.status != "pass":
            failures.append(f"{case.describe()} ({case.origin}): {result.summary()}")
    counter, tried = (None, 0)
    if search:
        if on_step is not None:
            on_step(f"{variant}: Hypothesis search, up to {search_examples} cases")
        counter, tried = find_counterexample(variant, seed, search_examples, eps)
    transpose_fix, symmetrize = SWITCHES[variant]
    return VariantVerdict(
        variant,
        transpose_fix,
        symmetrize,
        statuses,
        worst,
        worst_case,
        verdict_of(statuses),
        EXPECTED[variant],
        counter,
        tried,
        failures,
        diagnoses,
    )


__all__ = ["EXPECTED", "VariantVerdict", "measure_variant", "verdict_of"]

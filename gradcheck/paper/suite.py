"""The paper study as one run: every variant's verdict, and optionally the gap study.

:func:`run_paper_suite` is what ``gradcheck paper`` measures; :class:`PaperReport` holds it,
with the configuration that says what was measured (its ``to_dict`` is the JSON document).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..compare import default_rtol
from ..isolation import can_fork, map_concurrently
from .cases import (
    DRAW_COND_MAX,
    DRAW_MAX_D,
    DRAW_MAX_N,
    DRAW_MIN_GAP,
    EPS,
    VARIANT_NAMES,
    draw_cases,
)
from .gap import DEFAULT_GAPS, GAP_ROUTES, GapRow, gap_study
from .search import (
    SEARCH_COND_MAX,
    SEARCH_ENTRY_BOUND,
    SEARCH_EXAMPLES,
    SEARCH_MAX_D,
    SEARCH_MAX_N,
    SEARCH_MIN_GAP,
)
from .verdicts import VariantVerdict, measure_variant


@dataclass
class PaperReport:
    """Everything ``gradcheck paper`` prints."""

    verdicts: List[VariantVerdict]
    seed: int
    examples: int
    gap_rows: Optional[List[GapRow]] = None
    elapsed: float = 0.0
    config: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every measured verdict is what the derivation predicts."""
        return all(v.matches for v in self.verdicts)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "seed": self.seed,
            "examples": self.examples,
            "config": self.config,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "matches_expected": self.ok,
            "elapsed": self.elapsed,
        }
        if self.gap_rows is not None:
            out["gap_study"] = {
                "eigenvalues": "1, 1 + gap, 4, 16 (plus eps)",
                "routes": {name: label for name, label in GAP_ROUTES},
                "rows": [
                    {
                        "gap": r.gap,
                        "rel_error": r.errors,
                        "numeric_uncertainty": r.numeric_uncertainty,
                        "computed_gap": r.computed_gap,
                    }
                    for r in self.gap_rows
                ],
            }
        return out


def _config(examples: int, eps: float) -> Dict[str, Any]:
    return {
        "eps": eps,
        "check": "check_layer(mode='full', method='central'), default tolerances",
        "rtol": default_rtol(),
        "draws": f"{examples} batches per variant: D in [2, {DRAW_MAX_D}], "
        f"N in [D + 2, {DRAW_MAX_N}], "
        f"exact spectrum with condition number <= {DRAW_COND_MAX:g} and relative gaps >= "
        f"{DRAW_MIN_GAP:g}; cycling layout (rows, paper) x centering (yes, no) x route (eig, svd); "
        "upstream gradient from the harness stream",
        "search": f"hypothesis.find over integer batches in [-{SEARCH_ENTRY_BOUND}, "
        f"{SEARCH_ENTRY_BOUND}], N <= {SEARCH_MAX_N}, D <= {SEARCH_MAX_D}, condition number <= "
        f"{SEARCH_COND_MAX:g}, relative gaps >= {SEARCH_MIN_GAP:g}; shrinks N, D, then entries",
    }


def run_paper_suite(
    seed: int = 0,
    examples: int = 32,
    *,
    gap: bool = False,
    search: bool = True,
    search_examples: int = SEARCH_EXAMPLES,
    variants: Sequence[str] = VARIANT_NAMES,
    eps: float = EPS,
    progress: Optional[Callable[[int, int, str], None]] = None,
    workers: int = 1,
) -> PaperReport:
    """Measure every variant (and optionally the gap study); see :mod:`gradcheck.paper`.

    ``progress(done, total, label)``, when given, is called before each step (one check of a
    variant on a drawn case, one variant's counterexample search, one gap of the gap study)
    with the number of steps finished, the number in all and what runs next.

    ``workers``: with more than one (and ``fork``), the variants (and the gap study) are
    measured side by side, each in its own worker process (:func:`run_concurrently`), and
    ``progress`` is called as each ends; every verdict, counterexample and number is the same
    as with one (only ``elapsed`` differs).
    """
    start = time.perf_counter()
    cases = draw_cases(seed, examples)
    per_variant = len(cases) + (1 if search else 0)
    steps = [per_variant] * len(variants) + ([len(DEFAULT_GAPS)] if gap else [])
    total = sum(steps)
    done = [0]

    def step(label: str) -> None:
        if progress is not None:
            progress(done[0], total, label)
        done[0] += 1

    def part(index: int, on_step: Callable[[str], None]) -> Any:
        """Variant ``index`` measured, or, after the last variant, the gap study."""
        if index < len(variants):
            return measure_variant(
                variants[index],
                cases,
                seed=seed,
                search=search,
                search_examples=search_examples,
                eps=eps,
                on_step=on_step,
            )
        return gap_study(seed, eps=eps, on_step=on_step)

    if workers > 1 and can_fork() and len(steps) > 1:
        ended: List[int] = []

        def finished(index: int) -> None:
            # Progress by part, as each ends (a step's label is not seen from here).
            ended.append(index)
            done[0] += steps[index]
            if progress is not None and done[0] < total:
                progress(done[0], total, f"{len(ended)} of {len(steps)} parts measured")

        measured = map_concurrently(
            lambda i: part(i, lambda label: None), len(steps), workers, done=finished
        )
    else:
        measured = [part(i, step) for i in range(len(steps))]
    verdicts: List[VariantVerdict] = measured[: len(variants)]
    rows: Optional[List[GapRow]] = measured[len(variants)] if gap else None
    return PaperReport(
        verdicts, seed, examples, rows, time.perf_counter() - start, _config(examples, eps)
    )


__all__ = ["PaperReport", "run_paper_suite"]

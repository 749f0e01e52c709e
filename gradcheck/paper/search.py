"""The smallest counterexample of a variant, searched for by Hypothesis.

:func:`paper_cases` draws integer-valued batches, shrinking ``N``, then ``D``, then the entries;
:func:`find_counterexample` keeps the smallest case on which a variant fails. A case counts only
where the covariance is well conditioned (:data:`SEARCH_COND_MAX`, :data:`SEARCH_MIN_GAP`) so
that a failure can only come from the formula.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from hypothesis import find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.extra import numpy as hnp

from ..spectra import spectrum_within
from .cases import EPS, LAYOUTS, ROUTES, PaperCase, run_case, sigma_spectrum

# Domain of the Hypothesis search: integer entries make the covariance exact in floating point
# up to rounding, so looser bounds than for the draws still leave the estimate resolvable.
SEARCH_COND_MAX = 1e3
SEARCH_MIN_GAP = 1e-2
SEARCH_MAX_N = 8
SEARCH_MAX_D = 4
SEARCH_ENTRY_BOUND = 4
SEARCH_EXAMPLES = 300


def paper_cases(
    max_n: int = SEARCH_MAX_N,
    max_d: int = SEARCH_MAX_D,
    bound: int = SEARCH_ENTRY_BOUND,
    routes: Sequence[str] = ROUTES,
) -> st.SearchStrategy[PaperCase]:
    """Hypothesis strategy of :class:`PaperCase` with integer-valued entries in ``[-bound, bound]``.

    Draw order, and so shrink order: ``N`` (``2 .. max_n``), ``D`` (``1 .. min(N - 1, max_d)``),
    the entries (toward 0), centering (toward centered), layout (toward rows), route (toward
    eig), the ``check_layer`` seed (toward 0). Cases are not filtered here; callers keep the
    ones inside their domain (:func:`in_search_domain`).
    """

    @st.composite
    def cases(draw: Callable[..., Any]) -> PaperCase:
        n = draw(st.integers(2, max_n))
        d = draw(st.integers(1, min(n - 1, max_d)))
        entries = st.integers(-bound, bound).map(float)
        x = draw(hnp.arrays(np.float64, (n, d), elements=entries))
        center = draw(st.sampled_from([True, False]))
        layout = draw(st.sampled_from(LAYOUTS))
        route = draw(st.sampled_from(tuple(routes)))
        seed = draw(st.integers(0, 2**32 - 1))
        return PaperCase(x, center, layout, route, seed, "hypothesis")

    return cases()


def in_search_domain(case: PaperCase) -> bool:
    """Whether ``case``'s covariance is conditioned well enough to blame a failure on the formula.

    Judged on the covariance *without* eps: a batch whose covariance is (nearly) singular is
    whitened on the scale ``sqrt(eps)``, far below any finite-difference step, and there the
    numerical estimate, not the formula, is what fails.
    """
    return spectrum_within(
        sigma_spectrum(case.x, case.center, 0.0), SEARCH_COND_MAX, SEARCH_MIN_GAP
    )


@dataclass
class Counterexample:
    """The smallest failing case Hypothesis found for a variant, with the check's evidence."""

    variant: str
    case: PaperCase
    rel_error: float
    reason: str
    examples_tried: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.variant,
            **self.case.to_dict(),
            "rel_error": self.rel_error,
            "reason": self.reason,
            "examples_tried": self.examples_tried,
        }

    def short(self) -> str:
        return f"{self.case.describe()}: rel. error {self.rel_error:.2e}"


def find_counterexample(
    variant: str, seed: int = 0, max_examples: int = SEARCH_EXAMPLES, eps: float = EPS
) -> Tuple[Optional[Counterexample], int]:
    """Search with ``hypothesis.find`` for the smallest case on which ``variant`` fails.

    A case counts when it is in the search domain and ``check_layer`` (full mode) says
    ``"fail"``. The search is seeded by ``seed`` (``random.Random(seed)``) and uses no example
    database, so it is reproducible and leaves no files. Returns ``(counterexample or None,
    number of cases evaluated)``.
    """
    calls = [0]

    def fails(case: PaperCase) -> bool:
        calls[0] += 1
        if not in_search_domain(case):
            return False
        return run_case(variant, case, eps).status == "fail"

    budget = settings(max_examples=max_examples, database=None, deadline=None, derandomize=False)
    try:
        case = find(paper_cases(), fails, settings=budget, random=random.Random(seed))
    except NoSuchExample:
        return None, calls[0]
    result = run_case(variant, case, eps)
    return Counterexample(variant, case, result.rel_error, result.reason or "", calls[0]), calls[0]


__all__ = [
    "SEARCH_COND_MAX",
    "SEARCH_ENTRY_BOUND",
    "SEARCH_EXAMPLES",
    "SEARCH_MAX_D",
    "SEARCH_MAX_N",
    "SEARCH_MIN_GAP",
    "Counterexample",
    "find_counterexample",
    "in_search_domain",
    "paper_cases",
]

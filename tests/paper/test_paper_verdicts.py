"""The verdicts: which of the paper's four backward variants equals the numerical gradient.

Every assertion here states what the measurements give (``gradcheck paper --seed 0``):

* printed, transpose-only, symmetrize-only: **wrong**. Each fails on random inputs in both
  layouts, with and without centering, by either route; Hypothesis finds a counterexample for each
  on its own, shrunk to the smallest batch it can.
* corrected (``D^T`` in (B1) *and* symmetrized ``dL/dSigma``): **correct**. Every random check
  passes, and a Hypothesis property over the loaded profile (``ci`` by default) finds no failing
  input.
"""

from __future__ import annotations

import itertools

import pytest
from _paper_common import describe, full_report, lapack_2x2_eigenvectors_symmetric
from hypothesis import HealthCheck, Phase, assume, given, settings

from gradcheck.paper.cases import LAYOUTS, ROUTES, VARIANT_NAMES, draw_cases, run_case
from gradcheck.paper.search import SEARCH_MAX_N, in_search_domain, paper_cases
from gradcheck.paper.verdicts import EXPECTED
from layers.paper import CORRECT_VARIANTS

WRONG = [v for v in VARIANT_NAMES if EXPECTED[v] == "wrong"]


def verdict(variant: str):
    return next(v for v in full_report().verdicts if v.variant == variant)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_measured_verdict(variant):
    v = verdict(variant)
    assert v.verdict == EXPECTED[variant], "\n".join(v.failures[:5])
    if v.verdict == "correct":
        assert v.statuses == {"pass": v.n_checks}
        assert v.worst_rel_error < 1e-7
    else:
        assert v.worst_rel_error > 0.1  # wrong by the size of the gradient, not by rounding


def test_only_the_corrected_variant_is_right_and_it_is_what_gets_registered():
    right = tuple(v.variant for v in full_report().verdicts if v.verdict == "correct")
    assert right == ("corrected",)
    assert right == CORRECT_VARIANTS  # layers/paper.py registers exactly the measured-correct ones


@pytest.mark.parametrize("variant", WRONG)
def test_wrong_variants_fail_in_every_layout_centering_and_route(variant):
    """Not an artefact of one layout or of the mean terms: every combination shows the error.

    D >= 3 only: with D = 2 this LAPACK returns a symmetric eigenvector matrix, which hides the
    (B1) error (see test_paper_special_inputs.py).
    """
    cases = [c for c in draw_cases(seed=11, examples=48) if c.d >= 3]
    for layout, center, route in itertools.product(LAYOUTS, (True, False), ROUTES):
        group = [c for c in cases if (c.layout, c.center, c.route) == (layout, center, route)]
        assert group, (layout, center, route)
        for case in group:
            result = run_case(variant, case)
            assert result.status == "fail", f"{describe(case)}\n{result.explain()}"


def test_corrected_variant_passes_in_every_layout_centering_and_route():
    for case in draw_cases(seed=11, examples=48):
        result = run_case("corrected", case)
        assert result.status == "pass", f"{describe(case)}\n{result.explain()}"


@pytest.mark.parametrize("variant", WRONG)
def test_hypothesis_finds_a_counterexample_for_each_wrong_variant(variant):
    """The search in the report is hypothesis.find over paper_cases(); check what it found."""
    v = verdict(variant)
    found = v.counterexample
    assert found is not None, f"no counterexample for {variant} in {v.search_examples} cases"
    case = found.case
    assert in_search_domain(case), describe(case)
    again = run_case(variant, case)
    assert again.status == "fail", describe(case)
    assert found.rel_error > 0.1
    # Shrunk: the smallest shapes come first, and D = 1 cannot fail (see special inputs).
    assert 2 <= case.d < case.n <= SEARCH_MAX_N
    if variant == "symmetrize-only" and lapack_2x2_eigenvectors_symmetric():
        assert case.d >= 3
    # The same input is no counterexample for the corrected variant.
    assert run_case("corrected", case).status == "pass", describe(case)


def test_hypothesis_search_finds_nothing_for_the_corrected_variant():
    v = verdict("corrected")
    assert v.counterexample is None
    assert v.search_examples > 0


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(case=paper_cases())
def test_corrected_variant_has_no_counterexample(case):
    """A real search over the loaded profile (``ci``: 100 derandomized examples).

    A counterexample would be a ``fail``; ``inconclusive`` (the estimate cannot resolve the
    tolerance, e.g. for N = D + 1 where the whitened batch barely depends on x) is not one.
    """
    assume(in_search_domain(case))
    result = run_case("corrected", case)
    assert result.status not in ("fail", "error"), f"{describe(case)}\n{result.explain()}"


@pytest.mark.parametrize("variant", WRONG)
def test_a_property_over_the_same_strategy_is_falsified_for_wrong_variants(variant):
    """The same property as above, for a wrong variant: Hypothesis must falsify it on its own.

    Shrinking is skipped here (the report's hypothesis.find search above shows the shrunk case).
    """

    @settings(max_examples=100, database=None, derandomize=True, phases=[Phase.generate])
    @given(case=paper_cases())
    def no_failure(case):
        assume(in_search_domain(case))
        assert run_case(variant, case).status != "fail"

    with pytest.raises(AssertionError):
        no_failure()

"""The comparison rule: pass, fail, inconclusive, and the derived default tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.compare import compare, default_atol, default_rtol, relative_error


def test_default_tolerances_are_derived_from_the_dtype():
    assert default_rtol() == pytest.approx(np.sqrt(np.finfo(np.float64).eps))
    assert default_rtol(np.dtype(np.float32)) == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
    a = np.array([1.0, -4.0])
    # the median of max(|a|, |n|) = (1, 4), not the largest entry
    assert default_atol(a, np.array([0.5, 2.0]), 1e-8) == pytest.approx(2.5e-8)


def test_agreement_within_tolerance_passes():
    n = np.array([1.0, 2.0, 3.0])
    c = compare(n * (1 + 1e-10), n, np.full(3, 1e-12))
    assert c.status == "pass" and c.n_failed == 0


def test_disagreement_beyond_tolerance_and_estimate_fails_and_ranks_the_worst():
    n = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = n.copy()
    a[1, 0] += 1e-3
    a[0, 1] += 1e-6
    c = compare(a, n, np.zeros_like(n))
    assert c.status == "fail" and c.n_failed == 2
    assert c.worst_index == (1, 0)
    assert c.worst[1].index == (0, 1)
    assert c.worst[0].abs_error == pytest.approx(1e-3)


def test_an_estimate_too_coarse_for_the_tolerance_is_inconclusive_not_pass():
    n = np.array([1.0, 2.0])
    c = compare(n + 1e-9, n, np.full(2, 1e-6))
    assert c.status == "inconclusive" and c.n_inconclusive == 2


def test_a_difference_larger_than_the_estimate_error_fails_even_when_coarse():
    n = np.array([1.0, 2.0])
    c = compare(n + 1e-3, n, np.full(2, 1e-6))
    assert c.status == "fail"


def test_relative_error_is_symmetric_and_safe_at_zero():
    a, n = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert relative_error(a, n) == relative_error(n, a) == pytest.approx(np.sqrt(2))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        compare(np.zeros(2), np.zeros(3), np.zeros(3))


def test_an_entry_under_the_floor_fails_on_its_own_relative_tolerance():
    """``atol`` is rtol times the median (1): an entry of 1e-9 returned as 0 is within it, but
    is wrong by all of itself, which an estimate good to 1e-20 resolves."""
    n = np.array([1.0, 1.0, 1.0, 1e-9])
    a = n.copy()
    a[3] = 0.0
    c = compare(a, n, np.full(4, 1e-20))
    assert c.status == "fail" and c.n_failed == 1 and c.worst_index == (3,)
    # reported against the tolerance it failed: its relative one
    assert c.worst[0].tolerance == pytest.approx(default_rtol() * 1e-9)
    # not confirmed by the estimate: not a failure
    assert compare(a, n, np.full(4, 2e-10)).status != "fail"
    # a stated floor is the user's
    assert compare(a, n, np.full(4, 1e-20), atol=1e-8).status == "pass"


def test_a_difference_under_a_thousand_ulps_of_the_largest_entry_is_not_a_failure():
    n = np.array([1.0, 1.0, 1.0, 1e-14])
    a = n.copy()
    a[3] = 1e-14 + 1e-13  # ten times itself, but 450 ulps of 1
    assert compare(a, n, np.full(4, 1e-30)).status == "pass"
    a[3] = 1e-14 + 1e-12
    assert compare(a, n, np.full(4, 1e-30)).status == "fail"


def test_failed_entries_rank_before_unconfirmed_ones():
    """An entry beyond its tolerance by many of its (large) errors but under 8 of them is
    inconclusive; a failed entry is listed before it whatever the ratios."""
    n = np.array([1.0, 1.0, 1.0, 1.0])
    a = n + np.array([0.0, 0.07, 4e-8, 0.0])
    e = np.array([0.0, 0.01, 0.0, 0.0])
    c = compare(a, n, e, n_worst=4)
    assert c.status == "fail" and c.n_failed == 1
    assert c.worst[0].index == (2,) and c.worst[1].index == (1,)

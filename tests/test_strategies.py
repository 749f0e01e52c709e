"""Tests of gradcheck.strategies: shapes, dtypes, reachability, spectra and shrinking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from gradcheck.profiles import scaled_examples
from gradcheck.strategies import (
    DISTINCT_GAP,
    SpectralBatch,
    batches_with_spectrum,
    covariance,
    logits_and_labels,
    matrices,
    shapes,
    special_upstream_gradients,
    spectra,
    spectrum_stats,
    upstream_gradients,
)

FAST = settings(max_examples=scaled_examples(60), deadline=None, database=None)
SEARCH = settings(max_examples=scaled_examples(500), deadline=None, database=None)
TINY = np.finfo(np.float64).tiny
RELATIONS = {
    "n<d": lambda s: s[0] < s[1],
    "n=d": lambda s: s[0] == s[1],
    "n>d": lambda s: s[0] > s[1],
}


def reference_covariance(x: np.ndarray) -> np.ndarray:
    """Biased covariance as a mean of outer products, independently of the module (np.cov is
    avoided: it squeezes D == 1 and mishandles N == 1 on some NumPy versions)."""
    xc = x - x.sum(axis=0) / x.shape[0]
    return np.einsum("ni,nj->ij", xc, xc) / x.shape[0]


def reference_eigenvalues(x: np.ndarray) -> np.ndarray:
    """Descending eigenvalues of the biased covariance, computed independently of the module."""
    return np.linalg.eigvalsh(reference_covariance(x))[::-1]


def assert_float64_finite(a: np.ndarray, shape: tuple[int, ...]) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.float64
    assert a.shape == shape
    assert np.all(np.isfinite(a))


# ------------------------------------------------------------------------------------ shapes


@FAST
@given(st.data(), st.sampled_from([None, "n<d", "n=d", "n>d"]))
def test_shapes_respect_bounds_and_relation(data, relation):
    n, d = data.draw(shapes(min_n=1, max_n=9, min_d=1, max_d=7, relation=relation))
    assert isinstance(n, int) and isinstance(d, int)
    assert 1 <= n <= 9 and 1 <= d <= 7
    if relation is not None:
        assert RELATIONS[relation]((n, d))


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_every_relation_is_reachable_without_asking(relation):
    found = find(shapes(), RELATIONS[relation], settings=SEARCH)
    assert RELATIONS[relation](found)


@pytest.mark.parametrize(
    ("relation", "minimal"), [(None, (1, 1)), ("n<d", (1, 2)), ("n=d", (1, 1)), ("n>d", (2, 1))]
)
def test_shapes_shrink_to_the_smallest_of_their_relation(relation, minimal):
    assert find(shapes(relation=relation), lambda s: True, settings=SEARCH) == minimal


def test_smallest_shape_with_more_examples_than_features_is_2_by_1():
    assert find(shapes(), lambda s: s[0] > s[1], settings=SEARCH) == (2, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"relation": "n<=d"},
        {"min_n": 0},
        {"min_d": 3, "max_d": 2},
        {"max_n": 3, "min_d": 3, "relation": "n>d"},
        {"min_n": 5, "max_d": 5, "relation": "n<d"},
        {"min_n": 4, "max_n": 5, "min_d": 1, "max_d": 3, "relation": "n=d"},
    ],
)
def test_shapes_reject_impossible_arguments(kwargs):
    with pytest.raises(InvalidArgument):
        shapes(**kwargs)


# ---------------------------------------------------------------------------------- matrices


@FAST
@given(st.data(), st.sampled_from([1e-3, 1.0, 10.0, 1e6]))
def test_matrices_are_finite_bounded_float64_without_subnormals(data, bound):
    shape = data.draw(shapes(max_n=6, max_d=5))
    x = data.draw(matrices(shape, elements_bound=bound))
    assert_float64_finite(x, shape)
    assert np.all(np.abs(x) <= bound)
    nonzero = np.abs(x[x != 0])
    assert np.all(nonzero >= TINY)


@FAST
@given(matrices(shapes(relation="n>d")))
def test_matrices_accept_a_strategy_of_shapes(x):
    assert x.dtype == np.float64 and x.ndim == 2 and x.shape[0] > x.shape[1]


def test_matrices_shrink_to_zeros_of_the_smallest_shape():
    found = find(matrices(shapes()), lambda x: x.shape[0] > x.shape[1], settings=SEARCH)
    assert found.shape == (2, 1)
    assert np.all(found == 0)


# ----------------------------------------------------------------------------------- spectra


@FAST
@given(
    st.data(),
    st.integers(1, 8),
    st.sampled_from([1.0 + 1e-3, 10.0, 1e3, 1e6]),
    st.sampled_from([None, 1e-4, 1e-2]),
)
def test_spectra_are_descending_positive_and_respect_cond_and_gap(data, d, cond_max, min_gap):
    if min_gap is not None and (d - 1) * min_gap > 1 - 1 / cond_max:
        with pytest.raises(InvalidArgument):
            spectra(d, cond_max=cond_max, min_gap=min_gap)
        return
    lam = data.draw(spectra(d, cond_max=cond_max, min_gap=min_gap))
    assert_float64_finite(lam, (d,))
    assert np.all(lam > 0)
    # the bounds hold exactly for the returned floats, not merely up to rounding
    assert lam[0] / lam[-1] <= cond_max
    if d > 1:
        gaps = (lam[:-1] - lam[1:]) / lam[0]
        floor = DISTINCT_GAP if min_gap is None else min_gap
        assert gaps.min() >= floor


@FAST
@given(st.data(), st.integers(2, 8), st.sampled_from([None, 1e-2]))
def test_spectra_with_ties_repeat_values_exactly(data, d, min_gap):
    lam = data.draw(spectra(d, cond_max=1e4, min_gap=min_gap, ties=True))
    assert_float64_finite(lam, (d,))
    diffs = -np.diff(lam)
    assert np.any(diffs == 0.0), "at least two eigenvalues must be bit-for-bit equal"
    distinct = np.unique(lam)[::-1]
    if min_gap is not None and distinct.size > 1:
        assert np.min(distinct[:-1] - distinct[1:]) / lam[0] >= min_gap


def test_spectra_shrink_to_equally_spaced_eigenvalues_with_condition_number_10():
    lam = find(spectra(4), lambda lam: True, settings=SEARCH)
    np.testing.assert_allclose(lam, [1.0, 0.7, 0.4, 0.1], rtol=1e-12)


def test_spectra_with_smallest_pins_the_smallest_eigenvalue():
    lam = find(spectra(3, smallest=1e-3), lambda lam: lam[0] > 1.0, settings=SEARCH)
    assert lam[-1] == pytest.approx(1e-3, rel=1e-12)


def test_spectra_reject_infeasible_requests():
    with pytest.raises(InvalidArgument):
        spectra(5, cond_max=2.0, min_gap=0.2)  # needs a span of 0.8 > 1 - 1/2
    with pytest.raises(InvalidArgument):
        spectra(3, cond_max=1.0)  # distinct eigenvalues need cond > 1
    with pytest.raises(InvalidArgument):
        spectra(1, ties=True)
    with pytest.raises(InvalidArgument):
        spectra(3, min_gap=0.0)


# --------------------------------------------------------------------- batches_with_spectrum


def check_batch(b: SpectralBatch, cond_max: float) -> np.ndarray:
    """Assert the drawn batch has the spectrum it states; return the measured eigenvalues."""
    assert isinstance(b, SpectralBatch)
    n, d = b.x.shape
    assert_float64_finite(b.x, (n, d))
    assert b.eigenvalues.shape == (d,) and b.eigenvectors.shape == (d, d)
    assert n >= b.rank + 1
    assert np.all(np.diff(b.eigenvalues) <= 0), "eigenvalues are listed in descending order"
    assert np.all(b.eigenvalues[b.rank :] == 0) and np.all(b.eigenvalues[: b.rank] > 0)
    np.testing.assert_allclose(b.eigenvectors.T @ b.eigenvectors, np.eye(d), atol=1e-12)
    np.testing.assert_allclose(b.x.mean(axis=0), b.mean, atol=1e-12)

    measured = reference_eigenvalues(b.x)
    lam = b.eigenvalues
    top = lam[0] if lam.size and lam[0] > 0 else 1.0
    nz = lam > 0
    # nonzero eigenvalues: reproduced to 1e-8 relative each; zeros: to rounding of the largest
    np.testing.assert_allclose(measured[nz], lam[nz], rtol=1e-8, atol=0)
    assert np.all(np.abs(measured[~nz]) <= 1e-12 * top)
    # the whole covariance, not only its spectrum: Q diag(lam) Q^T
    np.testing.assert_allclose(covariance(b.x), b.covariance, rtol=0, atol=1e-12 * top)

    if b.rank == d and d > 0:
        assert b.condition_number == pytest.approx(lam[0] / lam[-1], rel=1e-12)
        assert b.condition_number <= cond_max
        assert spectrum_stats(b.x)[0] <= cond_max * (1 + 1e-6)
    else:
        assert b.condition_number == np.inf
        assert spectrum_stats(b.x)[0] == np.inf
    return measured


@settings(max_examples=scaled_examples(80), deadline=None, database=None)
@given(st.data(), st.sampled_from([10.0, 1e3, 1e6]), st.sampled_from([None, 1e-3, 2e-2]))
def test_batches_reproduce_the_requested_spectrum(data, cond_max, min_gap):
    b = data.draw(batches_with_spectrum(cond_max=cond_max, min_gap=min_gap, max_d=6))
    check_batch(b, cond_max)
    assert b.rank == b.d
    if b.d > 1:
        floor = DISTINCT_GAP if min_gap is None else min_gap
        assert b.min_gap >= floor
        # measured gap: the relative error of the eigenvalues is ~1e-15 of the largest
        assert spectrum_stats(b.x)[1] >= floor - 1e-12


@FAST
@given(batches_with_spectrum(cond_max=1e3, ties=True, max_d=6))
def test_batches_with_ties_have_exactly_tied_eigenvalues(b):
    measured = check_batch(b, 1e3)
    lam = b.eigenvalues
    assert b.min_gap == 0.0
    tied = np.flatnonzero(np.diff(lam) == 0)
    assert tied.size >= 1
    # tied eigenvalues of the computed covariance agree to rounding (relative to the largest)
    for i in tied:
        assert abs(measured[i] - measured[i + 1]) <= 1e-12 * lam[0]


@FAST
@given(batches_with_spectrum(rank="deficient", cond_max=1e4, max_d=6))
def test_rank_deficient_batches_have_zero_eigenvalues_and_need_eps(b):
    check_batch(b, 1e4)
    assert b.rank < b.d
    assert b.condition_number == np.inf
    cond_eps, _ = spectrum_stats(b.x, eps=1e-3)
    assert np.isfinite(cond_eps)
    assert cond_eps == pytest.approx(b.stats(eps=1e-3)[0], rel=1e-8)


def test_rank_deficient_batches_reach_fewer_examples_than_features():
    b = find(batches_with_spectrum(rank="deficient"), lambda b: b.n < b.d, settings=SEARCH)
    assert b.n >= b.rank + 1
    assert b.n < b.d


@FAST
@given(
    batches_with_spectrum(
        n=st.integers(1, 10), d=st.integers(2, 5), rank=st.integers(2, 4), ties=True
    )
)
def test_batches_accept_strategies_for_n_d_and_rank(b):
    check_batch(b, 1e6)
    assert 2 <= b.rank <= min(4, b.d)


@FAST
@given(batches_with_spectrum(d=3, smallest=1e-2, mean_bound=0.0))
def test_batches_with_smallest_and_no_mean(b):
    check_batch(b, 1e6)
    assert b.eigenvalues[-1] == pytest.approx(1e-2, rel=1e-12)
    assert np.all(b.mean == 0)


def test_batches_shrink_toward_small_well_conditioned_examples():
    b = find(batches_with_spectrum(), lambda b: b.d >= 2, settings=SEARCH)
    assert (b.n, b.d) == (3, 2)
    np.testing.assert_allclose(b.eigenvalues, [1.0, 0.1], rtol=1e-12)
    assert np.all(b.mean == 0) and b.seed == 0


def test_batches_reject_incompatible_sizes():
    with pytest.raises(InvalidArgument):
        batches_with_spectrum(n=3, d=3)  # full rank 3 needs n >= 4
    with pytest.raises(InvalidArgument):
        batches_with_spectrum(n=2, rank=2)
    with pytest.raises(InvalidArgument):
        batches_with_spectrum(d=2, rank=3)
    with pytest.raises(InvalidArgument):
        batches_with_spectrum(d=2, rank="deficient", ties=True)
    with pytest.raises(InvalidArgument):
        batches_with_spectrum(rank="full")


# ------------------------------------------------------------------------ upstream gradients


@FAST
@given(st.data())
def test_upstream_gradients_are_generic(data):
    shape = data.draw(shapes(max_n=6, max_d=5))
    dy = data.draw(upstream_gradients(shape))
    assert_float64_finite(dy, shape)
    assert not np.all(dy == 0) and not np.all(dy == 1)
    if dy.size > 1:
        assert not np.all(dy == dy.flat[0])
    if shape[0] > 1:
        assert not np.all(dy == dy[0]), "not constant along the batch axis"


def test_upstream_gradients_never_reach_the_special_cases():
    def special(dy):
        return np.all(dy == dy.flat[0]) or np.all(dy == dy[0]) or np.count_nonzero(dy) <= 1

    with pytest.raises(NoSuchExample):
        find(
            upstream_gradients(shapes(min_n=2, max_n=4, min_d=2, max_d=3)),
            special,
            settings=settings(SEARCH, max_examples=scaled_examples(200)),
        )


@pytest.mark.parametrize(
    ("name", "predicate"),
    [
        ("zeros", lambda dy: np.all(dy == 0)),
        ("ones", lambda dy: np.all(dy == 1)),
        ("constant", lambda dy: np.all(dy == dy.flat[0]) and dy.flat[0] not in (0.0, 1.0)),
        ("column_constant", lambda dy: np.all(dy == dy[0]) and not np.all(dy == dy.flat[0])),
        ("one_hot", lambda dy: np.count_nonzero(dy) == 1 and dy.sum() == 1),
    ],
)
def test_special_upstream_gradients_reach_each_special_case(name, predicate):
    found = find(special_upstream_gradients((3, 2)), predicate, settings=SEARCH)
    assert_float64_finite(found, (3, 2))


def test_special_upstream_gradients_can_equal_the_output():
    y = np.arange(6.0).reshape(3, 2) - 2.5
    found = find(
        special_upstream_gradients(output=y), lambda dy: np.array_equal(dy, y), settings=SEARCH
    )
    assert found is not y


# ----------------------------------------------------------------------- logits and labels


@FAST
@given(logits_and_labels(max_n=6, max_c=5))
def test_logits_and_labels_have_the_right_types_and_ranges(pair):
    logits, labels = pair
    n, c = logits.shape
    assert 1 <= n <= 6 and 2 <= c <= 5
    assert_float64_finite(logits, (n, c))
    assert np.all(np.abs(logits) <= 1e3)
    assert np.all(np.abs(logits[logits != 0]) >= TINY)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert np.all((labels >= 0) & (labels < c))


def test_logits_reach_large_magnitudes_and_spreads():
    big = find(logits_and_labels(max_n=3), lambda p: np.max(np.abs(p[0])) >= 500, settings=SEARCH)
    assert np.max(np.abs(big[0])) >= 500
    spread = find(
        logits_and_labels(max_n=3),
        lambda p: np.max(np.ptp(p[0], axis=1)) >= 500,
        settings=SEARCH,
    )
    assert np.max(np.ptp(spread[0], axis=1)) >= 500
    # and they shrink to a single row of two classes
    assert big[0].shape == (1, 2) and spread[0].shape == (1, 2)


def test_logits_shrink_to_one_row_of_zeros():
    logits, labels = find(logits_and_labels(), lambda p: True, settings=SEARCH)
    assert logits.shape == (1, 2) and np.all(logits == 0) and labels.tolist() == [0]


# ------------------------------------------------------------------------------- helpers


@FAST
@given(matrices(shapes()))
def test_covariance_matches_a_mean_of_outer_products(x):
    np.testing.assert_allclose(covariance(x), reference_covariance(x), atol=1e-10)


def test_spectrum_stats_on_a_known_batch():
    # columns with variances 4 and 1, uncorrelated: cond 4, relative gap (4 - 1) / 4
    x = np.array([[2.0, 1.0], [-2.0, 1.0], [2.0, -1.0], [-2.0, -1.0]])
    assert spectrum_stats(x) == pytest.approx((4.0, 0.75))
    assert spectrum_stats(x, eps=1.0) == pytest.approx((2.5, 0.6))
    singular = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    cond, gap = spectrum_stats(singular)
    assert cond == np.inf and gap == pytest.approx(1.0)
    assert spectrum_stats(np.ones((3, 1))) == (np.inf, np.inf)

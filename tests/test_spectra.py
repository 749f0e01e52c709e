"""gradcheck.spectra: batches built with an exact covariance spectrum, and spectrum statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck.spectra import (
    batch_with_factors,
    condition_and_gap,
    covariance,
    exact_spectrum_batch,
    haar_orthogonal,
    orthonormal_columns,
    spectrum_stats,
    spectrum_summary,
    spectrum_within,
)

# -- constructions ------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 5])
def test_haar_orthogonal_is_the_qr_factor_with_a_positive_diagonal(d):
    """The unique Q of G = Q R with diag(R) > 0 is Haar-distributed (for Gaussian G); a QR
    routine's own sign convention is not."""
    for seed in range(20):
        q = haar_orthogonal(d, np.random.default_rng(seed))
        g = np.random.default_rng(seed).standard_normal((d, d))  # the draw it was built from
        np.testing.assert_allclose(q.T @ q, np.eye(d), atol=1e-13)
        r = q.T @ g
        np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12)
        assert np.all(np.diag(r) > 0)


def test_haar_orthogonal_has_no_preferred_sign():
    """Over many draws every entry averages to about 0 (a fixed-sign convention would not)."""
    draws = np.stack([haar_orthogonal(3, np.random.default_rng(s)) for s in range(2000)])
    assert np.max(np.abs(draws.mean(axis=0))) < 0.06


@pytest.mark.parametrize("center", [True, False])
def test_orthonormal_columns(center):
    rng = np.random.default_rng(1)
    z = orthonormal_columns(7, 4, rng, center=center)
    assert z.shape == (7, 4)
    np.testing.assert_allclose(z.T @ z, np.eye(4), atol=1e-13)
    column_sums = np.abs(z.sum(axis=0))
    if center:
        assert np.max(column_sums) < 1e-13
    else:
        assert np.max(column_sums) > 1e-3  # nothing forces them to 0


def test_no_columns_draws_nothing():
    rng = np.random.default_rng(2)
    assert orthonormal_columns(5, 0, rng).shape == (5, 0)
    assert rng.standard_normal() == np.random.default_rng(2).standard_normal()


@pytest.mark.parametrize("center", [True, False])
def test_exact_spectrum_batch_has_the_requested_covariance(center):
    lam = np.array([0.5, 1.0, 3.0, 10.0])
    for seed in range(5):
        x = exact_spectrum_batch(9, lam, np.random.default_rng(seed), center)
        assert x.shape == (9, 4)
        got = np.linalg.eigvalsh(covariance(x, center))
        np.testing.assert_allclose(got, lam, rtol=0, atol=1e-12)
    if center:  # a random mean is added, which the centering removes
        assert np.max(np.abs(x.mean(axis=0))) > 1e-3


def test_exact_spectrum_batch_with_given_eigenvectors():
    q = haar_orthogonal(3, np.random.default_rng(4))
    lam = np.array([1.0, 2.0, 4.0])
    x = exact_spectrum_batch(6, lam, np.random.default_rng(5), True, eigenvectors=q)
    np.testing.assert_allclose(covariance(x), (q * lam) @ q.T, atol=1e-12)
    diagonal = exact_spectrum_batch(6, lam, np.random.default_rng(5), True, eigenvectors=np.eye(3))
    np.testing.assert_allclose(covariance(diagonal), np.diag(lam), atol=1e-12)


def test_exact_spectrum_batch_is_fixed_by_the_seed():
    lam = [1.0, 2.0]
    a = exact_spectrum_batch(5, lam, np.random.default_rng(8))
    b = exact_spectrum_batch(5, lam, np.random.default_rng(8))
    c = exact_spectrum_batch(5, lam, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_batch_with_factors_of_lower_rank():
    """r < d columns: the covariance has d - r zero eigenvalues."""
    rng = np.random.default_rng(6)
    q = haar_orthogonal(4, rng)
    z = orthonormal_columns(6, 2, rng)
    x = batch_with_factors(z, [2.0, 5.0], q[:, :2])
    np.testing.assert_allclose(np.linalg.eigvalsh(covariance(x)), [0, 0, 2, 5], atol=1e-12)


# -- statistics ---------------------------------------------------------------------------------


def test_covariance_is_biased_and_over_features():
    x = np.random.default_rng(7).standard_normal((10, 3)) + 4.0
    np.testing.assert_allclose(covariance(x), np.cov(x, rowvar=False, bias=True), atol=1e-14)
    np.testing.assert_allclose(covariance(x, center=False), x.T @ x / 10, atol=1e-14)
    with pytest.raises(ValueError, match=r"expected an \(N, D\) array"):
        covariance(np.ones(3))


def test_spectrum_summary_of_a_known_spectrum_in_any_order():
    expected = {
        "min_eigenvalue": 1.0,
        "max_eigenvalue": 8.0,
        "condition_number": 8.0,
        "min_gap": 1.0,
        "min_relative_gap": 0.125,
    }
    assert spectrum_summary([1.0, 2.0, 8.0]) == expected
    assert spectrum_summary(np.array([[8.0, 1.0], [2.0, 2.0 + 1.0 + 5.0]])) == {
        **expected,
        "min_gap": 0.0,  # 8 appears twice: a tie
        "min_relative_gap": 0.0,
    }


def test_spectrum_summary_edges():
    assert spectrum_summary([]) is None
    one = spectrum_summary([3.0])
    assert one is not None and one["condition_number"] == 1.0
    assert one["min_gap"] == math.inf and one["min_relative_gap"] == math.inf
    singular = spectrum_summary([0.0, 2.0])
    assert singular is not None and singular["condition_number"] == math.inf
    # A tie is a relative gap of 0 even with no positive eigenvalue to scale it.
    zeros = spectrum_summary([0.0, 0.0])
    assert zeros is not None and zeros["min_relative_gap"] == 0.0
    negative = spectrum_summary([-2.0, -1.0])
    assert negative is not None and negative["min_relative_gap"] == math.inf


def test_condition_and_gap():
    assert condition_and_gap([4.0, 1.0, 2.0]) == (4.0, 0.25)
    assert condition_and_gap([]) == (1.0, math.inf)
    assert condition_and_gap([0.0, 0.0, 1.0]) == (math.inf, 0.0)


def test_spectrum_within():
    assert spectrum_within([1.0, 2.0, 4.0], cond_max=4.0, min_gap=0.25)
    assert not spectrum_within([1.0, 2.0, 4.0], cond_max=3.9, min_gap=0.25)  # too ill-conditioned
    assert not spectrum_within([1.0, 1.5, 4.0], cond_max=4.0, min_gap=0.25)  # gap 0.5 < 1
    assert not spectrum_within([0.0, 1.0], cond_max=1e9, min_gap=0.0)  # singular
    assert spectrum_within([2.0], cond_max=1.0, min_gap=1.0)


def test_spectrum_stats_of_batches():
    x = exact_spectrum_batch(8, [1.0, 2.0, 4.0], np.random.default_rng(3))
    cond, gap = spectrum_stats(x)
    assert cond == pytest.approx(4.0, rel=1e-12) and gap == pytest.approx(0.25, rel=1e-10)
    cond_eps, gap_eps = spectrum_stats(x, eps=1.0)
    assert cond_eps == pytest.approx(2.5, rel=1e-12) and gap_eps == pytest.approx(0.2, rel=1e-10)
    # Rank-deficient: rounding noise in the zero eigenvalue must read as an exact 0.
    flat = np.column_stack([x[:, 0], x[:, 0]])
    assert spectrum_stats(flat)[0] == math.inf
    assert spectrum_stats(flat, eps=1e-3)[0] < math.inf

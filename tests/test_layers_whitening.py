"""Tests for layers.whitening: inv_sqrt_psd / inv_sqrt_backward, ZCAWhitening, DBN."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import (
    assert_no_mutation,
    assert_stack_matches_loop,
    check_layer,
    rel_error,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import fractional_matrix_power, solve_sylvester

from gradcheck.profiles import scaled_examples
from layers import DecorrelatedBatchNorm, ZCAWhitening, inv_sqrt_backward, inv_sqrt_psd

METHODS = ["eigh", "svd"]


def batch_with_spectrum(lams, n: int, eps: float, seed: int) -> np.ndarray:
    """An ``(n, d)`` batch whose ``Xc^T Xc / n + eps I`` has eigenvalues ``lams`` (to rounding).

    The columns of ``Xc`` are orthogonal, centred and scaled, then rotated by a random
    orthogonal matrix, so the covariance is not diagonal (a diagonal one hides bugs).
    Needs ``n > d`` and every ``lams > eps``.
    """
    rng = np.random.default_rng(seed)
    d = len(lams)
    a = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sqrt(n * (np.asarray(lams) - eps))) @ r.T + rng.standard_normal(d)


def sylvester_sigma_bar(sigma: np.ndarray, w_bar: np.ndarray) -> np.ndarray:
    """Independent reference for the adjoint of ``Sigma^{-1/2}``, free of eigenvalue gaps.

    With ``S = Sigma^{1/2}``: ``S dS + dS S = dSigma`` (a Sylvester equation, uniquely solvable
    because S is positive definite) and ``dW = -W dS W``. Probing every ``dSigma = e_i e_j^T``
    gives the gradient entry by entry.
    """
    w = fractional_matrix_power(sigma, -0.5).real
    s = fractional_matrix_power(sigma, 0.5).real
    d = sigma.shape[0]
    grad = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            e = np.zeros((d, d))
            e[i, j] = 1.0
            grad[i, j] = np.sum(w_bar * (-w @ solve_sylvester(s, s, e) @ w))
    return 0.5 * (grad + grad.T)


def sigma_with_spectrum(lams, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r, _ = np.linalg.qr(rng.standard_normal((len(lams), len(lams))))
    sigma = (r * np.asarray(lams)) @ r.T
    return 0.5 * (sigma + sigma.T)


# ----------------------------------------------------------------------------------------------
# inv_sqrt_psd and inv_sqrt_backward


@pytest.mark.parametrize("method", METHODS)
def test_inv_sqrt_psd_is_symmetric_inverse_square_root(method):
    sigma = sigma_with_spectrum([0.5, 1.0, 2.0, 7.0], seed=0)
    w, eigvals, eigvecs = inv_sqrt_psd(sigma, method)
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_allclose(w @ sigma @ w, np.eye(4), atol=1e-13)
    np.testing.assert_allclose(eigvals, [0.5, 1.0, 2.0, 7.0], rtol=1e-13)
    np.testing.assert_allclose((eigvecs * eigvals) @ eigvecs.T, sigma, atol=1e-13)


def test_inv_sqrt_psd_methods_agree_and_support_stacks():
    sigmas = np.stack([sigma_with_spectrum([1.0, 1.0, 3.0], s) for s in range(6)])
    sigmas = sigmas.reshape(2, 3, 3, 3)
    w_eigh, l_eigh, _ = inv_sqrt_psd(sigmas, "eigh")
    w_svd, l_svd, _ = inv_sqrt_psd(sigmas, "svd")
    assert w_eigh.shape == (2, 3, 3, 3) and l_eigh.shape == (2, 3, 3)
    np.testing.assert_allclose(w_svd, w_eigh, atol=1e-12)
    np.testing.assert_allclose(l_svd, l_eigh, atol=1e-12)
    np.testing.assert_allclose(w_eigh[1, 2], inv_sqrt_psd(sigmas[1, 2])[0], atol=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_inv_sqrt_psd_refuses_singular_indefinite_and_nan(method):
    with pytest.raises(np.linalg.LinAlgError, match=r"numerically singular or indefinite"):
        inv_sqrt_psd(np.diag([1.0, 0.0]), method)
    with pytest.raises(np.linalg.LinAlgError, match=r"numerically singular or indefinite"):
        inv_sqrt_psd(sigma_with_spectrum([-1.0, 2.0, 3.0], seed=1), method)
    with pytest.raises((np.linalg.LinAlgError, ValueError)):
        inv_sqrt_psd(np.array([[1.0, np.nan], [np.nan, 1.0]]), method)
    with pytest.raises(ValueError, match=r"inv_sqrt_psd: argument 'sigma'"):
        inv_sqrt_psd(np.ones((2, 3)), method)
    with pytest.raises(TypeError, match=r"inv_sqrt_psd: argument 'sigma' is complex"):
        inv_sqrt_psd(np.eye(2, dtype=complex), method)
    with pytest.raises(ValueError, match=r"inv_sqrt_psd: argument 'method'"):
        inv_sqrt_psd(np.eye(2), "cholesky")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("gap", [0.0, 1e-12, 1e-8, 1e-3, 1.0])
def test_inv_sqrt_backward_matches_sylvester_reference(method, gap):
    for seed in range(3):
        sigma = sigma_with_spectrum([1.0, 1.0 + gap, 0.3, 2.5], seed)
        w_bar = np.random.default_rng(50 + seed).standard_normal((4, 4))
        _, eigvals, eigvecs = inv_sqrt_psd(sigma, method)
        got = inv_sqrt_backward(w_bar, eigvals, eigvecs)
        np.testing.assert_array_equal(got, got.T)
        assert rel_error(got, sylvester_sigma_bar(sigma, w_bar)) < 1e-12


def test_inv_sqrt_backward_for_a_multiple_of_identity_is_the_scalar_derivative():
    # Sigma = c I: W = c^{-1/2} I, so dW = -c^{-3/2}/2 dSigma and Sigma_bar = f'(c) sym(W_bar).
    c = 2.0
    w_bar = np.random.default_rng(3).standard_normal((3, 3))
    _, eigvals, eigvecs = inv_sqrt_psd(c * np.eye(3))
    expected = -0.5 * c**-1.5 * 0.5 * (w_bar + w_bar.T)
    np.testing.assert_allclose(inv_sqrt_backward(w_bar, eigvals, eigvecs), expected, rtol=1e-14)


@settings(max_examples=scaled_examples(25), deadline=None)
@given(
    seed=st.integers(0, 2**16),
    gap=st.sampled_from([0.0, 1e-14, 1e-10, 1e-6, 1e-2]),
    d=st.integers(2, 5),
    method=st.sampled_from(METHODS),
)
def test_inv_sqrt_backward_property(seed, gap, d, method):
    rng = np.random.default_rng(seed)
    lams = np.concatenate([[1.0, 1.0 + gap], rng.uniform(0.1, 10.0, d - 2)])
    sigma = sigma_with_spectrum(lams, seed)
    w_bar = rng.standard_normal((d, d))
    _, eigvals, eigvecs = inv_sqrt_psd(sigma, method)
    got = inv_sqrt_backward(w_bar, eigvals, eigvecs)
    assert rel_error(got, sylvester_sigma_bar(sigma, w_bar)) < 1e-11


# ----------------------------------------------------------------------------------------------
# ZCAWhitening


def _x_for(shape, axis, seed):
    # axis="examples" whitens the N axis using the D axis as samples, so the same (samples,
    # whitened) sizes are exercised by transposing the shape.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, shape[1]) + rng.standard_normal(shape[1])
    return x if axis == "features" else x.T


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", ["features", "examples"])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize(
    ("shape", "eps"),
    [((8, 3), 1e-5), ((6, 4), 1e-5), ((3, 5), 0.1), ((1, 3), 0.01)],
    ids=["N>D", "N>D-2", "N<D", "N=1"],
)
def test_zca_backward_matches_central_differences(method, axis, center, shape, eps):
    for seed in range(2):
        layer = ZCAWhitening(eps=eps, method=method, center=center, axis=axis)
        assert check_layer(layer, _x_for(shape, axis, seed), seed=seed)["x"] < 1e-6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("gap", [0.0, 1e-8])
def test_zca_backward_accurate_for_equal_and_nearly_equal_eigenvalues(method, gap):
    eps = 1e-5
    for seed in range(3):
        x = batch_with_spectrum([1.0, 1.0 + gap, 1.0, 2.0], n=10, eps=eps, seed=seed)
        layer = ZCAWhitening(eps=eps, method=method)
        layer.forward(x)
        spectrum = layer.spectrum()
        assert spectrum[1] - spectrum[0] < 1e-7 and spectrum[2] - spectrum[1] < 1e-7
        assert check_layer(layer, x, seed=seed)["x"] < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_zca_all_eigenvalues_equal(method):
    # Orthogonal centred columns of equal norm: Sigma is a multiple of the identity.
    x = batch_with_spectrum([1.5] * 4, n=9, eps=1e-5, seed=4)
    layer = ZCAWhitening(eps=1e-5, method=method)
    layer.forward(x)
    np.testing.assert_allclose(layer.spectrum(), 1.5, rtol=1e-14)
    assert check_layer(layer, x)["x"] < 1e-6


def test_zca_n_less_than_d_has_eps_eigenvalue_of_multiplicity_d_minus_n_plus_1():
    x = _x_for((3, 6), "features", 5)
    layer = ZCAWhitening(eps=0.1)
    layer.forward(x)
    np.testing.assert_allclose(layer.spectrum()[:4], 0.1, rtol=1e-12)
    assert layer.spectrum()[4] > 0.2
    assert check_layer(layer, x)["x"] < 1e-6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [True, False])
def test_zca_whitened_covariance_is_identity_up_to_eps(method, center):
    eps = 1e-3
    x = _x_for((40, 5), "features", 6)
    layer = ZCAWhitening(eps=eps, method=method, center=center)
    y = layer.forward(x)
    w = layer.cache["w"]
    # Y^T Y / N = W (Sigma - eps I) W = I - eps W^2 exactly, so this checks W to rounding.
    np.testing.assert_allclose(y.T @ y / 40 + eps * w @ w, np.eye(5), atol=1e-12)
    np.testing.assert_array_equal(w, w.T)
    if center:
        np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_zca_examples_axis_is_w_times_xc_with_n_by_n_covariance(method):
    eps = 0.01
    x = np.random.default_rng(7).standard_normal((5, 9))
    y = ZCAWhitening(eps=eps, method=method, axis="examples").forward(x)
    xc = x - x.mean(axis=1, keepdims=True)
    w = fractional_matrix_power(xc @ xc.T / 9 + eps * np.eye(5), -0.5).real
    np.testing.assert_allclose(y, w @ xc, atol=1e-12)
    np.testing.assert_allclose(y @ y.T / 9 + eps * w @ w, np.eye(5), atol=1e-12)


def test_zca_features_axis_matches_independent_matrix_power():
    eps = 1e-4
    x = _x_for((12, 4), "features", 8)
    xc = x - x.mean(axis=0)
    w = fractional_matrix_power(xc.T @ xc / 12 + eps * np.eye(4), -0.5).real
    np.testing.assert_allclose(ZCAWhitening(eps=eps).forward(x), xc @ w, atol=1e-12)


@pytest.mark.parametrize("axis", ["features", "examples"])
@pytest.mark.parametrize(
    "lams", [[0.3, 1.0, 2.0, 5.0], [1.0, 1.0, 1.0, 2.0]], ids=["distinct", "equal"]
)
def test_zca_svd_and_eigh_routes_agree(axis, lams):
    x = batch_with_spectrum(lams, n=10, eps=1e-5, seed=9)
    x = x if axis == "features" else x.T
    dy = np.random.default_rng(10).standard_normal(x.shape)
    out = {}
    for method in METHODS:
        layer = ZCAWhitening(eps=1e-5, method=method, axis=axis)
        out[method] = (layer.forward(x), layer.backward(dy), layer.spectrum())
    for a, b in zip(out["eigh"], out["svd"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_zca_blog_configuration_examples_axis_no_centering():
    # The blog's layer: whitening across a batch's examples, no centering, eps = 0.06.
    layer = ZCAWhitening(eps=0.06, center=False, axis="examples")
    x = np.tanh(np.random.default_rng(11).standard_normal((6, 10)))
    assert check_layer(layer, x)["x"] < 1e-7


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", ["features", "examples"])
def test_zca_stack_matches_loop(method, axis):
    rng = np.random.default_rng(12)
    xs = rng.standard_normal((2, 3, 7, 4) if axis == "features" else (2, 3, 4, 7))
    dys = rng.standard_normal(xs.shape)
    assert_stack_matches_loop(ZCAWhitening(eps=1e-3, method=method, axis=axis), xs, dys, rtol=1e-9)


def test_zca_spectrum_is_ascending_eigenvalues_of_sigma_for_each_slice():
    xs = np.random.default_rng(13).standard_normal((3, 8, 4))
    layer = ZCAWhitening(eps=1e-2)
    layer.forward(xs)
    spectrum = layer.spectrum()
    assert spectrum.shape == (3, 4)
    assert np.all(np.diff(spectrum, axis=-1) >= 0)
    xc = xs - xs.mean(axis=1, keepdims=True)
    sigma = np.swapaxes(xc, 1, 2) @ xc / 8 + 1e-2 * np.eye(4)
    np.testing.assert_allclose(spectrum, np.linalg.eigvalsh(sigma), rtol=1e-12)
    spectrum[...] = 0.0
    assert np.all(layer.spectrum() > 0), "spectrum() must return a copy"


def test_zca_no_mutation():
    assert_no_mutation(ZCAWhitening(), _x_for((6, 3), "features", 14))
    assert_no_mutation(ZCAWhitening(axis="examples"), _x_for((6, 3), "examples", 14))


def test_zca_errors_name_the_layer():
    layer = ZCAWhitening()
    with pytest.raises(RuntimeError, match=r"ZCAWhitening\.backward called before forward"):
        layer.backward(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match=r"ZCAWhitening\.spectrum called before forward"):
        layer.spectrum()
    with pytest.raises(TypeError, match=r"ZCAWhitening: argument 'x' must be a floating"):
        layer.forward(np.ones((4, 2), dtype=int))
    with pytest.raises(TypeError, match=r"ZCAWhitening: argument 'x' is complex"):
        layer.forward(np.ones((4, 2), dtype=complex))
    with pytest.raises(ValueError, match=r"ZCAWhitening: argument 'x' must have at least 2 axes"):
        layer.forward(np.ones(4))
    with pytest.raises(np.linalg.LinAlgError, match=r"ZCAWhitening: cannot take Sigma\^\(-1/2\)"):
        ZCAWhitening(eps=0.0).forward(np.random.default_rng(0).standard_normal((3, 5)))
    layer.forward(np.random.default_rng(1).standard_normal((4, 2)))
    with pytest.raises(ValueError, match=r"ZCAWhitening: argument 'dy' must have shape \(4, 2\)"):
        layer.backward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"ZCAWhitening: argument 'method'"):
        ZCAWhitening(method="qr")
    with pytest.raises(ValueError, match=r"ZCAWhitening: argument 'axis'"):
        ZCAWhitening(axis=0)
    with pytest.raises(ValueError, match=r"ZCAWhitening: argument 'eps'"):
        ZCAWhitening(eps=-1.0)


def test_zca_repr_shows_constructor_args():
    assert repr(ZCAWhitening(eps=0.06, method="svd", center=False, axis="examples")) == (
        "ZCAWhitening(eps=0.06, method='svd', center=False, axis='examples')"
    )


# ----------------------------------------------------------------------------------------------
# DecorrelatedBatchNorm


def _dbn(d: int, seed: int, **kwargs) -> DecorrelatedBatchNorm:
    layer = DecorrelatedBatchNorm(num_features=d, **kwargs)
    if layer.affine:
        rng = np.random.default_rng(200 + seed)
        layer.params["gamma"] = rng.uniform(0.5, 2.0, d)
        layer.params["beta"] = rng.standard_normal(d)
    return layer


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(
    ("shape", "eps"),
    [((8, 3), 1e-5), ((6, 4), 1e-5), ((3, 5), 0.1), ((1, 3), 1e-5)],
    ids=["N>D", "N>D-2", "N<D", "N=1"],
)
def test_dbn_train_backward_matches_central_differences(method, affine, shape, eps):
    for seed in range(2):
        layer = _dbn(shape[1], seed, eps=eps, affine=affine, method=method)
        errors = check_layer(layer, _x_for(shape, "features", seed), seed=seed)
        assert set(errors) == ({"x", "gamma", "beta"} if affine else {"x"})
        assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("affine", [True, False])
def test_dbn_eval_backward_matches_central_differences(affine):
    layer = _dbn(4, 0, affine=affine, momentum=0.5)
    for seed in range(3):
        layer.forward(_x_for((10, 4), "features", seed))
    layer.train = False
    errors = check_layer(layer, _x_for((5, 4), "features", 9))
    assert set(errors) == ({"x", "gamma", "beta"} if affine else {"x"})
    assert max(errors.values()) < 1e-8, errors


def test_dbn_eval_is_the_fixed_affine_map_of_the_running_statistics():
    layer = _dbn(3, 1, momentum=0.3)
    layer.forward(_x_for((10, 3), "features", 1))
    layer.train = False
    x = _x_for((4, 3), "features", 2)
    dy = np.random.default_rng(3).standard_normal((4, 3))
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    rm, rw = layer.running_mean.copy(), layer.running_whitening.copy()
    np.testing.assert_allclose(layer.forward(x), ((x - rm) @ rw) * gamma + beta, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(dy), (dy * gamma) @ rw.T, rtol=1e-14)
    np.testing.assert_allclose(layer.grads["gamma"], np.sum(dy * ((x - rm) @ rw), axis=0))
    np.testing.assert_allclose(layer.grads["beta"], dy.sum(axis=0))
    np.testing.assert_array_equal(layer.running_mean, rm)
    np.testing.assert_array_equal(layer.running_whitening, rw)


def test_dbn_running_statistics_update_only_for_a_single_batch():
    layer = DecorrelatedBatchNorm(momentum=0.25)
    x = _x_for((10, 3), "features", 4)
    layer.forward(x)
    zca = ZCAWhitening(eps=layer.eps)
    zca.forward(x)
    np.testing.assert_allclose(layer.running_mean, 0.25 * x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(
        layer.running_whitening, 0.75 * np.eye(3) + 0.25 * zca.cache["w"], rtol=1e-13
    )
    before = (layer.running_mean.copy(), layer.running_whitening.copy())
    layer.forward(np.stack([x, 2 * x]))
    np.testing.assert_array_equal(layer.running_mean, before[0])
    np.testing.assert_array_equal(layer.running_whitening, before[1])


def test_dbn_train_output_is_whitened_and_scaled():
    eps = 1e-4
    layer = _dbn(4, 5, eps=eps)
    x = _x_for((30, 4), "features", 5)
    y = layer.forward(x)
    zca = ZCAWhitening(eps=eps)
    np.testing.assert_allclose(
        y, zca.forward(x) * layer.params["gamma"] + layer.params["beta"], rtol=1e-12
    )
    np.testing.assert_allclose(layer.spectrum(), zca.spectrum(), rtol=1e-14)


def test_dbn_backward_follows_the_mode_of_the_last_forward():
    layer = _dbn(3, 6)
    x = _x_for((8, 3), "features", 6)
    dy = np.random.default_rng(7).standard_normal((8, 3))
    layer.forward(x)
    layer.train = False
    dx_after_toggle = layer.backward(dy)
    layer.train = True
    layer.forward(x)
    np.testing.assert_array_equal(dx_after_toggle, layer.backward(dy))


@pytest.mark.parametrize("train", [True, False])
def test_dbn_stack_matches_loop(train):
    rng = np.random.default_rng(8)
    layer = _dbn(4, 8, eps=1e-3)
    layer.forward(rng.standard_normal((12, 4)))
    layer.train = train
    xs, dys = rng.standard_normal((2, 3, 7, 4)), rng.standard_normal((2, 3, 7, 4))
    assert_stack_matches_loop(layer, xs, dys, rtol=1e-9)


def test_dbn_grads_are_overwritten_not_accumulated():
    layer = _dbn(3, 9)
    x = _x_for((6, 3), "features", 9)
    dy = np.random.default_rng(9).standard_normal((6, 3))
    layer.forward(x)
    layer.backward(dy)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for key, value in first.items():
        np.testing.assert_array_equal(layer.grads[key], value)


def test_dbn_no_mutation():
    layer = _dbn(3, 10)
    assert_no_mutation(layer, _x_for((6, 3), "features", 10))
    layer.train = False
    assert_no_mutation(layer, _x_for((6, 3), "features", 11))


def test_dbn_lazy_state_and_errors_name_the_layer():
    layer = DecorrelatedBatchNorm()
    assert layer.running_mean is None and layer.params == {}
    with pytest.raises(RuntimeError, match=r"DecorrelatedBatchNorm\.backward called before"):
        layer.backward(np.ones((3, 2)))
    layer.forward(_x_for((5, 2), "features", 0))
    np.testing.assert_array_equal(layer.params["gamma"], np.ones(2))
    np.testing.assert_array_equal(layer.params["beta"], np.zeros(2))
    with pytest.raises(ValueError, match=r"DecorrelatedBatchNorm: argument 'x' has D = 3"):
        layer.forward(np.ones((5, 3)))
    layer.train = False
    layer.forward(_x_for((5, 2), "features", 1))
    with pytest.raises(RuntimeError, match=r"DecorrelatedBatchNorm\.spectrum: the last forward"):
        layer.spectrum()
    with pytest.raises(TypeError, match=r"DecorrelatedBatchNorm: argument 'x' is complex"):
        layer.forward(np.ones((5, 2), dtype=complex))
    with pytest.raises(ValueError, match=r"DecorrelatedBatchNorm: argument 'momentum'"):
        DecorrelatedBatchNorm(momentum=1.5)
    with pytest.raises(np.linalg.LinAlgError, match=r"DecorrelatedBatchNorm: cannot take"):
        DecorrelatedBatchNorm(eps=0.0).forward(np.ones((4, 2)))


def test_dbn_repr_shows_constructor_args():
    assert repr(DecorrelatedBatchNorm()) == (
        "DecorrelatedBatchNorm(eps=1e-05, affine=True, momentum=0.1, method='eigh')"
    )

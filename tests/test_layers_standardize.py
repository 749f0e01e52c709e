"""Tests for layers.standardize.Standardize."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import (
    assert_no_mutation,
    assert_stack_matches_loop,
    check_layer,
    complex_step_grad,
    numeric_param_grad,
    rel_error,
)

from layers import Standardize


def _affine_layer(d: int, seed: int) -> Standardize:
    rng = np.random.default_rng(100 + seed)
    layer = Standardize(affine=True)
    # Non-trivial gamma/beta, so a gradient that ignores them cannot pass.
    layer.params["gamma"] = rng.uniform(0.5, 2.0, d)
    layer.params["beta"] = rng.standard_normal(d)
    return layer


# With N = 2 each standardized column is +-1 up to an O(eps) correction, so the gradient is
# O(eps) and central differences keep few digits of it at eps = 1e-5; a larger eps keeps the
# check sharp here, and test_two_examples_gradient_is_order_eps covers the small-eps case exactly.
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize(
    ("shape", "eps"), [((6, 3), 1e-5), ((2, 4), 0.5), ((3, 5), 1e-5), ((10, 1), 1e-5)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_backward_matches_central_differences(affine, shape, eps, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 2 - 1
    layer = _affine_layer(shape[1], seed) if affine else Standardize()
    layer.eps = eps
    errors = check_layer(layer, x, seed=seed)
    assert set(errors) == ({"x", "gamma", "beta"} if affine else {"x"})
    assert max(errors.values()) < 1e-7, errors


def test_single_example_gives_zero_output_and_gradient():
    x = np.array([[1.5, -2.0, 3.0]])
    plain = Standardize()
    np.testing.assert_array_equal(plain.forward(x), 0.0)
    np.testing.assert_array_equal(plain.backward(np.ones_like(x)), 0.0)
    layer = _affine_layer(3, 0)
    np.testing.assert_allclose(layer.forward(x), np.broadcast_to(layer.params["beta"], x.shape))
    errors = check_layer(layer, x)
    assert errors["x"] == 0.0 and errors["beta"] < 1e-9 and errors["gamma"] == 0.0


def test_two_examples_gradient_is_order_eps():
    rng = np.random.default_rng(9)
    x, dy = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    layer = Standardize(eps=1e-5)
    layer.forward(x)
    dx = layer.backward(dy)
    assert np.max(np.abs(dx)) < 1e-3 * np.max(np.abs(dy))
    assert rel_error(dx, complex_step_grad(layer.forward, x, dy)) < 1e-10


def test_single_example_with_zero_eps_is_refused():
    with pytest.raises(ValueError, match=r"Standardize: a feature has zero variance"):
        Standardize(eps=0.0).forward(np.ones((1, 3)))


def test_output_has_zero_mean_and_shrunk_unit_variance():
    x = np.random.default_rng(2).standard_normal((50, 4)) * [1.0, 0.1, 10.0, 1e-3] + 7.0
    eps = 1e-5
    y = Standardize(eps=eps).forward(x)
    var = x.var(axis=0)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), var / (var + eps), rtol=1e-12)


def test_backward_matches_complex_step():
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    layer = _affine_layer(3, 3)
    layer.forward(x)
    assert rel_error(layer.backward(dy), complex_step_grad(layer.forward, x, dy)) < 1e-13


def test_params_created_at_construction_or_first_forward_and_user_values_kept():
    layer = Standardize(affine=True, num_features=3)
    np.testing.assert_array_equal(layer.params["gamma"], np.ones(3))
    np.testing.assert_array_equal(layer.params["beta"], np.zeros(3))
    lazy = Standardize(affine=True)
    assert lazy.params == {}
    lazy.params["gamma"] = np.full(3, 2.0)
    x = np.random.default_rng(4).standard_normal((4, 3))
    y = lazy.forward(x)
    np.testing.assert_array_equal(lazy.params["gamma"], 2.0)
    np.testing.assert_allclose(y, 2.0 * Standardize().forward(x))
    assert Standardize().params == {}


def test_param_shape_mismatch_names_the_layer():
    layer = Standardize(affine=True, num_features=4)
    with pytest.raises(ValueError, match=r"Standardize: parameter 'gamma' has shape"):
        layer.forward(np.ones((3, 2)))


def test_grads_are_overwritten_not_accumulated():
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer = _affine_layer(3, 5)
    layer.forward(x)
    layer.backward(dy)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for key, value in first.items():
        np.testing.assert_array_equal(layer.grads[key], value)


def test_stacked_param_grads_are_sums_over_the_stack():
    rng = np.random.default_rng(6)
    xs, dys = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5, 2))
    layer = _affine_layer(2, 6)
    assert_stack_matches_loop(layer, xs, dys)
    layer.forward(xs)
    layer.backward(dys)
    numeric = numeric_param_grad(layer, "gamma", xs, dys)
    assert rel_error(layer.grads["gamma"], numeric) < 1e-8


def test_no_mutation():
    assert_no_mutation(_affine_layer(3, 7), np.random.default_rng(7).standard_normal((5, 3)))


def test_errors_name_the_layer():
    with pytest.raises(RuntimeError, match=r"Standardize.backward called before forward"):
        Standardize().backward(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"Standardize: argument 'x'"):
        Standardize().forward(np.ones((2, 2), dtype=np.int32))
    layer = Standardize()
    layer.forward(np.random.default_rng(8).standard_normal((3, 2)))
    with pytest.raises(ValueError, match=r"Standardize: argument 'dy'"):
        layer.backward(np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"Standardize: argument 'eps'"):
        Standardize(eps=-1.0)


def test_repr_shows_constructor_args():
    assert repr(Standardize(eps=0.1, affine=True)) == "Standardize(eps=0.1, affine=True)"

"""Tests for layers.dense.Dense."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import (
    assert_no_mutation,
    assert_stack_matches_loop,
    check_layer,
    complex_step_grad,
    rel_error,
)

import gradcheck
from layers import Dense


def _dense(n_in: int, n_out: int, seed: int) -> Dense:
    layer = Dense(n_in, n_out, seed=seed)
    # A non-zero bias, so the point checked is not a special one.
    layer.params["b"] = np.random.default_rng(300 + seed).standard_normal(n_out)
    return layer


@pytest.mark.parametrize(
    ("shape", "n_out"), [((5, 3), 4), ((1, 2), 3), ((4, 6), 1), ((2, 3, 4), 2)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_backward_matches_central_differences(shape, n_out, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    errors = check_layer(_dense(shape[-1], n_out, seed), x, seed=seed)
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < 1e-8, errors


def test_backward_matches_complex_step():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer = _dense(3, 2, 2)
    layer.forward(x)
    assert rel_error(layer.backward(dy), complex_step_grad(layer.forward, x, dy)) < 1e-14


def test_forward_formula_and_init():
    layer = Dense(3, 5, seed=7)
    assert layer.params["W"].shape == (3, 5) and layer.params["b"].shape == (5,)
    np.testing.assert_array_equal(layer.params["W"], Dense(3, 5, seed=7).params["W"])
    assert not np.array_equal(layer.params["W"], Dense(3, 5, seed=8).params["W"])
    np.testing.assert_array_equal(layer.params["b"], 0.0)
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["W"], rtol=1e-15)


def test_stacked_param_grads_are_sums_over_the_stack():
    rng = np.random.default_rng(3)
    xs, dys = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 2))
    assert_stack_matches_loop(_dense(4, 2, 3), xs, dys)


def test_grads_are_overwritten_not_accumulated():
    rng = np.random.default_rng(4)
    layer = _dense(3, 2, 4)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    layer.forward(x)
    layer.backward(dy)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for key, value in first.items():
        np.testing.assert_array_equal(layer.grads[key], value)


def test_no_mutation():
    assert_no_mutation(_dense(3, 2, 5), np.random.default_rng(5).standard_normal((4, 3)))


def test_errors_name_the_layer():
    layer = Dense(3, 2)
    with pytest.raises(RuntimeError, match=r"Dense\.backward called before forward"):
        layer.backward(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"Dense: argument 'x' must have 3 features"):
        layer.forward(np.ones((4, 2)))
    with pytest.raises(TypeError, match=r"Dense: argument 'x' must be a floating"):
        layer.forward(np.ones((4, 3), dtype=int))
    layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"Dense: argument 'dy' must have shape \(4, 2\)"):
        layer.backward(np.ones((4, 3)))
    with pytest.raises(TypeError, match=r"Dense: argument 'dy' must be a numeric"):
        layer.backward(np.full((4, 2), "a"))
    with pytest.raises(ValueError, match=r"Dense: argument 'n_in'"):
        Dense(0, 2)
    with pytest.raises(ValueError, match=r"Dense: argument 'n_out'"):
        Dense(2, 1.5)


def test_repr_shows_constructor_args():
    assert repr(Dense(3, 2, seed=4)) == "Dense(n_in=3, n_out=2, seed=4)"


def test_a_weight_whose_change_is_partly_lost_to_rounding_is_not_failed():
    # Found by the Dense property (Hypothesis): moving W[1, 0] changes y[0, 0] (of size 1) by
    # 1e-20 h, below its ulp at every step, and y[1, 0] (of size 1e-20) visibly, so the
    # estimate misses dy[0, 0] 1e-20 and must say that it may. The levels at which richardson
    # re-estimates a doubtful direction were not probed for such lost changes, and the finest
    # one's error of 1e-35 certified the wrong value: the right dW failed.
    x = np.array([[1.0, 1e-20, 1e-20, 1e-20, 1e-20], [1e-20] * 5])
    for seed in (0, 1, 2):
        result = gradcheck.check_layer(Dense(5, 3), x, seed=seed)
        assert result.status == "pass", result.explain()

"""Tests for layers.centering.Center."""

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

from layers import Center


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(5, 3), (1, 4), (4, 1), (2, 6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_backward_matches_central_differences(axis, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 3 + 1
    errors = check_layer(Center(axis), x, seed=seed)
    assert errors["x"] < 1e-8


@pytest.mark.parametrize("axis", [0, 1])
def test_backward_matches_complex_step(axis):
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer = Center(axis)
    layer.forward(x)
    assert rel_error(layer.backward(dy), complex_step_grad(layer.forward, x, dy)) < 1e-14


@pytest.mark.parametrize("axis", [0, 1])
def test_output_mean_is_zero_along_axis(axis):
    x = np.random.default_rng(3).standard_normal((6, 4)) + 5.0
    y = Center(axis).forward(x)
    np.testing.assert_allclose(y.mean(axis=axis), 0.0, atol=1e-14)


def test_axis_refers_to_each_slice_of_a_stack():
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((3, 2, 5, 4))
    y0 = Center(0).forward(xs)
    y1 = Center(1).forward(xs)
    np.testing.assert_allclose(y0.mean(axis=-2), 0.0, atol=1e-14)
    np.testing.assert_allclose(y1.mean(axis=-1), 0.0, atol=1e-14)


@pytest.mark.parametrize("axis", [0, 1])
def test_stack_matches_loop(axis):
    rng = np.random.default_rng(5)
    xs, dys = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    assert_stack_matches_loop(Center(axis), xs, dys)


def test_no_mutation():
    assert_no_mutation(Center(0), np.random.default_rng(6).standard_normal((5, 3)))


def test_errors_name_the_layer():
    layer = Center(0)
    with pytest.raises(RuntimeError, match=r"Center.backward called before forward"):
        layer.backward(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"Center: argument 'x'.*floating"):
        layer.forward(np.ones((3, 2), dtype=int))
    with pytest.raises(ValueError, match=r"Center: argument 'x'.*at least 2 axes"):
        layer.forward(np.ones(3))
    layer.forward(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"Center: argument 'dy' must have shape"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Center: argument 'axis'"):
        Center(2)


def test_repr_shows_constructor_args():
    assert repr(Center(1)) == "Center(axis=1)"

"""Tests for layers.activations: ReLU, LeakyReLU, Tanh, Sigmoid."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import assert_no_mutation, check_layer, complex_step_grad, rel_error

from layers import LeakyReLU, ReLU, Sigmoid, Tanh

ALL = [ReLU, lambda: LeakyReLU(0.1), Tanh, Sigmoid]
IDS = ["ReLU", "LeakyReLU", "Tanh", "Sigmoid"]


@pytest.mark.parametrize("make", ALL, ids=IDS)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4), (5,), ()])
@pytest.mark.parametrize("seed", [0, 1])
def test_backward_matches_central_differences(make, shape, seed):
    # Standard normal draws are never within a step of the kink at 0 (probability ~1e-6 each).
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    assert check_layer(make(), x, seed=seed)["x"] < 1e-8


@pytest.mark.parametrize("make", [Tanh, Sigmoid], ids=["Tanh", "Sigmoid"])
def test_holomorphic_activations_match_complex_step(make):
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((4, 3)) * 3, rng.standard_normal((4, 3))
    layer = make()
    assert layer.supports_complex
    layer.forward(x)
    assert rel_error(layer.backward(dy), complex_step_grad(layer.forward, x, dy)) < 1e-14


@pytest.mark.parametrize("make", [ReLU, LeakyReLU], ids=["ReLU", "LeakyReLU"])
def test_non_holomorphic_activations_refuse_complex_input(make):
    layer = make()
    assert not layer.supports_complex
    with pytest.raises(TypeError, match=rf"{layer.name}: argument 'x' is complex"):
        layer.forward(np.ones((2, 2), dtype=complex))


def test_forward_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(LeakyReLU(0.5).forward(x), [[-1.0, 0.0, 3.0]])
    np.testing.assert_allclose(Tanh().forward(x), np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(Sigmoid().forward(x), 1 / (1 + np.exp(-x)), rtol=1e-15)


def test_kink_convention():
    x = np.zeros((1, 2))
    relu, leaky = ReLU(), LeakyReLU(0.2)
    relu.forward(x)
    leaky.forward(x)
    np.testing.assert_array_equal(relu.backward(np.ones((1, 2))), 0.0)
    np.testing.assert_array_equal(leaky.backward(np.ones((1, 2))), 0.2)


def test_sigmoid_is_stable_and_accurate_in_both_tails():
    x = np.array([[-1000.0, -40.0, 40.0, 1000.0]])
    layer = Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(y[0, 1], np.exp(-40.0) / (1 + np.exp(-40.0)), rtol=1e-14)
    assert y[0, 3] == 1.0 and y[0, 0] == 0.0
    assert np.all(np.isfinite(dx))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yc = layer.forward(np.array([[-1000.0 + 1e-20j, 1000.0 + 1e-20j]]))
    assert np.all(np.isfinite(yc))


def test_no_mutation():
    for make in ALL:
        assert_no_mutation(make(), np.random.default_rng(3).standard_normal((4, 3)))


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_errors_name_the_layer(make):
    layer = make()
    with pytest.raises(RuntimeError, match=rf"{layer.name}\.backward called before forward"):
        layer.backward(np.ones((2, 2)))
    with pytest.raises(TypeError, match=rf"{layer.name}: argument 'x' must be a floating"):
        layer.forward(np.ones((2, 2), dtype=int))
    layer.forward(np.ones((2, 2)))
    with pytest.raises(ValueError, match=rf"{layer.name}: argument 'dy' must have shape"):
        layer.backward(np.ones((2, 3)))


def test_repr_shows_constructor_args():
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(slope=0.2)"
    assert [repr(c()) for c in (ReLU, Tanh, Sigmoid)] == ["ReLU()", "Tanh()", "Sigmoid()"]

"""Tests for the helpers in layers.base and for the package as a whole (layers/__init__.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import numeric_grad, rel_error

import layers
from layers.base import (
    Layer,
    LayerProtocol,
    as_float64,
    check_choice,
    check_real,
    check_upstream,
    ensure_feature_params,
    sum_over_leading_axes,
)

LAYER_FACTORIES = {
    "Center": lambda: layers.Center(0),
    "Standardize": lambda: layers.Standardize(affine=True),
    "ZCAWhitening": lambda: layers.ZCAWhitening(eps=1e-2),
    "DecorrelatedBatchNorm": lambda: layers.DecorrelatedBatchNorm(eps=1e-2),
    "Dense": lambda: layers.Dense(3, 2),
    "ReLU": layers.ReLU,
    "LeakyReLU": layers.LeakyReLU,
    "Tanh": layers.Tanh,
    "Sigmoid": layers.Sigmoid,
}


def test_package_exports_every_layer_and_the_protocols():
    for name in [*LAYER_FACTORIES, "SoftmaxCrossEntropy", "Layer", "LossLayer", "LayerProtocol"]:
        assert name in layers.__all__ and hasattr(layers, name)


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_every_layer_satisfies_the_protocol_and_computes_in_float64(name):
    layer = LAYER_FACTORIES[name]()
    assert isinstance(layer, LayerProtocol) and isinstance(layer, Layer)
    assert layer.supports_batch and not layer.is_loss
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float64
    dx = layer.backward(np.ones(y.shape, dtype=np.float32))
    assert dx.dtype == np.float64 and dx.shape == x.shape
    assert set(layer.grads) == set(layer.params)


def test_loss_layer_kind():
    loss = layers.SoftmaxCrossEntropy()
    assert isinstance(loss, layers.LossLayer) and loss.is_loss


def test_a_small_network_backpropagates_end_to_end():
    # The blog's architecture in miniature: Dense, tanh, whitening, leaky ReLU, Dense, loss.
    rng = np.random.default_rng(1)
    net = [
        layers.Dense(6, 5, seed=1),
        layers.Tanh(),
        layers.DecorrelatedBatchNorm(eps=1e-3),
        layers.LeakyReLU(0.1),
        layers.Dense(5, 3, seed=2),
    ]
    loss = layers.SoftmaxCrossEntropy()
    x, labels = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)

    def total(inp):
        for layer in net:
            inp = layer.forward(inp)
        return loss.forward(inp, labels)

    total(x)
    grad = loss.backward()
    for layer in reversed(net):
        grad = layer.backward(grad)
    assert rel_error(grad, numeric_grad(total, x, 1.0)) < 1e-6


def test_as_float64():
    a = np.ones(3)
    assert as_float64(a) is a
    assert as_float64(np.ones(3, dtype=np.float32)).dtype == np.float64
    assert as_float64(np.ones(3, dtype=np.complex64)).dtype == np.complex128
    assert as_float64([1, 2]).dtype == np.float64


def test_check_helpers_name_the_layer():
    with pytest.raises(TypeError, match=r"L: argument 'x' is complex"):
        check_real("L", "x", np.ones(2, dtype=complex))
    check_real("L", "x", np.ones(2))
    with pytest.raises(TypeError, match=r"L: argument 'dy' must be a numeric array"):
        check_upstream("L", "dy", np.array(["a"]), (1,))
    with pytest.raises(ValueError, match=r"L: argument 'dy' must have shape \(2,\)"):
        check_upstream("L", "dy", np.ones(3), (2,))
    assert check_upstream("L", "dy", np.ones(2, dtype=int), (2,)).dtype == np.float64
    with pytest.raises(ValueError, match=r"L: argument 'mode' must be one of \('a', 'b'\)"):
        check_choice("L", "mode", "c", ("a", "b"))


def test_sum_over_leading_axes():
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(sum_over_leading_axes(a), a.sum(axis=(0, 1)))


def test_ensure_feature_params_creates_keeps_and_checks():
    layer = Layer()
    ensure_feature_params(layer, 3, gamma=1.0, beta=0.0)
    np.testing.assert_array_equal(layer.params["gamma"], np.ones(3))
    layer.params["gamma"] = np.full(3, 2.0)
    ensure_feature_params(layer, 3, gamma=1.0, beta=0.0)
    np.testing.assert_array_equal(layer.params["gamma"], 2.0)
    with pytest.raises(ValueError, match=r"Layer: parameter 'gamma' has shape \(3,\)"):
        ensure_feature_params(layer, 4, gamma=1.0)

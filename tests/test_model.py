"""layers.model: the normalization choices and the MLP builder."""

from __future__ import annotations

import numpy as np
import pytest

from layers import DecorrelatedBatchNorm, ZCAWhitening
from layers.batchnorm import BatchNorm
from layers.model import build_mlp, make_norm


def test_make_norm_choices():
    assert make_norm("none", 5) is None
    bn = make_norm("standardize", 5)
    assert isinstance(bn, BatchNorm) and bn.eps == 1e-5
    zca = make_norm("zca", 5)
    assert isinstance(zca, DecorrelatedBatchNorm) and not zca.affine and zca.eps == 1e-3
    ex = make_norm("zca", 5, whiten_over="examples")
    assert isinstance(ex, ZCAWhitening) and ex.axis == "examples" and not ex.center
    assert ex.eps == 0.06
    assert make_norm("dbn", 5, eps=0.5).affine
    with pytest.raises(ValueError, match="over examples is offered for norm='zca' only"):
        make_norm("dbn", 5, whiten_over="examples")
    with pytest.raises(ValueError, match="'norm' must be one of"):
        make_norm("batchnorm", 5)


def test_build_mlp_shapes_and_seed():
    net = build_mlp(7, (5, 4, 3), 2, norm="none", seed=1)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Dense", "Tanh", "Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense"]
    assert net.forward(np.zeros((3, 7))).shape == (3, 2)
    again = build_mlp(7, (5, 4, 3), 2, norm="none", seed=1)
    other = build_mlp(7, (5, 4, 3), 2, norm="none", seed=2)
    np.testing.assert_array_equal(net.params["0.W"], again.params["0.W"])
    assert not np.array_equal(net.params["0.W"], other.params["0.W"])
    # Distinct streams per layer: equal shapes must not get equal weights.
    square = build_mlp(4, (4, 4), 4, norm="none", seed=0)
    assert not np.array_equal(square.params["0.W"], square.params["2.W"])
    with pytest.raises(ValueError, match="at least one hidden size"):
        build_mlp(4, (), 2)

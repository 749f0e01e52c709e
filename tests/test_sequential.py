"""layers.sequential: a whole network checked by the harness as one layer; modes; param views."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_layer
from layers import DecorrelatedBatchNorm, Dense, SoftmaxCrossEntropy, Tanh, ZCAWhitening
from layers.model import build_mlp
from layers.sequential import NetworkWithLoss, Sequential

SEED = 20240607
# Every normalization the training example offers, as (norm, whiten_over).
CHOICES = [
    ("none", "features"),
    ("standardize", "features"),
    ("zca", "features"),
    ("zca", "examples"),
    ("dbn", "features"),
]
IDS = [f"{n}-{w}" for n, w in CHOICES]
N, D_IN, HIDDEN, N_OUT = 8, 4, (6, 5), 3


def small_net(norm: str, whiten_over: str, seed: int = SEED) -> Sequential:
    return build_mlp(D_IN, HIDDEN, N_OUT, norm=norm, whiten_over=whiten_over, seed=seed)


def batch(seed: int = SEED, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D_IN))


def with_running_stats(net: Sequential, seed: int = SEED) -> Sequential:
    """Train-mode forwards on a few batches (so running statistics move), then eval mode."""
    rng = np.random.default_rng(seed + 1)
    for _ in range(4):
        net.forward(rng.standard_normal((N, D_IN)) * 1.5 + 0.3)
    return net.eval()


def assert_all_checked(result, net) -> None:
    assert [f.code for f in result.findings] == []
    checked = {a.name for a in result.arguments}
    assert checked == {"x", *net.params}, checked
    assert all(a.mode == "full" for a in result.arguments)


@pytest.mark.parametrize(("norm", "whiten_over"), CHOICES, ids=IDS)
def test_whole_network_gradient_train_mode(norm, whiten_over):
    net = small_net(norm, whiten_over)
    result = check_layer(net, batch(), mode="full", seed=SEED)
    assert result.status == "pass", result.reason
    assert_all_checked(result, net)


@pytest.mark.parametrize(("norm", "whiten_over"), CHOICES, ids=IDS)
def test_whole_network_gradient_eval_mode(norm, whiten_over):
    net = with_running_stats(small_net(norm, whiten_over))
    result = check_layer(net, batch(), mode="full", seed=SEED)
    assert result.status == "pass", result.reason
    assert_all_checked(result, net)


@pytest.mark.parametrize(("norm", "whiten_over"), CHOICES, ids=IDS)
def test_network_with_softmax_ce_gradient(norm, whiten_over):
    net = small_net(norm, whiten_over)
    model = NetworkWithLoss(net, SoftmaxCrossEntropy())
    labels = np.arange(N) % N_OUT
    result = check_layer(model, batch(), target=labels, mode="full", seed=SEED)
    assert result.status == "pass", result.reason
    assert_all_checked(result, net)


class _WrongTanh(Tanh):
    """tanh whose backward forgets the square: ``f'(x)`` taken as ``1 - y``."""

    def _fprime(self, x, y):
        return 1.0 - y


def test_a_wrong_backward_inside_the_network_is_caught_upstream_only():
    net = Sequential(
        [Dense(D_IN, 6, seed=1), _WrongTanh(), ZCAWhitening(eps=1e-3), Dense(6, N_OUT, seed=2)]
    )
    result = check_layer(net, batch(), mode="full", seed=SEED)
    assert result.status == "fail"
    status = {a.name: a.status for a in result.arguments}
    # Everything below the broken layer gets a wrong gradient; the Dense above it does not.
    assert status == {"x": "fail", "0.W": "fail", "0.b": "fail", "3.W": "pass", "3.b": "pass"}


def test_param_names_and_grads_match():
    net = small_net("dbn", "features")
    assert list(net.params) == ["0.W", "0.b", "2.gamma", "2.beta", "3.W", "3.b", "5.W", "5.b"]
    y = net.forward(batch())
    net.backward(np.ones_like(y))
    assert list(net.grads) == list(net.params)
    for key, p in net.params.items():
        assert net.grads[key].shape == p.shape
    assert net.n_params == sum(p.size for p in net.params.values())


def test_params_view_writes_through_and_updates_in_place():
    net = small_net("none", "features")
    w = net.layers[0].params["W"]
    assert net.params["0.W"] is w  # the sub-layer's array itself, not a copy
    net.params["0.W"] -= 1.0  # in place
    assert net.layers[0].params["W"] is w
    replacement = np.zeros_like(w)
    view = net.params
    view["0.W"] = replacement
    assert net.layers[0].params["W"] is replacement
    assert view["0.W"] is replacement
    view.update({"0.b": np.ones(HIDDEN[0])})
    np.testing.assert_array_equal(net.layers[0].params["b"], 1.0)
    with pytest.raises(KeyError, match="no parameter"):
        view["9.W"] = replacement
    with pytest.raises(TypeError, match="cannot be added or removed"):
        del view["0.W"]
    with pytest.raises(TypeError, match="cannot be added or removed"):
        view.pop("0.W")


def test_nested_network_params_write_through():
    inner = Sequential([Dense(D_IN, 3, seed=1), Tanh()])
    net = Sequential([inner, Dense(3, 2, seed=2)])
    assert list(net.params) == ["0.0.W", "0.0.b", "1.W", "1.b"]
    new = np.zeros((D_IN, 3))
    net.params["0.0.W"] = new
    assert inner.layers[0].params["W"] is new
    result = check_layer(net, batch(), mode="full", seed=SEED)
    assert result.status == "pass", result.reason


def test_check_leaves_parameters_and_mode_as_they_were():
    net = small_net("dbn", "features")
    before = {k: v.copy() for k, v in net.params.items()}
    check_layer(net, batch(), mode="full", seed=SEED)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])
    assert net.training


def test_train_and_eval_modes_reach_every_layer_with_a_flag():
    net = small_net("dbn", "features")
    dbn = net.layers[2]
    assert isinstance(dbn, DecorrelatedBatchNorm) and dbn.train
    net.eval()
    assert not dbn.train and not net.training
    net.train()
    assert dbn.train and net.training
    nested = Sequential([net, Dense(N_OUT, 2, seed=3)])
    nested.eval()
    assert not dbn.train and not net.training


@pytest.mark.parametrize(("norm", "whiten_over"), CHOICES[1:], ids=IDS[1:])
def test_eval_mode_prediction_depends_on_the_batch_only_for_example_whitening(norm, whiten_over):
    net = with_running_stats(small_net(norm, whiten_over))
    x = batch()
    alone = net.forward(x[:4])
    together = net.forward(x)[:4]
    own = net.batch_statistics_layers()
    if whiten_over == "examples":
        assert [type(layer) for _, layer in own] == [ZCAWhitening]
        assert not np.allclose(alone, together)
    else:
        assert own == []
        np.testing.assert_allclose(alone, together, rtol=1e-12, atol=1e-12)


def test_stacked_forward_matches_a_loop_and_leaves_running_stats_alone():
    net = small_net("dbn", "features")
    assert net.supports_batch
    dbn = net.layers[2]
    stack = np.stack([batch(1), batch(2), batch(3)])
    before = dbn.running_whitening.copy()
    stacked = net.forward(stack)
    np.testing.assert_array_equal(dbn.running_whitening, before)
    looped = np.stack([net.forward(x) for x in stack])
    np.testing.assert_allclose(stacked, looped, rtol=1e-10, atol=1e-12)


def test_sequential_rejects_non_layers_and_loss_layers():
    with pytest.raises(TypeError, match="no forward/backward"):
        Sequential([Dense(2, 2), object()])
    with pytest.raises(TypeError, match="NetworkWithLoss"):
        Sequential([Dense(2, 2), SoftmaxCrossEntropy()])
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential([])
    with pytest.raises(RuntimeError, match="before forward"):
        Sequential([Dense(2, 2)]).backward(np.zeros((1, 2)))

"""layers.network: a whole network checked by the harness as one layer, modes, parameter views."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_layer
from layers import DecorrelatedBatchNorm, Dense, SoftmaxCrossEntropy, Tanh, ZCAWhitening
from layers.network import (
    BatchNorm,
    NetworkWithLoss,
    Sequential,
    batch_indices,
    build_mlp,
    make_norm,
)

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


def test_batchnorm_running_statistics_and_eval_output():
    rng = np.random.default_rng(SEED)
    bn = BatchNorm(3, eps=1e-5, affine=True, momentum=1.0)
    x = rng.standard_normal((50, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -3.0]
    bn.params["gamma"][...] = [1.0, 2.0, 3.0]
    y_train = bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=0))
    np.testing.assert_allclose(bn.running_var, x.var(axis=0))
    bn.train = False
    # With momentum 1 the running statistics are this batch's, so eval reproduces train mode.
    np.testing.assert_allclose(bn.forward(x), y_train, rtol=1e-12, atol=1e-12)
    bn2 = BatchNorm(3, momentum=0.1)
    for _ in range(200):
        bn2.forward(rng.standard_normal((64, 3)) * 2.0 + 5.0)
    np.testing.assert_allclose(bn2.running_mean, 5.0, atol=0.3)
    np.testing.assert_allclose(bn2.running_var, 4.0, rtol=0.2)


def test_batchnorm_gradients_both_modes():
    bn = BatchNorm(3, affine=True)
    x = np.random.default_rng(SEED).standard_normal((10, 3))
    bn.params["gamma"][...] = [0.5, 1.5, -2.0]
    assert check_layer(bn, x, mode="full").status == "pass"
    bn.train = False
    assert check_layer(bn, x, mode="full").status == "pass"


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


def test_sequential_rejects_non_layers_and_loss_layers():
    with pytest.raises(TypeError, match="no forward/backward"):
        Sequential([Dense(2, 2), object()])
    with pytest.raises(TypeError, match="NetworkWithLoss"):
        Sequential([Dense(2, 2), SoftmaxCrossEntropy()])
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential([])
    with pytest.raises(RuntimeError, match="before forward"):
        Sequential([Dense(2, 2)]).backward(np.zeros((1, 2)))


def test_batch_indices_cover_everything_in_near_equal_batches():
    rng = np.random.default_rng(SEED)
    batches = batch_indices(1347, 100, rng)
    sizes = [len(b) for b in batches]
    assert len(batches) == 13 and min(sizes) >= 100 and max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1347))
    ordered = batch_indices(10, 4)
    np.testing.assert_array_equal(np.concatenate(ordered), np.arange(10))
    assert [len(b) for b in batch_indices(3, 100)] == [3]

"""layers.optim: SGD with momentum and Adam, against hand-computed steps and on a quadratic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layers import Dense
from layers.optim import SGD, Adam

SEED = 4242


def quadratic(seed: int = SEED, cond: float = 50.0):
    """``f(p) = p^T A p / 2 - b^T p`` with ``A`` SPD of condition number ``cond``; its minimizer."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    a = (q * np.geomspace(1.0, cond, 5)) @ q.T
    b = rng.standard_normal(5)
    return a, b, np.linalg.solve(a, b)


def steps_to_converge(opt, a, b, p_star, max_steps=2000, tol=1e-8) -> int:
    params = {"p": np.zeros(5)}
    for k in range(1, max_steps + 1):
        opt.step(params, {"p": a @ params["p"] - b})
        if np.linalg.norm(params["p"] - p_star) < tol:
            return k
    return max_steps + 1


def test_adam_first_two_steps_by_hand():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    p = np.array([1.0, -2.0, 3.0, 0.5])
    g1 = np.array([0.5, -0.1, 0.0, 4.0])
    g2 = np.array([-0.5, 0.2, 1.0, 4.0])
    opt = Adam(lr=lr, beta1=b1, beta2=b2, eps=eps)
    params = {"p": p.copy()}
    opt.step(params, {"p": g1})
    # Step 1: the bias-corrected moments are g and g^2, so each entry moves by lr * g/(|g|+eps).
    after1 = p - lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(params["p"], after1, rtol=0, atol=1e-15)
    assert params["p"][2] == p[2]  # a zero gradient does not move
    np.testing.assert_allclose(params["p"], [0.9, -1.9, 3.0, 0.4], atol=1e-7)
    opt.step(params, {"p": g2})
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    m_hat, v_hat = m / (1 - b1**2), v / (1 - b2**2)
    np.testing.assert_allclose(
        params["p"], after1 - lr * m_hat / (np.sqrt(v_hat) + eps), rtol=0, atol=1e-15
    )


def test_adam_bias_correction_is_per_parameter():
    opt = Adam(lr=0.01)
    params = {"a": np.zeros(2)}
    for _ in range(5):
        opt.step(params, {"a": np.ones(2)})
    # A parameter that appears later (created lazily) still gets a full first step.
    params["late"] = np.zeros(3)
    opt.step(params, {"a": np.ones(2), "late": np.full(3, 7.0)})
    np.testing.assert_allclose(params["late"], -0.01, rtol=1e-6)


def test_sgd_momentum_first_steps_by_hand():
    opt = SGD(lr=0.5, momentum=0.9)
    params = {"w": np.array([1.0, 2.0])}
    g1, g2 = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    opt.step(params, {"w": g1})
    np.testing.assert_allclose(params["w"], [0.5, 2.5])
    opt.step(params, {"w": g2})
    # v2 = 0.9 * g1 + g2 = [1.4, -0.4]; w2 = w1 - 0.5 * v2.
    np.testing.assert_allclose(params["w"], [0.5 - 0.7, 2.5 + 0.2])


def test_sgd_nesterov_first_step():
    opt = SGD(lr=0.1, momentum=0.5, nesterov=True)
    params = {"w": np.array([0.0])}
    opt.step(params, {"w": np.array([2.0])})
    np.testing.assert_allclose(params["w"], [-0.1 * (2.0 + 0.5 * 2.0)])


def test_sgd_with_momentum_converges_on_a_quadratic_and_beats_plain_sgd():
    a, b, p_star = quadratic()
    lr = 1.0 / 50.0  # 1 / largest eigenvalue: stable for both
    with_momentum = steps_to_converge(SGD(lr=lr, momentum=0.9), a, b, p_star)
    plain = steps_to_converge(SGD(lr=lr, momentum=0.0), a, b, p_star)
    assert with_momentum <= 400
    assert with_momentum < plain / 2


def test_adam_converges_on_a_quadratic():
    a, b, p_star = quadratic()
    # A constant rate leaves Adam hovering at a distance of about lr; the decay settles it.
    opt = Adam(lr=0.05, lr_decay=0.7)
    params = {"p": np.zeros(5)}
    for k in range(1, 3001):
        opt.step(params, {"p": a @ params["p"] - b})
        if k % 200 == 0:
            opt.end_epoch()
    np.testing.assert_allclose(params["p"], p_star, atol=1e-5)


def test_lr_decay_per_epoch():
    opt = Adam(lr=1e-3, lr_decay=0.99)
    for _ in range(15):
        opt.end_epoch()
    assert math.isclose(opt.lr, 1e-3 * 0.99**15)
    assert opt.initial_lr == 1e-3 and opt.epochs == 15
    constant = SGD(lr=0.1)
    constant.end_epoch()
    assert constant.lr == 0.1


def test_updates_in_place_reach_the_layer():
    layer = Dense(3, 2, seed=SEED)
    w = layer.params["W"]
    before = w.copy()
    SGD(lr=0.1, momentum=0.0).step(layer.params, {"W": np.ones((3, 2)), "b": np.ones(2)})
    assert layer.params["W"] is w
    np.testing.assert_allclose(w, before - 0.1)


def test_bad_steps_raise_before_changing_anything():
    params = {"a": np.zeros(2), "b": np.zeros(3)}
    opt = Adam()
    with pytest.raises(KeyError, match="no gradient for parameter"):
        opt.step(params, {"a": np.ones(2)})
    with pytest.raises(ValueError, match="has shape"):
        opt.step(params, {"a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(ValueError, match="not finite"):
        opt.step(params, {"a": np.array([1.0, np.nan]), "b": np.ones(3)})
    np.testing.assert_array_equal(params["a"], 0.0)
    assert opt.steps == 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGD(lr=0), "'lr' must be a positive number"),
        (lambda: SGD(lr=0.1, momentum=1.0), "'momentum' must be in"),
        (lambda: SGD(lr=0.1, momentum=0.0, nesterov=True), "nesterov needs momentum"),
        (lambda: Adam(lr_decay=1.5), "'lr_decay' must be in"),
        (lambda: Adam(beta2=1.0), "'beta2' must be in"),
        (lambda: Adam(eps=0.0), "'eps' must be > 0"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()

"""check_functions, check_value_and_grad and check_adapted, in process.

Every convention of examples/course_layers.py and examples/scratch_layers.py passes with its
correct functions and fails with its buggy twin; every protocol error is a finding that names the
function and the argument; exceptions carry the layer's file and line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import (
    GradientCheckFailed,
    assert_functions_pass,
    assert_value_and_grad_pass,
    check_functions,
    check_value_and_grad,
)
from gradcheck.functions import check_adapted, plan_named, plan_positional
from gradcheck.report import Report, render_json

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import course_layers as C  # noqa: E402
import scratch_layers as S  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 5))
W = RNG.standard_normal((5, 3))
B = RNG.standard_normal(3)
IMG = RNG.standard_normal((2, 3, 5, 5))
FILTERS = RNG.standard_normal((2, 3, 3, 3))
FBIAS = RNG.standard_normal(2)
CONV = {"stride": 1, "pad": 1}
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
GAMMA, BETA = RNG.uniform(0.5, 1.5, 5), RNG.standard_normal(5)
LABELS = RNG.integers(0, 5, 4)

# (name, positional inputs, kwargs): the course functions NAME_forward / NAME_backward.
PAIRS = [
    ("affine", (X, W, B), {}),
    ("relu", (X,), {}),
    ("conv", (IMG, FILTERS, FBIAS, CONV), {}),
    ("max_pool", (IMG,), {"pool_param": POOL}),
    ("batchnorm", (X, GAMMA, BETA, {"mode": "train"}), {}),
]


@pytest.mark.parametrize("name, inputs, kwargs", PAIRS, ids=[p[0] for p in PAIRS])
def test_course_pairs_pass_and_their_buggy_twins_fail(name, inputs, kwargs):
    good = check_functions(
        getattr(C, f"{name}_forward"), getattr(C, f"{name}_backward"), *inputs, kwargs=kwargs
    )
    assert good.status == "pass", good.explain()
    bad = check_functions(
        getattr(C, f"{name}_buggy_forward"),
        getattr(C, f"{name}_buggy_backward"),
        *inputs,
        kwargs=kwargs,
    )
    assert bad.status == "fail", bad.explain()


def test_arguments_are_named_and_ordered_as_the_signature():
    r = check_functions(C.affine_forward, C.affine_buggy_backward, X, W, B)
    assert [a.name for a in r.arguments] == ["x", "w", "b"]
    assert [a.kind for a in r.arguments] == ["input", "param", "param"]
    assert r.reason.startswith(
        "b: 3/3 entries beyond tolerance, confirmed by richardson; worst at b["
    )
    assert "param 'b'" in r.explain() and "b[2]" in r.explain()


def test_batchnorm_test_mode_and_the_callers_bn_param_is_left_alone():
    bn_param = {"mode": "train"}
    r = check_functions(C.batchnorm_forward, C.batchnorm_backward, X, GAMMA, BETA, bn_param)
    assert r.passed
    assert bn_param == {"mode": "train"}  # running statistics went to copies
    stats = {"mode": "test", "running_mean": X.mean(0), "running_var": X.var(0)}
    assert check_functions(C.batchnorm_forward, C.batchnorm_backward, X, GAMMA, BETA, stats).passed


def test_softmax_loss_and_its_buggy_twin():
    assert check_value_and_grad(C.softmax_loss, X, LABELS).passed
    bad = check_value_and_grad(C.softmax_loss_buggy, X, LABELS)
    assert bad.status == "fail" and bad.arguments[0].name == "x"


def test_wrt_chooses_the_differentiated_inputs_and_the_first_plays_x():
    r = check_functions(C.affine_forward, C.affine_buggy_backward, X, W, B, wrt=["w", "b"])
    assert [a.name for a in r.arguments] == ["w", "b"]
    assert [a.kind for a in r.arguments] == ["input", "param"]
    assert r.status == "fail" and r.reason.startswith("b: ")
    assert r.shape == W.shape
    only_w = check_functions(C.affine_forward, C.affine_buggy_backward, X, W, B, wrt="w")
    assert only_w.passed and [a.name for a in only_w.arguments] == ["w"]


def test_an_argument_named_x_that_is_not_first_keeps_its_name():
    def fwd(a, x):
        return a * np.sin(x), (a, x)

    def bwd(dout, cache):
        a, x = cache
        return dout * np.sin(x), dout * a * np.cos(x) * 1.01  # wrong dx

    r = check_functions(fwd, bwd, X, X + 1.0)
    assert [a.name for a in r.arguments] == ["a", "x"]
    assert r.status == "fail" and r.reason.startswith("x: ") and "worst at x[" in r.reason
    assert all(a.status == "pass" for a in r.arguments if a.name == "a")


def test_renamed_first_argument_in_findings_and_reason():
    def fwd(scores):
        return np.tanh(scores), scores

    def bwd(dout, cache):
        dout *= 1 - np.tanh(cache) ** 2  # right value, computed in dout in place
        return dout

    r = check_functions(fwd, bwd, X)
    assert r.arguments[0].name == "scores"
    assert r.status == "fail" and r.reason.startswith("dy-mutated")
    good = check_functions(fwd, lambda d, c: d * (1 - np.tanh(c) ** 2), X)
    assert good.passed and good.arguments[0].name == "scores"

    def mutates(scores):
        scores[0, 0] = 1.0
        return np.tanh(scores), scores.copy()

    r = check_functions(mutates, lambda d, c: d * (1 - np.tanh(c) ** 2), X)
    assert r.reason.startswith("input-mutated: forward modified its input scores in place")


def test_forward_without_a_cache_gets_the_inputs_back():
    def sigmoid(x, scale):
        return scale / (1 + np.exp(-x))

    def sigmoid_backward(dout, x, scale):
        s = 1 / (1 + np.exp(-x))
        return dout * scale * s * (1 - s)

    assert check_functions(sigmoid, sigmoid_backward, X, kwargs={"scale": 2.0}).passed
    bad = check_functions(sigmoid, lambda d, x, scale: d * scale * 0.25, X, kwargs={"scale": 2.0})
    assert bad.status == "fail"


def test_backward_returning_every_float_gradient_when_fewer_are_differentiated():
    # wrt names x only, but affine_backward returns dx, dw, db: the right one is taken.
    assert check_functions(C.affine_forward, C.affine_backward, X, W, B, wrt="x").passed


def test_value_and_grad_with_several_differentiated_inputs():
    def loss(x, w, y):
        z = x @ w - y
        return 0.5 * float(np.sum(z**2)), (z @ w.T, x.T @ z)

    y = RNG.standard_normal((4, 3))
    assert check_value_and_grad(loss, X, W, y, wrt=("x", "w")).passed

    def bad(x, w, y):
        value, (dx, dw) = loss(x, w, y)
        return value, (dx, 2 * dw)

    r = check_value_and_grad(bad, X, W, y, wrt=("x", "w"))
    assert r.status == "fail" and r.reason.startswith("w: ")


def test_regression_value_and_grad_default_differentiates_the_first_argument():
    def mse(pred, target):
        d = pred - target
        return float(np.mean(d**2)), 2 * d / d.size

    target = RNG.standard_normal((4, 5))
    r = check_value_and_grad(mse, X, target)
    assert r.passed and [a.name for a in r.arguments] == ["pred"]


# -- protocol errors -------------------------------------------------------------------------


def _fwd(x, w):
    return x @ w, (x, w)


@pytest.mark.parametrize(
    "backward, code, words",
    [
        (lambda d, c: d @ c[1].T, "backward-arity", "expected 2 gradients (dx, dw)"),
        (lambda d, c: (d @ c[1].T,), "backward-arity", "returned 1 gradients; expected 2"),
        (lambda d, c: (d @ c[1].T, None), "backward-none", "returned None for dw"),
        (lambda d, c: (d @ c[1].T, c[0].T @ d[:, :1]), "backward-shape", "dw of shape (5, 1)"),
        (
            lambda d, c: (d @ c[1].T, (c[0].T @ d).astype(int)),
            "backward-dtype",
            "dw of dtype int",
        ),
        (lambda d, c: (d @ c[1].T, c[0].T @ d * np.nan), "backward-nonfinite", "dw containing nan"),
    ],
)
def test_protocol_errors_are_findings_naming_the_function_and_argument(backward, code, words):
    r = check_functions(_fwd, backward, X, W)
    assert r.status == "error"
    assert r.findings[-1].code == code and words in r.findings[-1].message, r.findings
    assert r.reason == f"{code}: {r.findings[-1].message}"


def test_value_and_grad_that_returns_one_value_or_a_vector():
    r = check_value_and_grad(lambda x: float(np.sum(x)), X)
    assert r.status == "error" and r.findings[-1].code == "forward-return"
    r = check_value_and_grad(lambda x: (x.sum(axis=0), np.ones_like(x)), X)
    assert r.findings[-1].code == "forward-shape" and "must be a scalar" in r.findings[-1].message


def test_a_fixed_array_modified_in_place_is_a_failure():
    def fwd(x, mask):
        mask[0] = 0.0  # the bug: writes into an argument that is not differentiated
        return x * mask, mask

    r = check_functions(fwd, lambda d, m: d * m, X, np.ones(5), wrt="x")
    assert r.status == "fail" and r.reason.startswith("input-mutated")
    assert "'mask'" in r.reason


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_functions(C.affine_forward, C.affine_backward, X, W), "missing"),
        (lambda: check_functions(C.affine_forward, C.affine_backward, X, W, B, wrt="z"), "'z'"),
        (
            lambda: check_value_and_grad(C.softmax_loss, X, LABELS, wrt="y"),
            "not a floating-point array",
        ),
        (lambda: check_functions(C.relu_forward, C.relu_backward, [1.0]), "nothing to differ"),
    ],
)
def test_arguments_that_do_not_fit_raise_with_the_signature(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_plan_named_lays_out_the_call_by_the_signature():
    plan = plan_named(C.conv_forward, ["x", "w", "b"], ["conv_param"], None)
    assert plan.positional == ("x", "w", "b", "conv_param") and plan.keyword == ()
    assert plan.wrt == ("x", "w", "b")
    plan = plan_named(C.max_pool_forward, ["x"], ["pool_param"], None)
    assert plan.wrt == ("x",)
    with pytest.raises(ValueError, match=r"affine_forward\(x, w, b\) needs 'b'"):
        plan_named(C.affine_forward, ["x", "w"], [], None)
    with pytest.raises(ValueError, match=r"takes no argument named 'q'"):
        plan_named(C.affine_forward, ["x", "w", "b", "q"], [], None)

    def f(x, y=1.0, *, z):
        return x

    plan = plan_named(f, ["x"], ["z"], None)
    assert plan.positional == ("x",) and plan.keyword == ("z",)
    assert plan_positional(f, (X,), {"z": 2}, None).keyword == ("z",)


# -- exceptions, reseeding, lazy parameters ----------------------------------------------------


class Raises:
    def forward(self, x):
        return x @ np.ones((x.shape[1] + 1, 2))  # misaligned: NumPy raises

    def backward(self, dy):
        return dy


def test_a_raising_forward_names_the_layers_file_and_line_and_keeps_the_frames():
    r = check_adapted(Raises(), X)
    assert r.status == "error"
    (f,) = r.findings
    assert f.code == "forward-raised"
    assert f.location is not None and "test_functions.py:" in f.location
    assert f.location.endswith("in forward") and f"(at {f.location})" in f.message
    assert any("x @ np.ones" in frame for frame in f.traceback)
    doc = json.loads(render_json(Report(results=[r])))["results"][0]["findings"][0]
    assert doc["location"] == f.location and doc["traceback"] == list(f.traceback)


def test_a_raising_function_pair_names_its_line():
    def fwd(x):
        raise RuntimeError("not implemented yet")

    r = check_functions(fwd, lambda d, c: d, X)
    assert r.findings[0].code == "forward-raised" and "in fwd" in r.findings[0].message


def test_dropout_on_the_global_rng_needs_reseeding_and_the_finding_says_so():
    plain = check_adapted(S.Dropout(0.5), X, seed=0)
    assert plain.status == "fail"
    (f,) = [f for f in plain.findings if f.code == "forward-not-repeatable"]
    assert "--reseed-global-rng" in f.message and "reseed_global_rng=" in f.message
    assert plain.reason.startswith("forward-not-repeatable") and "--reseed" in plain.reason

    state = np.random.get_state()[1].copy()  # noqa: NPY002
    assert check_adapted(S.Dropout(0.5), X, seed=0, reseed_global_rng=0).passed
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    bad = check_adapted(S.DropoutBuggy(0.5), X, seed=0, reseed_global_rng=0)
    assert bad.status == "fail"


class _StaleMaskDropout:
    """Dropout on the global RNG whose backward keeps the mask of its first forward (found by
    an adversarial helper: with reseeding, every forward drew the same mask, so the stale one
    was right everywhere the check looked, and it passed)."""

    def __init__(self) -> None:
        self.mask = None

    def forward(self, x):
        fresh = np.random.rand(*x.shape) < 0.5  # noqa: NPY002
        self.mask = fresh if self.mask is None else self.mask
        self.used = fresh
        return x * fresh / 0.5

    def backward(self, dy):
        return dy * self.mask / 0.5


class _FreshMaskDropout(_StaleMaskDropout):
    def backward(self, dy):
        return dy * self.used / 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_a_stale_dropout_mask_is_caught_under_reseeding(seed):
    wrong = check_adapted(_StaleMaskDropout(), X, seed=seed, reseed_global_rng=seed)
    assert wrong.status == "fail", wrong.explain()
    assert check_adapted(_FreshMaskDropout(), X, seed=seed, reseed_global_rng=seed).passed


def test_reseeding_does_not_help_a_private_generator_and_the_finding_says_so():
    class OwnRng(S.Dropout):
        rng = np.random.default_rng(5)

        def forward(self, x):
            self.mask = (self.rng.random(x.shape) < 0.5) * 2.0
            return x * self.mask

    r = check_adapted(OwnRng(), X, reseed_global_rng=0)
    f = next(f for f in r.findings if f.code == "forward-not-repeatable")
    assert "although NumPy's global RNG was reseeded" in f.message


def test_function_pairs_reseed_too():
    def fwd(x):
        mask = np.random.rand(*x.shape) < 0.5  # noqa: NPY002
        return x * mask, mask

    assert check_functions(fwd, lambda d, m: d * m, X).status == "fail"
    assert check_functions(fwd, lambda d, m: d * m, X, reseed_global_rng=3).passed


def test_lazily_created_parameters_are_checked_and_the_layer_left_as_before():
    good = S.Dense(3)
    r = check_adapted(good, X)
    assert r.passed and [a.name for a in r.arguments] == ["x", "W", "b"]
    assert any(f.code == "params-created-lazily" for f in r.findings)
    bad = check_adapted(S.DenseBuggy(3), X)
    assert bad.status == "fail" and bad.reason.startswith("W: ")


def test_constructor_arguments_4d_inputs_and_a_regression_loss():
    assert check_adapted(S.BatchNorm(5), X).passed
    assert check_adapted(S.BatchNormBuggy(5), X).status == "fail"
    assert check_adapted(S.Conv2D(3, 2, k=3, pad=1), IMG).passed
    assert check_adapted(S.Conv2DBuggy(3, 2, k=3, pad=1), IMG).status == "fail"
    pred, target = RNG.standard_normal((8, 1)), RNG.standard_normal((8, 1))
    assert check_adapted(S.MSELoss(), pred, target=target).passed
    assert check_adapted(S.MSELossBuggy(), pred, target=target).status == "fail"


def test_batch_norm_keeps_its_running_statistics():
    layer = S.BatchNorm(5)
    before = layer.running_mean.copy()
    check_adapted(layer, X)
    assert np.array_equal(layer.running_mean, before)


def test_assertion_helpers():
    assert assert_functions_pass(C.affine_forward, C.affine_backward, X, W, B).passed
    with pytest.raises(GradientCheckFailed, match="beyond tolerance"):
        assert_functions_pass(C.affine_buggy_forward, C.affine_buggy_backward, X, W, B)
    assert assert_value_and_grad_pass(C.softmax_loss, X, LABELS).passed
    with pytest.raises(GradientCheckFailed, match="reproduce: make test"):
        assert_value_and_grad_pass(C.softmax_loss_buggy, X, LABELS, reproduce="make test")


def _affine_with_scratch(reuse: bool, used: bool = True):
    """affine_forward whose cache holds a scratch buffer per shape that the next forward
    overwrites (found by an adversarial helper), and its twin storing a fresh copy. With
    ``used=False`` the backward never reads the buffer: harmless, not a finding."""
    scratch: dict = {}

    def forward(x, w, b):
        if reuse:
            buf = scratch.setdefault(x.shape, np.empty(x.shape))
            buf[...] = x
        else:
            buf = x.copy()
        return x @ w + b, (buf, x.copy(), w, b)

    def backward(dout, cache):
        buf, x, w, _ = cache
        return dout @ w.T, (buf if used else x).T @ dout, dout.sum(axis=0)

    return forward, backward


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_cache_that_the_next_forward_overwrites_fails(mode):
    r = check_functions(*_affine_with_scratch(reuse=True), X, W, B, mode=mode)
    assert r.status == "fail" and r.reason.startswith("cache-clobbered: the next forward")
    assert "another dw" in r.reason
    assert check_functions(*_affine_with_scratch(reuse=False), X, W, B, mode=mode).passed
    unused = check_functions(*_affine_with_scratch(reuse=True, used=False), X, W, B, mode=mode)
    assert unused.passed, unused.explain()


def _softmax_loss(dw_factor: float):
    """``loss, (dx, dw) = softmax_loss(x, w, y)``; ``dw_factor`` != 1 makes dw wrong (found by
    an adversarial helper: the default differentiated only x and dropped dw unseen)."""

    def softmax_loss(x, w, y):
        s = x @ w
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = x.shape[0]
        ds = p.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        return -np.log(p[np.arange(n), y]).mean(), (ds @ w.T, dw_factor * (x.T @ ds))

    return softmax_loss


def test_every_gradient_a_value_and_grad_function_returns_is_checked():
    y = np.arange(X.shape[0]) % 3
    wrong = check_value_and_grad(_softmax_loss(3.0), X, W, y)
    assert [a.name for a in wrong.arguments] == ["x", "w"]
    assert wrong.status == "fail" and wrong.reason.startswith("w: ")
    right = check_value_and_grad(_softmax_loss(1.0), X, W, y)
    assert right.passed and [a.name for a in right.arguments] == ["x", "w"]
    # Narrowed by the caller: the others are a warning, not silently dropped.
    only_x = check_value_and_grad(_softmax_loss(3.0), X, W, y, wrt="x")
    assert only_x.status == "pass" and [a.name for a in only_x.arguments] == ["x"]
    found = [f for f in only_x.findings if f.code == "gradients-unchecked"]
    assert found and "returned dw as well" in found[0].message

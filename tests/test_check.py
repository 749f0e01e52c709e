"""check_layer: verdicts, hygiene findings, and that every failure mode is named, never passed."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_layer, harness_rng
from gradcheck.check import miss_probability
from layers import Dense, SoftmaxCrossEntropy, Tanh, ZCAWhitening


def x_of(shape=(6, 4), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


class Affine:
    """A minimal protocol layer written the plain way (no base class)."""

    def __init__(self):
        rng = np.random.default_rng(7)
        self.params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(axis=0)}
        return dy @ self.params["W"].T


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
@pytest.mark.parametrize("method", ["central", "five-point", "richardson", "complex-step"])
def test_correct_layer_passes_every_mode_and_method(mode, method):
    result = check_layer(Affine(), x_of(), mode=mode, method=method, seed=3)
    assert result.status == "pass", result.explain()
    assert [a.name for a in result.arguments] == ["x", "W", "b"]
    assert result.rel_error < 1e-8


def test_complex_step_is_exact_to_roundoff_on_a_holomorphic_layer():
    result = check_layer(Tanh(), x_of(), mode="full", method="complex-step")
    assert result.status == "pass"
    assert result.rel_error < 1e-14


def test_complex_step_on_a_non_holomorphic_forward_falls_back_with_a_finding():
    result = check_layer(ZCAWhitening(), x_of((12, 3)), mode="full", method="complex-step")
    assert result.status == "pass", result.explain()
    assert any(f.code == "complex-step-unavailable" for f in result.findings)
    assert result.arguments[0].method == "richardson"


@pytest.mark.parametrize("relative", [1e-2, 1e-4, 1e-6])
@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_small_relative_errors_fail(relative, mode):
    class Off(Affine):
        def backward(self, dy):
            return super().backward(dy) * (1.0 + relative)

    result = check_layer(Off(), x_of(), mode=mode, seed=1)
    assert result.status == "fail"
    assert result.input.status == "fail"
    # The denominator is max(||a||, ||n||) = (1 + relative) ||n||.
    assert result.input.comparison.rel_error == pytest.approx(relative / (1 + relative), rel=1e-3)


def test_auto_mode_localizes_a_failure_with_full_mode():
    class OneWrongEntry(Affine):
        def backward(self, dy):
            dx = super().backward(dy).copy()
            dx[2, 1] += 0.5
            return dx

    result = check_layer(OneWrongEntry(), x_of(), seed=2)
    assert result.status == "fail"
    assert result.screen[0].mode == "directional" and result.screen[0].status == "fail"
    x_result = result.input
    assert x_result.mode == "full"
    assert x_result.comparison.n_failed == 1
    assert x_result.comparison.worst_index == (2, 1)
    assert result.worst_index == (2, 1)


def test_wrong_parameter_gradient_is_named():
    class WrongBias(Affine):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["b"] = dy.mean(axis=0)
            return dx

    result = check_layer(WrongBias(), x_of(), seed=0)
    assert result.status == "fail"
    assert result.params["b"].status == "fail"
    assert result.params["W"].status == "pass"
    assert result.input.status == "pass"


def test_directional_result_states_its_miss_probability():
    result = check_layer(Affine(), x_of(), mode="directional", directions=3)
    p = result.input.miss_probability
    assert p is not None and 0 < p < 1e-9
    more = check_layer(Affine(), x_of(), mode="directional", directions=6)
    assert more.input.miss_probability < p


def test_miss_probability_formula():
    # One direction, threshold equal to the error's standard deviation: P(|Z| <= 1) = 0.6827.
    assert miss_probability(np.array([1e-4]), 1.0, 1e-4) == pytest.approx(0.682689, rel=1e-5)
    assert miss_probability(np.array([1e-4, 1e-4]), 1.0, 1e-4) == pytest.approx(
        0.682689**2, rel=1e-5
    )


def test_harness_stream_differs_from_the_users_stream():
    user = np.random.default_rng(5).standard_normal((4, 3))
    ours = harness_rng(5, 1).standard_normal((4, 3))
    assert not np.allclose(user, ours)
    assert np.array_equal(
        harness_rng(5, 1).standard_normal(3), harness_rng(5, 1).standard_normal(3)
    )


def test_same_seed_reproduces_the_same_result():
    a = check_layer(Affine(), x_of(), seed=11).to_dict()
    b = check_layer(Affine(), x_of(), seed=11).to_dict()
    a.pop("elapsed"), b.pop("elapsed")
    assert a == b


# -- hygiene findings --------------------------------------------------------------------------


def findings(result):
    return {f.code for f in result.findings}


def test_input_mutated_in_place_is_a_failure():
    class Mutates(Tanh):
        def forward(self, x):
            y = super().forward(x)
            x *= 1.0000001
            return y

    result = check_layer(Mutates(), x_of())
    assert result.status == "fail"
    assert "input-mutated" in findings(result)


def test_dy_mutated_in_place_is_a_failure():
    class MutatesDy(Tanh):
        def backward(self, dy):
            dx = super().backward(dy)
            dy[...] = 0.0
            return dx

    result = check_layer(MutatesDy(), x_of())
    assert result.status == "fail"
    assert "dy-mutated" in findings(result)


def test_accumulating_gradients_are_named_with_a_hint():
    class Accumulates(Affine):
        def backward(self, dy):
            old = self.grads
            dx = super().backward(dy)
            if old:
                self.grads = {k: old[k] + v for k, v in self.grads.items()}
            return dx

    result = check_layer(Accumulates(), x_of())
    assert result.status == "fail"
    messages = [f.message for f in result.findings if f.code == "backward-not-repeatable"]
    assert messages and "accumulated" in messages[0]


def test_stale_cache_from_an_input_list_is_caught():
    """The numpy-ml pattern: forward appends its input, backward uses the first one stored."""

    class Remembers:
        def __init__(self):
            self.inputs = []

        def forward(self, x):
            self.inputs.append(x)
            return np.tanh(x)

        def backward(self, dy):
            return dy * (1 - np.tanh(self.inputs[0]) ** 2)

    # With no earlier batch, the first stored input is x itself: the gradient at x is right,
    # but a backward right after forward(x') returns it again (the fresh-cache check). Once a
    # silent pass: the layer is wrong on every batch after its first.
    fresh = check_layer(Remembers(), x_of())
    assert fresh.status == "fail" and "stale-cache" in findings(fresh)
    used = Remembers()
    used.forward(x_of(seed=9))  # a previous batch left behind
    assert check_layer(used, x_of()).status == "fail"


def test_nonlinear_backward_is_a_failure():
    class Squares(Tanh):
        def backward(self, dy):
            return super().backward(dy) * (1.0 + 1e-3 * np.abs(dy))

    result = check_layer(Squares(), x_of())
    assert result.status == "fail"
    assert "backward-not-linear" in findings(result)


def test_backward_right_only_for_symmetric_dy_fails():
    class SymOnly:
        """y = x @ A; the backward uses A instead of A^T, right only when A is symmetric."""

        def __init__(self):
            self.a = np.random.default_rng(3).standard_normal((4, 4))

        def forward(self, x):
            return x @ self.a

        def backward(self, dy):
            return dy @ self.a

    assert check_layer(SymOnly(), x_of()).status == "fail"


@pytest.mark.parametrize(
    "bad, code",
    [
        (lambda dy: None, "backward-none"),
        (lambda dy: dy[:, :2], "backward-shape"),
        (lambda dy: dy.astype(np.int64), "backward-dtype"),
        (lambda dy: dy * np.nan, "backward-nonfinite"),
    ],
)
def test_garbage_from_backward_is_an_error(bad, code):
    class Garbage(Tanh):
        def backward(self, dy):
            return bad(dy)

    result = check_layer(Garbage(), x_of())
    assert result.status == "error"
    assert code in findings(result)
    assert result.reason and code in result.reason
    assert not result.passed


def test_forward_that_raises_is_an_error_with_the_exception():
    class Raises(Tanh):
        def forward(self, x):
            raise RuntimeError("boom")

    result = check_layer(Raises(), x_of())
    assert result.status == "error"
    assert "forward-raised" in findings(result)
    assert "boom" in result.reason


def test_forward_returning_nan_is_an_error():
    class NanOut(Tanh):
        def forward(self, x):
            return super().forward(x) * np.nan

    assert check_layer(NanOut(), x_of()).status == "error"


def test_nan_or_inf_in_x_is_refused():
    x = x_of()
    x[1, 2] = np.inf
    result = check_layer(Tanh(), x)
    assert result.status == "error"
    assert "(1, 2)" in result.reason


def test_integer_input_is_refused():
    result = check_layer(Tanh(), np.ones((3, 2), dtype=np.int64))
    assert result.status == "error" and "floating-point" in result.reason


def test_float32_is_refused_unless_allowed():
    x32 = x_of().astype(np.float32)
    refused = check_layer(Tanh(), x32)
    assert refused.status == "error"
    assert "allow_float32" in refused.reason and "Tanh" in refused.reason
    allowed = check_layer(Tanh(), x32, allow_float32=True)
    assert allowed.status == "pass", allowed.explain()
    assert allowed.tolerance["rtol"] == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
    assert "float32" in findings(allowed)


def test_missing_parameter_gradient_is_an_error():
    class Forgets(Affine):
        def backward(self, dy):
            dx = super().backward(dy)
            del self.grads["b"]
            return dx

    result = check_layer(Forgets(), x_of())
    assert result.status == "error"
    assert "param-grad-missing" in findings(result)


def test_wrong_dy_shape_is_an_error():
    result = check_layer(Tanh(), x_of(), dy=np.ones((2, 2)))
    assert result.status == "error" and "dy-shape" in findings(result)


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="mode"):
        check_layer(Tanh(), x_of(), mode="fast")
    with pytest.raises(ValueError, match="method"):
        check_layer(Tanh(), x_of(), method="forward")


def test_broken_batch_support_is_detected_and_worked_around():
    class MixesBatches(Tanh):
        supports_batch = True

        def forward(self, x):
            # Normalizes by the mean over *everything*, stacked batches included.
            self.scale = np.mean(np.abs(x))
            return np.tanh(x) * self.scale

        def backward(self, dy):
            raise AssertionError("not reached in this test")

    layer = MixesBatches()
    layer.backward = lambda dy: dy  # analytic irrelevant here
    result = check_layer(layer, x_of())
    assert "batch-support-broken" in findings(result)


def test_loss_layer_uses_labels_from_the_seed():
    result = check_layer(SoftmaxCrossEntropy(), 3 * x_of((8, 5)), seed=4)
    assert result.status == "pass", result.explain()
    wrong = SoftmaxCrossEntropy()
    original = wrong.backward
    wrong.backward = lambda: original() * 8  # forgets the 1/N of the mean
    assert check_layer(wrong, 3 * x_of((8, 5)), seed=4).status == "fail"


def test_layer_is_left_as_given():
    layer = Dense(4, 3)
    w_before = layer.params["W"].copy()
    w_obj = layer.params["W"]
    x = x_of()
    check_layer(layer, x)
    assert layer.params["W"] is w_obj
    assert np.array_equal(layer.params["W"], w_before)
    assert np.array_equal(layer.cache["x"], x)


def test_ill_conditioned_whitening_is_inconclusive_not_pass_in_full_central_mode():
    x = x_of((4, 6))  # N < D: D - N + 1 eigenvalues of Sigma equal eps
    result = check_layer(ZCAWhitening(eps=1e-9), x, mode="full", method="central", escalate=False)
    assert result.status == "inconclusive"
    assert "condition number" in result.reason
    assert result.spectrum["condition_number"] > 1e8


def test_auto_mode_escalates_to_richardson_before_inconclusive():
    result = check_layer(ZCAWhitening(eps=1e-9), x_of((4, 6)))
    assert result.status == "pass", result.explain()
    assert [a.method for a in result.screen] == ["central", "richardson"]
    assert result.input.method == "richardson"


def test_full_mode_escalates_too():
    result = check_layer(ZCAWhitening(eps=1e-7), x_of((4, 6)), mode="full")
    assert result.status == "pass", result.explain()
    assert [(a.mode, a.method) for a in result.screen] == [("full", "central")]


def test_beyond_what_any_estimator_resolves_stays_inconclusive():
    result = check_layer(ZCAWhitening(eps=1e-13), x_of((4, 6)))
    assert result.status == "inconclusive", result.explain()
    assert not result.passed


def test_running_statistics_are_left_as_given():
    from layers import DecorrelatedBatchNorm

    layer = DecorrelatedBatchNorm()
    layer.forward(x_of((32, 4), seed=5))
    mean, whitening = layer.running_mean.copy(), layer.running_whitening.copy()
    result = check_layer(layer, x_of((16, 4), seed=6) + 5.0)
    assert result.status == "pass", result.explain()
    assert np.array_equal(layer.running_mean, mean)
    assert np.array_equal(layer.running_whitening, whitening)


def test_loss_layer_labels_follow_a_declared_class_count():
    class Head:
        """Features (N, 3) -> logits (N, 2) -> mean softmax cross-entropy."""

        is_loss = True
        n_classes = 2

        def __init__(self):
            self.ce = SoftmaxCrossEntropy()
            self.w = np.random.default_rng(0).standard_normal((3, 2))

        def forward(self, x, target):
            assert target.max() < 2
            return self.ce.forward(x @ self.w, target)

        def backward(self):
            return self.ce.backward() @ self.w.T

    assert check_layer(Head(), x_of((6, 3))).status == "pass"


class _BinaryCrossEntropy:
    """Binary cross-entropy on one logit column ``(N, 1)``; ``forget_y`` returns ``p / N``, the
    gradient without its ``- y`` (found by an adversarial helper: the default labels were
    drawn from ``[0, x.shape[-1]) = [0, 1)``, all 0, where the two agree)."""

    is_loss = True

    def __init__(self, forget_y: bool) -> None:
        self.forget_y = forget_y

    def forward(self, z, labels):
        self.z, self.y = z, np.asarray(labels, dtype=float).reshape(z.shape)
        self.p = 1.0 / (1.0 + np.exp(-z))
        return float(-np.mean(self.y * np.log(self.p) + (1 - self.y) * np.log(1 - self.p)))

    def backward(self):
        n = self.z.shape[0]
        return self.p / n if self.forget_y else (self.p - self.y) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_binary_loss_on_one_logit_column_gets_labels_of_both_classes(seed):
    z = np.random.default_rng(seed).standard_normal((8, 1))
    wrong = check_layer(_BinaryCrossEntropy(forget_y=True), z, seed=seed)
    assert wrong.status == "fail", wrong.explain()
    right = check_layer(_BinaryCrossEntropy(forget_y=False), z, seed=seed)
    assert right.status == "pass", right.explain()

"""gradcheck.testing: ``assert_gradients_pass`` and the ``GradientCheckFailed`` it raises."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import CheckResult, GradientCheckFailed, assert_gradients_pass
from layers import ReLU, Tanh

X = np.random.default_rng(0).standard_normal((4, 3))


class OffByOnePercent(Tanh):
    """tanh with a backward 1% too large everywhere."""

    def backward(self, dy):
        return super().backward(dy) * 1.01


def test_a_correct_layer_passes_and_the_result_is_returned():
    result = assert_gradients_pass(Tanh(), X, seed=0)
    assert isinstance(result, CheckResult) and result.status == "pass"


def test_a_wrong_layer_raises_an_assertion_error_showing_the_worst_entries():
    with pytest.raises(AssertionError) as info:
        assert_gradients_pass(OffByOnePercent(), X, seed=0)
    err = info.value
    assert isinstance(err, GradientCheckFailed)
    assert err.result.status == "fail"
    message = str(err)
    assert message == err.result.explain()
    assert "OffByOnePercent" in message and ": fail:" in message
    assert "analytic" in message and "numeric" in message  # side by side
    assert "x[" in message  # the worst entries by name


def test_the_reproduce_command_is_kept_and_shown():
    command = "pytest tests/test_testing.py -k wrong"
    with pytest.raises(GradientCheckFailed) as info:
        assert_gradients_pass(OffByOnePercent(), X, seed=0, reproduce=command)
    assert info.value.result.reproduce == command
    assert command in str(info.value)
    passed = assert_gradients_pass(Tanh(), X, seed=0, reproduce=command)
    assert passed.reproduce == command


def test_an_inconclusive_check_fails_unless_allowed():
    """ReLU exactly at its kink: the estimate cannot resolve the tolerance there."""
    x = np.array([[0.0], [1.0]])
    with pytest.raises(GradientCheckFailed) as info:
        assert_gradients_pass(ReLU(), x, mode="full", seed=0)
    assert info.value.result.status == "inconclusive"
    result = assert_gradients_pass(ReLU(), x, mode="full", seed=0, allow_inconclusive=True)
    assert result.status == "inconclusive"


def test_allowing_inconclusive_does_not_let_a_failure_through():
    with pytest.raises(GradientCheckFailed):
        assert_gradients_pass(OffByOnePercent(), X, seed=0, allow_inconclusive=True)


def test_the_options_reach_check_layer():
    result = assert_gradients_pass(Tanh(), X, seed=3, mode="directional", directions=2)
    assert result.seed == 3
    assert [a.mode for a in result.arguments] == ["directional"]

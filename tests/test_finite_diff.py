"""The estimators: error orders, honest error estimates, steps, batching and chunking."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.finite_diff import (
    METHODS,
    STENCILS,
    _combine,
    base_step,
    complex_step_holds,
    directional_derivatives,
    harness_rng,
    hidden_by_unmoved,
    partial_derivatives,
)


def smooth_outputs(points):
    """F(x) = [sin(x) * exp(x/3), x^3] per entry: analytic, with a known gradient."""
    return np.stack([np.sin(points) * np.exp(points / 3.0), points**3], axis=1)


def smooth_grad(x, w):
    d0 = (np.cos(x) + np.sin(x) / 3.0) * np.exp(x / 3.0)
    return w[0] * d0 + w[1] * 3.0 * x**2


X = np.random.default_rng(0).standard_normal((5, 3))
W = harness_rng(0, 1).standard_normal((2, 5, 3))
TRUE = smooth_grad(X, W)


@pytest.mark.parametrize(
    "method, bound",
    [("central", 1e-9), ("five-point", 1e-12), ("richardson", 5e-13), ("complex-step", 1e-15)],
)
def test_accuracy_of_each_method(method, bound):
    est = partial_derivatives(smooth_outputs, X, W, method=method)
    rel = np.linalg.norm(est.value - TRUE) / np.linalg.norm(TRUE)
    assert rel < bound


@pytest.mark.parametrize("method", METHODS)
def test_error_estimate_bounds_the_actual_error(method):
    est = partial_derivatives(smooth_outputs, X, W, method=method)
    assert np.all(np.abs(est.value - TRUE) <= est.error)


def test_error_estimates_of_a_smooth_function_resolve_the_default_tolerance():
    """Conservative, but never so much that a smooth, well-scaled function is inconclusive:
    every estimate's error stays well below rtol = sqrt(eps) of the gradient."""
    scale = np.max(np.abs(TRUE))
    for method, factor in (("central", 5e-2), ("five-point", 1e-3), ("richardson", 1e-2)):
        est = partial_derivatives(smooth_outputs, X, W, method=method)
        assert np.max(est.error) < factor * np.sqrt(np.finfo(np.float64).eps) * scale, method


def test_truncation_error_has_the_stated_order():
    """Halving a (large) step divides the central error by 4 and the five-point error by 16."""
    x = np.array([[0.7]])
    w = np.ones((2, 1, 1))
    truth = smooth_grad(x, w)
    for method, order in (("central", 2), ("five-point", 4)):
        errs = []
        for h in (0.2, 0.1):
            est = directional_derivatives(
                smooth_outputs,
                x,
                w,
                lambda i: np.ones((len(i), 1, 1)),
                1,
                np.array([h]),
                method=method,
            )
            errs.append(abs(est.value[0] - truth[0, 0]))
        assert errs[0] / errs[1] == pytest.approx(2.0**order, rel=0.15)


def test_steps_follow_the_epsilon_rule_and_are_representable():
    eps = np.finfo(np.float64).eps
    x = np.array([0.0, 0.5, -3.0, 1e4])
    h = base_step("central", x)
    assert np.allclose(h, eps ** (1 / 3) * np.maximum(1.0, np.abs(x)))
    assert np.allclose(base_step("five-point", x), eps ** (1 / 5) * np.maximum(1.0, np.abs(x)))
    assert np.all(base_step("complex-step", x) == 1e-20)


def test_indices_and_chunking_give_the_same_values():
    full = partial_derivatives(smooth_outputs, X, W, method="central")
    chunked = partial_derivatives(smooth_outputs, X, W, method="central", chunk=2)
    assert np.array_equal(full.value, chunked.value)
    some = partial_derivatives(smooth_outputs, X, W, method="central", indices=np.array([0, 7, 14]))
    assert np.array_equal(some.value, full.value.ravel()[[0, 7, 14]])


def test_unaffected_outputs_cancel_exactly():
    """Differences are taken before contracting with w, so outputs that a perturbation does not
    reach contribute no round-off: an elementwise map is estimated entry by entry."""

    def cube(points):
        return points**3

    x = np.full((50, 50), 2.0)
    w = np.ones((50, 50)) * 1e6  # a large contraction would swamp L-differences in round-off
    est = partial_derivatives(cube, x, w, method="central")
    assert np.allclose(est.value, 12.0 * 1e6, rtol=1e-9)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        partial_derivatives(smooth_outputs, X, W, method="forward")


def test_harness_rng_streams_are_independent_by_purpose_and_seed():
    a = harness_rng(1, 1).standard_normal(4)
    b = harness_rng(1, 2).standard_normal(4)
    c = harness_rng(2, 1).standard_normal(4)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    assert not np.allclose(a, np.random.default_rng(1).standard_normal(4))


def test_stencil_table_weights_are_the_estimators():
    """STENCILS states each method's weights on D(s h); they must be what the estimate uses."""
    rng = np.random.default_rng(4)
    for method in ("central", "five-point"):
        stencil = STENCILS[method]
        d = [rng.standard_normal(3) for _ in stencil.offsets]
        value, _, _, weights = _combine(method, d)
        assert tuple(weights) == stencil.weights
        np.testing.assert_allclose(value, sum(w * dk for w, dk in zip(stencil.weights, d)))
        # The weights reproduce a polynomial of the stencil's order exactly, and no higher.
        h = 0.1
        for power in range(1, stencil.order + 2):
            # D(s h) of L(t) = t^power at 0: (s h)^(power - 1) for odd power, 0 for even.
            d_poly = [(s * h) ** (power - 1) if power % 2 else 0.0 for s in stencil.offsets]
            exact = 1.0 if power == 1 else 0.0
            got = sum(w * dk for w, dk in zip(stencil.weights, d_poly))
            if power <= stencil.order:
                assert abs(got - exact) < 1e-12
            else:
                assert abs(got - exact) > 1e-12


def test_a_subset_that_moves_no_output_is_not_taken_for_a_constant_when_others_move():
    """``y = x0 + 1e-300 x1``: entry 1 moves no output at any step. Estimated alone, nothing
    moved anywhere and probes at far larger steps move nothing either, so it reads as a
    constant (0, no error); as a subset of an estimate in which entry 0 moved ``y``
    (``others_move``), its 0 carries the rounding of ``y``, which may hide a gradient."""

    def outputs(points):
        flat = points.reshape(points.shape[0], -1)
        return (flat[:, 0] + 1e-300 * flat[:, 1])[:, None]

    x = np.array([1.0, 1.0])
    w = np.array([1.0])
    alone = partial_derivatives(outputs, x, w, indices=np.array([1]))
    assert alone.value[0] == 0.0 and alone.error[0] == 0.0
    subset = partial_derivatives(outputs, x, w, indices=np.array([1]), others_move=True)
    assert subset.value[0] == 0.0 and subset.error[0] > 1e-12
    every = partial_derivatives(outputs, x, w)
    assert every.error[1] == subset.error[0]


def _stack(f):
    return lambda points: f(points.reshape(points.shape[0], -1))


@pytest.mark.parametrize(
    ("forward", "holds"),
    [
        (lambda p: np.sin(p) * np.exp(p / 3), True),
        (lambda p: p**3 + 1e-6 * np.tanh(p), True),
        # One output of 2,048 with |x|: the imaginary part loses its slope of 2e-5.
        (lambda p: np.sin(p) + 2e-5 * np.abs(p) * (np.arange(p.shape[1]) == 7), False),
        # A real part taken: the imaginary part is gone from one output altogether.
        (lambda p: np.concatenate([np.sin(p[:, :-1]), np.real(p[:, -1:])], axis=1), False),
    ],
)
def test_the_complex_step_is_held_to_real_differences_output_by_output(forward, holds):
    x = harness_rng(0, 99).standard_normal(2048)
    v = harness_rng(1, 99).standard_normal(2048)
    assert complex_step_holds(_stack(forward), x, v) is holds


def test_hidden_by_unmoved_counts_outputs_coupled_below_their_ulp_only():
    """A softmax row: moving the logit of p ~ 1e-19 leaves p ~ 1 bitwise unchanged at the probe
    step but not at the input's scale, so its ulp is a bound on what was lost. A scaled sine's
    large column never moves with a direction in its small one: no bound."""

    def softmax(points):
        z = 20.0 * points
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    x = np.array([2.2, 0.0])  # p = (1, 7e-20)
    v = np.array([[0.0, 1.0]])
    bound, spent = hidden_by_unmoved(softmax, x, np.ones(2), v, np.array([1e-3]), 1.0)
    assert spent == 1 + 8
    assert bound[0] == pytest.approx(np.finfo(float).eps / 2e-3)

    def scaled_sine(points):
        return np.sin(points) * np.array([1e6, 1e-6])

    bound, _ = hidden_by_unmoved(
        scaled_sine, np.array([0.3, 0.4]), np.ones(2), v, np.array([1e-3]), 1.0
    )
    assert bound[0] == 0.0

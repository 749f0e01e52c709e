"""The layer tests' gradient oracle: finite differences that share no code with the harness.

The layers' own tests compare each hand-written backward with this plain central difference
(and the complex step), not with ``gradcheck``, so that a bug in the harness cannot hide a bug
in a layer: the harness is tested against the layers, and the layers against this. Its
``check_layer`` is that comparison, unrelated to :func:`gradcheck.check_layer`.

Everything is float64. The scalar whose gradient is estimated is ``L(x) = sum(f(x) * dy)``, so
the estimate is what a correct ``backward(dy)`` must return (a vector-Jacobian product).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from layers.base import Layer

Array = np.ndarray


def numeric_grad(f: Callable[[Array], Array], x: Array, dy: Array, rel_step: float = 1e-6) -> Array:
    """Central-difference gradient of ``sum(f(x) * dy)`` w.r.t. ``x``.

    The step for entry ``k`` is ``rel_step * max(1, |x_k|)``; the difference is divided by the
    step actually taken (``x+ - x-`` in floating point), not the nominal one.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        h = rel_step * max(1.0, abs(x[idx]))
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (np.sum(f(xp) * dy) - np.sum(f(xm) * dy)) / (xp[idx] - xm[idx])
    return grad


def numeric_param_grad(
    layer: Layer, key: str, x: Array, dy: Array, rel_step: float = 1e-6
) -> Array:
    """Central-difference gradient of ``sum(layer.forward(x) * dy)`` w.r.t. ``layer.params[key]``.

    The parameter is replaced by perturbed copies and restored afterwards.
    """
    original = layer.params[key]

    def f(p: Array) -> Array:
        layer.params[key] = p
        return layer.forward(x)

    try:
        return numeric_grad(f, original, dy, rel_step)
    finally:
        layer.params[key] = original


def complex_step_grad(f: Callable[[Array], Array], x: Array, dy: Array, h: float = 1e-20) -> Array:
    """Complex-step gradient of ``sum(f(x) * dy)``: ``Im(L(x + i h e_k)) / h`` for each ``k``.

    Exact to rounding for a holomorphic ``f`` (no subtraction, so ``h`` can be tiny); a
    non-holomorphic ``f`` gives a visibly wrong answer, which is what the tests rely on.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xc = x.astype(np.complex128)
        xc[idx] += 1j * h
        grad[idx] = np.sum(f(xc) * dy).imag / h
    return grad


def rel_error(a: Array, b: Array) -> float:
    """``||a - b|| / max(||a||, ||b||, tiny)``: one number per comparison (0 when both are 0)."""
    denom = max(np.linalg.norm(a), np.linalg.norm(b), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / denom)


def check_layer(layer: Layer, x: Array, dy: Array | None = None, seed: int = 0) -> dict:
    """Relative errors of ``backward`` against central differences, for ``x`` and each param.

    Returns ``{"x": err, "<param>": err, ...}``. ``dy`` defaults to a standard normal draw from
    its own stream: a ``dy`` drawn with the seed that drew ``x`` is an affine function of ``x``,
    which centering and standardization project away, leaving a zero gradient to compare.
    """
    rng = np.random.default_rng([seed, 0xD1])
    y = layer.forward(x)
    if dy is None:
        dy = rng.standard_normal(np.shape(y))
    dx = layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    errors = {"x": rel_error(dx, numeric_grad(layer.forward, x, dy))}
    for key in layer.params:
        errors[key] = rel_error(grads[key], numeric_param_grad(layer, key, x, dy))
    return errors


# ---------------------------------------------------------------------------------------------
# Protocol checks shared by the layer test modules.


def assert_no_mutation(layer: Layer, x: Array, dy: Array | None = None) -> None:
    """Run forward and backward and assert that neither changed ``x`` or ``dy``."""
    x_before = np.array(x, copy=True)
    y = layer.forward(x)
    if dy is None:
        dy = np.random.default_rng(1).standard_normal(np.shape(y))
    dy_before = np.array(dy, copy=True)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)
    assert dx is not dy and not np.shares_memory(dx, dy)


def assert_stack_matches_loop(layer: Layer, xs: Array, dys: Array, rtol: float = 1e-12) -> None:
    """A stacked forward/backward equals the slices done one by one; param grads are summed."""
    y_stack = layer.forward(xs)
    dx_stack = layer.backward(dys)
    grads_stack = {k: v.copy() for k, v in layer.grads.items()}
    flat_x = xs.reshape(-1, *xs.shape[-2:])
    flat_dy = dys.reshape(-1, *dys.shape[-2:])
    ys, dxs, grads = [], [], {k: 0.0 for k in grads_stack}
    for x, dy in zip(flat_x, flat_dy):
        ys.append(layer.forward(x))
        dxs.append(layer.backward(dy))
        for k in grads:
            grads[k] = grads[k] + layer.grads[k]
    np.testing.assert_allclose(y_stack, np.reshape(ys, y_stack.shape), rtol=rtol, atol=1e-13)
    np.testing.assert_allclose(dx_stack, np.reshape(dxs, xs.shape), rtol=rtol, atol=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads_stack[k], grads[k], rtol=rtol, atol=1e-13)

"""Numerical derivative estimators, each returning an error estimate beside every value.

Everything here differentiates a scalar objective of the form ``L(x) = <F(x), w>`` where ``F`` is
vectorised over a leading axis of perturbed points: ``outputs(points)`` maps an array of shape
``(B, *x.shape)`` to ``(B, *y.shape)``. Working with ``F`` instead of ``L`` lets every stencil take
the difference of two outputs *before* contracting with ``w``, so outputs that a perturbation does
not touch cancel exactly instead of contributing round-off.

Estimators (``h`` is the step, ``D(h) = (L(x+hv) - L(x-hv)) / 2h``):

``central``
    ``D(h)``, truncation error ``O(h^2)``. Step ``h = eps^(1/3) * max(1, |x_i|)``, the choice that
    balances truncation ``h^2 |L'''| / 6`` against round-off ``eps |L| / h`` (Nocedal & Wright,
    *Numerical Optimization*, 2nd ed., sec. 8.1; the same rule as SciPy's ``approx_derivative``
    '3-point'). Its error is estimated from ``D(2h)``: ``|D(h) - D(2h)| / 3``, the leading term of
    the ``h^2`` expansion. Cost: 4 evaluations per direction.
``five-point``
    ``(4 D(h) - D(2h)) / 3 = (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h``, error ``O(h^4)``,
    step ``eps^(1/5) * max(1, |x_i|)``; its error is estimated from the same stencil at ``2h``:
    ``|F(h) - F(2h)| / 15``. Cost: 6 evaluations per direction.
``richardson``
    Central differences at ``h0, h0/2, h0/4, h0/8`` (``h0 = 8 eps^(1/9) max(1, |x_i|)``)
    extrapolated in a Neville tableau with ratio 2 (Richardson 1911; the scheme numdifftools
    builds on, Brodtkorb & D'Errico), order ``h^8``; error estimate: the sum of the last two
    corrections of the tableau. Such coarse steps are only valid where the function is smooth on
    that scale: an ill-conditioned whitening layer, or a ReLU kink within ``h0`` of ``x_i``, breaks
    the expansion. So five-point estimates at the five-point and at the central step are
    computed as well and, entry by entry, the one with the smallest error estimate is kept
    (numdifftools likewise picks the best of several step sequences). Cost: 20 evaluations per
    direction.
``complex-step``
    ``Im L(x + i h v) / h`` with ``h = 1e-20`` (Squire & Trapp 1998; Martins, Sturdza &
    Alonso 2003): no subtractive cancellation, exact to round-off for a forward that is
    holomorphic in ``x``.
    Cost: 1 complex evaluation per direction.

Every error estimate adds a round-off floor ``eps * sum_k |c_k| <|F(x + s_k h v)|, |w|> / h`` where
``c_k`` are the stencil's weights: the largest error that rounding of the outputs can cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

Array = np.ndarray
Outputs = Callable[[Array], Array]

METHODS: Tuple[str, ...] = ("central", "five-point", "richardson", "complex-step")

# Key mixed into every seed so the harness's draws (dy, directions, labels) never coincide with
# a user's ``np.random.default_rng(seed)`` draws of ``x``: with the same seed and shape, ``dy``
# would otherwise equal the standard-normal part of ``x``, a special case that hides errors.
HARNESS_KEY = 0x6A7C_2B1D

COMPLEX_STEP = 1e-20

# (step exponent, stencil half-offsets) per real-valued method; steps are h = eps^p * scale.
_STENCILS: Dict[str, Tuple[float, Tuple[float, ...]]] = {
    "central": (1.0 / 3.0, (1.0, 2.0)),
    "five-point": (1.0 / 5.0, (1.0, 2.0, 4.0)),
    # h0 = eps^(1/9) * 8 puts the finest step h0/8 near eps^(1/9), the balance point for an
    # O(h^8) scheme, while the coarsest stays small enough for the expansion to hold.
    "richardson-coarse": (1.0 / 9.0, (8.0, 4.0, 2.0, 1.0)),
}


def harness_rng(seed: int, purpose: int = 0) -> np.random.Generator:
    """The harness's own random stream for ``seed``, independent of ``default_rng(seed)``.

    ``purpose`` separates streams used for different draws (upstream gradient, directions, ...).
    """
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(HARNESS_KEY, purpose))
    )


@dataclass(frozen=True)
class Estimate:
    """A numerical derivative and its estimated absolute error, entry by entry."""

    value: Array
    error: Array
    method: str
    step: Array  # the smallest step used per direction
    evaluations: int  # points at which F was evaluated, in all


FLOAT64 = np.dtype(np.float64)


def base_step(method: str, scale: Array, dtype: np.dtype = FLOAT64) -> Array:
    """Step sizes ``eps^p * max(1, scale)`` for ``method`` (``p`` from its error order)."""
    if method == "complex-step":
        return np.full(np.shape(scale), COMPLEX_STEP)
    if method not in METHODS and method not in _STENCILS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    exponent, _ = _STENCILS["richardson-coarse" if method == "richardson" else method]
    eps = np.finfo(dtype).eps
    return eps**exponent * np.maximum(1.0, np.abs(scale))


def _contract(values: Array, w: Array) -> Array:
    """``<values[b], w>`` for every ``b``: shape ``(B, *y)`` against ``y`` gives ``(B,)``.

    A row-wise sum rather than a matrix-vector product: BLAS blocks a product differently for
    different ``B``, so the same point would round differently in chunks of different sizes,
    while a row's sum depends on that row alone (and is pairwise, so more accurate too).
    """
    b = values.shape[0]
    return np.sum(values.reshape(b, -1) * np.reshape(w, -1), axis=1)


def _tableau_weights(n_levels: int) -> Array:
    """Weights of the final Richardson value on the central differences ``D(h0 / 2^k)``."""
    table: List[Array] = [np.eye(n_levels)[k] for k in range(n_levels)]
    for j in range(1, n_levels):
        table = [
            table[k] + (table[k] - table[k - 1]) / (4.0**j - 1.0) if k >= j else table[k]
            for k in range(n_levels)
        ]
    return table[-1]


def _combine(method: str, d: Sequence[Array]) -> Tuple[Array, Array, Array, Array]:
    """(value, truncation estimate, spread, weights on ``d``) from central differences ``d``.

    ``d`` holds ``D`` at the method's offsets, in the order of ``_STENCILS[method]``. The
    *spread* is the difference between the value and the same estimator at a coarser step; the
    truncation estimate is that spread scaled by the estimator's known order.
    """
    if method == "central":
        d1, d2 = d
        spread = np.abs(d1 - d2)
        return d1, spread / 3.0, spread, np.array([1.0, 0.0])
    if method == "five-point":
        d1, d2, d4 = d
        f1 = (4.0 * d1 - d2) / 3.0
        f2 = (4.0 * d2 - d4) / 3.0
        spread = np.abs(f1 - f2)
        return f1, spread / 15.0, spread, np.array([4.0 / 3.0, -1.0 / 3.0, 0.0])
    # richardson: d is coarse-to-fine; build the Neville tableau row by row.
    rows: List[List[Array]] = []
    for k, dk in enumerate(d):
        row = [dk]
        for j in range(1, k + 1):
            row.append(row[j - 1] + (row[j - 1] - rows[k - 1][j - 1]) / (4.0**j - 1.0))
        rows.append(row)
    best = rows[-1][-1]
    spread = np.abs(best - rows[-1][-2]) + np.abs(best - rows[-2][-1])
    return best, spread, spread, _tableau_weights(len(d))


def _unconverged(d: Sequence[Array]) -> Tuple[Array, Array]:
    """Where central differences ``d`` (fine to coarse, step ratio 2) are not converging.

    The error estimates of the extrapolated methods assume the asymptotic regime, where
    successive differences of ``D`` shrink by 4 per halving of the step. Returns a mask of the
    directions where some ratio of successive differences leaves a generous band around 4,
    and the largest difference. Noise also gives such ratios, at no harm; a step that is large
    against the function's own length scale (an ill-conditioned whitening of a constant batch,
    a PCA eigenvector swap) gives them with differences far above the noise.
    """
    deltas = [np.abs(b - a) for a, b in zip(d[:-1], d[1:])]
    off = np.zeros_like(deltas[0], dtype=bool)
    for fine, coarse in zip(deltas[:-1], deltas[1:]):
        off |= (coarse < 2.5 * fine) | (coarse > 6.5 * fine)
    return off, np.maximum.reduce(deltas)


def _kink_weights(offsets: Sequence[float]) -> Array:
    """Weights that extract the step-independent part of the one-sided slope asymmetry.

    The asymmetry ``A(s) = (L(x+sh) - 2L(x) + L(x-sh)) / sh`` (forward minus backward one-sided
    slope) is ``a s + b s^3 + ...`` for a smooth ``L``, but tends to the jump ``J`` of the slope
    when a kink lies at ``x`` (a ReLU at exactly 0), where every symmetric difference agrees on
    the mean of the two slopes and so hides it. Fitting ``J + a s (+ b s^3)`` to the smallest two
    (three) offsets isolates ``J``; the weights are the first row of that fit's inverse.
    """
    powers = (0, 1, 3)[: len(offsets)]
    m = np.array([[float(s) ** p for p in powers] for s in offsets])
    return np.linalg.solve(m.T, np.eye(len(offsets))[0])


def _pooled_noise(spread: Array, h: Array) -> Array:
    """Round-off noise of every estimate, pooled over all directions of one call.

    Rounding errors of the forward pass (amplified by its conditioning, for example an
    ill-conditioned covariance) make ``L(x +- h v)`` noisy by some ``sigma`` that is about the same
    for every direction, and the estimates noisy by ``sigma / h``. One direction's spread is a
    single draw of that noise and can be small by chance, so the noise level is pooled: ``sigma``
    is taken as the 90th percentile of ``spread * h`` over the directions, doubled for safety.
    Where truncation rather than noise dominates, this only makes the estimate conservative.
    """
    if spread.size == 0:
        return spread
    sigma = 2.0 * float(np.quantile(spread * h, 0.9))
    return sigma / h


def directional_derivatives(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    n_directions: int,
    step: Array,
    *,
    method: str = "central",
    chunk: int = 1024,
) -> Estimate:
    """Estimate ``d/dt L(x + t v_j)`` at ``t = 0`` for ``j = 0 .. n_directions-1``.

    ``directions(idx)`` returns the directions ``v_j`` for the integer indices ``idx`` as an
    array ``(len(idx), *x.shape)``; the step is applied here. ``step`` has shape
    ``(n_directions,)``: the base step ``h_j`` of each direction. ``outputs`` is evaluated on
    stacks of at most ``chunk`` points (all stencil points of a group of directions at once,
    so that a layer's per-call overhead is paid once per group, not once per point).
    """
    if method not in METHODS and method not in _STENCILS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "richardson":
        return _richardson(outputs, x, w, directions, n_directions, step, chunk)
    if method == "complex-step":
        return _complex_step(outputs, x, w, directions, n_directions, step, chunk)

    eps = np.finfo(np.float64).eps
    value = np.empty(n_directions)
    error = np.empty(n_directions)
    _, offsets = _STENCILS[method]
    n_off = len(offsets)
    # Stencil points in the order +s1, -s1, +s2, -s2, ... for every direction of a group.
    signed = np.repeat(np.asarray(offsets, dtype=np.float64), 2) * np.tile([1.0, -1.0], n_off)
    spread = np.empty(n_directions)
    unconverged = np.zeros(n_directions, dtype=bool)
    largest_delta = np.zeros(n_directions)
    finest = np.empty(n_directions)
    kink = np.empty(n_directions)
    kink_floor = np.empty(n_directions)
    y0 = np.asarray(outputs(x[None]))
    kink_offsets = sorted(offsets)[:3]
    kink_weights = _kink_weights(kink_offsets)
    group = max(1, chunk // (2 * n_off))
    for lo in range(0, n_directions, group):
        idx = np.arange(lo, min(lo + group, n_directions))
        v = directions(idx)
        h = step[idx]
        moves = (signed[:, None] * h[None, :]).reshape((2 * n_off, len(idx)) + (1,) * x.ndim)
        points = (x[None, None] + moves * v[None]).reshape((-1, *x.shape))
        y = np.asarray(outputs(points))
        y = y.reshape((2 * n_off, len(idx), *y.shape[1:]))
        d: List[Array] = []
        floors: List[Array] = []
        asymmetry: Dict[float, Array] = {}
        asymmetry_floor: Dict[float, Array] = {}
        for k, s in enumerate(offsets):
            y_plus, y_minus = y[2 * k], y[2 * k + 1]
            d.append(_contract(y_plus - y_minus, w) / (2.0 * s * h))
            mag = _contract(np.abs(y_plus) + np.abs(y_minus), np.abs(w))
            floors.append(eps * mag / (2.0 * s * h))
            if s in kink_offsets:
                # Forward minus backward one-sided slope, output by output and in absolute
                # value (so that kinks in several outputs cannot cancel through the signs of
                # w): s*h*|y''| where the outputs are smooth, the slope jump at a kink.
                asymmetry[s] = _contract(np.abs(y_plus - 2.0 * y0 + y_minus), np.abs(w)) / (s * h)
                asymmetry_floor[s] = eps * (mag + 2.0 * _contract(np.abs(y0), np.abs(w))) / (s * h)
        val, trunc, spread[idx], weights = _combine(method, d)
        roundoff = sum(abs(c) * f for c, f in zip(weights, floors))
        kink[idx] = np.abs(sum(c * asymmetry[s] for c, s in zip(kink_weights, kink_offsets)))
        kink_floor[idx] = sum(
            abs(c) * asymmetry_floor[s] for c, s in zip(kink_weights, kink_offsets)
        )
        value[idx] = val
        error[idx] = trunc + roundoff
        finest[idx] = np.abs(d[int(np.argmin(offsets))])
        if n_off >= 3:
            ordered = [dk for _, dk in sorted(zip(offsets, d), key=lambda pair: pair[0])]
            unconverged[idx], largest_delta[idx] = _unconverged(ordered)
    noise = _pooled_noise(spread, step * float(min(offsets)))
    error += noise
    # The kink term is noise itself (a second difference) wherever L is smooth; it counts where
    # it stands well above that noise (its own, pooled like the estimate's, and the estimate's),
    # or above a thousandth of the estimate: a slope jump at a kink, or a jump of L within the
    # step, is of the derivative's own size or larger. (The second test matters when jumps are
    # everywhere, which inflates the pooled noise.)
    kink_noise = _pooled_noise(kink, step * float(min(offsets)))
    counts = (kink > 4.0 * (noise + kink_floor + kink_noise)) | (kink > 1e-3 * np.abs(value))
    error += np.where(counts, kink, 0.0)
    # Not converging, with differences that change the estimate itself (by more than 0.1%, and
    # beyond a millionth of the typical size, which noise does not reach): no step here is small
    # against the function's length scale, so the estimate says nothing at all.
    typical = float(np.quantile(finest, 0.9)) if n_directions else 0.0
    hopeless = unconverged & (largest_delta > 1e-3 * finest) & (largest_delta > 1e-6 * typical)
    error = np.where(hopeless, np.inf, np.where(unconverged, error + largest_delta, error))
    smallest = float(min(offsets))
    return Estimate(value, error, method, np.asarray(step) * smallest, 2 * n_off * n_directions + 1)


def _complex_step(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    n_directions: int,
    step: Array,
    chunk: int,
) -> Estimate:
    eps = np.finfo(np.float64).eps
    value = np.empty(n_directions)
    error = np.empty(n_directions)
    for lo in range(0, n_directions, chunk):
        idx = np.arange(lo, min(lo + chunk, n_directions))
        h = step[idx].reshape((-1,) + (1,) * x.ndim)
        y = np.asarray(outputs(x[None] + 1j * h * directions(idx)))
        value[idx] = _contract(y.imag, w) / step[idx]
        magnitude = _contract(np.abs(y.imag), np.abs(w)) / step[idx]
        error[idx] = 4.0 * eps * (magnitude + np.abs(value[idx]))
    return Estimate(value, error, "complex-step", np.asarray(step), n_directions)


# A coarse Richardson estimate whose error estimate is below this fraction of the derivative's
# size is as good as any finer candidate could make it, so those are only computed elsewhere.
_RICHARDSON_GOOD_ENOUGH = 1e-10


def _richardson(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    n_directions: int,
    step: Array,
    chunk: int,
) -> Estimate:
    """The coarse tableau everywhere; the five-point stencil at its own step and at the central
    step only where the tableau's error estimate is not already negligible, keeping, entry by
    entry, the candidate with the smallest error estimate."""
    coarse = directional_derivatives(
        outputs, x, w, directions, n_directions, step, method="richardson-coarse", chunk=chunk
    )
    value, error, used = coarse.value.copy(), coarse.error.copy(), coarse.step.copy()
    evaluations = coarse.evaluations
    size = np.maximum(
        np.abs(value), float(np.quantile(np.abs(value), 0.9)) if n_directions else 0.0
    )
    refine = np.flatnonzero(~(error <= _RICHARDSON_GOOD_ENOUGH * size))
    if refine.size:
        for factor in (
            base_step("five-point", 1.0) / base_step("richardson", 1.0),
            base_step("central", 1.0) / base_step("richardson", 1.0),
        ):
            fine = directional_derivatives(
                outputs,
                x,
                w,
                lambda j: directions(refine[j]),
                refine.size,
                step[refine] * factor,
                method="five-point",
                chunk=chunk,
            )
            evaluations += fine.evaluations
            better = fine.error < error[refine]
            value[refine[better]] = fine.value[better]
            error[refine[better]] = fine.error[better]
            used[refine[better]] = fine.step[better]
    return Estimate(value, error, "richardson", used, evaluations)


def partial_derivatives(
    outputs: Outputs,
    x: Array,
    w: Array,
    *,
    method: str = "central",
    indices: Optional[Array] = None,
    chunk: int = 256,
) -> Estimate:
    """Estimate ``dL/dx_i`` for every entry ``i`` of ``x`` (or the flat ``indices`` given).

    The step of entry ``i`` is ``eps^p * max(1, |x_i|)``, rounded so that ``x_i + h`` and
    ``x_i - h`` are exactly representable distances from ``x_i`` (for the two-sided stencils).
    Returns arrays of shape ``(len(indices),)``, or ``x.shape`` when ``indices`` is ``None``.
    """
    flat = np.ravel(x)
    idx_all = np.arange(flat.size) if indices is None else np.asarray(indices, dtype=np.intp)
    h = base_step(method, flat[idx_all])
    if method != "complex-step":
        # Make the step exactly representable so the stencil's x +- h is what the formula assumes.
        h = (flat[idx_all] + h) - flat[idx_all]

    def unit_directions(j: Array) -> Array:
        v = np.zeros((len(j), flat.size))
        v[np.arange(len(j)), idx_all[j]] = 1.0
        return v.reshape((len(j), *x.shape))

    est = directional_derivatives(
        outputs, x, w, unit_directions, len(idx_all), h, method=method, chunk=chunk
    )
    if indices is None:
        return Estimate(
            est.value.reshape(x.shape),
            est.error.reshape(x.shape),
            est.method,
            est.step.reshape(x.shape),
            est.evaluations,
        )
    return est

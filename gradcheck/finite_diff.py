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

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

# The harness's random streams live in gradcheck.streams; re-exported for existing importers.
from .streams import HARNESS_KEY as HARNESS_KEY
from .streams import harness_rng as harness_rng

Array = np.ndarray
Outputs = Callable[[Array], Array]

METHODS: Tuple[str, ...] = ("central", "five-point", "richardson", "complex-step")

COMPLEX_STEP = 1e-20


class Stencil(NamedTuple):
    """The stencil of one real-valued method, built from central differences
    ``D(s h) = (L(x + s h v) - L(x - s h v)) / (2 s h)``.

    ``exponent``: the base step is ``h = eps^exponent * scale``. ``offsets``: the half-offsets
    ``s`` at which ``D(s h)`` is evaluated, in the estimators' order. ``order``: the estimate's
    truncation error is ``O(h^order)``. ``weights``: the estimate is
    ``sum_k weights[k] * D(offsets[k] h)`` (an offset of weight 0 only estimates the error);
    empty for the coarse Richardson sequence, which a tableau combines.
    """

    exponent: float
    offsets: Tuple[float, ...]
    order: int
    weights: Tuple[float, ...]


#: The stencil of every real-valued method (the one table of them: :mod:`gradcheck.plot`
#: derives its step-size study's stencils from it).
STENCILS: Dict[str, Stencil] = {
    "central": Stencil(1.0 / 3.0, (1.0, 2.0), 2, (1.0, 0.0)),
    "five-point": Stencil(1.0 / 5.0, (1.0, 2.0, 4.0), 4, (4.0 / 3.0, -1.0 / 3.0, 0.0)),
    # h0 = eps^(1/9) * 8 puts the finest step h0/8 near eps^(1/9), the balance point for an
    # O(h^8) scheme, while the coarsest stays small enough for the expansion to hold.
    "richardson-coarse": Stencil(1.0 / 9.0, (8.0, 4.0, 2.0, 1.0), 8, ()),
}


def points_per_direction(method: str) -> int:
    """Forward evaluations one direction costs with ``method`` (its stencil's points)."""
    if method == "complex-step":
        return 1
    if method == "richardson":
        coarse, five_point = STENCILS["richardson-coarse"], STENCILS["five-point"]
        return 2 * len(coarse.offsets) + 2 * 2 * len(five_point.offsets)
    return 2 * len(STENCILS[method].offsets)


# What a direction's estimate was made from when its stencil reached a point where the forward
# is not finite (or raised): the codes of ``Estimate.recovery``.
RECOVERY_NONE, RECOVERY_SMALLER, RECOVERY_FORWARD, RECOVERY_BACKWARD, RECOVERY_FAILED = range(5)
RECOVERY_TEXT = {
    RECOVERY_SMALLER: "a smaller step",
    RECOVERY_FORWARD: "a one-sided stencil (x + h only)",
    RECOVERY_BACKWARD: "a one-sided stencil (x - h only)",
    RECOVERY_FAILED: "no stencil (the forward is not finite on either side at any step tried)",
}
# Steps tried, as fractions of the base step, before a direction falls back to one-sided stencils.
_EDGE_SAFETY = 4.0
# Every level is tried for the affected directions (few, in practice: the entries next to a pole
# or a domain edge), and the finite one with the smallest error estimate is kept: the first
# finite level is often still far too coarse for the function's scale near the edge.
_SHRINK = tuple(16.0**-k for k in range(1, 9))


@dataclass(frozen=True)
class Estimate:
    """A numerical derivative and its estimated absolute error, entry by entry.

    ``recovery`` (per direction or entry, ``RECOVERY_*``) is set when some stencil point gave a
    non-finite output: ``nonfinite_side`` then says where, at the base step (+1: ``x + h``, -1:
    ``x - h``, 2: both sides), and the value comes from the recovery named by the code; an entry
    with ``RECOVERY_FAILED`` has value NaN and error inf. Both are ``None`` when nothing was
    non-finite.
    """

    value: Array
    error: Array
    method: str
    step: Array  # the smallest step used per direction
    evaluations: int  # points at which F was evaluated, in all
    recovery: Optional[Array] = None
    nonfinite_side: Optional[Array] = None
    # A slope jump found at x (steady across the offsets), per direction; None if none. It is
    # at x, so it holds for every step: richardson carries it to its finer candidates.
    kink: Optional[Array] = None


FLOAT64 = np.dtype(np.float64)


def typical_scale(x: Array) -> float:
    """The scale that a zero entry of ``x`` is perturbed on: the median nonzero ``|x_i|``.

    A median, so that one huge entry does not set the step of all the others; over the nonzero
    entries, so that a sparse input (one-hot rows, ReLU outputs) is not given steps of 0. 1.0
    for an all-zero (or empty) ``x``.
    """
    mag = np.abs(np.ravel(np.asarray(x, dtype=np.float64)))
    mag = mag[np.isfinite(mag) & (mag > 0)]
    return float(np.median(mag)) if mag.size else 1.0


def base_step(method: str, scale: Array, dtype: np.dtype = FLOAT64, typical: float = 1.0) -> Array:
    """Step sizes ``eps^p * max(|scale|, typical)`` for ``method`` (``p`` from its error order).

    ``typical`` is the scale of the input as a whole (:func:`typical_scale`); with the default 1.0
    this is the textbook rule ``eps^p * max(1, |x_i|)``, which for inputs far below 1 (say 1e-8)
    steps hundreds of times past the input's own scale.
    """
    if method == "complex-step":
        return np.full(np.shape(scale), COMPLEX_STEP)
    if method not in METHODS and method not in STENCILS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    exponent = STENCILS["richardson-coarse" if method == "richardson" else method].exponent
    eps = np.finfo(dtype).eps
    return eps**exponent * np.maximum(float(typical), np.abs(scale))


def _contract(values: Array, w: Array) -> Array:
    """``<values[b], w>`` for every ``b``: shape ``(B, *y)`` against ``y`` gives ``(B,)``.

    A row-wise sum rather than a matrix-vector product: BLAS blocks a product differently for
    different ``B``, so the same point would round differently in chunks of different sizes,
    while a row's sum depends on that row alone (and is pairwise, so more accurate too).
    Products are scaled so that finite values cannot overflow on the way (gradients of
    ``exp`` near 700 are about 1e304).
    """
    b = values.shape[0]
    v = values.reshape(b, -1)
    flat_w = np.reshape(w, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sum(v * flat_w, axis=1)
        if np.all(np.isfinite(out)) or v.size == 0:
            return out
        # Some row overflowed (or holds a non-finite value): redo those rows scaled.
        bad = ~np.isfinite(out)
        rows = v[bad]
        scale_v = np.max(np.abs(rows), axis=1, initial=0.0)
        scale_w = float(np.max(np.abs(flat_w), initial=0.0))
        safe_v = np.where(np.isfinite(scale_v) & (scale_v > 0), scale_v, 1.0)
        safe_w = scale_w if np.isfinite(scale_w) and scale_w > 0 else 1.0
        scaled = np.sum((rows / safe_v[:, None]) * (flat_w / safe_w), axis=1)
        out[bad] = scaled * safe_v * safe_w
    return out


def _changed(y_a: Array, y_b: Array) -> Array:
    """1.0 where two stacks of outputs differ, 0.0 where they are bitwise equal.

    An output that a perturbation leaves exactly unchanged contributes no rounding error to a
    difference, so the round-off floor counts only the outputs that moved: the floor of an entry
    of a row-wise layer then depends on that row alone, not on the largest output anywhere.
    """
    return (y_a != y_b).astype(np.float64)


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

    ``d`` holds ``D`` at the method's offsets, in the order of ``STENCILS[method].offsets``. The
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


#: Directions whose moved outputs differ in size by less than this factor share a noise pool.
_NOISE_BAND = 16.0
#: A pool needs this many directions for its 90th percentile to mean anything.
_NOISE_POOL_MIN = 8


def _pooled_noise(spread: Array, h: Array, size: Optional[Array] = None) -> Array:
    """Round-off noise of every estimate, pooled over the directions of one call.

    Rounding errors of the forward pass (amplified by its conditioning, for example an
    ill-conditioned covariance) make ``L(x +- h v)`` noisy by some ``sigma`` that is about the same
    for every direction, and the estimates noisy by ``sigma / h``. One direction's spread is a
    single draw of that noise and can be small by chance, so the noise level is pooled: ``sigma``
    is taken as the 90th percentile of ``spread * h`` over the directions, doubled for safety.
    Where truncation rather than noise dominates, this only makes the estimate conservative.
    Directions without a finite spread (no finite stencil) are left out of the pool: one of them
    would otherwise make every other direction's error NaN.

    ``size`` (per direction, e.g. ``eps`` times the size of the outputs it moves): rounding is
    relative, so directions that move outputs of very different sizes (a column of the output
    scaled by 1e-6 beside one scaled by 1e6) are not noisy alike, and one pool would give the
    small ones the noise of the large ones, an error estimate larger than their gradient, in
    which a wrong entry passes. With ``size``, directions are pooled in bands a factor
    ``_NOISE_BAND`` wide; each direction gets the larger of its band's noise and every band's
    noise relative to its size applied to its own size, and never more than the single pool
    gives. A band of fewer than ``_NOISE_POOL_MIN`` directions is too small to pool alone: its
    directions get the doubled largest draw in it (never below the relative terms).
    """
    if spread.size == 0:
        return spread
    scaled = spread * h
    ok = np.isfinite(scaled)
    finite = scaled[ok]
    if finite.size == 0:
        return np.zeros_like(spread)
    sigma_all = 2.0 * float(np.quantile(finite, 0.9))
    if size is None:
        return sigma_all / h
    size = np.asarray(size, dtype=np.float64)
    usable = ok & np.isfinite(size) & (size > 0)
    if not usable.any():
        return sigma_all / h
    with np.errstate(divide="ignore"):
        band = np.floor(np.log(np.where(usable, size, 1.0)) / np.log(_NOISE_BAND))
    own = np.full(spread.shape, sigma_all)
    relative = 0.0
    for b in np.unique(band[usable]):
        members = usable & (band == b)
        draws = scaled[members]
        if members.sum() >= _NOISE_POOL_MIN:
            sigma_b = 2.0 * float(np.quantile(draws, 0.9))
            relative = max(relative, sigma_b / float(np.min(size[members])))
        else:
            sigma_b = 2.0 * float(np.max(draws))
        own[members] = sigma_b
    sigma = np.where(usable, np.maximum(own, relative * np.where(usable, size, 0.0)), sigma_all)
    return np.minimum(sigma, sigma_all) / h


@dataclass
class _Raw:
    """Per-direction pieces of one stencil evaluation, before noise is pooled."""

    value: Array
    error: Array  # truncation + round-off floor
    spread: Array
    kink: Array
    kink_floor: Array
    finest: Array
    unconverged: Array
    largest_delta: Array
    finite: Array  # every stencil point finite
    side: Array  # +1 / -1 / 2: where non-finite points were, 0 if none
    h_small: Array  # the smallest step of the stencil, per direction
    swallowed: Array  # some output moved at the probe step but at no stencil point
    steady: Array  # the kink term is the same from the coarser offsets: a jump, not curvature
    frozen: Array  # no output moved at any stencil point (bitwise)
    roundoff: Array  # the round-off floor alone (rounding of the outputs moved), in the error

    @classmethod
    def empty(cls, n: int, h_small: Array) -> _Raw:
        """``n`` directions, nothing evaluated yet (every stencil point counted finite)."""
        zeros, no = (lambda: np.zeros(n)), (lambda: np.zeros(n, dtype=bool))
        return cls(
            value=zeros(),
            error=zeros(),
            spread=zeros(),
            kink=zeros(),
            kink_floor=zeros(),
            finest=zeros(),
            unconverged=no(),
            largest_delta=zeros(),
            finite=np.ones(n, dtype=bool),
            side=zeros(),
            h_small=np.asarray(h_small),
            swallowed=no(),
            steady=no(),
            frozen=no(),
            roundoff=zeros(),
        )


_RAW_FIELDS = (
    "value",
    "error",
    "spread",
    "kink",
    "kink_floor",
    "finest",
    "unconverged",
    "largest_delta",
    "finite",
    "h_small",
    "steady",
    "frozen",
    "roundoff",
)


# A step this many times below the textbook one is probed for changes lost to rounding.
_PROBE_RATIO = 64.0
# The probe step, as a multiple of the step, where every direction is probed (``probe=True``).
PROBE_FACTOR = 2.0**10
# The coupling probe's step, as a multiple of the probe step (about the input's own scale): an
# output that moves there but at no smaller step depends on the direction by less than its ulp
# at the probe step (a softmax's p ~ 1 beside a logit of p ~ 1e-19), one that does not is
# independent of it (a scaled sine's column of 1e6 beside a direction in its column of 1e-6).
COUPLING_FACTOR = 2.0**7


def _probe_multiples(unmoved: bool) -> List[float]:
    """The probe points of a probed direction, as multiples of its probe step: the probe
    itself, and without ``unmoved`` the coupling probe too (:func:`_evaluate`)."""
    return [1.0, -1.0] if unmoved else [1.0, -1.0, COUPLING_FACTOR, -COUPLING_FACTOR]


def _merge(n: int, *parts: Tuple[Array, _Raw]) -> _Raw:
    """One ``_Raw`` over ``n`` directions from parts evaluated on disjoint index sets."""
    first = parts[0][1]
    merged = _Raw(
        *(
            np.zeros(n, dtype=np.asarray(getattr(first, f.name)).dtype)
            for f in dataclasses.fields(_Raw)
        )
    )
    for idx, part in parts:
        for f in dataclasses.fields(_Raw):
            getattr(merged, f.name)[idx] = getattr(part, f.name)
    return merged


def _evaluate(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    idx_all: Array,
    step: Array,
    method: str,
    y0: Array,
    chunk: int,
    probe: Optional[Array] = None,
    unmoved: bool = True,
) -> _Raw:
    """The two-sided stencil of ``method`` along the directions ``idx_all`` at steps ``step``.

    With ``probe`` (a larger step per direction), ``x +- probe v`` are evaluated too: an output
    that moves there but at no stencil point depends on the direction, and its change was
    swallowed by rounding at this step; its rounding is then counted in the floor (it would
    otherwise be missing from the estimate without a trace) and ``swallowed`` marks the
    direction. An output unmoved even at the probe step may depend on the direction by less
    than its ulp there: with ``unmoved``, every such output's ulp over the probe step is counted;
    without it, only those of the outputs that move (to a finite value) at ``COUPLING_FACTOR``
    times the probe step, evaluated too, which tells a dependence under an ulp from none.
    """
    eps = np.finfo(np.float64).eps
    n = len(idx_all)
    offsets = STENCILS[method].offsets
    n_off = len(offsets)
    # Stencil points in the order +s1, -s1, +s2, -s2, ... for every direction of a group.
    signed = np.repeat(np.asarray(offsets, dtype=np.float64), 2) * np.tile([1.0, -1.0], n_off)
    raw = _Raw.empty(n, np.asarray(step) * float(min(offsets)))
    if probe is not None:
        probe = np.asarray(probe, dtype=np.float64)
    kink_offsets = sorted(offsets)[:3]
    kink_weights = _kink_weights(kink_offsets)
    # With four offsets, the same fit over the coarser three tells a slope jump (the same
    # from both) from curvature (which grows with the step).
    coarse_offsets = sorted(offsets)[1:4] if n_off >= 4 else []
    coarse_weights = _kink_weights(coarse_offsets) if coarse_offsets else np.zeros(0)
    y0_mag = None
    probes = _probe_multiples(unmoved)
    n_pts = 2 * n_off + (len(probes) if probe is not None else 0)
    group = max(1, chunk // n_pts)
    for lo in range(0, n, group):
        pos = np.arange(lo, min(lo + group, n))
        v = directions(idx_all[pos])
        h = step[pos]
        if probe is not None:
            moves = np.concatenate(
                [signed[:, None] * h[None, :], np.array(probes)[:, None] * probe[pos][None]]
            )
        else:
            moves = signed[:, None] * h[None, :]
        moves = moves.reshape((n_pts, len(pos)) + (1,) * x.ndim)
        points = (x[None, None] + moves * v[None]).reshape((-1, *x.shape))
        y = np.asarray(outputs(points))
        y = y.reshape((n_pts, len(pos), *y.shape[1:]))
        swallowed_mag = None
        if probe is not None:
            y_coupling = y[2 * n_off + 2 :]
            y_probe, y = y[2 * n_off : 2 * n_off + 2], y[: 2 * n_off]
            moved_here = np.any(y != y0, axis=0)
            lost = (
                np.any(y_probe != y0, axis=0) & ~moved_here & np.all(np.isfinite(y_probe), axis=0)
            )
            raw.swallowed[pos] = np.any(lost.reshape(len(pos), -1), axis=1)
            swallowed_mag = _contract(2.0 * np.abs(y0) * lost, np.abs(w))
            # An output that did not move even at the probe step may still depend on the
            # direction, by less than its ulp over that step: that much, and no more, it can
            # hide (the floor is per unit step, so it is scaled by step / probe step).
            still = ~np.any(y_probe != y0, axis=0) & ~moved_here
            if not unmoved:
                still &= np.any((y_coupling != y0) & np.isfinite(y_coupling), axis=0)
            ratio = (h / probe[pos]).reshape((-1,) + (1,) * (y0.ndim))
            swallowed_mag = swallowed_mag + _contract(2.0 * np.abs(y0) * still * ratio, np.abs(w))
        axes = tuple(range(2, y.ndim))
        finite_pt = np.all(np.isfinite(y), axis=axes)  # (2 n_off, len(pos))
        plus_ok = np.all(finite_pt[0::2], axis=0)
        minus_ok = np.all(finite_pt[1::2], axis=0)
        raw.finite[pos] = plus_ok & minus_ok
        raw.side[pos] = np.where(plus_ok, 0.0, 1.0) + np.where(minus_ok, 0.0, -1.0)
        raw.side[pos] = np.where(~plus_ok & ~minus_ok, 2.0, raw.side[pos])
        # An output counts as moved by a direction when any stencil point changed it: only
        # such outputs can carry rounding error into a difference.
        moved = np.any(y != y0, axis=0).astype(np.float64)  # (len(pos), *y)
        raw.frozen[pos] = ~np.any(moved.reshape(len(pos), -1) > 0, axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            d: List[Array] = []
            floors: List[Array] = []
            asymmetry: Dict[float, Array] = {}
            asymmetry_floor: Dict[float, Array] = {}
            if y0_mag is None:
                y0_mag = np.abs(y0)
            for k, s in enumerate(offsets):
                y_plus, y_minus = y[2 * k], y[2 * k + 1]
                d.append(_contract(y_plus - y_minus, w) / (2.0 * s * h))
                mag = _contract((np.abs(y_plus) + np.abs(y_minus)) * moved, np.abs(w))
                if swallowed_mag is not None:
                    mag = mag + swallowed_mag
                floors.append(eps * mag / (2.0 * s * h))
                if s in kink_offsets or s in coarse_offsets:
                    # Forward minus backward one-sided slope, output by output and in absolute
                    # value (so that kinks in several outputs cannot cancel through the signs of
                    # w): s*h*|y''| where the outputs are smooth, the slope jump at a kink.
                    second = np.abs(y_plus - 2.0 * y0 + y_minus)
                    asymmetry[s] = _contract(second, np.abs(w)) / (s * h)
                    asymmetry_floor[s] = (
                        eps * (mag + 2.0 * _contract(y0_mag * moved, np.abs(w))) / (s * h)
                    )
            val, trunc, raw.spread[pos], weights = _combine(method, d)
            roundoff = sum(abs(c) * f for c, f in zip(weights, floors))
            raw.kink[pos] = np.abs(
                sum(c * asymmetry[s] for c, s in zip(kink_weights, kink_offsets))
            )
            raw.kink_floor[pos] = sum(
                abs(c) * asymmetry_floor[s] for c, s in zip(kink_weights, kink_offsets)
            )
            if coarse_offsets:
                kink_coarse = np.abs(
                    sum(c * asymmetry[s] for c, s in zip(coarse_weights, coarse_offsets))
                )
                raw.steady[pos] = np.abs(kink_coarse - raw.kink[pos]) <= 0.1 * raw.kink[pos]
            raw.value[pos] = val
            raw.error[pos] = trunc + roundoff
            raw.roundoff[pos] = roundoff
            raw.finest[pos] = np.abs(d[int(np.argmin(offsets))])
            if n_off >= 3:
                ordered = [dk for _, dk in sorted(zip(offsets, d), key=lambda pair: pair[0])]
                raw.unconverged[pos], raw.largest_delta[pos] = _unconverged(ordered)
    return raw


# Steps, as multiples of the base step, at which a direction that moved no output is probed.
_FROZEN_PROBES = (2.0**16, 2.0**32, 2.0**48)


def _frozen_floor(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    raw: _Raw,
    step: Array,
    y0: Array,
    others_move: bool = False,
) -> int:
    """Give directions that moved no output the round-off floor of every output they move.

    A direction along which no output moved at any stencil point is either one the outputs do
    not depend on (a constant layer, an inactive ReLU unit: an exact 0, rightly with no error)
    or one whose change is swallowed by the outputs' rounding (an entry 1e-20 beside entries of
    1 in a dense layer's input makes its weight's gradient 1e-20, and moving that weight by any
    sensible step changes outputs of size 1 by less than an ulp): the estimate 0 is then wrong
    by the gradient itself, with nothing in the floor to say so. Such directions get the
    rounding of every output, ``eps <|f(x)|, |w|> / h``, as their floor -- unless no direction
    moved anything and probes at far larger steps move nothing either: a constant, whose exact 0
    has no error. Returns the evaluations spent (2 per probe).
    """
    frozen = np.flatnonzero(raw.frozen & raw.finite)
    if frozen.size == 0:
        return 0
    eps = np.finfo(np.float64).eps
    spent = 0
    if frozen.size < raw.frozen.size or others_move:
        # Other directions move outputs (in this call, or, with ``others_move``, in the larger
        # estimate these directions are a subset of): these may be independent of them, or
        # swallowed at every step (an entry at 1e-38 swallows even a step of 1e9); their
        # exact 0 cannot be told from a gradient below the outputs' rounding, so they get
        # that rounding.
        dependent = np.ones(frozen.size, dtype=bool)
    else:
        # Nothing moved anywhere: a constant, or every change swallowed (1e20 + x). Probes at
        # far larger steps tell the two apart.
        dependent = np.zeros(frozen.size, dtype=bool)
    for factor in _FROZEN_PROBES:
        todo = np.flatnonzero(~dependent)
        if todo.size == 0:
            break
        idx = frozen[todo]
        v = directions(idx)
        big = (step[idx] * factor).reshape((-1,) + (1,) * x.ndim)
        points = np.concatenate([x[None] + big * v, x[None] - big * v])
        with np.errstate(all="ignore"):
            y = np.asarray(outputs(points)).reshape((2, idx.size, *y0.shape))
        spent += 2 * idx.size
        moved = np.any((y != y0) | ~np.isfinite(y), axis=0).reshape(idx.size, -1)
        dependent[todo[np.any(moved, axis=1)]] = True
    hit = frozen[dependent]
    if hit.size:
        magnitude = float(np.sum(np.abs(y0) * np.abs(w)))
        raw.error[hit] += 2.0 * eps * magnitude / raw.h_small[hit]
    return spent


#: Two estimates of one derivative agree when they differ by at most this many times their
#: combined error estimates (successive levels near a pole, a finer step against a coarser one,
#: a longer stencil against a shorter one); beyond it, one of them is not what its error says.
AGREEMENT = 3.0


def apart(a: Array, error_a: Array, b: Array, error_b: Array) -> Array:
    """Where the estimates ``a +- error_a`` and ``b +- error_b`` differ by more than
    ``AGREEMENT`` times their combined errors (elementwise; ``False`` where anything is NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(a - b) > AGREEMENT * (error_a + error_b)


def _consistent_level(levels: Sequence[_Raw]) -> Tuple[Array, Array]:
    """Per direction, the level to keep among estimates at steps shrinking level by level.

    The coarsest pair of successive finite levels whose values agree (within ``AGREEMENT``
    times their combined error estimates) is taken as converged. Their difference bounds the
    errors: the leading ``h^2`` term shrinks 256-fold from one level to the next, so the
    coarser is off by about the difference and the finer by about the difference over
    ``16^2 - 1`` (an overestimate for higher orders). Each error is raised (in place, on
    ``levels``) to at least that, and the one of the two with the smaller error is chosen.
    A single level's own error estimate assumes the asymptotic regime, which near a pole or the
    edge of a domain the first finite step is often far from. Returns the chosen level (-1:
    none finite) and whether it was confirmed by such a pair (else it is the finest finite
    level, unconfirmed).
    """
    n = levels[0].value.size
    choice = np.full(n, -1)
    agreed = np.zeros(n, dtype=bool)
    for j in range(len(levels) - 1):
        a, b = levels[j], levels[j + 1]
        with np.errstate(invalid="ignore", over="ignore"):
            gap = np.abs(a.value - b.value)
            ok = a.finite & b.finite & (gap <= AGREEMENT * (a.error + b.error)) & ~agreed
        a.error[ok] = np.maximum(a.error[ok], gap[ok])
        b.error[ok] = np.maximum(b.error[ok], gap[ok] / 255.0)
        choice[ok] = np.where(b.error[ok] < a.error[ok], j + 1, j)
        agreed |= ok
    for j in range(len(levels) - 1, -1, -1):
        unset = (choice < 0) & levels[j].finite
        choice[unset] = j
    return choice, agreed


def _one_sided(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    idx_all: Array,
    step: Array,
    sign: float,
    y0: Array,
) -> Tuple[Array, Array, Array]:
    """Second-order one-sided differences ``(4 d(h) - d(2h)) / 2h`` on the side ``sign``.

    ``d(t) = L(x + sign t v) - L(x)``; the error is estimated from the same formula at twice the
    step (``|F(h) - F(2h)| / 3``, the leading ``h^2`` term) plus the round-off floor. Returns
    (value, error, finite) per direction; used only where a two-sided stencil reaches a point
    where the forward is not finite.
    """
    eps = np.finfo(np.float64).eps
    n = len(idx_all)
    value, error, finite = np.zeros(n), np.full(n, np.inf), np.zeros(n, dtype=bool)
    for pos in range(n):
        v = directions(idx_all[pos : pos + 1])[0]
        h = sign * float(step[pos])
        points = np.stack([x + k * h * v for k in (1.0, 2.0, 4.0)])
        y = np.asarray(outputs(points))
        if not np.all(np.isfinite(y)):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            dk = [_contract((y[k] - y0)[None], w)[0] for k in range(3)]
            mags = [
                _contract(((np.abs(y[k]) + np.abs(y0)) * _changed(y[k], y0))[None], np.abs(w))[0]
                for k in range(3)
            ]
            f1 = (4.0 * dk[0] - dk[1]) / (2.0 * h)
            f2 = (4.0 * dk[1] - dk[2]) / (4.0 * h)
            floor = eps * (4.0 * mags[0] + mags[1]) / (2.0 * abs(h))
        value[pos] = f1
        error[pos] = abs(f1 - f2) / 3.0 + floor
        finite[pos] = bool(np.isfinite(f1) and np.isfinite(error[pos]))
    return value, error, finite


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
    fallback_step: Optional[Array] = None,
    others_move: bool = False,
    unmoved: bool = True,
) -> Estimate:
    """Estimate ``d/dt L(x + t v_j)`` at ``t = 0`` for ``j = 0 .. n_directions-1``.

    ``directions(idx)`` returns the directions ``v_j`` for the integer indices ``idx`` as an
    array ``(len(idx), *x.shape)``; the step is applied here. ``step`` has shape
    ``(n_directions,)``: the base step ``h_j`` of each direction. ``outputs`` is evaluated on
    stacks of at most ``chunk`` points (all stencil points of a group of directions at once,
    so that a layer's per-call overhead is paid once per group, not once per point).

    A direction whose stencil reaches a non-finite output (a pole, the edge of the domain, a
    point where the layer raised) is re-estimated at smaller steps, then with one-sided stencils
    on the side that stays finite; with neither it gets value NaN and error inf (see
    ``Estimate.recovery``). Non-finite values never enter the pooled statistics.

    A direction along which no output moved at all (bitwise) is either one the outputs do not
    depend on, or one whose step is too small to register against the outputs' own size (a
    1e-120 entry beside entries of 1 that a statistic mixes it with). Where ``fallback_step``
    is larger, such directions are estimated again at that step: an output that moves there
    depended on the direction after all; one that still does not is independent of it (an
    exact 0 with no error). ``others_move``: these directions are a subset of an estimate in
    which other directions moved outputs, so one that moves none is not taken for a constant
    (see :func:`_frozen_floor`). ``unmoved``: an output that does not move even at the
    fallback step still counts, at the share of its rounding that the step ratio allows, as
    possibly dependent (for inputs of an extreme range, where any output may be swallowed);
    without it, only outputs seen moving at the fallback step do (for outputs of an extreme
    range, whose large entries are independent of most directions).
    """
    if method not in METHODS and method not in STENCILS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "richardson":
        return _richardson(
            outputs,
            x,
            w,
            directions,
            n_directions,
            step,
            chunk,
            fallback_step,
            others_move,
            unmoved,
        )
    if method == "complex-step":
        return _complex_step(outputs, x, w, directions, n_directions, step, chunk)

    offsets = STENCILS[method].offsets
    n_off = len(offsets)
    # The asymmetry A(s) = (L(x+sh) - 2L(x) + L(x-sh)) / sh carries about 4 sigma / (s h) of
    # the forward's noise sigma, against sigma / (s_min h) in the estimate: the gain from the
    # estimate's pooled noise to the kink term's.
    kink_offsets = sorted(offsets)[:3]
    kink_gain = float(
        sum(
            4.0 * abs(c) * min(offsets) / s
            for c, s in zip(_kink_weights(kink_offsets), kink_offsets)
        )
    )
    step = np.asarray(step, dtype=np.float64)
    y0 = np.asarray(outputs(x[None]))[0]
    everything = np.arange(n_directions)
    probed = np.zeros(0, dtype=np.intp)
    fallback = np.zeros(0)
    if fallback_step is not None:
        fallback = np.broadcast_to(np.asarray(fallback_step, dtype=np.float64), step.shape)
        probed = np.flatnonzero(fallback > _PROBE_RATIO * step)
    if probed.size == 0:
        raw = _evaluate(outputs, x, w, directions, everything, step, method, y0, chunk)
        evaluations = 2 * n_off * n_directions + 1
    else:
        # Steps far below the textbook ones (entries of a small-scale input): probe at the
        # textbook step whether some output's change was lost to rounding, and where it was,
        # estimate there too and keep whichever estimate has the smaller error.
        plain = np.setdiff1d(everything, probed)
        raw = (
            _evaluate(outputs, x, w, directions, everything, step, method, y0, chunk)
            if (plain.size == n_directions)
            else _merge(
                n_directions,
                (
                    plain,
                    _evaluate(outputs, x, w, directions, plain, step[plain], method, y0, chunk),
                ),
                (
                    probed,
                    _evaluate(
                        outputs,
                        x,
                        w,
                        directions,
                        probed,
                        step[probed],
                        method,
                        y0,
                        chunk,
                        fallback[probed],
                        unmoved,
                    ),
                ),
            )
        )
        evaluations = 2 * n_off * n_directions + len(_probe_multiples(unmoved)) * probed.size + 1
        lost = probed[raw.swallowed[probed]]
        if lost.size:
            alt = _evaluate(outputs, x, w, directions, lost, fallback[lost], method, y0, chunk)
            evaluations += 2 * n_off * lost.size
            better = alt.finite & ~(alt.error >= raw.error[lost])
            for name in _RAW_FIELDS:
                getattr(raw, name)[lost[better]] = getattr(alt, name)[better]
    evaluations += _frozen_floor(outputs, x, w, directions, raw, step, y0, others_move)
    recovery = np.zeros(n_directions, dtype=np.int64)
    side = raw.side.copy()
    bad = np.flatnonzero(~raw.finite)
    if bad.size:
        levels = [
            _evaluate(outputs, x, w, directions, bad, step[bad] * shrink, method, y0, chunk)
            for shrink in _SHRINK
        ]
        evaluations += 2 * n_off * bad.size * len(_SHRINK)
        choice, agreed = _consistent_level(levels)
        for j, level in enumerate(levels):
            take = choice == j
            for name in _RAW_FIELDS:
                getattr(raw, name)[bad[take]] = getattr(level, name)[take]
        # Finite somewhere, but no two successive levels agree: the function changes on a
        # scale below every step tried; the value stands with no claim of accuracy.
        raw.error[bad[(choice >= 0) & ~agreed]] = np.inf
        recovery[bad[choice >= 0]] = RECOVERY_SMALLER
        bad = bad[choice < 0]
    one_sided = np.zeros(n_directions, dtype=bool)
    if bad.size:
        # No two-sided step stays finite: a stencil on the side that does, at the base step
        # (the side that was finite there) or the smallest step tried.
        for sign, code in ((1.0, RECOVERY_FORWARD), (-1.0, RECOVERY_BACKWARD)):
            if bad.size == 0:
                break
            for shrink in (1.0, *_SHRINK):
                if bad.size == 0:
                    break
                val, err, ok = _one_sided(
                    outputs, x, w, directions, bad, step[bad] * shrink, sign, y0
                )
                evaluations += 3 * bad.size
                got = bad[ok]
                raw.value[got], raw.error[got] = val[ok], err[ok]
                raw.h_small[got] = step[got] * shrink
                recovery[got] = code
                one_sided[got] = True
                bad = bad[~ok]
        recovery[bad] = RECOVERY_FAILED
    failed = recovery == RECOVERY_FAILED
    # One-sided and failed directions take no part in the pooled kink and convergence tests.
    raw.kink[one_sided | failed] = 0.0
    raw.kink_floor[one_sided | failed] = 0.0
    raw.unconverged[one_sided | failed] = False
    raw.spread[one_sided | failed] = np.nan
    raw.finest[failed] = np.nan

    with np.errstate(invalid="ignore", over="ignore"):
        error = raw.error.copy()
        size = raw.roundoff * raw.h_small
        noise = _pooled_noise(raw.spread, raw.h_small, size)
        noise = np.where(np.isfinite(noise), noise, 0.0)
        error += noise
        # The kink term is noise itself (a second difference) wherever L is smooth; it counts
        # where it stands well above that noise (its own, pooled like the estimate's, and the
        # estimate's), or above a thousandth of the estimate: a slope jump at a kink, or a jump
        # of L within the step, is of the derivative's own size or larger. (The second test
        # matters when jumps are everywhere, which inflates the pooled noise.) A pool of kink
        # terms is made of real slope jumps when every direction crosses the same kink (a ReLU
        # at 0 touches every Gaussian direction), and hides the small ones: so a kink term that
        # is steady across the offsets (a slope jump, not curvature, which grows with the step)
        # counts wherever it stands above the forward's own noise through the fit's weights.
        kink_noise = _pooled_noise(raw.kink, raw.h_small, size)
        counts = (
            (raw.kink > 4.0 * (noise + raw.kink_floor + kink_noise))
            | (raw.kink > 1e-3 * np.abs(raw.value))
            | (raw.steady & (raw.kink > 4.0 * (noise * (1.0 + kink_gain) + raw.kink_floor)))
        )
        error += np.where(counts, raw.kink, 0.0)
        jump = np.where(counts & raw.steady, raw.kink, 0.0)
        # Not converging, with differences that change the estimate itself (by more than 0.1%,
        # and beyond a millionth of the typical size, which noise does not reach): no step here
        # is small against the function's length scale, so the estimate says nothing at all.
        finest_ok = raw.finest[np.isfinite(raw.finest)]
        typical = float(np.quantile(finest_ok, 0.9)) if finest_ok.size else 0.0
        hopeless = (
            raw.unconverged
            & (raw.largest_delta > 1e-3 * raw.finest)
            & (raw.largest_delta > 1e-6 * typical)
        )
        error = np.where(
            hopeless, np.inf, np.where(raw.unconverged, error + raw.largest_delta, error)
        )
    # Next to a pole or the edge of the domain the expansion behind every error estimate
    # converges slowly, and two levels or a tableau judge it roughly: a safety factor there.
    error = np.where(recovery != RECOVERY_NONE, _EDGE_SAFETY * error, error)
    value = np.where(failed, np.nan, raw.value)
    error = np.where(failed | ~np.isfinite(error) | ~np.isfinite(value), np.inf, error)
    touched = recovery != RECOVERY_NONE
    return Estimate(
        value,
        error,
        method,
        raw.h_small,
        evaluations,
        recovery if touched.any() else None,
        side if touched.any() else None,
        jump if np.any(jump > 0) else None,
    )


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
        with np.errstate(invalid="ignore", over="ignore"):
            value[idx] = _contract(y.imag, w) / step[idx]
            magnitude = _contract(np.abs(y.imag), np.abs(w)) / step[idx]
            error[idx] = 4.0 * eps * (magnitude + np.abs(value[idx]))
    failed = ~(np.isfinite(value) & np.isfinite(error))
    error[failed] = np.inf
    value[failed] = np.nan
    recovery = np.where(failed, RECOVERY_FAILED, RECOVERY_NONE) if failed.any() else None
    side = np.where(failed, 2.0, 0.0) if failed.any() else None
    return Estimate(value, error, "complex-step", np.asarray(step), n_directions, recovery, side)


#: The real step of :func:`complex_step_holds`, as a fraction of ``max(1, max |x|)`` (about
#: five-point's ``eps^(1/5)``, a power of 2 so that the stencil points are exact).
HOLOMORPHY_STEP = 2.0**-10
#: ... and the floor of a disagreement it counts, relative to the largest output's derivative:
#: far below ``sqrt(eps)``, the tolerance of a check, so that a term the complex step cannot
#: see is found long before it could hide a wrong gradient.
HOLOMORPHY_FLOOR = 1e-10


def complex_step_holds(outputs: Outputs, x: Array, v: Array) -> bool:
    """Whether the complex step along ``v`` (shape of ``x``) gives, *output by output*, the
    derivative that real differences give: the forward is holomorphic along ``v``.

    A forward that is not (``abs``, ``maximum``, a comparison, ``.real``) loses that part of its
    derivative in the imaginary part, and where it touches a single output the loss is far
    below the rounding of any projection ``<J v, dy>`` over many outputs, so outputs are
    compared one by one: five-point differences (``h`` = ``HOLOMORPHY_STEP max(1, max |x|)``,
    combined by :func:`_combine`) give each output's derivative and its error (the ``h^4``
    term, plus the rounding of the points), and an output whose
    complex-step value differs by more than 8 such errors and ``HOLOMORPHY_FLOOR`` of the
    largest derivative breaks the assumption. Anything non-finite counts as broken. 7 forward
    evaluations.
    """
    eps = np.finfo(np.float64).eps
    h = HOLOMORPHY_STEP * max(1.0, float(np.max(np.abs(x), initial=0.0)))
    offsets = STENCILS["five-point"].offsets
    signed = np.repeat(np.asarray(offsets), 2) * np.tile([1.0, -1.0], len(offsets)) * h
    with np.errstate(all="ignore"):
        real = np.asarray(
            outputs(x[None] + signed.reshape((-1,) + (1,) * x.ndim) * v[None]), dtype=np.float64
        )
        imaginary = np.asarray(outputs(x[None] + 1j * COMPLEX_STEP * v[None]))[0]
        if not (np.all(np.isfinite(real)) and np.all(np.isfinite(imaginary))):
            return False
        # Output by output, the central difference at each offset, combined as five-point
        # estimates are everywhere else (its truncation estimate is the h^4 term).
        d = [(real[2 * k] - real[2 * k + 1]) / (2.0 * s * h) for k, s in enumerate(offsets)]
        value, truncation, _, _ = _combine("five-point", d)
        error = truncation + 3.0 * eps * np.max(np.abs(real), axis=0) / h
        floor = HOLOMORPHY_FLOOR * float(np.max(np.abs(value), initial=0.0))
        broken = np.abs(imaginary.imag / COMPLEX_STEP - value) > 8.0 * error + floor
    return not bool(np.any(broken))


# A coarse Richardson estimate whose error estimate is below this fraction of the derivative's
# size is as good as any finer candidate could make it, so those are only computed elsewhere.
_RICHARDSON_GOOD_ENOUGH = 1e-10


#: How far, in textbook steps of the input (``fallback_step``), richardson's finer levels may
#: probe: about 16 times the input's scale, as far as :data:`COUPLING_REACH` looks.
LEVEL_PROBE_CAP = 1024.0


def _richardson(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    n_directions: int,
    step: Array,
    chunk: int,
    fallback_step: Optional[Array] = None,
    others_move: bool = False,
    unmoved: bool = True,
) -> Estimate:
    """The coarse tableau everywhere; the five-point stencil at its own step and at the central
    step only where the tableau's error estimate is not already negligible, keeping, entry by
    entry, the candidate with the smallest error estimate."""
    coarse = directional_derivatives(
        outputs,
        x,
        w,
        directions,
        n_directions,
        step,
        method="richardson-coarse",
        chunk=chunk,
        fallback_step=fallback_step,
        others_move=others_move,
        unmoved=unmoved,
    )
    value, error, used = coarse.value.copy(), coarse.error.copy(), coarse.step.copy()
    # Each direction's textbook step (the probe step of its coarse tableau).
    textbook = None if fallback_step is None else np.broadcast_to(fallback_step, np.shape(step))
    recovery = (
        np.zeros(n_directions, dtype=np.int64)
        if coarse.recovery is None
        else coarse.recovery.copy()
    )
    evaluations = coarse.evaluations
    finite_values = np.abs(value[np.isfinite(value)])
    size = np.maximum(
        np.abs(value), float(np.quantile(finite_values, 0.9)) if finite_values.size else 0.0
    )
    refine = np.flatnonzero(~(error <= _RICHARDSON_GOOD_ENOUGH * size))
    if refine.size:
        for factor in (
            base_step("five-point", np.ones(1))[0] / base_step("richardson", np.ones(1))[0],
            base_step("central", np.ones(1))[0] / base_step("richardson", np.ones(1))[0],
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
                fallback_step=None if textbook is None else textbook[refine] * factor,
                others_move=others_move,
                unmoved=unmoved,
            )
            evaluations += fine.evaluations
            better = fine.error < error[refine]
            value[refine[better]] = fine.value[better]
            error[refine[better]] = fine.error[better]
            used[refine[better]] = fine.step[better]
            recovery[refine[better]] = (
                RECOVERY_NONE if fine.recovery is None else fine.recovery[better]
            )
        # Where a coarser candidate did not converge, the function bends on a scale between
        # the steps: the finest candidate's own convergence test has only three points and
        # can be fooled there, so it must agree with estimates at smaller steps too.
        doubtful = refine[np.isfinite(error[refine]) & ~np.isfinite(coarse.error[refine])]
        if doubtful.size:
            # Each level probed as the candidates were (at the same multiple of its step), and
            # told that other directions move outputs: a change lost to rounding at these
            # steps (a weight of an input entry of 1e-20 beside entries of 1) must show in
            # their errors too, or the finest level's tiny error certifies a wrong estimate.
            # The ratio is of the base steps, so where a candidate was estimated at its probe
            # step already (an input of 1e-240, base steps of 1e-242 and textbook ones of
            # 6e-3) it compounds: probes at 1e+234, where every output overflows (and LAPACK's
            # SVD of an inf never returns). The first level's probe goes no further than
            # LEVEL_PROBE_CAP textbook steps, and the finer levels' shrink with their steps: a
            # level re-estimated at its probe step (where its own step lost an output's change)
            # is then still a level of its own, not a copy of the others that the consistency
            # test would take for convergence.
            levels = [
                directional_derivatives(
                    outputs,
                    x,
                    w,
                    lambda j: directions(doubtful[j]),
                    doubtful.size,
                    used[doubtful] * shrink,
                    method="five-point",
                    chunk=chunk,
                    fallback_step=(
                        None
                        if textbook is None
                        else shrink
                        * np.minimum(
                            used[doubtful] * (textbook[doubtful] / step[doubtful]),
                            LEVEL_PROBE_CAP * textbook[doubtful],
                        )
                    ),
                    others_move=others_move,
                    unmoved=unmoved,
                )
                for shrink in (1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0)
            ]
            evaluations += sum(level.evaluations for level in levels)
            as_raw = [
                dataclasses.replace(
                    _Raw.empty(doubtful.size, level.step),
                    value=level.value,
                    error=level.error,
                    finite=np.isfinite(level.error),
                )
                for level in levels
            ]
            choice, agreed = _consistent_level(as_raw)
            for j, level in enumerate(levels):
                take = choice == j
                value[doubtful[take]] = level.value[take]
                error[doubtful[take]] = level.error[take]
                used[doubtful[take]] = level.step[take]
            error[doubtful[~agreed]] = np.inf
    if coarse.kink is not None:
        # A slope jump at x that the coarse tableau saw is there at every step: the finer
        # candidates, whose stencils are too short to tell it from curvature, carry it too.
        error = np.maximum(error, coarse.kink)
    touched = recovery != RECOVERY_NONE
    return Estimate(
        value,
        error,
        "richardson",
        used,
        evaluations,
        recovery if touched.any() else None,
        coarse.nonfinite_side if touched.any() else None,
    )


def _short_step(h: Array) -> Array:
    """Each ``h > 0`` rounded down to 4 significant bits (by at most 1/8 of itself).

    With so few bits, ``k h`` for ``k = 1, 2, 4, 8`` and ``h / 16^j`` keep their lowest bit far
    above the ulp of an entry they are added to (``h`` is about ``eps^p |x_i|``, 2^30 ulps and
    more), so ``x_i + k h`` is exact. A power of two would do too, but could halve the step and
    double the round-off error.
    """
    mantissa, exponent = np.frexp(np.asarray(h, dtype=np.float64))
    return np.ldexp(np.floor(mantissa * 16.0) / 16.0, exponent)


#: The steps, in units of the ``scale`` given to :func:`hidden_by_unmoved` (the check gives the
#: input's textbook scale, ``max(1, typical |x|)``, that of the probe steps), at which it looks
#: for outputs that depend on a direction by less than their ulp at the probe step.
COUPLING_REACH: Tuple[float, ...] = (1.0, 4.0, 16.0)


def hidden_by_unmoved(
    outputs: Outputs, x: Array, w: Array, v: Array, probe: Array, scale: float
) -> Tuple[Array, int]:
    """Per direction ``v[j]`` (``v`` is ``(k, *x.shape)``), how much of the derivative of
    ``<outputs(x), w>`` the estimates can have lost to outputs that stay bitwise unchanged at
    ``x +- probe[j] v[j]`` but move (to finite values) at a step of ``COUPLING_REACH`` times
    ``scale`` (along ``v[j]`` scaled to a largest entry of 1): such an output depends on the
    direction, by less than half its ulp over the probe step, so its share of the derivative is
    under ``eps |y_k| / (2 probe)`` (a softmax's ``p ~ 1`` beside a logit of ``p ~ 1e-30``,
    whose change an estimate never sees). Outputs that do not move even there are taken as
    independent of the direction (a scaled sine's other columns). Returns the bounds and the
    forward evaluations spent (``2 + 2 len(COUPLING_REACH)`` per direction, and one at ``x``).
    """
    eps = np.finfo(np.float64).eps
    k = v.shape[0]
    y0 = np.asarray(outputs(x[None]))[0]
    vmax = np.max(np.abs(v.reshape(k, -1)), axis=1)
    vmax = np.where(vmax > 0, vmax, 1.0)
    bound = np.zeros(k)
    factors = np.array([1.0, -1.0])
    reach = np.concatenate([[r, -r] for r in COUPLING_REACH])
    for j in range(k):
        moves = np.concatenate([factors * probe[j], reach * scale / vmax[j]])
        points = x[None] + moves.reshape((-1,) + (1,) * x.ndim) * v[j][None]
        try:
            y = np.asarray(outputs(points))
        except Exception:
            continue  # a forward that refuses the far points tells nothing: no bound
        near, far = y[:2], y[2:]
        still = ~np.any(near != y0, axis=0)
        coupled = np.any((far != y0) & np.isfinite(far), axis=0)
        lost = np.abs(y0) * (still & coupled)
        bound[j] = eps * float(_contract(lost[None], np.abs(w))[0]) / (2.0 * probe[j])
    return bound, 1 + k * (2 + len(reach))


def unit_directions(shape: Tuple[int, ...], entries: Array) -> Callable[[Array], Array]:
    """The ``directions`` callable of the unit vectors of the flat ``entries`` of an array of
    ``shape``: ``directions(j)`` is ``(len(j), *shape)``, row ``r`` the unit vector of entry
    ``entries[j[r]]``."""
    size = int(np.prod(shape))

    def directions(j: Array) -> Array:
        v = np.zeros((len(j), size))
        v[np.arange(len(j)), entries[j]] = 1.0
        return v.reshape((len(j), *shape))

    return directions


def partial_derivatives(
    outputs: Outputs,
    x: Array,
    w: Array,
    *,
    method: str = "central",
    indices: Optional[Array] = None,
    chunk: int = 256,
    probe: bool = False,
    step_factor: float = 1.0,
    others_move: bool = False,
    unmoved: bool = True,
) -> Estimate:
    """Estimate ``dL/dx_i`` for every entry ``i`` of ``x`` (or the flat ``indices`` given).

    ``probe``: also evaluate every entry at ``PROBE_FACTOR`` times its step, so that outputs whose
    change is lost to rounding at the step itself count in the round-off floor (see
    ``directional_derivatives``' ``fallback_step``): for checks whose arrays span an extreme
    range of magnitudes (entries of 1e-38 beside entries of 1), where a perturbation can move
    some outputs below their ulp and others not.

    The step of entry ``i`` is ``eps^p * max(typical, |x_i|)`` (``typical``: the median nonzero
    ``|x_i|``, see :func:`typical_scale`), times ``step_factor``, rounded down to 4 significant
    bits so that every stencil point ``x_i +- k h`` is exact. A ``step_factor`` above 1 is for
    estimates whose error is the outputs' rounding, which falls as the step grows.
    ``others_move``, ``unmoved``: see :func:`directional_derivatives` (for ``indices`` out of an
    estimate of every entry that moved some outputs).
    Returns arrays of shape ``(len(indices),)``, or ``x.shape`` when ``indices`` is ``None``.
    """
    flat = np.ravel(x)
    idx_all = np.arange(flat.size) if indices is None else np.asarray(indices, dtype=np.intp)
    h = base_step(method, flat[idx_all], typical=typical_scale(flat)) * step_factor
    textbook = base_step(method, flat[idx_all]) * step_factor
    if method != "complex-step":
        # Steps with few significant bits: every stencil point x_i +- k h (k = 1, 2, 4, 8)
        # and every smaller step tried near a pole (h / 16^j) is then exact, so the stencil's
        # offsets are what the formula assumes. (A rounded point would be off by up to half an
        # ulp of x_i, an error of |g_i| ulp(x_i) / h that no output-based floor sees, and which
        # dominates next to a pole, where |g_i| is huge.)
        h = _short_step(h)
        textbook = _short_step(textbook)
        if probe:
            textbook = np.maximum(textbook, PROBE_FACTOR * h)

    est = directional_derivatives(
        outputs,
        x,
        w,
        unit_directions(x.shape, idx_all),
        len(idx_all),
        h,
        method=method,
        chunk=chunk,
        fallback_step=None if method == "complex-step" else textbook,
        others_move=others_move,
        unmoved=unmoved,
    )
    if indices is None:
        return Estimate(
            est.value.reshape(x.shape),
            est.error.reshape(x.shape),
            est.method,
            est.step.reshape(x.shape),
            est.evaluations,
            None if est.recovery is None else est.recovery.reshape(x.shape),
            None if est.nonfinite_side is None else est.nonfinite_side.reshape(x.shape),
        )
    return est


#: The steps, as fractions of an estimate's own smallest step, at which a claimed disagreement
#: is estimated again before it may stand (:func:`steady_under_refinement`): three levels reach
#: 4096 times below the step, past the bend of a function whose length scale lies between.
REFINEMENT_SHRINK: Tuple[float, ...] = (1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0)


@dataclasses.dataclass(frozen=True)
class Refinement:
    """What the estimates at smaller steps said about each of ``n`` directions.

    ``steady``: every finer estimate with a finite value agreed with the original within three
    times their combined error estimates. Where not, ``moved_value`` / ``moved_step`` name the
    first finer estimate that disagreed (NaN / 0 where steady). ``evaluations``: forward points
    spent.
    """

    steady: Array
    moved_value: Array
    moved_step: Array
    evaluations: int


def steady_under_refinement(
    outputs: Outputs,
    x: Array,
    w: Array,
    directions: Callable[[Array], Array],
    n_directions: int,
    step: Array,
    value: Array,
    error: Array,
    *,
    chunk: int = 256,
) -> Refinement:
    """Whether each estimate ``value +- error``, taken at ``step``, holds at smaller steps.

    Every estimator's error estimate assumes the asymptotic regime of its own steps: a function
    that bends on a length scale far below them (a whitening whose covariance gains a direction
    of variance ``h^2`` against an ``eps`` of 1e-13 bends at ``h ~ sqrt(eps)``) looks smooth at
    those steps, and richardson converges there, tidily, to the derivative of the wrong
    function. Only smaller steps show it. Five-point estimates at ``step * s`` for ``s`` in
    :data:`REFINEMENT_SHRINK` are compared with the original; one that is finite and differs by
    more than three times their combined errors (a finer one that failed its own convergence
    test counts with its value alone) means the original is not converged, whatever its own
    error estimate says. A finer estimate whose value is not finite (a pole within reach)
    neither confirms nor refutes. Shapes: ``(n_directions,)`` throughout.
    """
    value = np.asarray(value, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    steady = np.ones(n_directions, dtype=bool)
    moved_value = np.full(n_directions, np.nan)
    moved_step = np.zeros(n_directions)
    evaluations = 0
    if n_directions == 0:
        return Refinement(steady, moved_value, moved_step, 0)
    base = _short_step(np.asarray(step, dtype=np.float64))
    for shrink in REFINEMENT_SHRINK:
        level = directional_derivatives(
            outputs, x, w, directions, n_directions, base * shrink, method="five-point", chunk=chunk
        )
        evaluations += level.evaluations
        # A finer estimate that fails its own convergence test (error inf) still has a value:
        # the function bends at that step too, and a value far from the original's shows it.
        own = np.where(np.isfinite(level.error), level.error, 0.0)
        moved = np.isfinite(level.value) & apart(level.value, own, value, error)
        first = moved & steady
        moved_value[first] = level.value[first]
        moved_step[first] = level.step[first]
        steady &= ~moved
    return Refinement(steady, moved_value, moved_step, evaluations)

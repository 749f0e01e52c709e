"""Comparing an analytic gradient with a numerical estimate that carries its own error.

Per entry ``i``, with analytic ``a``, numeric ``n`` and the estimate's error ``e``::

    d_i   = |a_i - n_i|                       (the discrepancy)
    tol_i = atol + rtol * |n_i|               (the stated tolerance)
    res_i = resolve_atol + rtol * |n_i|       (what the estimate must resolve; >= tol_i)

    fail          d_i > tol_i + 2 e_i         the two disagree by more than the tolerance plus
                  and d_i > 8 e_i             everything the estimate could be wrong by (twice
                                              its error estimate: ``FAIL_MARGIN``), and by more
                                              than 8 error estimates (``CONFIRM_RATIO``)
                  or d_i > rtol |n_i| + 2 e_i an entry below the floor (min(|a_i|, |n_i|) <
                  and d_i > 8 e_i             atol), wrong by more than ``rtol`` of itself where
                  and d_i > small             its estimate resolves that, and by more than the
                                              rounding any backward leaves (``small``, below;
                                              default tolerances only)
    inconclusive  otherwise, if e_i > res_i   the estimate cannot resolve the tolerance: a wrong
                  or anything is not finite   gradient could hide inside its error (also where
                  or d_i > tol_i + 2 e_i      d_i is beyond the tolerance but not confirmed)
    pass          otherwise, with a_i, n_i, e_i and tol_i all finite

A non-finite value is never a pass: a NaN makes both comparisons above false, which would
otherwise read as agreement. An entry whose analytic value is finite but whose estimate is not
(no finite stencil exists there) is inconclusive; a non-finite analytic value is a failure.

Default tolerances are derived from the float type rather than picked. A correct backward agrees
with a central difference to about ``eps^(2/3)`` relative (the estimator's optimal accuracy) times a
conditioning factor of the layer; ``rtol = sqrt(eps)`` (1.5e-8 in float64) leaves a factor
``eps^(-1/6)`` (about 400) for that conditioning while still resolving relative errors of 1e-6.
``atol = rtol * G``, where ``G`` is the *typical* size of a gradient entry (the median of the
nonzero ``max(|a_i|, |n_i|)``), puts the absolute floor on the scale of the gradient itself, so
that entries that are zero in truth are judged against the size of the others, not against 1 --
and, being a median, one large column of the gradient does not widen the floor of the rest.
What the estimate itself can resolve at an entry is its error ``e_i`` (which includes the
round-off floor of that entry's own outputs); ``tol_i`` is not widened by it. The estimate must
resolve ``res_i``, whose floor ``resolve_atol`` defaults to ``rtol`` times the *largest* entry:
an entry that is zero in truth next to large ones is resolved when its estimate is good to that
floor, while a failure is still judged against the tight ``tol_i``.

The floor ``atol`` alone would pass an entry below it whatever its value: a column of
``tanh(x) * 1e-9`` whose backward returned zeros disagrees by less than ``atol`` everywhere.
An entry below the floor (the analytic value or the estimate under ``atol``) is held to its own
relative tolerance wherever its estimate resolves that (``d_i > 8 e_i``) and the discrepancy is
beyond ``small = SMALL_ENTRY_ULPS * rtol^2 *
max(|a|, |n|)`` (``rtol^2`` is ``eps`` at the default ``rtol``: a thousand units of rounding of the
largest entry, which no backward of the right formula leaves in an entry that is zero in truth,
and which is below every entry the estimate can tell from zero anyway). With a stated ``atol``
the floor is the user's, and this test is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

import numpy as np

Array = np.ndarray

TINY = np.finfo(np.float64).tiny

# An error estimate is itself an estimate: outside the asymptotic regime of a step sequence
# (a bend on a scale between the steps, the edge of a domain) it can fall short of the true
# error. The fail test allows twice the estimate, so that an underestimate by up to half never
# turns a right gradient into a "fail"; a wrong one disagrees by far more than that.
FAIL_MARGIN = 2.0
# A failure must also be this many times the estimate's own error: in ill-conditioned regimes
# (a whitening of a zero-variance column with eps) error estimates fell short by up to 4.5x;
# where the error is comparable to the tolerance, a disagreement between 2 and 8 estimates is
# inconclusive, neither fail nor pass.
CONFIRM_RATIO = 8.0
# The discrepancy below which an entry far under the typical one is never failed, in units of
# ``rtol^2`` (``eps`` at the default rtol) times the largest entry: the rounding residue a right
# backward can leave in an entry that is zero in truth (a sum of terms of the largest entries'
# size that cancel) stays far below it.
SMALL_ENTRY_ULPS = 1e3


FLOAT64 = np.dtype(np.float64)


#: The width of a band of gradient magnitudes (:func:`magnitude_bands`).
BAND_RATIO = 16.0


def magnitude_bands(flat: Array, below_median: bool = False) -> List[Array]:
    """Flat indices of ``flat`` grouped by magnitude, in increasing order: the entries up to
    ``BAND_RATIO`` times the median nonzero ``|flat_i|`` (zeros included) first, then each
    further factor ``BAND_RATIO`` above it; with ``below_median``, the entries below the median
    in bands a factor ``BAND_RATIO`` wide too (zeros stay in the median's band). One band for a
    gradient of one scale."""
    mag = np.abs(flat)
    nonzero = mag[np.isfinite(mag) & (mag > 0)]
    if nonzero.size == 0:
        return [np.arange(flat.size)]
    median = float(np.median(nonzero))
    floor = np.where(mag > 0, mag, median) if below_median else np.maximum(mag, median)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.floor(np.log(floor / median) / np.log(BAND_RATIO))
    level = np.where(np.isfinite(level), level, 0.0).astype(np.int64)
    return [np.flatnonzero(level == b) for b in np.unique(level)]


def sub_floor_bands(flat: Array, top: float, bottom: float) -> List[Array]:
    """Flat indices of the entries of ``flat`` below ``top`` in magnitude, zeros included, in
    bands a factor ``BAND_RATIO`` wide downward from ``top``, the smallest first; every entry
    below ``bottom`` (and every zero) is in the lowest band. Empty when there is none.

    These are the entries whose whole value is under a fail floor ``top``: screened with the
    rest, an error of any size in them would pass, and screened in one band, a column of
    ``1e-12`` would hide behind one of ``1e-9``."""
    mag = np.abs(flat)
    below = np.flatnonzero(np.isfinite(mag) & (mag < top))
    if not below.size:
        return []
    with np.errstate(divide="ignore"):
        lowest = np.floor(np.log(max(bottom, TINY) / top) / np.log(BAND_RATIO))
        level = np.floor(np.log(np.maximum(mag[below], TINY) / top) / np.log(BAND_RATIO))
    level = np.maximum(level, min(lowest, -1.0)).astype(np.int64)
    return [below[level == b] for b in np.unique(level)]


def default_rtol(dtype: np.dtype = FLOAT64) -> float:
    """``sqrt(eps)`` of ``dtype``: 1.49e-8 for float64, 3.45e-4 for float32."""
    return float(np.sqrt(np.finfo(dtype).eps))


def typical_gradient(analytic: Array, numeric: Array) -> float:
    """The median of the nonzero, finite ``max(|a_i|, |n_i|)``; 0 when there is none."""
    with np.errstate(invalid="ignore"):
        mag = np.maximum(np.abs(np.ravel(analytic)), np.abs(np.ravel(numeric)))
    mag = mag[np.isfinite(mag) & (mag > 0)]
    return float(np.median(mag)) if mag.size else 0.0


def default_atol(analytic: Array, numeric: Array, rtol: float) -> float:
    """``rtol`` times the typical gradient entry (:func:`typical_gradient`); 0 for all zeros."""
    return rtol * typical_gradient(analytic, numeric)


def default_resolve_atol(analytic: Array, numeric: Array, rtol: float) -> float:
    """``rtol`` times the largest finite gradient entry: the floor an estimate must resolve."""
    with np.errstate(invalid="ignore"):
        mag = np.maximum(np.abs(np.ravel(analytic)), np.abs(np.ravel(numeric)))
    mag = mag[np.isfinite(mag)]
    return rtol * float(np.max(mag, initial=0.0))


def default_small_floor(analytic: Array, numeric: Array, rtol: float) -> float:
    """``SMALL_ENTRY_ULPS * rtol^2`` times the largest finite gradient entry: the discrepancy
    below which an entry is failed only beyond ``atol`` (see the module docstring)."""
    return SMALL_ENTRY_ULPS * rtol * default_resolve_atol(analytic, numeric, rtol)


def scaled_norm(a: Array) -> float:
    """The 2-norm of ``a`` computed without overflow (inf only if an entry is inf, NaN if NaN)."""
    flat = np.ravel(np.asarray(a, dtype=np.float64))
    if flat.size == 0:
        return 0.0
    top = float(np.max(np.abs(flat)))
    if not np.isfinite(top) or top == 0.0:
        return top
    return top * float(np.sqrt(np.sum(np.square(flat / top))))


def relative_error(analytic: Array, numeric: Array) -> float:
    """``||a - n|| / max(||a||, ||n||, tiny)`` in the 2-norm: one number for a whole check.

    Computed scaled, so that no finite pair overflows; NaN where either holds a NaN.
    """
    a = np.ravel(np.asarray(analytic, dtype=np.float64))
    n = np.ravel(np.asarray(numeric, dtype=np.float64))
    top = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)))
    if not np.isfinite(top):
        return float("nan")
    if top == 0.0:
        return 0.0
    a, n = a / top, n / top
    diff = scaled_norm(a - n)
    denom = max(scaled_norm(a), scaled_norm(n), TINY)
    return diff / denom


@dataclass(frozen=True)
class Entry:
    """One compared entry: its index into the checked array and the values side by side."""

    index: Tuple[int, ...]
    analytic: float
    numeric: float
    error_estimate: float
    tolerance: float

    @property
    def abs_error(self) -> float:
        return abs(self.analytic - self.numeric)


@dataclass(frozen=True)
class Comparison:
    """The verdict of one analytic-versus-numeric comparison of an array."""

    status: str  # "pass" | "fail" | "inconclusive"
    max_abs_error: float
    rel_error: float
    rtol: float
    atol: float
    n_entries: int
    n_failed: int
    n_inconclusive: int
    max_error_estimate: float
    worst: List[Entry]  # entries ranked by discrepancy over what is allowed, worst first
    resolve_atol: float = 0.0  # the floor of what the estimate had to resolve (>= atol)
    # The discrepancy beyond which an entry below ``atol`` fails on its own relative tolerance
    # (inf: that test is off, as with a stated atol).
    small_floor: float = float("inf")

    @property
    def worst_index(self) -> Optional[Tuple[int, ...]]:
        return self.worst[0].index if self.worst else None


def _fails(a: Array, n: Array, e: Array, atol: Array, rtol: float, small: Array) -> Array:
    """Which entries fail (the module docstring): beyond ``atol + rtol |n|``, or, for an entry
    below the floor ``atol`` (``min(|a|, |n|) < atol``), beyond ``rtol |n|`` and ``small``; in
    either case confirmed by the error ``e``."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - n)
        rel = rtol * np.abs(n)
        margin = FAIL_MARGIN * e
        below_floor = np.minimum(np.abs(a), np.abs(n)) < atol
        beyond = (d > atol + rel + margin) | (below_floor & (d > rel + margin) & (d > small))
        return (beyond & (d > CONFIRM_RATIO * e)) | ~np.isfinite(a)


def failing_entries(
    analytic: Array,
    numeric: Array,
    error_estimate: Array,
    cmp: Comparison,
    atol: Union[float, Array, None] = None,
    small_floor: Union[float, Array, None] = None,
) -> Array:
    """The entries that ``cmp``, a :func:`compare` of these arrays, counts as failed (a boolean
    array of ``analytic``'s shape). ``atol``, ``small_floor``: the floors given to ``compare``
    when they were arrays (``cmp`` records only their smallest entries)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    floor = np.asarray(cmp.atol if atol is None else atol, dtype=np.float64)
    small = np.asarray(cmp.small_floor if small_floor is None else small_floor, dtype=np.float64)
    return _fails(a, n, np.asarray(error_estimate, dtype=np.float64), floor, cmp.rtol, small)


def compare(
    analytic: Array,
    numeric: Array,
    error_estimate: Array,
    *,
    rtol: Optional[float] = None,
    atol: Union[float, Array, None] = None,
    n_worst: int = 5,
    resolve_atol: Union[float, Array, None] = None,
    rounding: Union[float, Array, None] = None,
    small_floor: Union[float, Array, None] = None,
) -> Comparison:
    """Judge ``analytic`` against ``numeric`` (same shape), entry by entry, as the module says.

    ``resolve_atol`` (default: ``rtol`` times the largest entry, at least ``atol``) is the floor
    of the tolerance the estimate must resolve for a pass: an estimate error above
    ``resolve_atol + rtol |n_i|`` leaves an entry inconclusive. A failure is judged against
    the tighter ``atol``, so that one large entry widens neither the fail test of the others
    nor, through an error estimate it cannot meet, turns a resolvable check inconclusive.

    ``rounding`` (broadcast against ``a``) is the part of ``error_estimate`` that is the analytic
    gradient's own rounding (a backward that loses digits to cancellation). The floor above is
    for what finite differences cannot resolve beside large entries; it does not excuse the
    backward under test: an entry whose own rounding exceeds its tight ``tol_i`` is
    inconclusive, since an error of that size in it (or in exact entries of its size, whose
    error bar the rounding of their like sets) would pass unseen.

    ``small_floor`` (broadcast against ``a``) is the discrepancy beyond which an entry below
    ``atol`` fails on its relative tolerance alone (the module docstring); default:
    :func:`default_small_floor` with the default ``atol``, off (inf) with a stated one.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    e = np.asarray(error_estimate, dtype=np.float64)
    if a.shape != n.shape or e.shape != n.shape:
        raise ValueError(
            f"compare: shapes differ: analytic {a.shape}, numeric {n.shape}, error {e.shape}"
        )
    rtol = default_rtol() if rtol is None else float(rtol)
    if atol is None:
        atol = default_atol(a, n, rtol)
        if resolve_atol is None:
            resolve_atol = default_resolve_atol(a, n, rtol)
        if small_floor is None:
            small_floor = default_small_floor(a, n, rtol)
    small = np.asarray(np.inf if small_floor is None else small_floor, dtype=np.float64)
    # Either may be an array (one floor per entry, broadcast against ``a``); the
    # Comparison records the smallest.
    atol_arr = np.asarray(atol, dtype=np.float64)
    resolve_arr = (
        atol_arr
        if resolve_atol is None
        else np.maximum(atol_arr, np.asarray(resolve_atol, dtype=np.float64))
    )
    atol, resolve_atol = atol_arr, resolve_arr
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - n)
        rel = rtol * np.abs(n)
        tol = atol + rel
        tol_resolve = resolve_atol + rel
        # A non-finite analytic value is wrong whatever the estimate; a non-finite estimate,
        # error or tolerance leaves the entry unresolved. NaN comparisons are False, so both
        # are spelled out rather than left to fall through to "pass".
        finite = np.isfinite(a) & np.isfinite(n) & np.isfinite(e) & np.isfinite(tol)
        beyond = d > tol + FAIL_MARGIN * e
        failed = _fails(a, n, e, atol, rtol, small)
        # An entry failed on its relative tolerance alone is reported against it.
        tol = np.where(failed & (d <= tol + FAIL_MARGIN * e), np.broadcast_to(rel, d.shape), tol)
        # Beyond the tolerance, but by no more than a few error estimates: an estimate this
        # close to its own limit cannot confirm a failure, and must not be read as a pass.
        unresolved = ~failed & ((e > tol_resolve) | ~finite | beyond)
        if rounding is not None:
            unresolved |= ~failed & (np.asarray(rounding, dtype=np.float64) > tol)
        if failed.any():
            status = "fail"
        elif unresolved.any():
            status = "inconclusive"
        else:
            status = "pass"
        # Rank the failed entries first, then by how far each entry is beyond what it may
        # differ by (an unconfirmed one can be further beyond its tolerance than a failed one).
        badness = d / np.maximum(tol + FAIL_MARGIN * e, TINY)
        badness = np.where(np.isnan(badness), np.inf if a.size else 0.0, badness)
    order: Any = np.lexsort((-np.ravel(badness), ~np.ravel(failed)))[:n_worst] if a.size else []
    worst = [
        Entry(
            index=tuple(int(i) for i in np.unravel_index(k, a.shape)),
            analytic=float(a.flat[k]),
            numeric=float(n.flat[k]),
            error_estimate=float(e.flat[k]),
            tolerance=float(tol.flat[k]),
        )
        for k in order
    ]
    return Comparison(
        status=status,
        max_abs_error=float(np.max(np.where(np.isnan(d), np.inf, d), initial=0.0)),
        rel_error=relative_error(a, n),
        rtol=rtol,
        atol=float(np.min(atol_arr, initial=np.inf)) if atol_arr.size else 0.0,
        n_entries=int(a.size),
        n_failed=int(failed.sum()),
        n_inconclusive=int(unresolved.sum()),
        max_error_estimate=float(np.max(np.where(np.isnan(e), np.inf, e), initial=0.0)),
        worst=worst,
        resolve_atol=float(np.min(resolve_arr, initial=np.inf)) if resolve_arr.size else 0.0,
        small_floor=float(np.min(small, initial=np.inf)),
    )

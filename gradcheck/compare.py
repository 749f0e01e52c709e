"""Comparing an analytic gradient with a numerical estimate that carries its own error.

Per entry ``i``, with analytic ``a``, numeric ``n`` and the estimate's error ``e``::

    d_i   = |a_i - n_i|                       (the discrepancy)
    tol_i = atol + rtol * |n_i|               (the stated tolerance)

    fail          d_i > tol_i + e_i           the two disagree by more than the tolerance plus
                                              everything the estimate could be wrong by
    inconclusive  otherwise, if e_i > tol_i   the estimate cannot resolve the tolerance: a wrong
                                              gradient could hide inside its error
    pass          otherwise

Default tolerances are derived from the float type rather than picked. A correct backward agrees
with a central difference to about ``eps^(2/3)`` relative (the estimator's optimal accuracy) times a
conditioning factor of the layer; ``rtol = sqrt(eps)`` (1.5e-8 in float64) leaves a factor
``eps^(-1/6)`` (about 400) for that conditioning while still resolving relative errors of 1e-6.
``atol = rtol * max(max|n|, max|a|)`` puts the absolute floor on the scale of the gradient itself,
so entries that are zero in truth are judged against the size of the others, not against 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

Array = np.ndarray

TINY = np.finfo(np.float64).tiny


FLOAT64 = np.dtype(np.float64)


def default_rtol(dtype: np.dtype = FLOAT64) -> float:
    """``sqrt(eps)`` of ``dtype``: 1.49e-8 for float64, 3.45e-4 for float32."""
    return float(np.sqrt(np.finfo(dtype).eps))


def default_atol(analytic: Array, numeric: Array, rtol: float) -> float:
    """``rtol`` times the largest gradient entry (analytic or numeric); 0 for an all-zero pair."""
    scale = max(
        float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0))
    )
    return rtol * scale


def relative_error(analytic: Array, numeric: Array) -> float:
    """``||a - n|| / max(||a||, ||n||, tiny)`` in the 2-norm: one number for a whole check."""
    diff = float(np.linalg.norm(np.ravel(analytic) - np.ravel(numeric)))
    denom = max(
        float(np.linalg.norm(np.ravel(analytic))), float(np.linalg.norm(np.ravel(numeric))), TINY
    )
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

    @property
    def worst_index(self) -> Optional[Tuple[int, ...]]:
        return self.worst[0].index if self.worst else None


def compare(
    analytic: Array,
    numeric: Array,
    error_estimate: Array,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    n_worst: int = 5,
) -> Comparison:
    """Judge ``analytic`` against ``numeric`` (same shape), entry by entry, as the module says."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    e = np.asarray(error_estimate, dtype=np.float64)
    if a.shape != n.shape or e.shape != n.shape:
        raise ValueError(
            f"compare: shapes differ: analytic {a.shape}, numeric {n.shape}, error {e.shape}"
        )
    rtol = default_rtol() if rtol is None else float(rtol)
    atol = default_atol(a, n, rtol) if atol is None else float(atol)
    d = np.abs(a - n)
    tol = atol + rtol * np.abs(n)
    failed = d > tol + e
    unresolved = ~failed & (e > tol)
    if failed.any():
        status = "fail"
    elif unresolved.any():
        status = "inconclusive"
    else:
        status = "pass"
    # Rank by how far each entry is beyond what it may differ by; ties broken by raw size.
    badness = d / np.maximum(tol + e, TINY)
    order = np.argsort(-badness, axis=None, kind="stable")[:n_worst] if a.size else []
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
        max_abs_error=float(d.max(initial=0.0)),
        rel_error=relative_error(a, n),
        rtol=rtol,
        atol=atol,
        n_entries=int(a.size),
        n_failed=int(failed.sum()),
        n_inconclusive=int(unresolved.sum()),
        max_error_estimate=float(e.max(initial=0.0)),
        worst=worst,
    )

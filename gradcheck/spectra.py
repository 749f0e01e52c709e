"""Covariance spectra: batches built to have one exactly, and the statistics of one (tier 0).

Conventions, shared by the strategies, the check's record of a whitening layer's spectrum and
the paper study:

* Rows are examples: a batch ``x`` is ``(N, D)``; its covariance is over features, biased,
  centered unless said otherwise: ``C = xc^T xc / N`` with ``xc = x - mean(x, axis=0)``.
* The *condition number* of a spectrum is ``max / min`` (``inf`` unless ``min > 0``).
* The *gap* is the smallest difference between two eigenvalues; the *relative gap* divides it
  by the largest eigenvalue, so it does not depend on the scale. An exact tie has relative gap
  ``0`` whatever the scale; a single eigenvalue has gap ``inf``.

The constructions draw from a ``numpy.random.Generator`` in a fixed order (the eigenbasis, then
the sample basis, then the mean), so a seed fixes the batch bit for bit.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

Array = np.ndarray

# --------------------------------------------------------------------------------------------
# Constructions


def haar_orthogonal(d: int, rng: np.random.Generator) -> Array:
    """A Haar-distributed ``(d, d)`` orthogonal matrix: QR of a Gaussian, signs fixed by ``R``.

    Without the sign fix the distribution of ``Q`` depends on the QR routine's sign convention
    and is not Haar.
    """
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def orthonormal_columns(n: int, r: int, rng: np.random.Generator, center: bool = True) -> Array:
    """An ``(n, r)`` matrix with orthonormal columns, each orthogonal to ``ones(n)`` if ``center``.

    Needs ``n > r`` with ``center`` (the columns live in the ``n - 1`` dimensional complement
    of the all-ones vector), ``n >= r`` without. ``r == 0`` gives an empty ``(n, 0)`` matrix and
    draws nothing.
    """
    if r == 0:
        return np.zeros((n, 0))
    g = rng.standard_normal((n, r))
    if center:
        g -= g.mean(axis=0)
    z, _ = np.linalg.qr(g)
    if center:
        z -= z.mean(axis=0)  # rounding-level means; orthonormality is unaffected
    return z


def batch_with_factors(z: Array, lam: ArrayLike, q: Array) -> Array:
    """``sqrt(n) Z diag(sqrt(lam)) Q^T``: ``(n, d)`` for ``Z`` ``(n, r)``, ``lam`` ``(r,)``, ``Q``
    ``(d, r)``.

    With orthonormal columns in ``Z`` (orthogonal to ``ones(n)``) and in ``Q``, the batch's
    (centered) covariance is ``Q diag(lam) Q^T`` exactly, up to rounding.
    """
    n = z.shape[0]
    return (math.sqrt(n) * z * np.sqrt(np.asarray(lam, dtype=np.float64))) @ q.T


def exact_spectrum_batch(
    n: int,
    lam: ArrayLike,
    rng: np.random.Generator,
    center: bool = True,
    eigenvectors: Optional[Array] = None,
) -> Array:
    """An ``(n, d)`` batch whose (centered, if ``center``) covariance is ``Q diag(lam) Q^T``.

    ``x = sqrt(n) Z diag(sqrt(lam)) Q^T`` with ``Q`` Haar-random (or ``eigenvectors``, ``(d,
    d)`` orthogonal, when given) and ``Z`` from :func:`orthonormal_columns`; with ``center`` a
    random mean is added, which the centering removes. Needs ``n > d`` (``n >= d`` without
    centering).
    """
    d = len(np.atleast_1d(lam))
    q = haar_orthogonal(d, rng) if eigenvectors is None else eigenvectors
    x = batch_with_factors(orthonormal_columns(n, d, rng, center), lam, q)
    return x + rng.standard_normal(d) if center else x


# --------------------------------------------------------------------------------------------
# Statistics


def covariance(x: ArrayLike, center: bool = True) -> Array:
    """Biased covariance of a batch over features: ``(D, D)`` from ``x`` ``(N, D)``, ``N >= 1``.

    ``xc^T xc / N`` with ``xc = x - mean(x, axis=0)`` (or ``x`` itself without ``center``): the
    ``1/N`` normalization of batch normalization, not the unbiased ``1/(N - 1)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected an (N, D) array with N >= 1, got shape {x.shape}")
    xc = x - x.mean(axis=0) if center else x
    return (xc.T @ xc) / x.shape[0]


def _relative_gap(min_gap: float, largest: float, ties: bool) -> float:
    if largest > 0:
        return min_gap / largest
    # No positive eigenvalue to measure against: a tie is still a tie, anything else unscaled.
    return 0.0 if ties else math.inf


def spectrum_summary(eigenvalues: ArrayLike) -> Optional[Dict[str, float]]:
    """Smallest and largest eigenvalue, condition number, gap and relative gap; ``None`` if empty.

    The eigenvalues may come in any order and shape (they are flattened and sorted). Keys:
    ``min_eigenvalue``, ``max_eigenvalue``, ``condition_number`` (``inf`` unless the smallest is
    positive), ``min_gap`` (``inf`` for one eigenvalue) and ``min_relative_gap`` (``min_gap``
    over the largest eigenvalue; ``0`` for an exact tie, ``inf`` for one eigenvalue).
    """
    lam = np.sort(np.ravel(np.asarray(eigenvalues, dtype=np.float64)))
    if lam.size == 0:
        return None
    low, top = float(lam[0]), float(lam[-1])
    gaps = np.diff(lam)
    min_gap = float(gaps.min()) if gaps.size else math.inf
    return {
        "min_eigenvalue": low,
        "max_eigenvalue": top,
        "condition_number": top / low if low > 0 else math.inf,
        "min_gap": min_gap,
        "min_relative_gap": _relative_gap(min_gap, top, min_gap == 0) if gaps.size else math.inf,
    }


def condition_and_gap(eigenvalues: ArrayLike) -> Tuple[float, float]:
    """``(condition number, relative gap)`` of a spectrum; ``(1, inf)`` for an empty one."""
    summary = spectrum_summary(eigenvalues)
    if summary is None:
        return 1.0, math.inf
    return summary["condition_number"], summary["min_relative_gap"]


def spectrum_within(eigenvalues: ArrayLike, cond_max: float, min_gap: float) -> bool:
    """Positive, condition number ``<= cond_max`` and every gap ``>= min_gap * max``."""
    summary = spectrum_summary(eigenvalues)
    if summary is None:
        return True
    if not (summary["min_eigenvalue"] > 0 and summary["condition_number"] <= cond_max):
        return False
    return bool(summary["min_gap"] >= min_gap * summary["max_eigenvalue"])


def spectrum_stats(x: ArrayLike, eps: float = 0.0) -> Tuple[float, float]:
    """Condition number and relative eigenvalue gap of ``covariance(x) + eps * I``.

    Args:
        x: batch of shape ``(N, D)``, rows are examples.
        eps: regularizer added to every eigenvalue (as whitening layers add ``eps * I``).

    Returns:
        ``(condition_number, min_gap)`` (see :func:`condition_and_gap`): ``inf`` if the
        regularized covariance is singular; ``min_i (lam[i] - lam[i+1]) / lam[0]`` (``inf``
        when ``D == 1``).

    Eigenvalues of the covariance below ``10 max(N, D) u (lam[0] + u max|x|^2)`` (``u`` the
    machine epsilon) are rounding noise of exact zeros and are set to ``0`` before ``eps`` is
    added, so a rank-deficient batch reports ``inf`` rather than a huge, sign-random number.
    """
    x = np.asarray(x, dtype=np.float64)
    lam = np.linalg.eigvalsh(covariance(x))[::-1]
    top = max(float(lam[0]), 0.0) if lam.size else 0.0
    # rounding noise: the eigensolver's (eps * lam[0]) and the centering's ((eps * max|x|)^2)
    machine = np.finfo(np.float64).eps
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    tol = max(x.shape) * 10 * machine * (top + machine * scale**2)
    return condition_and_gap(np.where(lam <= tol, 0.0, lam) + eps)


__all__ = [
    "batch_with_factors",
    "condition_and_gap",
    "covariance",
    "exact_spectrum_batch",
    "haar_orthogonal",
    "orthonormal_columns",
    "spectrum_stats",
    "spectrum_summary",
    "spectrum_within",
]

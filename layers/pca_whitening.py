"""PCA whitening: project onto the covariance eigenvectors and rescale each to unit variance.

``y = Xc Q Lambda^{-1/2}`` with the eigenvectors ``Q`` of ``Sigma = Xc^T Xc / N + eps I`` as
columns, in **descending** eigenvalue order (column 0 of ``y`` is the first principal
component), each eigenvector's sign fixed so that its largest-magnitude entry is positive.

Unlike ZCA (``Q Lambda^{-1/2} Q^T``, a smooth matrix function of ``Sigma``), PCA whitening
depends on the eigenvectors themselves. Their derivative carries ``1 / (lambda_i - lambda_j)``,
and that is not an artefact of the formula: where two eigenvalues meet, the output is not even
continuous (the two columns swap, or rotate into each other). The layer therefore refuses
covariances whose eigenvalues are equal to working precision (relative gap at or below
``tie_rtol``); near such a tie it works, with a gradient as large as the true one. The
derivation is in ``docs/derivations/pca-whitening.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

import numpy as np

from .base import (
    Array,
    Layer,
    as_float64,
    check_eps,
    check_finite,
    check_matrix,
    check_real,
    check_upstream,
)
from .base import swap_last as _t
from .base import sym as _sym


def fix_eigenvector_signs(q: Array) -> Array:
    """Flip columns of ``q`` (``(..., D, K)``) so each column's largest-magnitude entry is > 0.

    Returns a new array. This makes the eigenvectors, and so PCA whitening, a function of the
    matrix rather than of whatever signs the LAPACK routine happened to return (which can differ
    between a single and a batched call). Where the two largest-magnitude entries of a column
    are equal in magnitude the choice is arbitrary and the convention is discontinuous there.
    """
    idx = np.argmax(np.abs(q), axis=-2)[..., None, :]
    pivot = np.take_along_axis(q, idx, axis=-2)
    return q * np.where(pivot < 0, -1.0, 1.0)


def pca_eigensystem(sigma: Array, tie_rtol: float = 1e-10) -> Tuple[Array, Array]:
    """Eigenvalues (descending) and sign-fixed eigenvectors of a symmetric positive-definite matrix.

    ``sigma`` is ``(..., D, D)``. Returns ``(eigvals, eigvecs)`` of shapes ``(..., D)`` and
    ``(..., D, D)``, column ``i`` of ``eigvecs`` belonging to ``eigvals[..., i]``, with the sign
    convention of :func:`fix_eigenvector_signs`.

    Raises ``numpy.linalg.LinAlgError`` for non-finite eigenvalues, a matrix that is singular or
    indefinite to working precision (smallest eigenvalue ``<= D * machine-eps * largest``), or
    one whose adjacent eigenvalues are tied: ``(lambda_i - lambda_{i+1}) <= tie_rtol *
    lambda_max``. At a tie the eigenvectors are not determined by ``sigma``.
    """
    eigvals, eigvecs = np.linalg.eigh(sigma)
    if not np.all(np.isfinite(eigvals)):
        raise np.linalg.LinAlgError("non-finite eigenvalues; does the input contain NaN or inf?")
    d = sigma.shape[-1]
    top = eigvals[..., -1]
    if np.any(eigvals[..., 0] <= d * np.finfo(np.float64).eps * np.abs(top)):
        raise np.linalg.LinAlgError(
            f"the covariance is numerically singular or indefinite (smallest eigenvalue "
            f"{np.min(eigvals[..., 0]):.3g}, largest {np.max(top):.3g})"
        )
    eigvals, eigvecs = eigvals[..., ::-1], eigvecs[..., :, ::-1]
    if d > 1:
        rel_gap = (eigvals[..., :-1] - eigvals[..., 1:]) / top[..., None]
        if np.min(rel_gap) <= tie_rtol:
            flat = int(np.argmin(rel_gap))
            where = np.unravel_index(flat, rel_gap.shape)
            i = int(where[-1])
            raise np.linalg.LinAlgError(
                f"covariance eigenvalues {i} and {i + 1} (descending) are tied: relative gap "
                f"{float(rel_gap[where]):.2e} <= tie_rtol={tie_rtol:.1e}, so the eigenvectors, "
                f"and the PCA-whitened output, are not determined by x"
            )
    return np.ascontiguousarray(eigvals), fix_eigenvector_signs(eigvecs)


def pca_forward(
    x: Array, eps: float = 1e-5, center: bool = True, tie_rtol: float = 1e-10
) -> Tuple[Array, Dict[str, Any]]:
    """PCA-whiten the features of each ``(N, D)`` slice of ``x``; return ``(y, cache)``.

    ``Xc = X - mean over N`` (or ``X`` without ``center``), ``Sigma = Xc^T Xc / N + eps I``
    (``(..., D, D)``), ``Sigma = Q Lambda Q^T`` with eigenvalues descending and signs fixed,
    ``y = Xc Q Lambda^{-1/2}`` (``(..., N, D)``). The cache holds ``xc``, ``mean``
    (``(..., 1, D)`` or ``None``), ``eigvals`` (descending), ``eigvecs``, ``proj``
    (``Q Lambda^{-1/2}``) and ``center``. Raises ``LinAlgError`` as :func:`pca_eigensystem`.
    """
    n, d = x.shape[-2:]
    mean = x.mean(axis=-2, keepdims=True) if center else None
    xc = x - mean if center else x
    sigma = _sym(_t(xc) @ xc / n) + eps * np.eye(d)
    eigvals, eigvecs = pca_eigensystem(sigma, tie_rtol)
    proj = eigvecs * (1.0 / np.sqrt(eigvals))[..., None, :]
    cache = {
        "xc": xc,
        "mean": mean,
        "eigvals": eigvals,
        "eigvecs": eigvecs,
        "proj": proj,
        "center": center,
    }
    return xc @ proj, cache


def eigenvector_gap_matrix(eigvals: Array) -> Array:
    """``F_ij = 1 / (lambda_j - lambda_i)`` for ``i != j`` and ``0`` on the diagonal.

    ``eigvals`` is ``(..., D)``; the result is ``(..., D, D)``. This is the factor through which
    the eigenvector derivative ``Q^T dQ = F o (Q^T dSigma Q)`` blows up at close eigenvalues.
    """
    diff = eigvals[..., None, :] - eigvals[..., :, None]
    off = ~np.eye(eigvals.shape[-1], dtype=bool)
    return np.where(off, 1.0 / np.where(off, diff, 1.0), 0.0)


def pca_backward(dy: Array, cache: Dict[str, Any]) -> Array:
    """VJP of :func:`pca_forward`: ``dL/dX`` (``(..., N, D)``) from ``dy = dL/dy``.

    With ``G = dy``, ``s = lambda^{-1/2}`` and ``M = Q^T Xc^T G``:
    ``lambda_bar = -1/2 lambda^{-3/2} diag(M)``, ``Q^T Q_bar = M diag(s)``,
    ``Sigma_bar = sym(Q (F o (Q^T Q_bar) + diag(lambda_bar)) Q^T)`` with ``F`` from
    :func:`eigenvector_gap_matrix`, ``dXc = G (Q diag(s))^T + (2/N) Xc Sigma_bar``, then the
    centering backward.
    """
    xc, q, lam = cache["xc"], cache["eigvecs"], cache["eigvals"]
    s = 1.0 / np.sqrt(lam)
    m = _t(q) @ (_t(xc) @ dy)
    lam_bar = -0.5 * s**3 * np.diagonal(m, axis1=-2, axis2=-1)
    inner = eigenvector_gap_matrix(lam) * (m * s[..., None, :])
    inner = inner + lam_bar[..., None] * np.eye(lam.shape[-1])
    sigma_bar = _sym(q @ inner @ _t(q))
    dxc = dy @ _t(cache["proj"]) + (2.0 / xc.shape[-2]) * (xc @ sigma_bar)
    if cache["center"]:
        return dxc - dxc.mean(axis=-2, keepdims=True)
    return dxc


class PCAWhitening(Layer):
    """PCA whitening over features: ``y = Xc Q Lambda^{-1/2}``.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)`` (each slice whitened on its own);
    ``y`` and ``dx`` have the shape of ``x``. Rows are examples.

    ``Xc`` is ``x`` minus its mean over examples (skipped when ``center=False``);
    ``Sigma = Xc^T Xc / N + eps I = Q Lambda Q^T`` (biased covariance, ``D x D``). Conventions,
    so that the output is a function of ``x``:

    * eigenvalues in **descending** order: ``y[:, 0]`` is the first principal component;
    * each eigenvector (column of ``Q``) signed so its largest-magnitude entry is positive.

    Output covariance: ``Y^T Y / N = I - eps Lambda^{-1}`` exactly (so ``I`` up to eps).

    Ties: when two eigenvalues of ``Sigma`` have a relative gap ``<= tie_rtol`` (default
    ``1e-10``) the forward raises ``numpy.linalg.LinAlgError``: the eigenvectors are then not
    determined by ``x`` and the output is discontinuous. This always happens with centering and
    ``N < D`` (``eps`` is then an eigenvalue of multiplicity ``D - N + 1``), and without
    centering for ``N < D - 1``. Near a tie the layer works, but its true gradient grows like
    ``1 / gap``: PCA whitening is genuinely ill-conditioned there, unlike ZCA.

    Axis swapping: between two batches from the same distribution, eigenvalues that are close
    can exchange order and an eigenvector's dominant entry can change, so output column ``j`` of
    one batch and column ``j`` of the next need not measure the same direction (the "stochastic
    axis swapping" Huang et al., CVPR 2018, give as the reason to prefer ZCA in DBN).

    ``cache`` after a forward: ``xc``, ``mean``, ``eigvals`` (descending, ``eps`` included),
    ``eigvecs``, ``proj`` (``Q Lambda^{-1/2}``), ``center``, ``shape``. :meth:`spectrum`
    returns the eigenvalues ascending, like the other whitening layers.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(self, eps: float = 1e-5, center: bool = True, tie_rtol: float = 1e-10) -> None:
        super().__init__()
        self.eps = check_eps("PCAWhitening", eps)
        if not tie_rtol >= 0:
            raise ValueError(f"PCAWhitening: argument 'tie_rtol' must be >= 0, got {tie_rtol!r}")
        self.center = bool(center)
        self.tie_rtol = float(tie_rtol)

    def forward(self, x: Array) -> Array:
        """PCA-whiten each ``(N, D)`` slice of ``x``; raises ``LinAlgError`` at eigenvalue ties."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        check_finite(self.name, "x", x)
        try:
            y, cache = pca_forward(x, self.eps, self.center, self.tie_rtol)
        except np.linalg.LinAlgError as err:
            n, d = x.shape[-2:]
            # The centred batch has rank at most N - 1 (N uncentred), so eps is an eigenvalue
            # of Sigma with at least this multiplicity, whatever the data.
            repeats = d - (n - 1 if self.center else n)
            hint = (
                f"; with N = {n}, D = {d} the eigenvalue eps is repeated {repeats} times in "
                f"every batch, so PCA whitening is undefined here (ZCA whitening is not)"
                if repeats >= 2
                else ""
            )
            raise np.linalg.LinAlgError(
                f"{self.name}: cannot PCA-whiten this batch (eps={self.eps!r}): {err}{hint}"
            ) from err
        cache["shape"] = x.shape
        self.cache = cache
        return y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` for the last forward (shape of ``x``); this layer has no params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        return pca_backward(dy, cache)

    def spectrum(self) -> Array:
        """Eigenvalues of the last forward's ``Sigma`` (with ``eps``), ascending, ``(..., D)``."""
        self._require_cache("spectrum")
        return self.cache["eigvals"][..., ::-1].copy()

    def __repr__(self) -> str:
        return f"PCAWhitening(eps={self.eps!r}, center={self.center}, tie_rtol={self.tie_rtol!r})"


__all__ = [
    "PCAWhitening",
    "eigenvector_gap_matrix",
    "fix_eigenvector_signs",
    "pca_backward",
    "pca_eigensystem",
    "pca_forward",
]

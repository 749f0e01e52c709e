"""Cholesky whitening: ``y = Xc L^{-T}`` with ``Sigma = L L^T``.

The whitening matrix ``L^{-T}`` is upper triangular, so output feature ``j`` depends only on
input features ``0..j`` (a Gram-Schmidt of the features, in their given order). The output
covariance is ``L^{-1} (Sigma - eps I) L^{-T} = I - eps L^{-1} L^{-T}``, the identity up to eps.

The backward goes through the Cholesky factor with the ``Phi`` formula of Murray (2016),
"Differentiation of the Cholesky decomposition", arXiv:1602.07527; the derivation is in
``docs/derivations/cholesky-whitening.md``.

The triangular solves go through ``np.linalg.solve`` rather than
``scipy.linalg.solve_triangular``. Both are backward stable (residuals of 1e-14 on the
``eps``-regularized covariances of ``N < D`` batches), and NumPy's is batched over a stack.
SciPy's was tried first and measured 10-20 ms per 4 x 4 call whenever it followed NumPy work,
against 10 us alone: the NumPy and SciPy wheels each bundle an OpenBLAS with its own thread
pool, and on a 2-core machine the two pools fight (the delay vanishes with
``OPENBLAS_NUM_THREADS=1``). That made one gradient check take 0.5 s instead of 2 ms.
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


def solve_lower(l: Array, b: Array, trans: bool = False) -> Array:
    """``L^{-1} B`` (or ``L^{-T} B`` with ``trans``) for lower-triangular ``L``, stacks allowed.

    ``l`` is ``(..., D, D)`` and ``b`` ``(..., D, K)`` with the same leading axes. Solved, not
    inverted, with ``np.linalg.solve`` (see the module docstring for why not SciPy's
    triangular solver).
    """
    return np.linalg.solve(_t(l) if trans else l, b)


def phi(a: Array) -> Array:
    """Murray's ``Phi``: the lower triangle of ``a`` (``(..., D, D)``) with the diagonal halved.

    ``Phi`` is self-adjoint under the Frobenius inner product, and ``L^{-1} dL = Phi(L^{-1}
    dSigma L^{-T})`` for the Cholesky factor ``L`` of ``Sigma``.
    """
    out = np.tril(a)
    idx = np.arange(a.shape[-1])
    out[..., idx, idx] *= 0.5
    return out


def cholesky_whitening_forward(
    x: Array, eps: float = 1e-5, center: bool = True
) -> Tuple[Array, Dict[str, Any]]:
    """Cholesky-whiten the features of each ``(N, D)`` slice of ``x``; return ``(y, cache)``.

    ``Xc = X - mean over N`` (or ``X``), ``Sigma = Xc^T Xc / N + eps I = L L^T`` (``L`` lower
    triangular with positive diagonal), ``y = Xc L^{-T}`` computed as ``(L^{-1} Xc^T)^T``.
    The cache holds ``xc``, ``mean`` (``(..., 1, D)`` or ``None``), ``sigma``, ``l``, ``y`` and
    ``center``. Raises ``LinAlgError`` when ``Sigma`` is not positive definite.
    """
    n, d = x.shape[-2:]
    mean = x.mean(axis=-2, keepdims=True) if center else None
    xc = x - mean if center else x
    sigma = _sym(_t(xc) @ xc / n) + eps * np.eye(d)
    l = np.linalg.cholesky(sigma)
    y = _t(solve_lower(l, _t(xc)))
    cache = {"xc": xc, "mean": mean, "sigma": sigma, "l": l, "y": y, "center": center}
    return y, cache


def cholesky_backward(l: Array, l_bar: Array) -> Array:
    """Adjoint of ``Sigma -> L = chol(Sigma)``: the symmetric ``dL/dSigma`` from ``dL/dL``.

    ``l``, ``l_bar`` are ``(..., D, D)``. Returns ``sym(L^{-T} Phi(L^T L_bar) L^{-1})``
    (Murray 2016, eq. 10, symmetrized because ``Sigma`` is symmetric); only the lower triangle
    of ``l_bar`` matters.
    """
    p = phi(_t(l) @ l_bar)
    a = solve_lower(l, p, trans=True)  # L^{-T} Phi
    s = _t(solve_lower(l, _t(a), trans=True))  # (L^{-T} (L^{-T} Phi)^T)^T = L^{-T} Phi L^{-1}
    return _sym(s)


def cholesky_whitening_backward(dy: Array, cache: Dict[str, Any]) -> Array:
    """VJP of :func:`cholesky_whitening_forward`: ``dL/dX`` (``(..., N, D)``) from ``dy``.

    From ``Y L^T = Xc``: ``H = G L^{-1}`` (``(..., N, D)``), ``L_bar = -H^T Y``,
    ``Sigma_bar = cholesky_backward(L, L_bar)``, ``dXc = H + (2/N) Xc Sigma_bar``, then the
    centering backward.
    """
    xc, l, y = cache["xc"], cache["l"], cache["y"]
    h = _t(solve_lower(l, _t(dy), trans=True))  # (L^{-T} G^T)^T = G L^{-1}
    sigma_bar = cholesky_backward(l, -(_t(h) @ y))
    dxc = h + (2.0 / xc.shape[-2]) * (xc @ sigma_bar)
    if cache["center"]:
        return dxc - dxc.mean(axis=-2, keepdims=True)
    return dxc


class CholeskyWhitening(Layer):
    """Cholesky whitening over features: ``y = Xc L^{-T}`` with ``Sigma = L L^T``.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)`` (each slice whitened on its own);
    ``y`` and ``dx`` have the shape of ``x``. Rows are examples.

    ``Xc`` is ``x`` minus its mean over examples (skipped when ``center=False``);
    ``Sigma = Xc^T Xc / N + eps I`` (biased, ``D x D``) and ``L`` its lower Cholesky factor.
    Output covariance ``Y^T Y / N = I - eps L^{-1} L^{-T}``: the identity up to eps. For
    ``N <= D`` the batch covariance is singular and ``eps > 0`` is what makes ``Sigma``
    positive definite; with ``eps = 0`` the forward raises ``numpy.linalg.LinAlgError``.

    The map depends on the order of the features (it is not rotation-equivariant, unlike ZCA),
    but it is smooth in ``x`` wherever ``Sigma`` is positive definite: no eigenvalue gaps enter.

    ``cache`` after a forward: ``xc``, ``mean``, ``sigma``, ``l``, ``y``, ``center``,
    ``shape``. :meth:`spectrum` returns the eigenvalues of ``Sigma``, ascending (computed on
    demand, the forward needs none).
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(self, eps: float = 1e-5, center: bool = True) -> None:
        super().__init__()
        self.eps = check_eps("CholeskyWhitening", eps)
        self.center = bool(center)

    def forward(self, x: Array) -> Array:
        """Whiten each ``(N, D)`` slice of ``x`` by its covariance's Cholesky factor."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        check_finite(self.name, "x", x)
        try:
            y, cache = cholesky_whitening_forward(x, self.eps, self.center)
        except np.linalg.LinAlgError as err:
            raise np.linalg.LinAlgError(
                f"{self.name}: the batch covariance is not positive definite (eps={self.eps!r}, "
                f"N = {x.shape[-2]}, D = {x.shape[-1]}): {err}; a larger eps makes it so"
            ) from err
        cache["shape"] = x.shape
        self.cache = cache
        return y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` for the last forward (shape of ``x``); this layer has no params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        return cholesky_whitening_backward(dy, cache)

    def spectrum(self) -> Array:
        """Eigenvalues of the last forward's ``Sigma`` (with ``eps``), ascending, ``(..., D)``."""
        self._require_cache("spectrum")
        return np.linalg.eigvalsh(self.cache["sigma"])

    def __repr__(self) -> str:
        return f"CholeskyWhitening(eps={self.eps!r}, center={self.center})"


__all__ = [
    "CholeskyWhitening",
    "cholesky_backward",
    "cholesky_whitening_backward",
    "cholesky_whitening_forward",
    "phi",
    "solve_lower",
]

"""IterNorm: whitening by Newton's iterations for ``Sigma^{-1/2}`` (Huang et al., CVPR 2019).

L. Huang, Y. Zhou, F. Zhu, L. Liu, L. Shao, "Iterative Normalization: Beyond Standardization
towards Efficient Whitening", CVPR 2019. Instead of an eigendecomposition, ``T`` Newton-Schulz
steps approximate the inverse square root of the trace-normalized covariance::

    Sigma_N = Sigma / tr(Sigma),   P_0 = I,   P_k = (3 P_{k-1} - P_{k-1}^3 Sigma_N) / 2,
    W = P_T / sqrt(tr(Sigma)),     y = Xc W.

Trace normalization puts the eigenvalues ``mu_i = lambda_i / tr(Sigma)`` of ``Sigma_N`` in
``(0, 1]``, where the iteration converges. For finite ``T`` the output covariance is only
approximately the identity: with ``e_0 = 1 - mu`` and ``e_k = e_{k-1}^2 (3 + e_{k-1}) / 4``,

    ``|| W Sigma W - I ||_2 = e_T(mu_min)`` exactly (in exact arithmetic),

because ``W Sigma W = P_T Sigma_N P_T`` has eigenvalues ``1 - e_T(mu_i)`` and ``e_T`` decreases
in ``mu``. The backward differentiates the ``T`` steps actually taken (not the limit
``Sigma^{-1/2}``), so it is exact for the truncated iteration. Derivation:
``docs/derivations/iternorm.md``.
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


def _trace(a: Array) -> Array:
    return np.trace(a, axis1=-2, axis2=-1)


def _condition_hint(sigma: Array) -> str:
    lam = np.linalg.eigvalsh(sigma)
    return f"largest condition number {np.max(lam[..., -1] / lam[..., 0]):.2e}"


def newton_schulz_residual(mu: Any, iterations: int) -> Array:
    """``e_T(mu)``: how far ``T`` IterNorm steps leave eigenvalue ``mu`` of ``Sigma_N`` from white.

    ``mu`` (any shape, values in ``(0, 1]``) are eigenvalues of ``Sigma / tr(Sigma)``. The
    whitened covariance ``W Sigma W`` has eigenvalue ``1 - e_T(mu)`` in the direction of
    ``mu``, with ``e_0 = 1 - mu`` and ``e_k = e_{k-1}^2 (3 + e_{k-1}) / 4``. The recursion is
    quadratic near 0, but a small ``mu`` first needs about ``log(1/mu) / log(2.25)`` steps to
    get there (``1 - e`` grows by a factor ``9/4`` per step while small).
    """
    e = 1.0 - np.asarray(mu, dtype=np.float64)
    for _ in range(int(iterations)):
        e = e * e * (3.0 + e) / 4.0
    return e


def iternorm_forward(
    x: Array, eps: float = 1e-5, iterations: int = 5, center: bool = True
) -> Tuple[Array, Dict[str, Any]]:
    """IterNorm-whiten the features of each ``(N, D)`` slice of ``x``; return ``(y, cache)``.

    ``Sigma = Xc^T Xc / N + eps I`` (``(..., D, D)``), ``tau = tr(Sigma)`` (``(...,)``),
    ``Sigma_N = Sigma / tau``, ``P_k`` as in the module docstring, ``W = P_T / sqrt(tau)``,
    ``y = Xc W``. Raises ``ValueError`` when ``tr(Sigma) = 0`` and ``LinAlgError`` when the
    iteration diverges (see :class:`IterNorm`). The cache holds ``xc``,
    ``mean`` (``(..., 1, D)`` or ``None``), ``sigma``, ``sigma_n``, ``tau``, ``p`` (the
    ``T + 1`` iterates ``P_0..P_T``, shape ``(T + 1, ..., D, D)``), ``w`` and ``center``.

    The iterates are not symmetrized: they are symmetric in exact arithmetic, and the backward
    is written for general matrices, so it is the exact adjoint of what was computed.
    """
    n, d = x.shape[-2:]
    mean = x.mean(axis=-2, keepdims=True) if center else None
    xc = x - mean if center else x
    sigma = _sym(_t(xc) @ xc / n) + eps * np.eye(d)
    tau = _trace(sigma)
    if np.any(tau <= 0):
        raise ValueError("the covariance has zero trace (every centred feature is zero)")
    sigma_n = sigma / tau[..., None, None]
    p = np.broadcast_to(np.eye(d), sigma.shape)
    iterates = [p]
    # A diverging iteration overflows; that is reported once, below, not as a warning per step.
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(iterations):
            p = 1.5 * p - 0.5 * (p @ p @ p @ sigma_n)
            iterates.append(p)
        # In exact arithmetic P_T Sigma_N P_T has eigenvalues in (0, 1], so this Frobenius norm
        # is at most sqrt(D); beyond it the iterates are rounding noise, not an approximation.
        resid = np.linalg.norm(p @ sigma_n @ p - np.eye(d), axis=(-2, -1))
    if not (np.all(np.isfinite(p)) and np.all(resid <= np.sqrt(d))):
        raise np.linalg.LinAlgError(
            f"the Newton iteration diverged within {iterations} steps "
            f"(||P_T Sigma_N P_T - I||_F = {np.max(resid):.2e} > sqrt(D)): past "
            f"convergence it amplifies rounding errors, the more so the larger the condition "
            f"number of Sigma ({_condition_hint(sigma)}); use fewer iterations or a larger eps"
        )
    w = p / np.sqrt(tau)[..., None, None]
    cache = {
        "xc": xc,
        "mean": mean,
        "sigma": sigma,
        "sigma_n": sigma_n,
        "tau": tau,
        "p": np.stack(iterates),
        "w": w,
        "center": center,
    }
    return xc @ w, cache


def newton_schulz_backward(p_bar: Array, iterates: Array, sigma_n: Array) -> Tuple[Array, Array]:
    """Adjoint of ``(Sigma_N) -> P_T`` through ``P_k = (3 P_{k-1} - P_{k-1}^3 Sigma_N) / 2``.

    ``p_bar`` is ``dL/dP_T`` (``(..., D, D)``), ``iterates`` the stacked ``P_0..P_T``
    (``(T + 1, ..., D, D)``), ``sigma_n`` ``(..., D, D)``. Going from ``k = T`` down to 1 with
    ``B = dL/dP_k`` and ``P = P_{k-1}``::

        dL/dSigma_N += -1/2 (P^3)^T B
        dL/dP_{k-1}  = 3/2 B - 1/2 (B (P^2 Sigma_N)^T + P^T B (P Sigma_N)^T + (P^2)^T B Sigma_N^T)

    Returns ``(dL/dP_0, dL/dSigma_N)``; the second is not symmetrized.
    """
    sn_t = _t(sigma_n)
    sn_bar = np.zeros_like(p_bar)
    b = p_bar
    for k in range(iterates.shape[0] - 1, 0, -1):
        p = iterates[k - 1]
        p2 = p @ p
        pt, p2t = _t(p), _t(p2)
        sn_bar = sn_bar - 0.5 * (_t(p2 @ p) @ b)
        b = 1.5 * b - 0.5 * (b @ _t(p2 @ sigma_n) + pt @ b @ _t(p @ sigma_n) + p2t @ b @ sn_t)
    return b, sn_bar


def iternorm_backward(dy: Array, cache: Dict[str, Any]) -> Array:
    """VJP of :func:`iternorm_forward`: ``dL/dX`` (``(..., N, D)``) from ``dy = dL/dy``.

    ``W_bar = Xc^T G``; ``P_bar_T = W_bar / sqrt(tau)``,
    ``tau_bar = -<W_bar, P_T> / (2 tau^{3/2})``; the Newton steps backward give
    ``Sigma_N_bar`` (:func:`newton_schulz_backward`); then ``Sigma_N = Sigma / tau`` gives
    ``Sigma_bar = Sigma_N_bar / tau + (tau_bar - <Sigma_N_bar, Sigma> / tau^2) I``;
    ``dXc = G W^T + (2/N) Xc sym(Sigma_bar)``; then the centering backward.
    """
    xc, w, tau, sigma = cache["xc"], cache["w"], cache["tau"], cache["sigma"]
    iterates = cache["p"]
    w_bar = _t(xc) @ dy
    root = np.sqrt(tau)[..., None, None]
    tau_bar = -0.5 * np.sum(w_bar * iterates[-1], axis=(-2, -1)) / tau**1.5
    _, sn_bar = newton_schulz_backward(w_bar / root, iterates, cache["sigma_n"])
    tau_bar = tau_bar - np.sum(sn_bar * sigma, axis=(-2, -1)) / tau**2
    sigma_bar = sn_bar / tau[..., None, None] + tau_bar[..., None, None] * np.eye(w.shape[-1])
    dxc = dy @ _t(w) + (2.0 / xc.shape[-2]) * (xc @ _sym(sigma_bar))
    if cache["center"]:
        return dxc - dxc.mean(axis=-2, keepdims=True)
    return dxc


class IterNorm(Layer):
    """Iterative normalization (Huang et al., CVPR 2019): ``y = Xc P_T / sqrt(tr(Sigma))``.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)`` (each slice whitened on its own);
    ``y`` and ``dx`` have the shape of ``x``. Rows are examples.

    ``Xc`` is ``x`` minus its mean over examples (skipped when ``center=False``);
    ``Sigma = Xc^T Xc / N + eps I`` (biased, ``D x D``); ``P_T`` is ``iterations`` Newton-Schulz
    steps toward ``(Sigma / tr Sigma)^{-1/2}`` from ``P_0 = I`` (see the module docstring).
    No eigendecomposition, no ties, no refusal: every step is a matrix polynomial, smooth in
    ``x``, so ``eps = 0`` works too unless ``Xc`` is all zero.

    The output is only approximately white: ``||W Sigma W - I||_2 = e_T(mu_min)`` with
    ``mu_min = lambda_min / tr(Sigma)`` (:func:`newton_schulz_residual`). Directions of small
    variance are whitened last, and for ``N < D`` those at ``eps`` are barely touched.

    Numerical stability: this (uncoupled) Newton-Schulz iteration is unstable at its fixed
    point once ``cond(Sigma) > 2.4``: rounding errors that do not commute with ``Sigma`` grow by
    up to ``(r + r^2) / 2 - 1`` per step, ``r = sqrt(cond(Sigma))``. So more iterations than
    convergence needs make the result worse, not better (for a 16 x 4 standard-normal batch the
    error is 1e-14 at ``T = 10`` and 1e-7 at ``T = 30``), and with ``N <= D`` (condition numbers
    near 1e5 with ``eps = 1e-5``) they are garbage by ``T = 15`` and overflow by ``T = 20``. The
    forward raises ``numpy.linalg.LinAlgError`` once ``||P_T Sigma_N P_T - I||_F > sqrt(D)``,
    which exact arithmetic rules out, rather than return garbage, inf or NaN.

    ``cache`` after a forward: ``xc``, ``mean``, ``sigma``, ``sigma_n``, ``tau``, ``p``
    (``P_0..P_T`` stacked on a new leading axis), ``w``, ``center``, ``shape``.
    :meth:`spectrum` returns the eigenvalues of ``Sigma``, ascending (computed on demand).
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(self, eps: float = 1e-5, iterations: int = 5, center: bool = True) -> None:
        super().__init__()
        self.eps = check_eps("IterNorm", eps)
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
            raise TypeError(f"IterNorm: argument 'iterations' must be an int, got {iterations!r}")
        if iterations < 1:
            raise ValueError(f"IterNorm: argument 'iterations' must be >= 1, got {iterations!r}")
        self.iterations = int(iterations)
        self.center = bool(center)

    def forward(self, x: Array) -> Array:
        """Whiten each ``(N, D)`` slice of ``x`` approximately, by ``iterations`` Newton steps."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        check_finite(self.name, "x", x)
        try:
            y, cache = iternorm_forward(x, self.eps, self.iterations, self.center)
        except np.linalg.LinAlgError as err:  # before ValueError, of which it is a subclass
            raise np.linalg.LinAlgError(
                f"{self.name}(iterations={self.iterations}, eps={self.eps!r}): {err}"
            ) from err
        except ValueError as err:
            raise ValueError(
                f"{self.name}: cannot normalize by the trace: {err}, e.g. N = 1, and "
                f"eps = {self.eps!r}; use eps > 0"
            ) from err
        cache["shape"] = x.shape
        self.cache = cache
        return y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` for the last forward (shape of ``x``); this layer has no params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        return iternorm_backward(dy, cache)

    def spectrum(self) -> Array:
        """Eigenvalues of the last forward's ``Sigma`` (with ``eps``), ascending, ``(..., D)``."""
        self._require_cache("spectrum")
        return np.linalg.eigvalsh(self.cache["sigma"])

    def whitening_error(self) -> Array:
        """``||W Sigma W - I||_2`` of the last forward, ``(...)``: how far from white it is."""
        self._require_cache("whitening_error")
        w, sigma = self.cache["w"], self.cache["sigma"]
        resid = _t(w) @ sigma @ w - np.eye(w.shape[-1])
        return np.linalg.norm(resid, ord=2, axis=(-2, -1))

    def __repr__(self) -> str:
        return f"IterNorm(eps={self.eps!r}, iterations={self.iterations}, center={self.center})"


__all__ = [
    "IterNorm",
    "iternorm_backward",
    "iternorm_forward",
    "newton_schulz_backward",
    "newton_schulz_residual",
]

"""ZCA whitening and decorrelated batch normalization (Huang et al., CVPR 2018).

The backward of ``W = Sigma^{-1/2}`` uses the Daleckii-Krein (divided-difference) form, which
has no ``1/(lambda_i - lambda_j)`` factor and so stays accurate when eigenvalues of ``Sigma``
are close or exactly equal. The derivation is in ``docs/derivations/zca-whitening.md``.

Everything here works in the row-examples layout on ``(..., N, D)`` stacks; the
``axis="examples"`` variant is the same code applied to the transposed input.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional, Tuple

import numpy as np

from .base import (
    Array,
    Layer,
    as_float64,
    check_choice,
    check_eps,
    check_matrix,
    check_real,
    check_upstream,
    ensure_feature_params,
    sum_over_leading_axes,
)
from .base import swap_last as _t
from .base import sym as _sym

METHODS = ("eigh", "svd")
AXES = ("features", "examples")


def inv_sqrt_psd(sigma: Array, method: str = "eigh") -> Tuple[Array, Array, Array]:
    """Inverse square root of symmetric positive-definite matrices, with their eigensystem.

    Parameters
    ----------
    sigma:
        ``(..., D, D)`` symmetric positive definite; leading axes are a stack.
    method:
        ``"eigh"`` uses ``np.linalg.eigh``; ``"svd"`` uses ``np.linalg.svd`` (for a symmetric
        positive-definite matrix ``U = V`` and the singular values are the eigenvalues, so
        ``U, S`` serve as the eigensystem). Both return the same map to rounding.

    Returns
    -------
    (W, eigvals, eigvecs):
        ``W = Q diag(eigvals)^{-1/2} Q^T`` of shape ``(..., D, D)``, exactly symmetric;
        ``eigvals`` of shape ``(..., D)`` in ascending order; ``eigvecs`` ``Q`` of shape
        ``(..., D, D)`` whose column ``i`` belongs to ``eigvals[..., i]``.

    Raises
    ------
    numpy.linalg.LinAlgError
        When an eigenvalue is not finite, or the matrix is numerically singular or indefinite
        (smallest eigenvalue ``<= D * machine-eps * largest``), where ``Sigma^{-1/2}`` is
        either undefined or pure rounding noise.
    """
    check_choice("inv_sqrt_psd", "method", method, METHODS)
    sigma = as_float64(sigma)
    check_real("inv_sqrt_psd", "sigma", sigma)
    if sigma.ndim < 2 or sigma.shape[-1] != sigma.shape[-2]:
        raise ValueError(f"inv_sqrt_psd: argument 'sigma' must be (..., D, D), got {sigma.shape}")
    if method == "eigh":
        eigvals, eigvecs = np.linalg.eigh(sigma)
    else:
        u, s, vh = np.linalg.svd(sigma)
        # Singular values are |lambda|; the sign of u_i . v_i restores lambda, so an indefinite
        # input is caught by the check below instead of being silently "whitened".
        sign = np.sign(np.sum(u * _t(vh), axis=-2))
        eigvals, eigvecs = (s * sign)[..., ::-1], u[..., :, ::-1]
    if not np.all(np.isfinite(eigvals)):
        raise np.linalg.LinAlgError(
            "inv_sqrt_psd: non-finite eigenvalues; does the input contain NaN or inf?"
        )
    tol = sigma.shape[-1] * np.finfo(np.float64).eps * np.abs(eigvals[..., -1:])
    if np.any(eigvals[..., :1] <= tol):
        raise np.linalg.LinAlgError(
            f"inv_sqrt_psd: matrix is numerically singular or indefinite (smallest eigenvalue "
            f"{np.min(eigvals[..., 0]):.3g}, largest {np.max(eigvals[..., -1]):.3g})"
        )
    w = (eigvecs * (1.0 / np.sqrt(eigvals))[..., None, :]) @ _t(eigvecs)
    return _sym(w), eigvals, eigvecs


def inv_sqrt_backward(w_bar: Array, eigvals: Array, eigvecs: Array) -> Array:
    """Adjoint of ``W = Sigma^{-1/2}``: map ``dL/dW`` to the symmetric ``dL/dSigma``.

    ``w_bar`` is ``(..., D, D)``; ``eigvals`` ``(..., D)`` and ``eigvecs`` ``(..., D, D)`` are
    the eigensystem of ``Sigma`` as returned by :func:`inv_sqrt_psd`. Returns
    ``Q (F o (Q^T sym(w_bar) Q)) Q^T`` with the divided differences of ``f(l) = l^{-1/2}``,

        ``F_ij = (f(l_i) - f(l_j)) / (l_i - l_j) = -1 / (s_i s_j (s_i + s_j))``, ``s = sqrt(l)``,

    which on the diagonal is ``f'(l_i) = -l_i^{-3/2} / 2``. The closed form divides by no
    difference of eigenvalues, so it is as accurate for equal eigenvalues as for distinct ones.
    """
    s = np.sqrt(eigvals)
    si, sj = s[..., :, None], s[..., None, :]
    f = -1.0 / (si * sj * (si + sj))
    q, qt = eigvecs, _t(eigvecs)
    sigma_bar = q @ (f * (qt @ _sym(as_float64(w_bar)) @ q)) @ qt
    return _sym(sigma_bar)


def zca_forward(
    x: Array, eps: float = 1e-5, method: str = "eigh", center: bool = True
) -> Tuple[Array, Dict[str, Any]]:
    """ZCA-whiten the features of each ``(N, D)`` slice of ``x``; return ``(y, cache)``.

    ``Xc = X - mean over N`` (or ``X`` when ``center`` is false),
    ``Sigma = Xc^T Xc / N + eps I`` (``(..., D, D)``, biased), ``W = Sigma^{-1/2}``,
    ``y = Xc W`` (``(..., N, D)``). The cache holds ``xc``, ``mean`` (``(..., 1, D)``, or
    ``None`` without centering), ``w``, ``eigvals`` (ascending), ``eigvecs`` and ``center``.
    """
    d = x.shape[-1]
    mean = x.mean(axis=-2, keepdims=True) if center else None
    xc = x - mean if center else x
    # Symmetrize so that eigh (which reads one triangle) and svd (which reads both) see the
    # same matrix and agree to rounding.
    sigma = _sym(_t(xc) @ xc / x.shape[-2]) + eps * np.eye(d)
    w, eigvals, eigvecs = inv_sqrt_psd(sigma, method)
    cache = {
        "xc": xc,
        "mean": mean,
        "w": w,
        "eigvals": eigvals,
        "eigvecs": eigvecs,
        "center": center,
    }
    return xc @ w, cache


def zca_backward(dy: Array, cache: Dict[str, Any]) -> Array:
    """VJP of :func:`zca_forward`: ``dL/dX`` (``(..., N, D)``) from ``dy = dL/dy``.

    ``W_bar = Xc^T dy``; ``Sigma_bar = inv_sqrt_backward(W_bar)``;
    ``dXc = dy W^T + (2/N) Xc Sigma_bar``; then the centering backward subtracts the mean of
    ``dXc`` over N.
    """
    xc, w = cache["xc"], cache["w"]
    sigma_bar = inv_sqrt_backward(_t(xc) @ dy, cache["eigvals"], cache["eigvecs"])
    dxc = dy @ _t(w) + (2.0 / xc.shape[-2]) * (xc @ sigma_bar)
    if cache["center"]:
        return dxc - dxc.mean(axis=-2, keepdims=True)
    return dxc


def _covariance_error(layer: Layer, eps: float, err: Exception) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"{layer.name}: cannot take Sigma^(-1/2) of the batch covariance (eps={eps!r}): {err}; "
        f"a larger eps makes Sigma positive definite"
    )


class ZCAWhitening(Layer):
    """ZCA whitening: ``y = Xc Sigma^{-1/2}`` with ``Sigma = Xc^T Xc / N + eps I``.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``y`` and ``dx`` have the shape of
    ``x``. Rows are examples.

    ``axis="features"`` (default)
        Whitening over features: ``Xc`` is ``x`` minus its mean over examples (N axis),
        ``Sigma`` is ``D x D`` with divisor N, and ``y = Xc W``.
    ``axis="examples"``
        Whitening across the examples of a batch: ``Xc`` is ``x`` minus each example's mean
        over its features (the row mean), ``Sigma = Xc Xc^T / D + eps I`` is ``N x N``, and
        ``y = W Xc``. This is the features case applied to ``x^T``, and the code does exactly
        that.

    ``center=False`` skips the mean subtraction (``Xc = x``). ``method`` chooses
    ``np.linalg.eigh`` or ``np.linalg.svd`` for ``Sigma^{-1/2}`` (see :func:`inv_sqrt_psd`).

    The backward uses the Daleckii-Krein form of the derivative of ``Sigma^{-1/2}`` (see
    :func:`inv_sqrt_backward`), accurate for close or equal eigenvalues.

    ``cache`` after a forward is a dict, in the layout of the covariance (transposed for
    ``axis="examples"``, with ``K`` the size of the whitened axis: ``D`` for features, ``N``
    for examples): ``xc`` the centred input, ``mean`` (or ``None``), ``w`` the ``(..., K, K)``
    whitening matrix, ``eigvals`` ``(..., K)`` ascending eigenvalues of ``Sigma`` (``eps``
    included), ``eigvecs`` ``(..., K, K)``, ``center``, ``shape`` of ``x`` and ``transposed``.
    :meth:`spectrum` returns a copy of ``eigvals``.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(
        self,
        eps: float = 1e-5,
        method: str = "eigh",
        center: bool = True,
        axis: str = "features",
    ) -> None:
        super().__init__()
        eps = check_eps("ZCAWhitening", eps)
        check_choice("ZCAWhitening", "method", method, METHODS)
        check_choice("ZCAWhitening", "axis", axis, AXES)
        self.eps = float(eps)
        self.method = method
        self.center = bool(center)
        self.axis = axis

    def forward(self, x: Array) -> Array:
        """Whiten each ``(N, D)`` slice of ``x``; see the class docstring for the two axes."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        transposed = self.axis == "examples"
        try:
            y, cache = zca_forward(_t(x) if transposed else x, self.eps, self.method, self.center)
        except np.linalg.LinAlgError as err:
            raise _covariance_error(self, self.eps, err) from err
        cache["shape"], cache["transposed"] = x.shape, transposed
        self.cache = cache
        return _t(y) if transposed else y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` for the last forward (shape of ``x``); this layer has no params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        if cache["transposed"]:
            return _t(zca_backward(_t(dy), cache))
        return zca_backward(dy, cache)

    def spectrum(self) -> Array:
        """Eigenvalues of the last forward's ``Sigma`` (with ``eps``), ascending, ``(..., K)``."""
        self._require_cache("spectrum")
        return self.cache["eigvals"].copy()

    def __repr__(self) -> str:
        return (
            f"ZCAWhitening(eps={self.eps!r}, method={self.method!r}, center={self.center}, "
            f"axis={self.axis!r})"
        )


class DecorrelatedBatchNorm(Layer):
    """Decorrelated batch normalization (Huang et al., CVPR 2018), one group of all D features.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``y`` and ``dx`` have its shape.

    Train mode (``train = True``, the default): ``xhat = ZCA(x)`` whitened over features with
    centering (as :class:`ZCAWhitening` with ``axis="features"``), then
    ``y = xhat * gamma + beta`` with per-feature ``params["gamma"]``, ``params["beta"]`` of
    shape ``(D,)`` when ``affine`` (initialised to ones and zeros; created at construction when
    ``num_features`` is given, else on the first forward; values the user set are kept).

    Running statistics ``running_mean`` ``(D,)`` and ``running_whitening`` ``(D, D)``
    (initially zeros and the identity) are updated in train mode as
    ``r = (1 - momentum) r + momentum * batch_value``, but only for a single ``(N, D)`` batch:
    a stacked forward is the harness evaluating many perturbed copies of one batch at once, and
    folding those into the running statistics would let a gradient check change the model.
    The train-mode output and gradient do not depend on the running statistics.

    Eval mode (``train = False``): ``xhat = (x - running_mean) @ running_whitening``, a fixed
    affine map, so ``dx = (dy * gamma) @ running_whitening^T``; ``grads`` are still filled.
    The backward always follows the mode of the last forward, not the current ``train`` flag.

    For a stacked input the parameter gradients are summed over the stack.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(
        self,
        eps: float = 1e-5,
        affine: bool = True,
        momentum: float = 0.1,
        method: str = "eigh",
        num_features: Optional[int] = None,
    ) -> None:
        super().__init__()
        name = "DecorrelatedBatchNorm"
        eps = check_eps(name, eps)
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: argument 'momentum' must be in [0, 1], got {momentum!r}")
        check_choice(name, "method", method, METHODS)
        self.eps = float(eps)
        self.affine = bool(affine)
        self.momentum = float(momentum)
        self.method = method
        self.num_features = num_features
        self.train = True
        self.running_mean: Optional[Array] = None
        self.running_whitening: Optional[Array] = None
        if num_features is not None:
            self._ensure_state(int(num_features))

    def _ensure_state(self, d: int) -> Tuple[Array, Array]:
        """The running ``(mean, whitening)`` for ``d`` features, made on first use."""
        if self.running_mean is None or self.running_whitening is None:
            self.running_mean = np.zeros(d)
            self.running_whitening = np.eye(d)
        elif self.running_mean.shape != (d,):
            raise ValueError(
                f"{self.name}: argument 'x' has D = {d} features, but the layer's running "
                f"statistics are for D = {self.running_mean.shape[0]}"
            )
        if self.affine:
            ensure_feature_params(self, d, gamma=1.0, beta=0.0)
        return self.running_mean, self.running_whitening

    def forward(self, x: Array) -> Array:
        """Whiten (batch statistics in train mode, running ones in eval mode), then scale/shift."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        running_mean, running_whitening = self._ensure_state(x.shape[-1])
        if self.train:
            try:
                xhat, zca = zca_forward(x, self.eps, self.method, center=True)
            except np.linalg.LinAlgError as err:
                raise _covariance_error(self, self.eps, err) from err
            if x.ndim == 2:
                m = self.momentum
                self.running_mean = (1 - m) * running_mean + m * zca["mean"][0]
                self.running_whitening = (1 - m) * running_whitening + m * zca["w"]
            cache: Dict[str, Any] = {"train": True, "zca": zca}
        else:
            w = running_whitening
            xhat = (x - running_mean) @ w
            cache = {"train": False, "w": w}
        cache["xhat"], cache["shape"] = xhat, x.shape
        self.cache = cache
        if not self.affine:
            return xhat
        cache["gamma"] = self.params["gamma"]
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` (shape of ``x``); fill ``grads["gamma"]``, ``grads["beta"]``."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        if self.affine:
            self.grads = {
                "gamma": sum_over_leading_axes(dy * cache["xhat"]),
                "beta": sum_over_leading_axes(dy),
            }
            dxhat = dy * cache["gamma"]
        else:
            self.grads = {}
            dxhat = dy
        if cache["train"]:
            return zca_backward(dxhat, cache["zca"])
        return dxhat @ _t(cache["w"])

    def spectrum(self) -> Array:
        """Eigenvalues of the last train-mode forward's ``Sigma`` (``eps`` included), ascending."""
        self._require_cache("spectrum")
        if not self.cache["train"]:
            raise RuntimeError(
                f"{self.name}.spectrum: the last forward was in eval mode, which uses the running "
                f"statistics and computes no batch covariance"
            )
        return self.cache["zca"]["eigvals"].copy()

    def __repr__(self) -> str:
        extra = "" if self.num_features is None else f", num_features={self.num_features}"
        return (
            f"DecorrelatedBatchNorm(eps={self.eps!r}, affine={self.affine}, "
            f"momentum={self.momentum!r}, method={self.method!r}{extra})"
        )


__all__ = [
    "DecorrelatedBatchNorm",
    "ZCAWhitening",
    "inv_sqrt_backward",
    "inv_sqrt_psd",
    "zca_backward",
    "zca_forward",
]

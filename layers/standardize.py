"""Batch-norm standardization over examples, with optional per-feature affine parameters."""

from __future__ import annotations

from typing import ClassVar, Optional

import numpy as np

from .base import (
    Array,
    Layer,
    as_float64,
    check_eps,
    check_matrix,
    check_upstream,
    ensure_feature_params,
    sum_over_leading_axes,
)


class Standardize(Layer):
    """Batch normalization over examples: ``y = gamma * (x - mu) / sqrt(var + eps) + beta``.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``mu`` and ``var`` are taken over
    the N axis of each slice (``axis=-2``), with the biased variance ``var = mean((x - mu)^2)``
    (divisor N, as batch norm uses in training). ``y`` and ``dx`` have the shape of ``x``.

    ``affine=True`` adds learnable ``params["gamma"]`` and ``params["beta"]`` of shape ``(D,)``,
    initialised to ones and zeros. They are created at construction when ``num_features`` is
    given, otherwise on the first forward; parameters the user has set beforehand are kept.
    ``backward`` fills ``grads`` with the same keys; for a stacked input the parameter gradients
    are summed over the stack (the parameters are shared by every slice).

    With ``N = 1`` the centred input is identically zero, so the output is ``beta`` (zero
    without ``affine``) and ``dx`` is zero; this needs ``eps > 0``.

    The variance is computed as ``mean(xc * xc)`` rather than ``mean(|xc|^2)``: for real input
    they agree, and the former keeps the forward holomorphic, so the complex-step estimator
    applies (``supports_complex = True``).
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = True

    def __init__(
        self, eps: float = 1e-5, affine: bool = False, num_features: Optional[int] = None
    ) -> None:
        super().__init__()
        self.eps = check_eps("Standardize", eps)
        self.affine = bool(affine)
        self.num_features = num_features
        if self.affine and num_features is not None:
            ensure_feature_params(self, int(num_features), gamma=1.0, beta=0.0)

    def forward(self, x: Array) -> Array:
        """Standardize each feature over the examples of each ``(N, D)`` slice."""
        x = as_float64(check_matrix(self.name, "x", x))
        xc = x - x.mean(axis=-2, keepdims=True)
        var = (xc * xc).mean(axis=-2, keepdims=True)
        denom = var + self.eps
        if np.any(denom == 0):
            raise ValueError(
                f"{self.name}: a feature has zero variance (N = 1 or a constant column) and "
                f"eps = 0; use eps > 0"
            )
        inv_std = 1.0 / np.sqrt(denom)
        xhat = xc * inv_std
        self.cache = {"xhat": xhat, "inv_std": inv_std, "shape": x.shape}
        if not self.affine:
            return xhat
        ensure_feature_params(self, x.shape[-1], gamma=1.0, beta=0.0)
        self.cache["gamma"] = self.params["gamma"]
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` (shape of ``x``); fill ``grads["gamma"]``, ``grads["beta"]``."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        xhat, inv_std = cache["xhat"], cache["inv_std"]
        if self.affine:
            self.grads = {
                "gamma": sum_over_leading_axes(dy * xhat),
                "beta": sum_over_leading_axes(dy),
            }
            dxhat = dy * cache["gamma"]
        else:
            self.grads = {}
            dxhat = dy
        # Projecting out the mean and the xhat direction is what the 1/N terms of the full
        # Jacobian amount to; see docs/derivations/standardize.md.
        mean_dxhat = dxhat.mean(axis=-2, keepdims=True)
        mean_dxhat_xhat = (dxhat * xhat).mean(axis=-2, keepdims=True)
        return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)

    def __repr__(self) -> str:
        extra = "" if self.num_features is None else f", num_features={self.num_features}"
        return f"Standardize(eps={self.eps!r}, affine={self.affine}{extra})"


__all__ = ["Standardize"]

"""Batch normalization with running statistics: Standardize in training, fixed at inference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import (
    Array,
    Layer,
    as_float64,
    check_matrix,
    check_real,
    check_upstream,
    ensure_feature_params,
    sum_over_leading_axes,
)
from .standardize import Standardize


class BatchNorm(Layer):
    """:class:`~layers.standardize.Standardize` in training, running statistics at inference.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``y`` and ``dx`` have its shape;
    ``params["gamma"]``, ``params["beta"]`` are ``(D,)`` when ``affine``.

    Train mode (``train = True``) is exactly ``Standardize`` (its forward and backward run), and
    a single ``(N, D)`` batch also updates ``running_mean`` and ``running_var`` (``(D,)``, from
    zeros and ones) as ``r = (1 - momentum) r + momentum * batch_value``, with the same biased
    variance the batch was normalized with. As in DecorrelatedBatchNorm, a stacked forward (the
    harness evaluating perturbed copies) leaves them alone.

    Eval mode: ``xhat = (x - running_mean) / sqrt(running_var + eps)``, a fixed affine map, so
    ``dx = dy * gamma / sqrt(running_var + eps)``. The backward follows the mode of the last
    forward.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(
        self, num_features: int, eps: float = 1e-5, affine: bool = False, momentum: float = 0.1
    ) -> None:
        super().__init__()
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm: argument 'momentum' must be in [0, 1], got {momentum!r}")
        self.inner = Standardize(eps=eps, affine=affine, num_features=num_features)
        # One dict shared with the inner layer, so a parameter replaced by the harness or an
        # optimizer is seen by both modes.
        self.params = self.inner.params
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.affine = bool(affine)
        self.momentum = float(momentum)
        self.train = True
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)

    def forward(self, x: Array) -> Array:
        """Standardize by the batch (train) or by the running statistics (eval)."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"{self.name}: argument 'x' must have {self.num_features} features, "
                f"got shape {x.shape}"
            )
        if self.train:
            y = self.inner.forward(x)
            if x.ndim == 2:
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * x.mean(axis=0)
                self.running_var = (1 - m) * self.running_var + m * x.var(axis=0)
            self.cache = {"train": True, "shape": x.shape}
            return y
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        xhat = (x - self.running_mean) * inv_std
        self.cache = {"train": False, "shape": x.shape, "xhat": xhat, "inv_std": inv_std}
        if not self.affine:
            return xhat
        ensure_feature_params(self, self.num_features, gamma=1.0, beta=0.0)
        self.cache["gamma"] = self.params["gamma"]
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` (shape of ``x``); fill ``grads["gamma"]``, ``grads["beta"]``."""
        cache = self._require_cache()
        if cache["train"]:
            dx = self.inner.backward(dy)
            self.grads = self.inner.grads
            return dx
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        if not self.affine:
            self.grads = {}
            return dy * cache["inv_std"]
        self.grads = {
            "gamma": sum_over_leading_axes(dy * cache["xhat"]),
            "beta": sum_over_leading_axes(dy),
        }
        return dy * cache["gamma"] * cache["inv_std"]

    def __repr__(self) -> str:
        return (
            f"BatchNorm(num_features={self.num_features}, eps={self.eps!r}, "
            f"affine={self.affine}, momentum={self.momentum!r})"
        )


__all__ = ["BatchNorm"]

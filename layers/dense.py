"""Fully connected (affine) layer."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Array, Layer, as_float64, check_matrix, check_upstream, sum_over_leading_axes


class Dense(Layer):
    """Affine map ``y = x @ W + b``.

    Shapes: ``x`` is ``(N, n_in)`` or a stack ``(..., N, n_in)``; ``params["W"]`` is
    ``(n_in, n_out)``, ``params["b"]`` is ``(n_out,)``; ``y`` is ``(..., N, n_out)``.

    ``W`` is drawn from ``np.random.default_rng(seed)`` with Glorot scaling
    ``std = sqrt(2 / (n_in + n_out))``; ``b`` starts at zero. Both may be replaced by the user.

    ``backward(dy)`` returns ``dx = dy @ W^T`` and sets ``grads["W"] = x^T dy`` and
    ``grads["b"] = sum(dy)``, both summed over every leading axis (the parameters are shared by
    every example and every slice of a stack). Linear in ``x`` and ``W``, hence holomorphic.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = True

    def __init__(self, n_in: int, n_out: int, seed: int = 0) -> None:
        super().__init__()
        for arg, value in (("n_in", n_in), ("n_out", n_out)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense: argument {arg!r} must be an integer >= 1, got {value!r}")
        self.n_in, self.n_out, self.seed = int(n_in), int(n_out), seed
        rng = np.random.default_rng(seed)
        self.params = {
            "W": rng.normal(0.0, np.sqrt(2.0 / (self.n_in + self.n_out)), (self.n_in, self.n_out)),
            "b": np.zeros(self.n_out),
        }

    def forward(self, x: Array) -> Array:
        """Return ``x @ W + b``, shape ``(..., N, n_out)``."""
        x = as_float64(check_matrix(self.name, "x", x))
        w, b = self.params["W"], self.params["b"]
        if x.shape[-1] != w.shape[0]:
            raise ValueError(
                f"{self.name}: argument 'x' must have {w.shape[0]} features (last axis), "
                f"got shape {x.shape}"
            )
        y = x @ w + b
        self.cache = {"x": x, "W": w, "shape": y.shape}
        return y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx = dy @ W^T``; fill ``grads["W"]`` and ``grads["b"]``."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        x = cache["x"]
        self.grads = {
            "W": x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1]),
            "b": sum_over_leading_axes(dy),
        }
        return dy @ cache["W"].T

    def __repr__(self) -> str:
        return f"Dense(n_in={self.n_in}, n_out={self.n_out}, seed={self.seed!r})"


__all__ = ["Dense"]

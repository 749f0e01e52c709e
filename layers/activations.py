"""Elementwise activations: ReLU, LeakyReLU, Tanh, Sigmoid."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit

from .base import Array, Layer, as_float64, check_matrix, check_real, check_upstream


class _Elementwise(Layer):
    """``y = f(x)`` entry by entry, so ``dx = dy * f'(x)``; ``x`` may have any shape.

    Subclasses give ``_f(x)`` and ``_fprime(x, y)`` (``y = f(x)`` is passed so that tanh and
    sigmoid can reuse it).
    """

    supports_batch: ClassVar[bool] = True

    def _f(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fprime(self, x: Array, y: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Array) -> Array:
        """Apply the activation entry by entry; ``y`` has the shape of ``x``."""
        x = as_float64(check_matrix(self.name, "x", x, min_ndim=0))
        if not self.supports_complex:
            check_real(self.name, "x", x)
        y = self._f(x)
        self.cache = {"x": x, "y": y}
        return y

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx = dy * f'(x)`` for the last forward (shape of ``x``)."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["x"].shape)
        self.grads = {}
        return dy * self._fprime(cache["x"], cache["y"])

    def __repr__(self) -> str:
        return f"{self.name}()"


class ReLU(_Elementwise):
    """``y = max(x, 0)``; any shape. ``f'(0)`` is taken as 0 (a subgradient).

    Not holomorphic, so complex input is refused.
    """

    def _f(self, x: Array) -> Array:
        # np.where rather than np.maximum so that the x > 0 test is the same one the backward
        # uses, and NaN maps to 0 in both.
        return np.where(x > 0, x, 0.0)

    def _fprime(self, x: Array, y: Array) -> Array:
        return (x > 0).astype(np.float64)


class LeakyReLU(_Elementwise):
    """``y = x`` for ``x > 0``, ``slope * x`` otherwise; any shape. ``f'(0) = slope``.

    Not holomorphic, so complex input is refused.
    """

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = float(slope)

    def _f(self, x: Array) -> Array:
        return np.where(x > 0, x, self.slope * x)

    def _fprime(self, x: Array, y: Array) -> Array:
        return np.where(x > 0, 1.0, self.slope)

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope!r})"


class Tanh(_Elementwise):
    """``y = tanh(x)``, ``f'(x) = 1 - y^2``; any shape. Holomorphic (complex input accepted)."""

    supports_complex: ClassVar[bool] = True

    def _f(self, x: Array) -> Array:
        return np.tanh(x)

    def _fprime(self, x: Array, y: Array) -> Array:
        return 1.0 - y * y


class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``, ``f'(x) = y (1 - y)``; any shape.

    Real input goes through ``scipy.special.expit`` (no overflow, full relative accuracy in
    both tails). Complex input, for the complex-step estimator, uses the identity
    ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, which is holomorphic and does not overflow.
    """

    supports_complex: ClassVar[bool] = True

    def _f(self, x: Array) -> Array:
        if np.iscomplexobj(x):
            return 0.5 * (1.0 + np.tanh(0.5 * x))
        return expit(x)

    def _fprime(self, x: Array, y: Array) -> Array:
        return y * (1.0 - y)


__all__ = ["LeakyReLU", "ReLU", "Sigmoid", "Tanh"]

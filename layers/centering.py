"""Mean subtraction over examples or over features."""

from __future__ import annotations

from typing import ClassVar

from .base import Array, Layer, as_float64, check_matrix, check_upstream


class Center(Layer):
    """Subtract the mean over examples (``axis=0``) or over features (``axis=1``).

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``y`` and ``dx`` have the shape of
    ``x``. ``axis`` names the axis of each ``(N, D)`` slice, so internally it is ``-2`` (the N
    axis) or ``-1`` (the D axis) and leading stack axes are never averaged over.

    ``y = x - mean(x, axis)``. The map is linear and self-adjoint, so
    ``dx = dy - mean(dy, axis)`` (see ``docs/derivations/centering.md``). Being linear it is
    holomorphic, so complex input is accepted for the complex-step estimator.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = True

    def __init__(self, axis: int = 0) -> None:
        super().__init__()
        if axis not in (0, 1):
            raise ValueError(
                f"Center: argument 'axis' must be 0 (examples) or 1 (features), got {axis!r}"
            )
        self.axis = axis
        self._ax = -2 if axis == 0 else -1

    def forward(self, x: Array) -> Array:
        """Return ``x`` minus its mean over the chosen axis; same shape as ``x``."""
        x = as_float64(check_matrix(self.name, "x", x))
        self.cache = {"shape": x.shape}
        return x - x.mean(axis=self._ax, keepdims=True)

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx = dy - mean(dy, axis)`` for the last forward."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        return dy - dy.mean(axis=self._ax, keepdims=True)

    def __repr__(self) -> str:
        return f"Center(axis={self.axis})"


__all__ = ["Center"]

"""The layer protocols the harness checks.

Conventions (every layer in this package follows them):

* Rows are examples: an input ``x`` has shape ``(N, D)``. Layers that can also take a stack of
  independent batches accept ``(..., N, D)`` and set ``supports_batch = True``; the harness then
  evaluates many perturbed inputs in one call.
* ``forward(x)`` recomputes everything the backward needs and stores it in ``self.cache``;
  nothing else is remembered, so a forward on a new ``x`` fully replaces the previous one.
* ``backward(dy)`` returns ``dL/dx`` for the *last* forward (same shape as that ``x``) and
  overwrites ``self.grads`` (one array per key of ``self.params``). It never accumulates.
* Neither method mutates its arguments.
* A loss layer (``is_loss = True``) has ``forward(x, target) -> float`` and ``backward() -> dL/dx``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Protocol, runtime_checkable

import numpy as np

Array = np.ndarray


@runtime_checkable
class LayerProtocol(Protocol):
    """What the harness needs from a layer: ``forward(x) -> y`` and ``backward(dy) -> dx``."""

    def forward(self, x: Array) -> Array: ...

    def backward(self, dy: Array) -> Array: ...


class Layer:
    """Base class for the built-in layers: parameters, gradients and declared capabilities.

    Subclasses implement :meth:`forward` and :meth:`backward`. Capabilities the harness reads:

    ``supports_batch``
        forward/backward accept extra leading axes ``(..., N, D)`` and treat each ``(N, D)``
        slice as an independent batch.
    ``supports_complex``
        forward is an analytic (holomorphic) function of real ``x`` extended to complex ``x``,
        so the complex-step estimator applies.
    """

    is_loss: ClassVar[bool] = False
    supports_batch: ClassVar[bool] = False
    supports_complex: ClassVar[bool] = False

    def __init__(self) -> None:
        self.params: Dict[str, Array] = {}
        self.grads: Dict[str, Array] = {}
        self.cache: Any = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require_cache(self, caller: str = "backward") -> Any:
        """The last forward's cache; ``RuntimeError`` naming ``caller`` if there was none."""
        if self.cache is None:
            raise RuntimeError(f"{self.name}.{caller} called before forward")
        return self.cache

    def __repr__(self) -> str:
        return f"{self.name}()"


class LossLayer(Layer):
    """A layer ending in a scalar: ``forward(x, target) -> float``, ``backward() -> dL/dx``."""

    is_loss: ClassVar[bool] = True

    def forward(self, x: Array, target: Array) -> float:  # type: ignore[override]
        raise NotImplementedError  # pragma: no cover - abstract

    def backward(self) -> Array:  # type: ignore[override]
        raise NotImplementedError  # pragma: no cover - abstract


def swap_last(a: Array) -> Array:
    """The transpose of the last two axes (each matrix of a stack ``(..., M, K)``)."""
    return np.swapaxes(a, -1, -2)


def sym(a: Array) -> Array:
    """The symmetric part ``(A + A^T) / 2`` of each matrix of a stack."""
    return 0.5 * (a + swap_last(a))


def check_eps(layer: str, eps: Any) -> float:
    """Validate a covariance regularizer: a real number ``>= 0``; return it as float."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"{layer}: argument 'eps' must be a real number, got {eps!r}") from None
    if not value >= 0:
        raise ValueError(f"{layer}: argument 'eps' must be >= 0, got {eps!r}")
    return value


def check_finite(layer: str, arg: str, x: Array) -> None:
    """Raise ``ValueError`` naming the layer when ``x`` contains NaN or inf."""
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{layer}: argument {arg!r} contains NaN or inf")


def check_matrix(layer: str, arg: str, x: Any, *, min_ndim: int = 2) -> Array:
    """Validate an ``(…, N, D)`` floating-point array argument with a message naming the layer.

    Returns ``x`` as an ndarray (no copy when it already is one). Raises ``TypeError`` for a
    non-floating dtype and ``ValueError`` for a wrong number of axes or an empty axis.
    """
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating)):
        raise TypeError(
            f"{layer}: argument {arg!r} must be a floating-point array, got dtype {arr.dtype}"
        )
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{layer}: argument {arg!r} must have at least {min_ndim} axes (N, D), "
            f"got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{layer}: argument {arg!r} has an empty axis, shape {arr.shape}")
    return arr


def check_same_shape(layer: str, arg: str, got: Array, expected_shape: tuple) -> None:
    """Raise ``ValueError`` naming the layer when an upstream gradient has the wrong shape."""
    if np.shape(got) != tuple(expected_shape):
        raise ValueError(
            f"{layer}: argument {arg!r} must have shape {tuple(expected_shape)} "
            f"(the shape of the last forward output), got {np.shape(got)}"
        )


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the built-in layers.


def as_float64(x: Any) -> Array:
    """Return ``x`` as float64 (complex128 when complex), without a copy when it already is."""
    arr = np.asarray(x)
    return arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64, copy=False)


def check_real(layer: str, arg: str, x: Array) -> None:
    """Raise ``TypeError`` naming the layer when a non-holomorphic layer is given complex input.

    Such a layer would silently compute something (``np.maximum`` orders complex numbers
    lexicographically, ``eigh`` treats a complex matrix as Hermitian) that is not the analytic
    extension the complex-step estimator needs, so refusing is the only honest answer.
    """
    if np.iscomplexobj(x):
        raise TypeError(
            f"{layer}: argument {arg!r} is complex, but {layer} is not holomorphic "
            f"(supports_complex is False); pass a real array"
        )


def check_upstream(layer: str, arg: str, dy: Any, expected_shape: tuple) -> Array:
    """Validate an upstream gradient (numeric, shape of the last output); return it as float64."""
    arr = np.asarray(dy)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{layer}: argument {arg!r} must be a numeric array, got dtype {arr.dtype}")
    check_same_shape(layer, arg, arr, expected_shape)
    return as_float64(arr)


def sum_over_leading_axes(a: Array) -> Array:
    """Sum an ``(..., K)`` array over every axis but the last, giving shape ``(K,)``."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


def ensure_feature_params(layer: Layer, d: int, **init: float) -> None:
    """Create per-feature parameters of shape ``(d,)`` on first use, or check existing ones.

    ``init`` maps a parameter name to its fill value (``gamma=1.0, beta=0.0``). Parameters the
    user has already set are kept, so long as their shape is ``(d,)``.
    """
    for key, value in init.items():
        if key not in layer.params:
            layer.params[key] = np.full(d, value, dtype=np.float64)
        elif np.shape(layer.params[key]) != (d,):
            raise ValueError(
                f"{layer.name}: parameter {key!r} has shape {np.shape(layer.params[key])}, "
                f"but the input has D = {d} features, so it must have shape ({d},)"
            )


def check_choice(layer: str, arg: str, value: Any, choices: tuple) -> None:
    """Raise ``ValueError`` naming the layer when a constructor option is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{layer}: argument {arg!r} must be one of {choices}, got {value!r}")

"""A layer seen as the functions the estimators differentiate.

For an ordinary layer the objective is ``L(x) = <forward(x), dy>``; for a loss layer it is
``L(x) = forward(x, target)`` (``dy`` is then the scalar 1). ``outputs_x`` and
``outputs_param(key)`` map a stack ``(B, *shape)`` of inputs or parameter values to the outputs
``(B, *y.shape)``, in one forward call when the layer declares ``supports_batch`` and by a loop
otherwise.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np

Array = np.ndarray


_controller: Any = None


@contextmanager
def blas_single_thread(enabled: bool = True) -> Iterator[None]:
    """Limit BLAS to one thread (via the optional ``threadpoolctl``) for the enclosed work.

    A stacked finite-difference evaluation is thousands of tiny LAPACK calls (a batched ``eigh``
    of 32 x 32 matrices runs 8x slower with two OpenBLAS threads than with one). Without
    ``threadpoolctl`` installed this does nothing.
    """
    global _controller
    if not enabled:
        yield
        return
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    if not _controller:
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield


def is_loss_layer(layer: Any) -> bool:
    return bool(getattr(layer, "is_loss", False))


def layer_name(layer: Any) -> str:
    name = getattr(layer, "name", None)
    return name if isinstance(name, str) else type(layer).__name__


def layer_params(layer: Any) -> Dict[str, Array]:
    params = getattr(layer, "params", None)
    return dict(params) if isinstance(params, dict) else {}


class LayerObjective:
    """Forward evaluations of ``layer`` at perturbed inputs or parameters.

    ``x`` is the (unperturbed) input and ``target`` the labels of a loss layer. Evaluation points
    are cast to ``dtype`` before the forward call (float64 unless float32 was explicitly allowed)
    and outputs are returned as float64 (or complex128 for the complex step).
    """

    def __init__(self, layer: Any, x: Array, target: Optional[Array], dtype: np.dtype) -> None:
        self.layer = layer
        self.x = x
        self.target = target
        self.dtype = dtype
        self.is_loss = is_loss_layer(layer)
        self.batched = bool(getattr(layer, "supports_batch", False))

    def forward(self, x: Array) -> Any:
        if self.is_loss:
            return self.layer.forward(x, self.target)
        return self.layer.forward(x)

    def _cast(self, points: Array) -> Array:
        if np.iscomplexobj(points):
            return points
        return points.astype(self.dtype, copy=False)

    def _as_output(self, y: Any) -> Array:
        arr = np.asarray(y)
        return arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64, copy=False)

    def outputs_x(self, points: Array) -> Array:
        """Outputs at a stack of inputs ``(B, *x.shape)``."""
        points = self._cast(points)
        if self.batched:
            y = self._as_output(self.forward(points))
            if y.shape[:1] == (points.shape[0],):
                return y
            # A declared batch support that does not hold: fall back rather than mis-evaluate.
            self.batched = False
        return np.stack([self._as_output(self.forward(p)) for p in points])

    def outputs_param(self, key: str) -> Callable[[Array], Array]:
        """Outputs at a stack of values ``(B, *params[key].shape)`` of one parameter."""
        params = self.layer.params

        def outputs(points: Array) -> Array:
            original = params[key]
            results = []
            try:
                for p in self._cast(points):
                    params[key] = p
                    results.append(self._as_output(self.forward(self.x)))
            finally:
                params[key] = original
            return np.stack(results)

        return outputs

    def batch_support_holds(self, probe: Array, y: Array) -> bool:
        """Whether a stacked forward of ``[x, probe]`` gives ``y = forward(x)`` in its first slice.

        A layer that declares ``supports_batch`` but mixes the stacked batches (statistics over
        the whole stack, say) changes the first slice when a different second one is beside
        it, and would otherwise make every batched estimate silently wrong.
        """
        if not self.batched:
            return False
        try:
            stacked = self._as_output(self.forward(self._cast(np.stack([self.x, probe]))))
        except Exception:
            return False
        if stacked.shape != (2, *np.shape(y)):
            return False
        # Loose on purpose: batched and single LAPACK calls may round differently, while a
        # layer that mixes the stacked batches differs at the size of the outputs themselves.
        scale = max(1.0, float(np.max(np.abs(y), initial=0.0)))
        return bool(np.allclose(stacked[0], y, rtol=0.0, atol=1e-9 * scale))

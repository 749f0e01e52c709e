"""A layer seen as the functions the estimators differentiate.

For an ordinary layer the objective is ``L(x) = <forward(x), dy>``; for a loss layer it is
``L(x) = forward(x, target)`` (``dy`` is then the scalar 1). ``outputs_x`` and
``outputs_param(key)`` map a stack ``(B, *shape)`` of inputs or parameter values to the outputs
``(B, *y.shape)``, in one forward call when the layer declares ``supports_batch`` and by a loop
otherwise.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

Array = np.ndarray


_controller: Any = None

# Which draw of a layer's randomness the calls in progress are (see another_draw).
_draw: contextvars.ContextVar[int] = contextvars.ContextVar("gradcheck_draw", default=0)


@contextmanager
def another_draw(draw: int = 1) -> Iterator[None]:
    """Mark the enclosed forward calls as draw ``draw`` of the layer's randomness.

    A layer whose global RNG the harness reseeds before every forward (a dropout layer, with
    ``reseed_global_rng``) draws the same mask at every point, so a backward that keeps the
    mask of its first forward is right at every point too. The fresh-cache check runs its
    other point as another draw: a wrapper that reseeds takes the seed of draw ``k`` there
    (:func:`current_draw`), the same at every point of that estimate."""
    token = _draw.set(draw)
    try:
        yield
    finally:
        _draw.reset(token)


def current_draw() -> int:
    """The draw of the layer's randomness the calls in progress are (0 outside
    :func:`another_draw`)."""
    return _draw.get()


# After its first stacked call of a size, one stacked call in this many is spot-checked.
SPOT_CHECK_EVERY = 8


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
    """``layer.params`` as a dict (any mapping: a dict, a ``MappingProxyType``, a
    ``UserDict``), without entries that are ``None``; else empty."""
    params = getattr(layer, "params", None)
    if not isinstance(params, Mapping):
        return {}
    # None is a parameter left out (a layer built without its bias), not one to check.
    return {k: v for k, v in params.items() if v is not None}


def slices_agree(together: Array, alone: Array) -> bool:
    """Whether a slice of a stacked forward (``together``) is the separate forward ``alone``.

    Loose on purpose, 1e-9 of the outputs' own size: batched and single LAPACK calls may round
    differently, while a layer that mixes the stacked batches differs by far more. Relative to
    the outputs, never to 1: outputs of size 1e-6 mixed at 1e-9 are mixed at 1e-3 of their size.
    """
    if together.shape != alone.shape:
        return False
    scale = max(
        float(np.max(np.abs(alone), initial=0.0)), float(np.max(np.abs(together), initial=0.0))
    )
    with np.errstate(invalid="ignore", over="ignore"):
        gap = float(np.max(np.abs(together - alone), initial=0.0))
    # One pass over finite outputs; a NaN or Inf anywhere takes allclose's exact rules.
    if gap <= 1e-9 * scale:
        return True
    return bool(np.allclose(together, alone, rtol=0.0, atol=1e-9 * scale, equal_nan=True))


class LayerObjective:
    """Forward evaluations of ``layer`` at perturbed inputs or parameters.

    ``x`` is the (unperturbed) input and ``target`` the labels of a loss layer. Evaluation points
    are cast to ``dtype`` before the forward call (float64 unless float32 was explicitly allowed)
    and outputs are returned as float64 (or complex128 for the complex step). ``output_shape``
    is the shape of ``forward(x)``; when it is not given it is learnt from the first output.

    Contracts kept for the estimators:

    - every output is *copied* as it is collected, so a forward that reuses one output buffer
      across calls cannot overwrite rows already collected;
    - every point is a private copy, so a forward that writes into its input cannot corrupt
      the base point (the estimators pass ``x[None]``, a view of ``x``, as the centre);
    - an ``Exception`` from the forward at a point gives an all-NaN output row for that point
      and an entry ``(position of the point within the call, "ValueError: message")`` in
      :attr:`point_failures` (if a stacked call raised, its points are evaluated one by one).
      ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException`` propagate;
    - a parameter is perturbed *in place* (the values are written into the array itself and
      restored bitwise afterwards), so a forward that reads its own reference to the array
      (``self.W`` where ``params["W"] is self.W``) sees the perturbation. Arrays that cannot
      take the values (read-only, a narrower dtype) and complex-step points are perturbed by
      rebinding ``params[key]``; see :meth:`in_place_obstacle`.
    """

    def __init__(
        self,
        layer: Any,
        x: Array,
        target: Optional[Array],
        dtype: np.dtype,
        output_shape: Optional[Tuple[int, ...]] = None,
    ) -> None:
        self.layer = layer
        self.x = x
        self.target = target
        self.dtype = dtype
        self.is_loss = is_loss_layer(layer)
        self.batched = bool(getattr(layer, "supports_batch", False))
        self.output_shape = None if output_shape is None else tuple(output_shape)
        # Appended to on every failing point, never cleared here: callers read (and may clear) it.
        self.point_failures: List[Tuple[int, str]] = []
        # How a stacked forward of the estimate broke the declared batch support, if it did.
        self.batch_mismatch: Optional[str] = None
        # Stack sizes whose stacked forward a slice alone has confirmed, and stacked calls made.
        self._confirmed_sizes: Set[int] = set()
        self._stacked_calls = 0

    def forward(self, x: Array) -> Any:
        if self.is_loss:
            return self.layer.forward(x, self.target)
        return self.layer.forward(x)

    def _cast(self, points: Array) -> Array:
        # Always a copy: see the class docstring.
        if np.iscomplexobj(points):
            return np.array(points, copy=True)
        return np.array(points, dtype=self.dtype, copy=True)

    def _as_output(self, y: Any) -> Array:
        arr = np.asarray(y)
        # Always a copy: a reused output buffer would otherwise change under rows collected.
        return np.array(arr, dtype=np.complex128 if np.iscomplexobj(arr) else np.float64)

    def _fits(self, y: Array, n_points: int) -> bool:
        """Whether ``y`` is a stack of ``n_points`` outputs of the expected shape."""
        if y.shape[:1] != (n_points,):
            return False
        return self.output_shape is None or y.shape[1:] == self.output_shape

    def _pointwise(self, points: Array, evaluate: Callable[[Array], Any]) -> Array:
        """``evaluate`` at each point, an all-NaN row where it raises or returns a wrong shape."""
        rows: List[Optional[Array]] = []
        for i, p in enumerate(points):
            try:
                y = self._as_output(evaluate(p))
            except Exception as exc:
                self.point_failures.append((i, f"{type(exc).__name__}: {exc}"))
                rows.append(None)
                continue
            if self.output_shape is None:
                self.output_shape = y.shape
            if y.shape != self.output_shape:
                self.point_failures.append(
                    (i, f"forward returned shape {y.shape}; expected {self.output_shape}")
                )
                rows.append(None)
                continue
            rows.append(y)
        good = [r for r in rows if r is not None]
        if len(good) == len(rows):
            return np.stack(good) if good else np.empty((0, *(self.output_shape or ())))
        if good:
            dtype = np.result_type(*good)
        else:
            dtype = np.dtype(np.complex128 if np.iscomplexobj(points) else np.float64)
        out = np.full((len(rows), *self._row_shape()), np.nan, dtype=dtype)
        for i, r in enumerate(rows):
            if r is not None:
                out[i] = r
        return out

    def _row_shape(self) -> Tuple[int, ...]:
        if self.output_shape is None:
            # Every point failed and nobody said what forward(x) returns: ask the layer once.
            self.output_shape = self._as_output(self.forward(self._cast(self.x))).shape
        return self.output_shape

    def outputs_x(self, points: Array) -> Array:
        """Outputs at a stack of inputs ``(B, *x.shape)``."""
        points = self._cast(points)
        if self.batched:
            try:
                y = self._as_output(self.forward(points))
            except Exception:
                # A point outside the layer's domain, or a batch support that does not hold:
                # point by point tells which, and only the points that raise become NaN rows.
                failures = len(self.point_failures)
                out = self._pointwise(points, self.forward)
                if len(self.point_failures) == failures:
                    self.batched = False
                return out
            if self._fits(y, points.shape[0]) and self._slice_holds(points, y):
                return y
            # A declared batch support that does not hold: fall back rather than mis-evaluate.
            self.batched = False
        return self._pointwise(points, self.forward)

    def _slice_holds(self, points: Array, y: Array) -> bool:
        """Whether the middle slice of a stacked forward ``y`` of ``points`` is the separate
        forward of that point (one forward more per stacked call checked: the first of each
        stack size, then one in ``SPOT_CHECK_EVERY``).

        The batch-support probe runs on a stack of three, and a layer may take another path for
        the larger stacks of the estimate (statistics pooled over the whole stack): the stencil
        points of symmetric differences then share the statistics of ``x``, whose derivative is
        a backward that forgets them. Where the slice differs, ``batch_mismatch`` says how and
        the stack is evaluated point by point.
        """
        n = points.shape[0]
        if n < 2:
            return True
        self._stacked_calls += 1
        # A layer that takes another path for larger stacks does so at a size first seen: every
        # new size is spot-checked, and then one stacked call in SPOT_CHECK_EVERY.
        if n in self._confirmed_sizes and self._stacked_calls % SPOT_CHECK_EVERY:
            return True
        i = n // 2
        try:
            alone = self._as_output(self.forward(self._cast(points[i])))
        except Exception:
            return True  # a point outside the domain: its row is the stacked one's problem
        if slices_agree(y[i], alone):
            self._confirmed_sizes.add(n)
            return True
        self.batch_mismatch = (
            f"a stacked forward of {n} points differed from the separate forward of its slice "
            f"{i} by {float(np.max(np.abs(y[i] - alone))):.3g} (outputs of size "
            f"{float(np.max(np.abs(alone), initial=0.0)):.3g})"
        )
        return False

    def in_place_obstacle(self, key: str) -> Optional[str]:
        """Why ``params[key]`` cannot be perturbed in place by real points, or ``None``."""
        arr = layer_params(self.layer).get(key)
        if not isinstance(arr, np.ndarray):
            return f"is a {type(arr).__name__}, not a NumPy array"
        if not arr.flags.writeable:
            return "is a read-only array"
        if not np.can_cast(self.dtype, arr.dtype, casting="safe"):
            return (
                f"is a {arr.dtype} array, which cannot hold {np.dtype(self.dtype)} values exactly"
            )
        return None

    def outputs_param(self, key: str) -> Callable[[Array], Array]:
        """Outputs at a stack of values ``(B, *params[key].shape)`` of one parameter."""

        def outputs(points: Array) -> Array:
            params = self.layer.params
            original = params[key]
            points = self._cast(points)
            in_place = not np.iscomplexobj(points) and self.in_place_obstacle(key) is None
            saved = np.array(original, copy=True) if in_place else None

            def at(p: Array) -> Any:
                if in_place:
                    original[...] = p
                else:
                    params[key] = p
                return self.forward(self._cast(self.x))

            try:
                return self._pointwise(points, at)
            finally:
                if in_place:
                    original[...] = saved
                else:
                    params[key] = original

        return outputs

    def outputs_jointly(self, keys: Sequence[str]) -> Callable[[Array], Array]:
        """Outputs at a stack ``(B, n)`` of flat points: each the input (its first ``x.size``
        entries, in the shape of ``x``) followed by the parameters ``keys`` flattened in that
        order, written in place into the arrays the layer holds (every key must be perturbable
        in place: :meth:`in_place_obstacle` is ``None``) and restored bitwise afterwards."""
        params = layer_params(self.layer)
        arrays = [params[key] for key in keys]
        bounds = np.cumsum([self.x.size, *(a.size for a in arrays)])

        def outputs(points: Array) -> Array:
            points = np.asarray(points, dtype=np.float64)
            saved = [np.array(a, copy=True) for a in arrays]

            def at(p: Array) -> Any:
                parts = np.split(p, bounds[:-1])
                for a, part in zip(arrays, parts[1:]):
                    a[...] = part.reshape(a.shape)
                return self.forward(self._cast(parts[0].reshape(self.x.shape)))

            try:
                return self._pointwise(points, at)
            finally:
                for a, before in zip(arrays, saved):
                    a[...] = before

        return outputs

    def batch_support_holds(
        self, probe: Array, y: Array, known: Optional[Sequence[Optional[Array]]] = None
    ) -> bool:
        """Whether a stacked forward of ``[x, *probes]`` gives, in every slice, the separate
        forward of that slice (``y = forward(x)`` for the first).

        ``probe`` is one input of the shape of ``x`` or a stack ``(k, *x.shape)`` of them, all
        distinct from ``x``; ``known[i]``, where given, is the separate forward of probe ``i``
        already computed (the others are computed here). A layer that declares
        ``supports_batch`` but mixes the stacked batches (statistics over the whole stack, or
        the first slice's statistics applied to every slice) gets some slice wrong, and would
        otherwise make every batched estimate silently wrong. A probe that raises counts as a
        broken batch support: one input at a time is always right.
        """
        if not self.batched:
            return False
        probes = probe[None] if np.shape(probe) == np.shape(self.x) else probe
        given = list(known) if known is not None else []
        given += [None] * (len(probes) - len(given))
        stack = np.concatenate([np.asarray(self.x)[None], probes])
        try:
            stacked = self._as_output(self.forward(self._cast(stack)))
            separate = [np.asarray(y)] + [
                self._as_output(self.forward(self._cast(p))) if g is None else np.asarray(g)
                for p, g in zip(probes, given)
            ]
        except Exception:
            return False
        if stacked.shape != (len(stack), *np.shape(y)):
            return False
        return all(slices_agree(t, a) for t, a in zip(stacked, separate))

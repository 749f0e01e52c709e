"""The contracts of one check: the calls into the layer and what the layer must keep.

:class:`LayerCalls` owns the layer for the length of one :func:`gradcheck.check_layer` call:
it runs the forward and the backward, validates what they return (:class:`Abort` with an
``error`` finding for ``None``, a wrong shape or dtype, NaN or Inf) and records every contract
the layer breaks as a :class:`~gradcheck.result.Finding`: arguments or parameters mutated in
place (named with the call that did it), a backward that is not repeatable, uses a stale cache
or is not linear in ``dy``, a declared ``supports_batch`` that does not hold, parameters the
estimate cannot perturb in place. The estimation (:mod:`gradcheck.check`) reads what it
established: the upstream gradient, the validated gradients, the backward's own rounding.

Tier 1: below :mod:`gradcheck.check`, which uses it.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import numpy as np

from .compare import compare, default_rtol, magnitude_bands
from .finite_diff import base_step, directional_derivatives, typical_scale
from .objective import LayerObjective, another_draw, is_loss_layer, layer_name, layer_params
from .options import CheckOptions
from .result import Finding
from .spectra import spectrum_summary
from .streams import (
    PURPOSE_BATCH_PROBE,
    PURPOSE_DY,
    PURPOSE_DY2,
    PURPOSE_FRESH_CACHE,
    PURPOSE_PARAM_REACH,
    PURPOSE_STALE_CACHE,
    harness_rng,
)

Array = np.ndarray


class Abort(Exception):
    """Raised inside a check when a finding makes further checking meaningless."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def call_layer(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call into the layer; an exception becomes an error finding naming what was called.

    ``SystemExit`` (a layer calling ``sys.exit()``) is one of them: it ends the check, not the
    caller's process. ``KeyboardInterrupt`` (and the runner's timeout, another
    ``BaseException``) still reach the caller.
    """
    try:
        return fn(*args)
    except (Exception, SystemExit) as exc:
        raise Abort(
            Finding(f"{what}-raised", "error", f"{what} raised {type(exc).__name__}: {exc}")
        ) from exc


def nonfinite_index(a: Array) -> Optional[Tuple[int, ...]]:
    """The index of the first entry of ``a`` that is NaN or infinite, or ``None``."""
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))


def _require_array(what: str, value: Any, shape: Tuple[int, ...]) -> Array:
    """Validate what a backward returned: not None, numeric, of ``shape``, finite."""
    if value is None:
        raise Abort(
            Finding(
                f"{what}-none", "error", f"{what} returned None; expected an array of shape {shape}"
            )
        )
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.floating)):
        raise Abort(
            Finding(
                f"{what}-dtype",
                "error",
                f"{what} returned dtype {arr.dtype}; expected floating point",
            )
        )
    if arr.shape != tuple(shape):
        raise Abort(
            Finding(
                f"{what}-shape",
                "error",
                f"{what} returned shape {arr.shape}; expected {tuple(shape)}",
            )
        )
    idx = nonfinite_index(arr)
    if idx is not None:
        raise Abort(
            Finding(f"{what}-nonfinite", "error", f"{what} contains {arr[idx]} at index {idx}")
        )
    return np.array(arr, dtype=np.float64)


def _dtype_problem(returned: np.dtype, expected: np.dtype) -> bool:
    """Whether a gradient of dtype ``returned`` breaks the contract of a check in ``expected``.

    A float64 check expects float64 exactly: anything narrower has lost the digits the
    comparison needs. A float32 check (``allow_float32``) also takes float64, which is what a
    float32 layer returns for the harness's float64 ``dy``.
    """
    if returned == expected:
        return False
    return not (expected == np.float32 and returned == np.float64)


def _same(a: Array, b: Array) -> bool:
    """Equal up to the rounding of a deterministic recomputation."""
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-300))


def _changed(before: Array, after: Any) -> Optional[float]:
    """The largest change of an array that should not have changed, or ``None``."""
    if (
        isinstance(after, np.ndarray)
        and after.dtype == before.dtype
        and after.shape == before.shape
        and after.tobytes() == before.tobytes()
    ):
        # The common case, and the cheap test: this runs after every call into the layer.
        return None
    after = np.asarray(after)
    if after.shape != before.shape:
        return float("inf")
    if np.array_equal(before, after, equal_nan=True):
        return None
    return float(np.max(np.abs(after.astype(np.float64) - before.astype(np.float64))))


def _spectrum_stats(layer: Any) -> Optional[Dict[str, float]]:
    """Condition number and smallest eigenvalue gap of a whitening layer's covariance."""
    spectrum = getattr(layer, "spectrum", None)
    if not callable(spectrum):
        return None
    try:
        return spectrum_summary(spectrum())
    except Exception:
        return None


#: The linearity check's scalings of dy, ``2^20`` and ``2^-20``: far outside the size of any
#: draw, exact in floating point.
HOMOGENEITY_FACTOR = 2.0**20


def _repeats(y_again: Array, y: Array) -> bool:
    """Whether a second forward's output is the first's up to rounding: 1e-12 of each entry, or
    of the largest entry (a summation whose order varies, as threaded or atomic reductions do,
    changes an output that is near zero by ulps of the terms it sums, not of itself)."""
    scale = float(np.max(np.abs(y), initial=0.0))
    return bool(np.allclose(y_again, y, rtol=1e-12, atol=1e-12 * scale))


# The scalings c of dy under which a linear backward's result scales exactly: c as findings
# name it, and the backward call's label.
EXACT_SCALINGS: Dict[float, Tuple[str, str]] = {
    HOMOGENEITY_FACTOR: ("2^20", "2^20 dy"),
    1.0 / HOMOGENEITY_FACTOR: ("2^-20", "2^-20 dy"),
    -1.0: ("-1", "-dy"),
}


def _strided_copy(value: Array) -> Array:
    """A copy of ``value`` in non-contiguous memory: every other entry along the last axis of a
    zeroed buffer twice as long, as a slice of a larger array in a network is (the backward of
    a split or a transpose hands such views on). A 0-d array is copied as it is."""
    value = np.asarray(value)
    if value.ndim == 0:
        return np.array(value, copy=True)
    buffer = np.zeros((*value.shape[:-1], 2 * value.shape[-1]), dtype=value.dtype)
    view = buffer[..., ::2]
    view[...] = value
    return view


def _nearby_value(value: Array, z: Array) -> Array:
    """``value`` with each entry times ``1 + 1e-3 z`` (sign-preserving), or ``1e-3 z`` where
    ``value`` is all zero."""
    return value * (1.0 + 1e-3 * z) if np.any(value) else 1e-3 * z


def _scales_exactly(factor: float, *arrays: Array) -> bool:
    """Whether every entry of ``arrays`` times ``factor`` stays a normal float, far from overflow
    and from the subnormals (where a scaling loses bits): only then is ``B(c dy) = c B(dy)``
    a fair test."""
    info = np.finfo(np.float64)
    for a in arrays:
        mag = np.abs(np.asarray(a, dtype=np.float64))
        nonzero = mag[mag > 0]
        if not nonzero.size:
            continue
        if float(np.max(nonzero)) * abs(factor) > info.max / 2.0**20:
            return False
        if float(np.min(nonzero)) * abs(factor) < info.tiny * 2.0**60:
            return False
    return True


def _inexact_scaling(
    g: Array, scaled: Dict[float, Dict[str, Array]], key: str, rtol: float, limit: float
) -> Optional[str]:
    """Where ``B(c dy)`` is not ``c B(dy)`` for one of the exact scalings in ``scaled``: the
    factor and the worst entry, or None.

    Each factor is a power of two or -1, so a linear backward's rounding scales with it bit for
    bit: every entry is held to ``rtol`` of its own size (plus ``rtol`` of a typical entry), not
    only to ``limit``, a share of the largest entry, within which a branch on the sign of dy in
    entries of 1 beside an entry of 1e8 went unseen.
    """
    mag = np.abs(g)
    nonzero = mag[mag > 0]
    typical = float(np.median(nonzero)) if nonzero.size else 0.0
    for factor, grads in scaled.items():
        deviation = np.abs(grads[key] - factor * g)
        own = abs(factor) * rtol * (mag + typical)
        over = deviation > np.minimum(own, abs(factor) * limit)
        if np.any(over):
            worst = np.unravel_index(int(np.argmax(np.where(over, deviation, -1.0))), g.shape)
            at = ", ".join(str(int(i)) for i in worst)
            return (
                f"{EXACT_SCALINGS[factor][0]} (at {key}[{at}], where backward(dy) is "
                f"{float(g[worst]):.3g}: off by {float(deviation[worst]) / abs(factor):.3g})"
            )
    return None


#: The least relative disagreement at ``x''`` that the fresh-cache check claims (a cache of
#: an earlier forward is off by about the 1e-3 that x'' moved, or by the rolled rows' O(1)).
FRESH_MARGIN = 1e-5

#: The stencils of the fresh-cache check's estimate, the cheapest first; a fail at x'' must be
#: confirmed by two.
FRESH_METHODS = ("central", "five-point", "richardson")

#: The fewest entries whose rounding is pooled together (:func:`_pooled_rounding`).
POOL_MIN = 16

#: The draw of a layer's randomness at the fresh-cache check's point x''
#: (:func:`~gradcheck.objective.another_draw`): another mask than at x, where a wrapper reseeds.
FRESH_DRAW = 1

#: How far the step check moves a parameter of zeros: this share of the outputs' largest entry.
ZERO_STEP_SHARE = 0.5

#: How far the step check moves each parameter along its own gradient: this share of its
#: largest entry (of 1 where it is all zeros), as one generous optimizer step does.
STEP_SHARE = 0.1


def _pooled_rounding(spread: Array, magnitude: Array) -> Array:
    """Per entry, twice the 90th percentile of ``spread`` (a backward's rounding, one draw per
    entry) over the entries of about its ``magnitude``, so that an entry whose draw was small
    by chance is not trusted more than its like.

    Pooled within bands a factor ``BAND_RATIO`` wide (:func:`~gradcheck.compare.magnitude_bands`,
    merged upwards until a group holds ``POOL_MIN`` entries, each band's draws then taken
    relative to its largest entry), never over the whole argument: the ordinary rounding of
    entries 1e12 times larger than the rest would otherwise be every small entry's error bar,
    and hide a linear error of 1e-5 in all of them (or, since such a bar cannot be verified
    below, leave them inconclusive).
    """
    if spread.size == 0:
        return np.zeros(spread.shape)
    flat, out = spread.ravel(), np.empty(spread.size)
    mag = np.abs(np.ravel(magnitude))
    # Each band's largest entry: a group merged from several bands pools its rounding relative
    # to it, so that the rounding of a few entries of 1e8 is not the bar of entries of 1.
    size = np.ones(spread.size)
    groups: List[Array] = []
    pending: List[Array] = []
    for band in magnitude_bands(mag, below_median=True):
        top = float(np.max(mag[band], initial=0.0))
        size[band] = top if np.isfinite(top) and top > 0 else 1.0
        pending.append(band)
        if sum(b.size for b in pending) >= POOL_MIN:
            groups.append(np.concatenate(pending))
            pending = []
    if pending:
        # Too few to pool alone: with the band below, if there is one.
        rest = np.concatenate(pending)
        groups = [*groups[:-1], np.concatenate([groups[-1], rest])] if groups else [rest]
    for group in groups:
        out[group] = 2.0 * float(np.quantile(flat[group] / size[group], 0.9)) * size[group]
    return out.reshape(spread.shape)


def _public_attributes(obj: Any) -> Dict[str, Any]:
    """``obj``'s attributes not starting with ``_``, through ``dir()`` (a proxy around a layer,
    the runner's, shows its layer's); a property that raises is left out."""
    held: Dict[str, Any] = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue  # private state (an adapter's, a cache) is no user parameter
        try:
            held[name] = getattr(obj, name)
        except Exception:
            continue
    return held


def _float_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating) and v.size > 0


def _unnamed_params(layer: Any, cached: Tuple[Any, ...], depth: int = 1) -> Dict[str, Array]:
    """What look like parameters of ``layer`` held outside ``layer.params``, by dotted name:
    arrays with a gradient of their shape beside them (``W`` and ``dW``, ``grad_W``, ``gradW``,
    ``W_grad``), the entries of two dicts of arrays under the same names (``weights`` and
    ``gradients``), and the same in sub-layers (attributes, or lists of them, with a forward and
    a backward) down to ``depth`` levels. Arrays equal to one of ``cached`` (the input and
    output, kept beside ``dx``) are left out."""
    held = _public_attributes(layer)
    arrays = {k: v for k, v in held.items() if _float_array(v)}
    found: Dict[str, Array] = {}
    for k, v in arrays.items():
        twins = (f"d{k}", f"d_{k}", f"grad_{k}", f"grad{k}", f"{k}_grad")
        if any(t in arrays and arrays[t].shape == v.shape for t in twins) and not _equal_to_any(
            v, cached
        ):
            found[k] = v
    tables = {
        k: v
        for k, v in held.items()
        if isinstance(v, Mapping) and v and all(_float_array(a) for a in v.values())
    }
    for k, v in tables.items():
        twin = any(
            other not in (k, "grads")
            and set(v) == set(t)
            and all(np.shape(t[n]) == np.shape(v[n]) for n in v)
            and not all(t[n] is v[n] for n in v)
            for other, t in tables.items()
        )
        if twin and k != "grads":
            found.update({f"{k}[{n!r}]": a for n, a in v.items()})
    if depth > 0:
        for k, v in held.items():
            subs = list(enumerate(v)) if isinstance(v, (list, tuple)) else [(None, v)]
            for i, sub in subs:
                if sub is layer or not (
                    callable(getattr(sub, "forward", None))
                    and callable(getattr(sub, "backward", None))
                ):
                    continue
                name = k if i is None else f"{k}[{i}]"
                own = getattr(sub, "params", None)
                if isinstance(own, Mapping):
                    # A sub-layer's own params, which the layer does not expose: unchecked.
                    found.update(
                        {f"{name}.params[{n!r}]": a for n, a in own.items() if _float_array(a)}
                    )
                for inner, a in _unnamed_params(sub, cached, depth - 1).items():
                    found[f"{name}.{inner}"] = a
    return found


def _special_value(a: Array) -> bool:
    """Whether ``a`` has the structure of an initialisation that hides errors: every entry
    equal (zeros, ones, a scalar), or a square matrix equal to its transpose (an identity, a
    diagonal, a symmetric one: it hides a missing transpose)."""
    flat = np.ravel(a)
    if flat.size and np.all(flat == flat[0]):
        return True
    return bool(a.ndim == 2 and a.shape[0] == a.shape[1] > 1 and np.array_equal(a, a.T))


def _power_of_two_scale(dy: Array) -> float:
    """The power of two nearest the root mean square of ``dy`` (1 for a dy of zeros, or of
    about unit size, as the default is): the linearity check's ``dy2`` is drawn on the scale of
    ``dy``, so that the rounding it measures is that of gradients of the size checked (a dy of
    1e-7 would otherwise be held to the rounding of gradients 1e7 times larger)."""
    top = float(np.max(np.abs(dy), initial=0.0))
    if not np.isfinite(top) or top <= 0.0:
        return 1.0
    rms = top * float(np.sqrt(np.mean(np.square(np.abs(dy) / top))))
    return float(2.0 ** np.round(np.log2(rms)))


def _equal_to_any(a: Array, others: Tuple[Any, ...]) -> bool:
    """Whether ``a`` has the shape and values of one of ``others``."""
    return any(np.shape(o) == a.shape and np.array_equal(a, np.asarray(o)) for o in others)


def _rolled(a: Array) -> Array:
    """``a`` with its rows (its first axis; the last one for a single row) rolled by one."""
    axes = [i for i in range(a.ndim) if a.shape[i] > 1]
    if not axes:
        return np.array(a, copy=True)
    return np.roll(a, 1, axis=0 if 0 in axes else axes[-1])


def _entry_scales(a: Array) -> Array:
    """``|a_i|`` per entry, flat: an entry at 0 (a kink's place, for a ReLU) is not moved, but
    where every entry is 0 each is moved on the scale 1."""
    flat = np.abs(np.ravel(a))
    return flat if np.any(flat > 0) else np.ones_like(flat)


def _rolled_with_rows(target: Array, n: int) -> Array:
    """A target rolled with the ``n`` rows of its input: every axis of length ``n`` rolled by
    one (labels ``(n,)``, one-hot rows ``(n, C)``, and a pairwise target ``(n, n)`` such as a
    kernel or a distance matrix as ``P T P^T``, which keeps it symmetric)."""
    out = np.array(target, copy=True)
    for axis in range(out.ndim):
        if out.shape[axis] == n and n > 1:
            out = np.roll(out, 1, axis=axis)
    return out


def _same_entries(a: Array, b: Array) -> Optional[Array]:
    """Where ``b`` is a view of all of ``a``'s entries and nothing else (``a`` itself, ``a.T``,
    ``a[::-1]``), the flat index into ``a`` of each of ``b``'s entries in order; else ``None``."""
    if a.size != b.size or a.dtype != b.dtype:
        return None
    at_a, at_b = _entry_addresses(a), _entry_addresses(b)
    order = np.argsort(at_a, kind="stable")
    found = np.searchsorted(at_a[order], at_b)
    if np.any(found >= a.size) or np.unique(at_a).size != a.size:
        return None
    index = order[found]
    return index if np.array_equal(at_a[index], at_b) else None


def _entry_addresses(a: Array) -> Array:
    """The memory address of each entry of ``a``, in flat (C) order."""
    start = int(a.__array_interface__["data"][0])
    if a.ndim == 0:
        return np.array([start], dtype=np.int64)
    grid = np.indices(a.shape).reshape(a.ndim, -1).astype(np.int64)
    return start + (grid * np.array(a.strides, dtype=np.int64)[:, None]).sum(axis=0)


@dataclass
class FreshProbe:
    """Where the fresh-cache check ran the layer: input ``point`` (``x''``), ``target`` (a loss
    layer's), the parameters ``moved`` to nearby values (by key), how the point was made
    (``described``), and the gradients of the backward right after that forward (``after``)."""

    point: Array
    target: Any
    moved: Dict[str, Array]
    described: str
    after: Dict[str, Array]
    #: Parameters that cannot be written in place, moved by rebinding ``params[key]``.
    rebound: Dict[str, Array]
    #: ``"fresh"`` (x'' and nearby parameters: :meth:`LayerCalls.fresh_probes`), ``"step"``
    #: (x, the parameters after one gradient step: :meth:`LayerCalls.step_probe`) or ``"dy"``
    #: (x as it is, another upstream gradient: :meth:`LayerCalls.check_other_dy`).
    kind: str = "fresh"
    #: The upstream gradient ``after`` is for, where it is not the check's own ``dy``.
    dy: Optional[Array] = None
    #: The draw of the layer's randomness at ``point`` (:func:`~gradcheck.objective.another_draw`).
    draw: int = 0


class LayerCalls:
    """The calls of one check into ``layer`` at input ``x`` (its dtype ``options.dtype``), and
    the findings of every contract they break, in ``findings``.

    :meth:`run_analytic` runs the first forward and backward and the contract checks that need
    nothing numeric; it leaves the forward output ``y``, the upstream gradient ``dy`` (given, or
    drawn from the harness's stream for ``seed``), the parameters checked (``params``,
    ``param_keys``) and, per argument, the backward's own rounding (``backward_noise``).
    """

    def __init__(
        self,
        layer: Any,
        x: Array,
        options: CheckOptions,
        *,
        dy: Optional[Array],
        target: Optional[Array],
        seed: int,
    ) -> None:
        self.layer = layer
        self.x = x
        self.dy_given = dy
        self.target = target
        self.seed = seed
        self.dtype = np.dtype(options.dtype)
        self.rtol = default_rtol(self.dtype) if options.rtol is None else float(options.rtol)
        self.check_params = options.check_params
        self.is_loss = is_loss_layer(layer)
        self.name = layer_name(layer)
        self.findings: List[Finding] = []
        # Per argument, the backward's own rounding as the linearity check measured it.
        self.backward_noise: Dict[str, Array] = {}
        self.spectrum: Optional[Dict[str, float]] = None

    # -- running the layer -------------------------------------------------------------------
    #
    # Every array handed to the layer is a private copy, kept in ``self.watched`` beside a copy
    # of its value for as long as the layer holds it (or a view of it), and every parameter has
    # a reference copy in ``self.params_ref``: after each call into the layer all of them are
    # compared (``check_arguments``), so a mutation is named with the call that made it,
    # whichever call that is. Parameters are restored at once, so
    # that later calls and the estimate run at the values the gradients were computed at.

    def watch(self, name: str, value: Array, strided: bool = False) -> Array:
        """A private copy of ``value`` to hand to the layer, compared after every later call;
        with ``strided``, in non-contiguous memory (:func:`_strided_copy`)."""
        arg = _strided_copy(value) if strided else np.array(value, copy=True)
        self.watched.append((name, weakref.ref(arg), value.copy()))
        # Held until the call's own check_arguments, even if the layer keeps no reference.
        self.handed.append(arg)
        return arg

    def forward(self, x: Optional[Array] = None, call: str = "forward", target: Any = None) -> Any:
        """The layer's forward on a copy of ``x`` (default: the checked input; a loss layer's
        target: the checked one), then :meth:`check_arguments`; returns a copy of the output."""
        arg = self.watch("x" if x is None else "x'", self.x if x is None else x)
        if self.is_loss:
            labels = self.target if target is None else target
            out = call_layer("forward", self.layer.forward, arg, labels)
        else:
            out = call_layer("forward", self.layer.forward, arg)
        # A copy, so that nothing done to the layer's arrays later can change this output.
        out = np.array(out, copy=True) if isinstance(out, np.ndarray) else out
        self.check_arguments(call)
        return out

    def backward(self, dy: Array, strided: bool = False) -> Any:
        if self.is_loss:
            return call_layer("backward", self.layer.backward)
        return call_layer("backward", self.layer.backward, self.watch("dy", dy, strided))

    def gradients(
        self, dy: Array, call: str = "backward", strided: bool = False
    ) -> Dict[str, Array]:
        """Run backward (on ``dy`` in non-contiguous memory with ``strided``) and collect the
        validated gradients (float64 copies) of the input and the parameters, then
        :meth:`check_arguments`."""
        dx = self.backward(dy, strided)
        grads = {"x": self.gradient("backward", "x", dx, self.x.shape)}
        layer_grads = getattr(self.layer, "grads", None) or {}
        self.note_unmatched(layer_grads)
        for key in self.param_keys:
            if key not in layer_grads:
                raise Abort(
                    Finding("param-grad-missing", "error", f"backward did not fill grads[{key!r}]")
                )
            grads[key] = self.gradient(
                f"grads[{key!r}]", f"grads[{key!r}]", layer_grads[key], np.shape(self.params[key])
            )
        self.check_arguments(call)
        self.last_grads = grads
        return grads

    def note_unmatched(self, layer_grads: Any) -> None:
        """A warning, once, for gradients in ``layer.grads`` under keys ``layer.params`` does not
        have: they are checked against nothing, and an optimizer stepping ``layer.params`` never
        applies them (a bias the forward reads from an attribute that ``params`` lacks)."""
        noted = ("grads-unmatched", "") in self.noted
        if noted or not self.check_params or not isinstance(layer_grads, Mapping):
            return
        held = getattr(self.layer, "params", None)
        # A gradient under a key the layer left None (no bias) is not a stray one.
        left_out = {k for k, v in held.items() if v is None} if isinstance(held, Mapping) else set()
        stray = sorted(str(k) for k in layer_grads if k not in self.params and k not in left_out)
        if stray:
            self.noted.add(("grads-unmatched", ""))
            names = ", ".join(f"grads[{k!r}]" for k in stray)
            self.findings.append(
                Finding(
                    "grads-unmatched",
                    "warning",
                    f"backward filled {names}, which layer.params does not hold: not checked, "
                    "and an optimizer stepping layer.params would never apply it; put the array "
                    "the forward reads in layer.params under that key",
                )
            )

    def gradient(self, what: str, name: str, value: Any, shape: Tuple[int, ...]) -> Array:
        """One validated gradient as float64; a narrower dtype than the check's is a finding.

        A parameter's gradient of another shape that an in-place update broadcasts onto the
        parameter without growing it (``(D,)`` for a bias held as ``(1, D)``) is taken, reshaped,
        with a warning: ``b -= lr * g`` does the same for both. ``dx`` must have ``x``'s shape.
        """
        if name != "x":
            value = self.broadcast_onto(name, value, shape)
        arr = _require_array(what, value, shape)
        returned = np.asarray(value).dtype
        if _dtype_problem(returned, self.dtype):
            self.note_once(
                "backward-dtype",
                name,
                f"backward returned {returned} for {name}; expected {np.dtype(self.dtype)}",
            )
        return arr

    def broadcast_onto(self, name: str, value: Any, shape: Tuple[int, ...]) -> Any:
        """``value`` reshaped to ``shape`` where it has as many entries and broadcasts onto it
        (so an in-place update of the parameter by it works), with a warning once; else as it
        came. ``(D, 1)`` for ``(1, D)`` would broadcast to ``(D, D)``: left to be an error."""
        arr = value if isinstance(value, np.ndarray) else None
        if arr is None or arr.shape == tuple(shape) or arr.size != int(np.prod(shape)):
            return value
        try:
            fits = np.broadcast_shapes(tuple(shape), arr.shape) == tuple(shape)
        except ValueError:
            fits = False
        if not fits:
            return value
        self.note_once(
            "grad-shape-broadcast",
            name,
            f"backward returned shape {arr.shape} for {name}, whose parameter has shape "
            f"{tuple(shape)}: checked as reshaped to it, since an in-place update "
            f"broadcasts it the same way; returning shape {tuple(shape)} is safer "
            "(an optimizer that is not in place would change the parameter's shape)",
            severity="warning",
        )
        return arr.reshape(shape)

    def note_once(self, code: str, subject: str, message: str, severity: str = "fail") -> None:
        """A finding (a ``fail`` unless said), once per (code, subject): the first call that
        broke it is named."""
        if (code, subject) not in self.noted:
            self.noted.add((code, subject))
            self.findings.append(Finding(code, severity, message))

    def check_arguments(self, call: str) -> None:
        """Compare every array handed to the layer so far, and its parameters, with their
        copies; name ``call`` for each change found, and put the parameters back."""
        describe = {
            "x": "its input x",
            "x'": "its input (the nearby input x' of the stale-cache check)",
            "dy": "its argument dy",
        }
        # An array the layer no longer holds (nor a view of it) can change no more: its entry
        # goes, so that a check does not keep two copies of every input it ever handed over.
        still_held = []
        for name, ref, before in self.watched:
            arg = ref()
            if arg is None:
                continue
            still_held.append((name, ref, before))
            if (change := _changed(before, arg)) is not None:
                self.note_once(
                    "dy-mutated" if name == "dy" else "input-mutated",
                    name,
                    f"{call} modified {describe[name]} in place (max change {change:.3g})",
                )
        self.watched[:] = still_held
        self.handed.clear()
        if not self.params_ref:
            return
        current = layer_params(self.layer)
        for key, before in self.params_ref.items():
            value = current.get(key)
            if value is None:
                message = f"{call} removed parameter {key!r}"
            elif (change := _changed(before, value)) is not None:
                message = f"{call} modified parameter {key!r} (max change {change:.3g})"
            else:
                continue
            self.note_once("param-mutated", key, message)
            self.restore_param(key, value)

    def restore_param(self, key: str, current: Any) -> None:
        """Put back the array object the check started with under ``key``, holding its values
        bitwise (a container that refuses is left alone: the finding says enough)."""
        original, before = self.params_original[key], self.params_ref[key]
        try:
            if current is not original:
                self.layer.params[key] = original
            if (
                isinstance(original, np.ndarray)
                and original.flags.writeable
                and original.shape == before.shape
            ):
                original[...] = before
        except Exception:
            pass

    def restore_params(self) -> None:
        current = layer_params(self.layer)
        for key in self.params_ref:
            self.restore_param(key, current.get(key))

    def nearby(self, purpose: int, count: int) -> Array:
        """``count`` inputs ``(count, *x.shape)`` near ``x``, from the harness's stream.

        Each entry is scaled by ``1 + 1e-3 z`` (``z`` standard normal): far enough to change
        every cache and statistic well beyond rounding, and sign-preserving, so a layer with a
        domain such as ``x > 0`` (a log, a square root) stays inside it. An all-zero ``x`` is
        moved by ``1e-3 z`` instead.
        """
        x = np.asarray(self.x, dtype=np.float64)
        z = harness_rng(self.seed, purpose).standard_normal((count, *x.shape))
        return _nearby_value(x, z).astype(self.x.dtype)

    # -- the steps ---------------------------------------------------------------------------

    def run_analytic(self) -> Dict[str, Array]:
        """Forward, backward, and the hygiene checks that need nothing numeric."""
        self.watched: List[Tuple[str, weakref.ReferenceType[Array], Array]] = []
        self.handed: List[Array] = []
        self.noted: Set[Tuple[str, str]] = set()
        self.refuse_unreadable_params()
        before = layer_params(self.layer) if self.check_params else {}
        self.params = before
        self.param_keys = sorted(before)
        self.params_ref = {k: np.array(v, copy=True) for k, v in before.items()}
        self.params_original = dict(before)

        raw = self.forward()
        self.spectrum = call_layer("spectrum", _spectrum_stats, self.layer)
        self.y = self.validate_output(raw)
        self.adopt_params(before)
        self.tie_params()
        self.dy = self.upstream(self.y)
        grads = self.gradients(self.dy)
        self.note_unnamed_params()
        self.check_repeatable(grads)
        if not self.is_loss:
            self.check_linear(grads)
        return grads

    def refuse_unreadable_params(self) -> None:
        """An error for parameters the check cannot name and set one array at a time."""
        if not self.check_params:
            return
        held = getattr(self.layer, "params", None)
        if callable(held) and not isinstance(held, Mapping):
            # A framework's params() method: a layer without parameters returns nothing.
            try:
                returned = held()
            except Exception:
                returned = held
            held = (
                None
                if returned is None
                or (isinstance(returned, (list, tuple, Mapping)) and not returned)
                else held
            )
        empty = isinstance(held, (list, tuple)) and not held
        if held is not None and not empty and not isinstance(held, Mapping):
            # Parameters the check cannot name and set (a list of arrays or of (name, array)
            # pairs, a params() method, a namespace) cannot be matched with their gradients:
            # were they skipped, a wrong parameter gradient would pass unseen.
            arrays = isinstance(held, (list, tuple)) and all(
                isinstance(p, np.ndarray) for p in held
            )
            what = ("a method" if callable(held) else f"a {type(held).__name__}") + (
                " of arrays" if arrays else ""
            )
            raise Abort(
                Finding(
                    "params-not-a-mapping",
                    "error",
                    f"layer.params is {what}; the check reads parameters from a mapping of "
                    "names to arrays (layer.params = {'W': W, ...}, with layer.grads = "
                    "{'W': dW, ...} after backward), so none was checked",
                )
            )
        nested = sorted(
            (str(k), type(v).__name__)
            for k, v in layer_params(self.layer).items()
            if isinstance(v, (Mapping, str, bytes))
            or (
                isinstance(v, (list, tuple))
                and any(isinstance(p, (np.ndarray, Mapping, list, tuple)) for p in v)
            )
        )
        if nested:
            key, kind = nested[0]
            raise Abort(
                Finding(
                    "params-not-a-mapping",
                    "error",
                    f"layer.params[{key!r}] is a {kind}, not an array; the check reads "
                    "one array per name (flatten nested parameters into one mapping: "
                    "layer.params = {'dense.W': W, ...}, layer.grads likewise), so none was "
                    "checked",
                )
            )

    def adopt_params(self, before: Dict[str, Array]) -> None:
        """Read ``layer.params`` again after the first forward, where many layers create them.

        The parameters checked are the ones the layer holds when backward runs. Parameters
        created (or replaced by new arrays) in that forward are an ``info`` finding: the
        check is of them as found after it.
        """
        if not self.check_params:
            return
        self.refuse_unreadable_params()
        after = layer_params(self.layer)
        created = sorted(set(after) - set(before))
        replaced = sorted(k for k in after if k in before and after[k] is not before[k])
        if created or replaced:
            parts = []
            if created:
                parts.append(f"created parameter(s) {', '.join(map(repr, created))}")
            if replaced:
                parts.append(f"replaced parameter array(s) {', '.join(map(repr, replaced))}")
            self.findings.append(
                Finding(
                    "params-created-lazily",
                    "info",
                    f"the first forward {' and '.join(parts)}; layer.params is read after it, "
                    "so these are the parameters checked",
                )
            )
        for key in created + replaced:
            self.params_ref[key] = np.array(after[key], copy=True)
            self.params_original[key] = after[key]
        self.params = after
        self.param_keys = sorted(after)

    def note_unnamed_params(self) -> None:
        """Look, in a layer without ``params``, for what look like parameters held elsewhere
        (:func:`_unnamed_params`: arrays beside their gradients, ``self.W`` and ``self.dW``, in
        the layer or in its sub-layers; twin dicts of arrays), kept in ``unnamed`` for
        :meth:`report_unnamed_params` with their values now."""
        self.unnamed: Dict[str, Array] = {}
        if self.params or not self.check_params:
            return
        found = _unnamed_params(self.layer, (self.x, self.y))
        self.unnamed = {k: np.array(v, copy=True) for k, v in found.items()}

    def report_unnamed_params(self) -> None:
        """The ``params-unnamed`` warning for the arrays of ``unnamed`` that kept their values
        through the forward at another input: a parameter does, while an intermediate stored
        beside its adjoint (``self.xc`` and ``self.dxc``, cs231n style) moves with the input.
        Called right after the fresh-cache check's forward, before the layer is back on x."""
        if not self.unnamed:
            return
        now = _unnamed_params(self.layer, ())
        kept = sorted(
            k
            for k, v in self.unnamed.items()
            if k in now and np.shape(now[k]) == v.shape and np.array_equal(now[k], v)
        )
        if not kept:
            return
        self.findings.append(
            Finding(
                "params-unnamed",
                "warning",
                f"the layer has no layer.params but holds arrays {', '.join(kept)} that no "
                "forward changes, beside gradients of theirs after backward: only the gradient "
                "of the input was checked; to check the parameters' gradients too, expose them "
                "as layer.params = {'W': W, ...} (the arrays the forward reads) and layer.grads "
                "= {'W': dW, ...} after backward",
            )
        )

    def tie_params(self) -> None:
        """Group the parameters that are one array under several keys (``{"enc": W, "dec": W}``).

        The estimate perturbs the array, so the numerical gradient under each key is the
        derivative through all of its uses; what a backward must get right is the sum of its
        gradients over the group, which is what in-place optimizer steps under every key apply
        together (partials under each key, or the total under one and zero under the others).
        So each key of a group is compared with that sum (:meth:`analytic_of`). Parameters that
        overlap in part (one a view of a slice of another) are listed in ``overlapping``: their
        numerical gradients mix entries of both, and their checks are inconclusive.
        """
        self.tied: Dict[str, List[str]] = {}
        # Per tied key, the flat index into its group's first array of each of its entries.
        self.tie_index: Dict[str, Array] = {}
        self.overlapping: Set[str] = set()
        arrays = {k: v for k, v in self.params.items() if isinstance(v, np.ndarray) and v.size > 0}
        keys = sorted(arrays)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                first, second = arrays[a], arrays[b]
                if not np.shares_memory(first, second):
                    continue
                index = _same_entries(first, second)
                if index is None:
                    self.overlapping.update((a, b))
                    continue
                group = self.tied.setdefault(a, [a])
                self.tie_index.setdefault(a, np.arange(first.size))
                if b not in group:
                    group.append(b)
                    # Relative to the group's first key, through a's own index.
                    self.tie_index[b] = self.tie_index[a][index]
                self.tied[b] = group
        for tied in sorted({tuple(g) for g in self.tied.values()}):
            total = " + ".join(f"grads[{k!r}]" for k in tied)
            self.findings.append(
                Finding(
                    "params-tied",
                    "info",
                    f"parameters {', '.join(map(repr, tied))} are one array (or views of all "
                    "of it, such as W and W.T): the numerical gradient under each key is the "
                    f"derivative through all of its uses, so each is compared with {total}, "
                    "each taken through its view of the array (what in-place steps under every "
                    "key apply together)",
                )
            )
        if self.overlapping:
            names = ", ".join(map(repr, sorted(self.overlapping)))
            self.findings.append(
                Finding(
                    "params-overlap",
                    "warning",
                    f"parameters {names} share part of their memory (one is a view of a slice "
                    "of another): perturbing one moves the other, so their numerical gradients "
                    "mix both and their checks are inconclusive; give each parameter its own "
                    "array, or one key for the whole",
                )
            )

    def analytic_of(self, key: str, grads: Dict[str, Array]) -> Array:
        """The gradient the estimate of ``key`` measures: ``grads[key]``, or for a tied
        parameter the sum over its group (:meth:`tie_params`)."""
        group = self.tied.get(key)
        if group is None:
            return grads[key]
        total = np.zeros(self.params[group[0]].size)
        for k in group:
            np.add.at(total, self.tie_index[k], np.ravel(grads[k]))
        return total[self.tie_index[key]].reshape(np.shape(grads[key]))

    def validate_output(self, y: Any) -> Array:
        if y is None:
            raise Abort(Finding("forward-none", "error", "forward returned None"))
        try:
            arr = np.asarray(y)
        except (ValueError, TypeError):
            shapes = (
                ", ".join(str(np.shape(part)) for part in y)
                if isinstance(y, (list, tuple))
                else type(y).__name__
            )
            raise Abort(
                Finding(
                    "forward-shape",
                    "error",
                    f"forward returned a {type(y).__name__} of outputs with shapes {shapes}, "
                    "which NumPy cannot stack into one array; return one array (concatenate "
                    "the outputs' flattened parts), or check the layer as a function pair",
                )
            ) from None
        if self.is_loss and arr.shape != ():
            raise Abort(
                Finding(
                    "forward-shape",
                    "error",
                    f"a loss layer's forward must return a scalar, got shape {arr.shape}"
                    + (
                        " (return float(loss), or loss.reshape(()), for a loss of one entry)"
                        if arr.size == 1
                        else ""
                    ),
                )
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise Abort(
                Finding(
                    "forward-dtype",
                    "error",
                    f"forward returned dtype {arr.dtype}; expected floating point",
                )
            )
        idx = nonfinite_index(arr)
        if idx is not None:
            raise Abort(
                Finding(
                    "forward-nonfinite",
                    "error",
                    f"forward output contains {arr[idx]} at index {idx}",
                )
            )
        return np.array(arr, dtype=np.float64)

    def upstream(self, y: Array) -> Array:
        if self.is_loss:
            return np.array(1.0)
        if self.dy_given is None:
            return harness_rng(self.seed, PURPOSE_DY).standard_normal(y.shape)
        dy = np.asarray(self.dy_given)
        if dy.shape != y.shape:
            raise Abort(
                Finding(
                    "dy-shape",
                    "error",
                    f"dy has shape {dy.shape}; the forward output has shape {y.shape}",
                )
            )
        if (idx := nonfinite_index(dy)) is not None:
            raise Abort(Finding("dy-nonfinite", "error", f"dy contains {dy[idx]} at index {idx}"))
        return np.array(dy, dtype=np.float64)

    def check_repeatable(self, grads: Dict[str, Array]) -> None:
        """Backward must depend on the last forward only, and give the same result every time.

        Finite differences call forward many times, and a training loop calls forward on one
        batch after another: a layer that keeps a cache from an earlier forward, or that
        accumulates across calls (appending inputs to a list, adding into ``grads``), would be
        checked on the wrong cache. So a forward on a nearby input ``x'``, then a forward on
        ``x``, then ``backward(dy)`` must reproduce the first forward's output and gradients.
        Only when they do not, a plain forward and backward on ``x`` (two calls more) tell a
        stale cache from a layer that is not repeatable at all.
        """
        other = self.nearby(PURPOSE_STALE_CACHE, 1)[0]
        probed = True
        # forward(x') once more, as a slice of the batch-support probe, unless the layer turns
        # out to keep state across forwards (then that output is not forward(x') alone).
        self.nearby_output: Optional[Tuple[Array, Array]] = None
        try:
            y_other = self.forward(other, "forward (stale-cache check, on a nearby input x')")
            y_other = np.asarray(y_other)
            if y_other.shape == self.y.shape and np.issubdtype(y_other.dtype, np.floating):
                self.nearby_output = (other, np.array(y_other, dtype=np.float64))
        except Abort as abort:
            if isinstance(abort.__cause__, SystemExit):
                raise
            probed = False
            cause = abort.__cause__
            self.findings.append(
                Finding(
                    "stale-cache-unchecked",
                    "warning",
                    f"forward on a nearby input x' (each entry of x moved by about 1e-3 of its "
                    f"size) raised {type(cause).__name__}: {cause}; the stale-cache check was "
                    "skipped",
                )
            )
        # The fresh-cache check runs here, before the layer is back on x, so that it costs no
        # forward of its own; its finding stands only where the layer is repeatable.
        rng = harness_rng(self.seed, PURPOSE_FRESH_CACHE)
        verdict: Optional[Finding] = None
        for fresh in self.fresh_probes(rng):
            verdict = self.check_fresh_cache(grads, fresh, rng)
            if verdict is None or verdict.code != "fresh-cache-unchecked":
                break
        self.report_unnamed_params()
        verdict = self.check_after_a_step(grads, verdict, rng)
        phase = "stale-cache check" if probed else "repeatability check"
        prior = self.last_grads
        y2 = self.validate_output(self.forward(call=f"forward ({phase}, on x)"))
        g2 = self.gradients(self.dy, f"backward ({phase})")
        y_differs = not _repeats(y2, self.y)
        g_differs = [key for key in grads if not _same(g2[key], grads[key])]
        if not (y_differs or g_differs):
            if verdict is not None:
                self.findings.append(verdict)
            return
        self.nearby_output = None
        if probed:
            y3 = self.validate_output(self.forward(call="forward (repeatability check)"))
            g3 = self.gradients(self.dy, "backward (repeatability check)")
        else:
            y3, g3 = y2, g2
        if not _repeats(y3, self.y):
            self.findings.append(
                Finding(
                    "forward-not-repeatable",
                    "fail",
                    "two forward calls on the same x returned different outputs",
                )
            )
        elif y_differs:
            self.findings.append(
                Finding(
                    "stale-cache",
                    "fail",
                    "forward(x) after forward(x') returned a different output than forward(x) "
                    "alone: the forward uses state left by an earlier forward",
                )
            )
        stale = []
        for key, g in grads.items():
            if _same(g3[key], g):
                if key in g_differs:
                    stale.append(key)
                continue
            # Accumulated over the backwards so far: the one before this held the sum of all
            # the earlier ones.
            earlier = g + prior[key]
            accumulated = float(np.max(np.abs(g2[key] - earlier), initial=0.0)) <= 1e-6 * max(
                float(np.max(np.abs(g2[key]), initial=0.0)), 1e-300
            )
            hint = (
                " (the later result is the sum of the earlier ones: "
                "gradients are being accumulated; overwrite grads on every backward)"
                if accumulated
                else ""
            )
            self.findings.append(
                Finding(
                    "backward-not-repeatable",
                    "fail",
                    "a second forward+backward on the same x and dy changed gradient "
                    f"{key!r}{hint}",
                )
            )
        if stale:
            self.findings.append(
                Finding(
                    "stale-cache",
                    "fail",
                    "backward after forward(x'), forward(x'') then forward(x) differs from "
                    "backward after forward(x): backward uses a cache from an earlier forward "
                    "(gradient "
                    f"{', '.join(map(repr, stale))})",
                )
            )

    def fresh_probes(self, rng: np.random.Generator) -> Iterator[FreshProbe]:
        """Run ``forward`` at each of the fresh-cache check's points in turn and ``backward``
        right after it, skipping a point where the layer cannot be run.

        The point is ``x''``: ``x`` with its rows (its first axis; the last one for a single
        row) rolled by one, each entry then scaled by ``1 + 1e-3 z``. Every statistic and cache
        moves, and, unlike a nearby input, so do the signs and the order of the entries, so a
        ReLU mask or an argmax frozen on an earlier forward is seen too, while each column keeps
        its values (and its domain, such as ``x > 0``). A loss layer's target is rolled with the
        rows (a cached one-hot is seen), and every parameter is moved to a nearby value, in
        place or, where it cannot be written, by rebinding ``params[key]`` (a cache of ``W.T``
        made once is seen; an optimizer's step moves them so). The nearby ``x'`` comes next:
        where ``x''`` is outside the layer's domain (it raises, or gives a non-finite output or
        gradient), or where the check could not resolve the derivative there (a kink within its
        steps).
        """
        x = np.asarray(self.x, dtype=np.float64)
        rolled = _rolled(x)
        z = rng.standard_normal(x.shape)
        target = self.target
        if self.is_loss and isinstance(target, (np.ndarray, list, tuple)) and x.ndim:
            target = _rolled_with_rows(np.asarray(target), x.shape[0])
        moved: Dict[str, Array] = {}
        rebound: Dict[str, Array] = {}
        writable, fixed = self.movable_params()
        for key in writable + fixed:
            value = np.asarray(self.params[key], dtype=np.float64)
            shifted = _nearby_value(value, rng.standard_normal(value.shape))
            (moved if key in writable else rebound)[key] = shifted
        candidates = [
            (
                _nearby_value(rolled, z).astype(self.x.dtype),
                target,
                "x'' is x with its rows rolled by one (a loss layer's target with them), each "
                "entry moved by about 1e-3 of its size, and the parameters moved so too",
            )
        ]
        if self.nearby_output is not None:
            candidates.append(
                (
                    self.nearby_output[0],
                    self.target,
                    "x'' is the nearby input x' (each entry of x moved by about 1e-3 of its "
                    "size), the parameters moved so too: at x with its rows rolled the layer "
                    "could not be run, or the derivative not resolved",
                )
            )
        for point, point_target, described in candidates:
            with self.params_at(moved), self.params_rebound(rebound), another_draw(FRESH_DRAW):
                try:
                    y = np.asarray(
                        self.forward(point, "forward (fresh-cache check, on x'')", point_target)
                    )
                    if y.shape != self.y.shape or nonfinite_index(y) is not None:
                        continue
                    after = self.gradients(
                        self.dy, "backward (fresh-cache check, right after forward(x''))"
                    )
                except Abort as abort:
                    if isinstance(abort.__cause__, SystemExit):
                        raise
                    continue
            yield FreshProbe(point, point_target, moved, described, after, rebound, draw=FRESH_DRAW)

    def check_after_a_step(
        self, grads: Dict[str, Array], verdict: Optional[Finding], rng: np.random.Generator
    ) -> Optional[Finding]:
        """The fresh-cache check's ``verdict``, or a ``wrong-after-a-step`` fail where the
        backward is right at the parameters given and wrong after one gradient step from them.

        Parameters are usually checked as initialised, and an initialisation is special: a
        gamma of ones hides a gamma left out of dx, a bias of zeros a mask built before the
        bias is added, an identity matrix a transpose. The fresh-cache check moves each entry
        by 1e-3 of its size, which leaves zeros at zero and flips no mask; so where a
        parameter is constant (every entry equal), or where that check found the backward
        right only at the parameters given (``wrong-for-moved-params``), the layer is run at
        ``x`` with every parameter after one gradient step (:meth:`step_probe`). A backward
        right for a structure that its gradients keep (a symmetric matrix) stays right there,
        and the warning stands.
        """
        moved_wrong = verdict is not None and verdict.code == "wrong-for-moved-params"
        if verdict is not None and not moved_wrong:
            return verdict
        writable, _ = self.movable_params()
        if not moved_wrong and not any(_special_value(self.params_original[k]) for k in writable):
            return verdict
        stepped = self.step_probe(grads, writable)
        if stepped is None:
            return verdict
        found = self.check_fresh_cache(grads, stepped, rng)
        return found if found is not None and found.severity == "fail" else verdict

    def step_probe(self, grads: Dict[str, Array], writable: List[str]) -> Optional[FreshProbe]:
        """Run ``forward(x)`` with the ``writable`` parameters moved in place by one gradient
        step (``p - a g``, with ``a`` so that the largest move is ``STEP_SHARE`` of the
        parameter's largest entry, or ``ZERO_STEP_SHARE`` of the outputs' largest for a
        parameter of zeros) and ``backward`` right after it; ``None`` where no gradient moves
        anything or the layer cannot be run there.

        In place only: a read-only parameter rebound to new values is not seen by a backward
        that reads its own reference to the array (``self.g`` where ``params['g'] is self.g``).
        """
        moved: Dict[str, Array] = {}
        scale = float(np.max(np.abs(self.y), initial=0.0))
        for key in writable:
            value = np.asarray(self.params[key], dtype=np.float64)
            g = np.asarray(self.analytic_of(key, grads), dtype=np.float64)
            top = float(np.max(np.abs(g), initial=0.0))
            if not (np.isfinite(top) and top > 0.0) or g.shape != value.shape:
                continue
            size = float(np.max(np.abs(value), initial=0.0))
            if np.isfinite(size) and size > 0.0:
                largest_move = STEP_SHARE * size
            else:
                # All zeros (a bias): on the outputs' scale, which is what it is added to, so
                # that a mask built before it flips.
                largest_move = ZERO_STEP_SHARE * (
                    scale if np.isfinite(scale) and scale > 0 else 1.0
                )
            moved[key] = value - (largest_move / top) * g
        if not moved:
            return None
        call = "step check, parameters after one gradient step"
        with self.params_at(moved):
            try:
                y = np.asarray(self.forward(call=f"forward ({call})"))
                if y.shape != self.y.shape or nonfinite_index(y) is not None:
                    return None
                after = self.gradients(self.dy, f"backward ({call})")
            except Abort as abort:
                if isinstance(abort.__cause__, SystemExit):
                    raise
                return None
        described = (
            f"{', '.join(sorted(moved))}, each moved along its own gradient by {STEP_SHARE:g} "
            f"of its largest entry, or by {ZERO_STEP_SHARE:g} of the outputs' largest where it "
            "is all zeros"
        )
        return FreshProbe(np.asarray(self.x), self.target, moved, described, after, {}, kind="step")

    def movable_params(self) -> Tuple[List[str], List[str]]:
        """The parameters the fresh-cache check moves: arrays the layer holds (one key per tied
        group, none that overlaps another in part), as two lists: those the check can write in
        place, and those it moves by rebinding ``params[key]`` (read-only, a narrower dtype)."""
        writable: List[str] = []
        fixed: List[str] = []
        current = layer_params(self.layer)
        for key in self.param_keys:
            value = self.params_original[key]
            if key in self.overlapping or self.tied.get(key, [key])[0] != key:
                continue
            # The very array the layer holds (not a copy that params hands out on each read).
            if current.get(key) is not value or not isinstance(value, np.ndarray):
                continue
            if value.flags.writeable and np.can_cast(self.dtype, value.dtype, casting="safe"):
                writable.append(key)
            elif key not in self.tied:
                fixed.append(key)
        return writable, fixed

    @contextmanager
    def params_rebound(self, values: Dict[str, Array]) -> Iterator[None]:
        """``params[key]`` rebound to ``values[key]`` (and taken as its reference value by
        :meth:`check_arguments`) for the enclosed calls, then the original arrays put back."""
        refs = {key: self.params_ref[key] for key in values}
        done = []
        try:
            for key, value in values.items():
                try:
                    self.layer.params[key] = value.astype(self.params_original[key].dtype)
                except Exception:
                    continue  # a mapping that refuses: the parameter stays as it is
                done.append(key)
                self.params_ref[key] = np.array(self.layer.params[key], copy=True)
            yield
        finally:
            for key in done:
                try:
                    self.layer.params[key] = self.params_original[key]
                except Exception:
                    pass
            self.params_ref.update(refs)

    @contextmanager
    def params_at(self, values: Dict[str, Array]) -> Iterator[None]:
        """The parameters ``values`` written in place (and taken as their reference values by
        :meth:`check_arguments`) for the enclosed calls, then put back bitwise."""
        arrays = {key: self.params_original[key] for key in values}
        saved = {key: np.array(a, copy=True) for key, a in arrays.items()}
        # A tied group's every key sees the moved array.
        named = {key: self.tied.get(key, [key]) for key in values}
        refs = {k: self.params_ref[k] for group in named.values() for k in group}
        try:
            for key, value in values.items():
                arrays[key][...] = value
                for k in named[key]:
                    self.params_ref[k] = np.array(self.params_original[k], copy=True)
            yield
        finally:
            for key, before in saved.items():
                arrays[key][...] = before
            self.params_ref.update(refs)

    def check_fresh_cache(
        self, grads: Dict[str, Array], fresh: FreshProbe, rng: np.random.Generator
    ) -> Optional[Finding]:
        """A backward right after ``forward(x'')`` must be the gradient at ``x''``, not at ``x``.

        The stale-cache check ends on ``forward(x)``, so a layer that caches only its very first
        forward (``if self.cache is None``: its input for dW, a ReLU mask, a one-hot target) or
        the parameters of its first backward passes it, and the estimate, run at ``x`` too. So
        ``backward`` runs once more right after ``forward(x'')`` (:meth:`fresh_probes`), and
        along one Gaussian direction through the input and the moved parameters at once (each
        entry scaled to its own size) the derivative is estimated at ``x''`` and, only where
        two stencils disagree there, at ``x`` (``FRESH_METHODS``, the cheapest that can
        resolve first), and compared with what each backward says. Where they agree at ``x``,
        the finding is returned (:meth:`_fresh_verdict`): ``stale-cache``,
        ``wrong-away-from-x``, the warning ``wrong-for-moved-params``, or
        ``fresh-cache-unchecked`` where nothing was resolved. The same comparison serves the
        step check (``fresh.kind == "step"``) and the other-dy check (``"dy"``), whose
        disagreement stands even where ``x`` is unresolved.
        """
        keys = ["x", *fresh.moved]
        rest = list(fresh.moved)
        bases = {
            "x": np.asarray(self.x, dtype=np.float64),
            **{k: np.asarray(self.params[k], dtype=np.float64) for k in rest},
        }
        # Each entry of the direction on that entry's own scale, the smaller of its sizes at x
        # and at x'' (whose rows are rolled): no entry's share of the derivative is lost beside
        # another's, however far apart their sizes (an entry of 1e-9 beside entries of 1), and
        # an entry near 0 at either point is not stepped across 0 (a ReLU's kink).
        there = {"x": np.asarray(fresh.point, dtype=np.float64), **fresh.moved}
        z = {key: rng.standard_normal(bases[key].size) for key in keys}
        parts = {
            key: z[key] * _entry_scales(np.minimum(np.abs(bases[key]), np.abs(there[key])))
            for key in keys
        }
        v = np.concatenate([parts[key] for key in keys])[None]
        # Every entry moves by at most the method's textbook step on its own scale.
        zmax = max(float(np.max(np.abs(z[k]), initial=0.0)) for k in keys)

        # Each key's share of v alone (the others' entries 0), to tell which gradient is off.
        bounds = np.cumsum([0, *(parts[k].size for k in keys)])
        alone = {}
        for i, key in enumerate(keys):
            alone[key] = np.zeros_like(v)
            alone[key][0, bounds[i] : bounds[i + 1]] = parts[key]

        def projection(g: Dict[str, Array], only: Optional[str] = None) -> Array:
            return np.array(
                [
                    sum(
                        float(np.dot(self.analytic_of(k, g).ravel(), parts[k]))
                        for k in keys
                        if only is None or k == only
                    )
                ]
            )

        def estimate(
            point: Array,
            target: Any,
            values: Dict[str, Array],
            method: str,
            rebound: Optional[Dict[str, Array]] = None,
            dy: Optional[Array] = None,
            draw: int = 0,
            only: Optional[str] = None,
        ) -> Any:
            """The derivative along v (or along its share of key ``only`` alone) at ``point``
            of ``<forward, dy>`` (default: the check's ``dy``), the parameters at ``values``
            (default: their own), those that cannot be written in place rebound to
            ``rebound``."""
            direction = v if only is None else alone[only]
            objective = LayerObjective(
                self.layer, self.x, target, self.dtype, output_shape=self.y.shape
            )
            flat = np.concatenate(
                [np.asarray(point, dtype=np.float64).ravel()]
                + [np.ravel(values.get(k, bases[k])) for k in rest]
            )
            outputs = objective.outputs_jointly(rest)
            if not rest and objective.batched:
                # The input alone, in stacked calls (each spot-checked against a slice alone).
                shape = self.x.shape

                def outputs(points: Array) -> Array:
                    return objective.outputs_x(np.reshape(points, (-1, *shape)))

            with self.params_rebound(rebound or {}), another_draw(draw):
                return directional_derivatives(
                    outputs,
                    flat,
                    self.dy if dy is None else dy,
                    lambda j: direction[j],
                    1,
                    base_step(method, np.zeros(1)) / zmax,
                    method=method,
                )

        try:
            # What rounding of the objective, eps <|dy|, |y|>, is worth in a derivative taken
            # at a method's step: no gap below it is evidence of anything.
            upstream = self.dy if fresh.dy is None else fresh.dy
            size = float(np.sum(np.maximum(np.abs(self.dy), np.abs(upstream)) * np.abs(self.y)))

            def resolution(method: str) -> float:
                step = float(base_step(method, np.zeros(1))[0]) / zmax
                return 16.0 * np.finfo(np.float64).eps * size / step

            return self._fresh_verdict(grads, fresh, estimate, projection, resolution)
        except SystemExit as exc:
            # As at the estimate's perturbed points: it ends the check, not the process.
            raise Abort(
                Finding(
                    "forward-raised",
                    "error",
                    f"forward raised SystemExit: {exc} (at a perturbed point of the fresh-cache "
                    "check)",
                )
            ) from exc

    def _fresh_verdict(
        self,
        grads: Dict[str, Array],
        fresh: FreshProbe,
        estimate: Callable[..., Any],
        projection: Callable[..., Array],
        resolution: Callable[[str], float],
    ) -> Optional[Finding]:
        unresolved = Finding(
            "fresh-cache-unchecked",
            "warning",
            "the fresh-cache check could not resolve the derivative along its direction (at x "
            f"or at x'', by {', '.join(FRESH_METHODS)}): a backward that uses a cache from an "
            f"earlier forward is not ruled out; {fresh.described}",
        )
        # x'' first: a right layer passes there, and x is then not needed. x only tells a
        # disagreement at x'' that is this check's (backward right at x) from the estimate's own.
        said = projection(fresh.after)
        failed = 0
        for method in self._fresh_methods(said, resolution):
            at_other = estimate(
                fresh.point, fresh.target, fresh.moved, method, fresh.rebound, fresh.dy, fresh.draw
            )
            status = compare(said, at_other.value, at_other.error, rtol=self.rtol).status
            if status == "pass":
                return None
            # A stale cache at x'' is off by far more than rounding lost along one direction.
            gap = abs(float(said[0]) - float(at_other.value[0]))
            relative = FRESH_MARGIN * max(abs(float(said[0])), abs(float(at_other.value[0])))
            if status == "fail" and not gap > max(relative, resolution(method)):
                return None
            failed += status == "fail"
            if failed == 2:
                break
        # The cheapest stencil first; a longer one only where it left the derivative unresolved
        # (a kink within its step, a curvature its step cannot follow).
        for method in self._fresh_methods(projection(grads), resolution):
            at_x = estimate(self.x, self.target, {}, method)
            status = compare(projection(grads), at_x.value, at_x.error, rtol=self.rtol).status
            if status != "inconclusive":
                break
        if status == "fail":
            # Backward disagrees at x itself: the estimate's own verdict, not this check's.
            return None
        if failed < 2 or (status != "pass" and fresh.kind == "fresh"):
            # Failed at x'' by one method only, or (for the fresh-cache check, whose findings
            # say how x and x'' differ) unresolved at x: nothing is claimed, and it is said.
            return unresolved
        # A backward wrong after a step, or for another dy, is wrong whatever x resolved (a
        # softmax's gradient for a dy of ones is exactly 0, and its estimate unresolved).
        agree = f"they agree ({at_x.value[0]:.6e})" if status == "pass" else "it was unresolved"
        found = (
            "backward right after forward(x'') is not the gradient at x'': along a random "
            f"direction the derivative there is {at_other.value[0]:.6e} against {said[0]:.6e} "
            f"from backward, while at x they agree ({at_x.value[0]:.6e})"
        )
        if fresh.kind == "dy":
            return Finding(
                "wrong-for-other-dy",
                "fail",
                "backward is right for the dy given but not for another (dy2, standard "
                f"normal): along a random direction the derivative of <forward, dy2> is "
                f"{at_other.value[0]:.6e} against {said[0]:.6e} from backward(dy2), while for "
                f"the dy given {agree}; the dy given is special for "
                "this backward (constant along an axis, all ones: a backward that sums or "
                "averages dy where it should not hides its error there), and in a network, "
                "where dy is anything, the gradient is wrong; check with the default dy",
            )
        if fresh.kind == "step":
            return Finding(
                "wrong-after-a-step",
                "fail",
                "backward is right at the parameters given but not after one gradient step "
                f"from them ({fresh.described}): along a random direction the derivative there "
                f"is {at_other.value[0]:.6e} against {said[0]:.6e} from backward, while at the "
                f"parameters given {agree}; they are special for this "
                "backward, a term that vanishes there is wrong or missing (a gamma of ones left "
                "out of dx, a bias of zeros left out of a mask, an identity matrix that hides a "
                "transpose), and a trained layer's gradient would be wrong",
            )
        # A gradient the same at x'' is stale only if it is wrong there: db = dy.sum(0) does
        # not depend on x at all (a forgotten gamma in dx was named a stale db).
        same = [
            k
            for k in grads
            if _same(fresh.after[k], grads[k])
            # (a rebound parameter has no share in the direction: it stays named)
            and (
                k not in ("x", *fresh.moved)
                or compare(
                    projection(fresh.after, only=k),
                    (alone_k := self._share_at(fresh, estimate, k)).value,
                    alone_k.error,
                    rtol=self.rtol,
                ).status
                != "pass"
            )
        ]
        moved_any = fresh.moved or fresh.rebound
        if not same and moved_any and self._right_with_own_params(fresh, estimate, projection):
            # Wrong only once the parameters moved: a backward may rightly assume a structure
            # the parameters keep (a symmetric metric whose gradients are symmetric), or use a
            # cache of them; a warning, as the evidence cannot tell the two apart.
            return Finding(
                "wrong-for-moved-params",
                "warning",
                f"{found}, and at x'' with the parameters "
                "as given the backward is right: it is wrong once the parameters move by 1e-3 "
                "(each entry on its own), so it assumes a structure that they have now (a "
                "symmetric matrix, tied entries) or uses a cache of earlier parameters",
            )
        if same:
            named = ", ".join("dx" if k == "x" else f"grads[{k!r}]" for k in same)
            return Finding(
                "stale-cache",
                "fail",
                f"{found}, and it returned exactly its gradients at x for {named}: backward uses "
                "a cache from an earlier forward or of earlier parameters (a cache set only "
                f"once?); {fresh.described}",
            )
        # Right at x only: either x is special for this error (it vanishes there: a diagonal
        # covariance, dy equal to the output), or part of a cache is stale (a one-hot target).
        return Finding(
            "wrong-away-from-x",
            "fail",
            f"{found}: the backward is right at x only, so x hides its error (a special input, "
            "where a term vanishes) or it uses part of a cache from an earlier forward, target "
            f"or parameters; {fresh.described}",
        )

    def _share_at(self, fresh: FreshProbe, estimate: Callable[..., Any], key: str) -> Any:
        """The derivative at the probe's point along the direction's share of ``key`` alone."""
        return estimate(
            fresh.point,
            fresh.target,
            fresh.moved,
            "five-point",
            fresh.rebound,
            fresh.dy,
            fresh.draw,
            only=key,
        )

    def _fresh_methods(self, said: Array, resolution: Callable[[str], float]) -> List[str]:
        """``FRESH_METHODS`` without the stencils whose rounding alone (``resolution`` is 16
        times it) is over 4 times the tolerance of ``said``, the projection to be checked: on
        a million entries, central differences cannot resolve one direction, and estimating it
        would only cost a stacked forward of the whole input per point."""
        tolerance = self.rtol * float(np.max(np.abs(said), initial=0.0))
        kept = [m for m in FRESH_METHODS if resolution(m) / 16.0 <= 4.0 * tolerance]
        return kept or [FRESH_METHODS[-1]]

    def _right_with_own_params(
        self,
        fresh: FreshProbe,
        estimate: Callable[..., Any],
        projection: Callable[..., Array],
    ) -> bool:
        """Whether at ``x''`` (and its target) with the parameters as given, a backward right
        after the forward there agrees with the estimate (a probe and an estimate more)."""
        try:
            with another_draw(fresh.draw):
                self.forward(
                    fresh.point,
                    "forward (fresh-cache check, on x'', parameters as given)",
                    fresh.target,
                )
                after = self.gradients(
                    self.dy, "backward (fresh-cache check, on x'', parameters as given)"
                )
        except Abort as abort:
            if isinstance(abort.__cause__, SystemExit):
                raise
            return False
        at_other = estimate(fresh.point, fresh.target, {}, "five-point", draw=fresh.draw)
        return bool(
            compare(projection(after), at_other.value, at_other.error, rtol=self.rtol).status
            != "fail"
        )

    def check_linear(self, grads: Dict[str, Array]) -> None:
        """backward must be linear in dy: B(dy + 2 dy2) = B(dy) + 2 B(dy2), B(c dy) = c B(dy) for
        c = 2^20, 2^-20 and -1 (exact scalings), and B(0) = 0.

        The backward calls follow one forward: the protocol makes backward a function of the
        last forward, so calling it again with another ``dy`` is within the contract.
        """
        draws = harness_rng(self.seed, PURPOSE_DY2)
        dy2 = draws.standard_normal(self.dy.shape) * _power_of_two_scale(self.dy)
        g2 = self.gradients(dy2, "backward (linearity check, dy2)")
        g3 = self.gradients(self.dy + 2.0 * dy2, "backward (linearity check, dy + 2 dy2)")
        g0 = self.gradients(np.zeros_like(self.dy), "backward (linearity check, dy = 0)")
        laid_out = self.layout_gradients()
        # Far larger and far smaller dy than the draws above: a clip or threshold on dy or on
        # the gradient (|dx| <= 50) is linear on every draw of size 1 and wrong elsewhere; and
        # -dy, which puts every entry on the other side of a branch on its sign.
        scaled = {
            factor: self.gradients(factor * self.dy, f"backward (linearity check, {label})")
            for factor, (_, label) in EXACT_SCALINGS.items()
            if _scales_exactly(factor, self.dy, *grads.values())
        }
        # A gradient that is zero in truth comes out of a backward as rounding noise, which is
        # not linear: the test's floor is a thousand ulps of the size a gradient entry has on
        # the layer's own scale, |dy| |y| / |x| (the scale of x or of the parameter).
        dy_size = float(np.max(np.abs(self.dy + 2.0 * dy2), initial=0.0))
        y_size = float(np.max(np.abs(self.y), initial=0.0))
        for key in grads:
            expected = grads[key] + 2.0 * g2[key]
            # The rounding of three backward calls, one draw per entry (pooled below).
            spread = np.abs(g3[key] - expected)
            scale = max(
                float(np.max(np.abs(expected), initial=0.0)),
                float(np.max(np.abs(g3[key]), initial=0.0)),
            )
            base = self.x if key == "x" else self.params[key]
            natural = dy_size * y_size / typical_scale(base)
            limit = self.rtol * max(scale, 1e-300) + 1024.0 * np.finfo(float).eps * natural
            if np.max(np.abs(g3[key] - expected), initial=0.0) > limit:
                self.findings.append(
                    Finding(
                        "backward-not-linear",
                        "fail",
                        f"gradient {key!r} is not linear in dy: backward(dy1 + 2 dy2) differs from "
                        f"backward(dy1) + 2 backward(dy2) by more than rtol={self.rtol:.1e}",
                    )
                )
            elif (
                broken := _inexact_scaling(grads[key], scaled, key, self.rtol, limit)
            ) is not None:
                self.findings.append(
                    Finding(
                        "backward-not-linear",
                        "fail",
                        f"gradient {key!r} is not linear in dy: backward(c dy) differs from "
                        f"c backward(dy) for c = {broken} (a clip, threshold or branch on dy or "
                        "on the gradient?)",
                    )
                )
            elif np.any(g0[key] != 0.0):
                self.findings.append(
                    Finding(
                        "backward-not-linear",
                        "fail",
                        f"backward(0) is not zero for gradient {key!r}",
                    )
                )
            else:
                # Linear up to rounding: what is left is the backward's rounding (of a
                # nonlinear backward it would be the nonlinearity, already a finding).
                self.backward_noise[key] = np.maximum(spread, _pooled_rounding(spread, expected))
                # Only for a backward linear in dy: a random one (a mask drawn in backward) is
                # not linear, a finding of its own.
                if laid_out is not None:
                    self._check_layout(key, laid_out[key], g3[key] - 2.0 * g2[key], limit)
        # Only a dy with structure (values repeated: constant along an axis, ones, zeros) can
        # hide a linear error; a generic one, as a user draws it, costs nothing more.
        special = self.dy_given is not None and np.unique(self.dy).size < self.dy.size
        if special and not any(f.severity == "fail" for f in self.findings):
            self.check_other_dy(grads, dy2, g2, draws)

    def check_other_dy(
        self,
        grads: Dict[str, Array],
        dy2: Array,
        g2: Dict[str, Array],
        rng: np.random.Generator,
    ) -> None:
        """Where the user gave a ``dy`` with repeated values, ``backward(dy2)`` must be right
        too, for the linearity check's standard-normal ``dy2``: the estimate is of
        ``<forward, dy>`` alone, and a dy of ones hides a backward that averages dy over a row
        (exact for a dy constant there, linear, and wrong for every other dy). One random
        direction through the input and the parameters, as the fresh-cache check estimates
        it."""
        writable, _ = self.movable_params()
        own = {k: np.array(self.params[k], dtype=np.float64, copy=True) for k in writable}
        probe = FreshProbe(
            np.asarray(self.x),
            self.target,
            own,
            "the dy2 of the linearity check",
            g2,
            {},
            kind="dy",
            dy=dy2,
        )
        found = self.check_fresh_cache(grads, probe, rng)
        if found is not None and found.severity == "fail":
            self.findings.append(found)

    def _check_layout(self, key: str, laid_out: Array, reference: Array, limit: float) -> None:
        """Gradient ``key`` for the non-contiguous ``dy`` (``laid_out``) against the same
        ``dy``'s from the linearity check's calls after the same forward (``reference``)."""
        off = np.abs(laid_out - reference)
        if off.size and float(np.max(off)) > limit:
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(off)), off.shape))
            self.note_once(
                "backward-layout",
                key,
                f"gradient {key!r} differs when dy is not contiguous in memory (the same "
                "values, every other entry of a larger buffer, as a slice or transpose in a "
                f"network hands on): at {key}[{', '.join(map(str, at))}] "
                f"{float(laid_out[at]):.6g} against {float(reference[at]):.6g}; the backward "
                "assumes C-contiguous memory (as_strided with computed strides, np.frombuffer, "
                ".data)",
            )

    def layout_gradients(self) -> Optional[Dict[str, Array]]:
        """The gradients for ``dy`` in non-contiguous memory (the same values), or ``None``
        for a scalar ``dy``, or where the backward raised on it (a warning: the backward then
        fails loudly in a network, not silently)."""
        if self.dy.ndim == 0:
            return None
        try:
            return self.gradients(
                self.dy, "backward (layout check, a non-contiguous dy)", strided=True
            )
        except Abort as abort:
            if isinstance(abort.__cause__, SystemExit):
                raise
            self.findings.append(
                Finding(
                    "backward-layout",
                    "warning",
                    f"{abort.finding.message}, for a dy that is not contiguous in memory (the "
                    "same values, as a slice or transpose in a network hands on); the backward "
                    "is right only for C-contiguous dy",
                )
            )
            return None

    def check_batch_support(self, objective: LayerObjective) -> None:
        """A declared ``supports_batch`` must hold on every slice of a stack of distinct inputs
        (``x`` and two nearby ones, one of them the stale-cache check's ``x'``); else the
        estimate evaluates one input at a time."""
        if not objective.batched:
            return
        if self.nearby_output is not None:
            # x' of the stale-cache check and its output there: one forward fewer.
            other, y_other = self.nearby_output
            probes = np.stack([other, self.nearby(PURPOSE_BATCH_PROBE, 1)[0]])
            known: List[Optional[Array]] = [y_other, None]
        else:
            probes, known = self.nearby(PURPOSE_BATCH_PROBE, 2), []
        if objective.batch_support_holds(probes, self.y, known):
            return
        objective.batched = False
        self.findings.append(
            Finding(
                "batch-support-broken",
                "warning",
                "the layer declares supports_batch, but a stacked forward (x and two nearby "
                "inputs) differed from separate forwards; evaluated one input at a time instead",
            )
        )

    def check_perturbable(self, objective: LayerObjective, grads: Dict[str, Array]) -> None:
        """Each parameter must be perturbed where the forward reads it.

        A parameter that cannot be perturbed in place is a warning: the estimate rebinds
        ``params[key]``, which a forward reading its own reference to the old array does not
        see. Then one forward at a nearby value (each entry times ``1 + 1e-3 z``) tests whether
        the perturbation moves any output. Where it moves none and the estimate does not write
        into the array the layer holds (rebound, or ``params`` returns copies), the numerical
        gradient is zero whatever the truth: the parameter is listed in ``unreachable`` and its
        comparison becomes inconclusive (a zero backward passed, a right one failed). Where the
        in-place perturbation moves nothing, the parameter is unused (or read from a copy made
        earlier) and an optimizer's step on it would change nothing too: a warning, and its
        gradient is held to zero as usual.
        """
        self.unreachable: Set[str] = set()
        self.swallowed: Set[str] = set()
        rng = harness_rng(self.seed, PURPOSE_PARAM_REACH)
        for key in self.param_keys:
            reason = objective.in_place_obstacle(key)
            if reason is not None:
                self.findings.append(
                    Finding(
                        "param-rebound",
                        "warning",
                        f"parameter {key!r} {reason}, so the estimate perturbs it by rebinding "
                        f"params[{key!r}] to new arrays; a forward that reads its own reference "
                        "to the old array (self.W where params['W'] is self.W) would not see the "
                        "perturbation, and its numerical gradient would be zero",
                    )
                )
            elif self._params_are_copies(key):
                reason = "is a new copy on every read of layer.params"
            change = self._moves_an_output(objective, key, rng)
            if change is None:
                continue
            if reason is not None:
                self.unreachable.add(key)
                self.findings.append(
                    Finding(
                        "param-unreachable",
                        "warning",
                        f"parameter {key!r} {reason}, and changing params[{key!r}] by 1e-3 of "
                        "its size moved no output: the forward reads another array, so the "
                        f"numerical gradient of {key!r} is zero whatever the truth and its check "
                        "is inconclusive; let params hold, writable and float64, the very array "
                        "the forward reads",
                    )
                )
            elif self._below_rounding(self.analytic_of(key, grads), change):
                self.swallowed.add(key)
                self.findings.append(
                    Finding(
                        "param-change-swallowed",
                        "warning",
                        f"changing params[{key!r}] in place by 1e-3 of its size moved no output, "
                        f"and the change that grads[{key!r}] predicts for it is below the "
                        "outputs' rounding (an input near 0 beside outputs of size 1): no "
                        "estimate can check this gradient here, so its check is inconclusive",
                    )
                )
            else:
                self.findings.append(
                    Finding(
                        "param-moves-nothing",
                        "warning",
                        f"changing params[{key!r}] in place by 1e-3 of its size moved no output: "
                        "the forward does not read it (unused, or read from a copy made before), "
                        "so an optimizer's step on it changes nothing either; its gradient is "
                        "checked against zero",
                    )
                )

    def _params_are_copies(self, key: str) -> bool:
        first, second = layer_params(self.layer).get(key), layer_params(self.layer).get(key)
        if not isinstance(first, np.ndarray) or not isinstance(second, np.ndarray):
            return False
        return first is not second and not np.shares_memory(first, second)

    def _moves_an_output(
        self, objective: LayerObjective, key: str, rng: np.random.Generator
    ) -> Optional[Array]:
        """``None`` where one forward with ``params[key]`` at a nearby value gives another
        output; else the change of the parameter that moved nothing."""
        value = np.asarray(self.params[key], dtype=np.float64)
        moved = _nearby_value(value, rng.standard_normal(value.shape))
        out = objective.outputs_param(key)(moved[None])
        if np.array_equal(np.asarray(out)[0], np.asarray(self.y, dtype=np.float64)):
            return moved - value
        return None

    def _below_rounding(self, gradient: Array, change: Array) -> bool:
        """Whether a nonzero ``gradient`` predicts, for a parameter ``change`` that moved no
        output, a change of the objective that the outputs' rounding hides: at most a few ulps
        of every output, ``<|dy|, eps |y|>``. A zero gradient is what was seen, and a larger one
        would have moved an output (so it is held to zero)."""
        predicted = abs(float(np.sum(np.asarray(gradient, dtype=np.float64) * change)))
        rounding = float(np.sum(np.abs(self.dy) * np.abs(self.y))) * np.finfo(np.float64).eps
        return bool(np.any(gradient != 0.0) and predicted <= 4.0 * rounding)

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
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from .compare import compare, default_rtol
from .finite_diff import base_step, directional_derivatives, typical_scale
from .objective import LayerObjective, is_loss_layer, layer_name, layer_params
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

    def watch(self, name: str, value: Array) -> Array:
        """A private copy of ``value`` to hand to the layer, compared after every later call."""
        arg = np.array(value, copy=True)
        self.watched.append((name, weakref.ref(arg), value.copy()))
        # Held until the call's own check_arguments, even if the layer keeps no reference.
        self.handed.append(arg)
        return arg

    def forward(self, x: Optional[Array] = None, call: str = "forward") -> Any:
        """The layer's forward on a copy of ``x`` (default: the checked input), then
        :meth:`check_arguments`; returns a copy of the output."""
        arg = self.watch("x" if x is None else "x'", self.x if x is None else x)
        if self.is_loss:
            out = call_layer("forward", self.layer.forward, arg, self.target)
        else:
            out = call_layer("forward", self.layer.forward, arg)
        # A copy, so that nothing done to the layer's arrays later can change this output.
        out = np.array(out, copy=True) if isinstance(out, np.ndarray) else out
        self.check_arguments(call)
        return out

    def backward(self, dy: Array) -> Any:
        if self.is_loss:
            return call_layer("backward", self.layer.backward)
        return call_layer("backward", self.layer.backward, self.watch("dy", dy))

    def gradients(self, dy: Array, call: str = "backward") -> Dict[str, Array]:
        """Run backward and collect the validated gradients (float64 copies) of the input and
        the parameters, then :meth:`check_arguments`."""
        dx = self.backward(dy)
        grads = {"x": self.gradient("backward", "x", dx, self.x.shape)}
        layer_grads = getattr(self.layer, "grads", None) or {}
        for key in self.param_keys:
            if key not in layer_grads:
                raise Abort(
                    Finding("param-grad-missing", "error", f"backward did not fill grads[{key!r}]")
                )
            grads[key] = self.gradient(
                f"grads[{key!r}]", f"grads[{key!r}]", layer_grads[key], np.shape(self.params[key])
            )
        self.check_arguments(call)
        return grads

    def gradient(self, what: str, name: str, value: Any, shape: Tuple[int, ...]) -> Array:
        """One validated gradient as float64; a narrower dtype than the check's is a finding."""
        arr = _require_array(what, value, shape)
        returned = np.asarray(value).dtype
        if _dtype_problem(returned, self.dtype):
            self.note_once(
                "backward-dtype",
                name,
                f"backward returned {returned} for {name}; expected {np.dtype(self.dtype)}",
            )
        return arr

    def note_once(self, code: str, subject: str, message: str) -> None:
        """A ``fail`` finding, once per (code, subject): the first call that broke it is named."""
        if (code, subject) not in self.noted:
            self.noted.add((code, subject))
            self.findings.append(Finding(code, "fail", message))

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
        before = layer_params(self.layer) if self.check_params else {}
        self.params = before
        self.param_keys = sorted(before)
        self.params_ref = {k: np.array(v, copy=True) for k, v in before.items()}
        self.params_original = dict(before)

        raw = self.forward()
        self.spectrum = call_layer("spectrum", _spectrum_stats, self.layer)
        self.y = self.validate_output(raw)
        self.adopt_params(before)
        self.dy = self.upstream(self.y)
        grads = self.gradients(self.dy)
        self.check_repeatable(grads)
        if not self.is_loss:
            self.check_linear(grads)
        return grads

    def adopt_params(self, before: Dict[str, Array]) -> None:
        """Read ``layer.params`` again after the first forward, where many layers create them.

        The parameters checked are the ones the layer holds when backward runs. Parameters
        created (or replaced by new arrays) in that forward are an ``info`` finding: the
        check is of them as found after it.
        """
        if not self.check_params:
            return
        held = getattr(self.layer, "params", None)
        if isinstance(held, (list, tuple)) and any(isinstance(p, np.ndarray) for p in held):
            # Unnamed parameters cannot be matched with their gradients: were they skipped, a
            # wrong parameter gradient would pass unseen.
            raise Abort(
                Finding(
                    "params-not-a-mapping",
                    "error",
                    f"layer.params is a {type(held).__name__} of arrays; the check reads "
                    "parameters from a mapping of names to arrays (layer.params = {'W': W, ...}, "
                    "with layer.grads = {'W': dW, ...} after backward), so none was checked",
                )
            )
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

    def validate_output(self, y: Any) -> Array:
        if y is None:
            raise Abort(Finding("forward-none", "error", "forward returned None"))
        arr = np.asarray(y)
        if self.is_loss and arr.shape != ():
            raise Abort(
                Finding(
                    "forward-shape",
                    "error",
                    f"a loss layer's forward must return a scalar, got shape {arr.shape}",
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
        # A backward right after forward(x') must be the gradient at x' (check_fresh_cache).
        after = (
            self.gradients(self.dy, "backward (fresh-cache check, right after forward(x'))")
            if probed
            else None
        )
        phase = "stale-cache check" if probed else "repeatability check"
        y2 = self.validate_output(self.forward(call=f"forward ({phase}, on x)"))
        g2 = self.gradients(self.dy, f"backward ({phase})")
        y_differs = not _repeats(y2, self.y)
        g_differs = [key for key in grads if not _same(g2[key], grads[key])]
        if not (y_differs or g_differs):
            if after is not None and self.nearby_output is not None and not self.is_loss:
                self.check_fresh_cache(grads, self.nearby_output[0], after)
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
            ratio = float(np.sum(g2[key] * g) / max(float(np.sum(g * g)), 1e-300))
            # Accumulated over the backwards so far: two (no x' probe) or three (the probe's
            # backward after forward(x'), whose gradient is within 1e-3 of the one at x).
            accumulated = abs(ratio - 2.0) < 1e-6 or (probed and abs(ratio - 3.0) < 1e-2)
            hint = (
                f" (the second result is about {'three' if probed else 'two'} times the first: "
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
                    "backward after forward(x') then forward(x) differs from backward after "
                    "forward(x): backward uses a cache from an earlier forward (gradient "
                    f"{', '.join(map(repr, stale))})",
                )
            )

    def check_fresh_cache(
        self, grads: Dict[str, Array], other: Array, after: Dict[str, Array]
    ) -> None:
        """A backward right after ``forward(x')`` must be the gradient at ``x'``, not at ``x``.

        The stale-cache check ends on ``forward(x)``, so a layer that caches only its very first
        forward (``if self.cache is None``) passes it, and the estimate, run at ``x`` too. Where
        ``backward`` after ``forward(x')`` (``after``, taken in the stale-cache check's sequence:
        one backward more, no forward) returns exactly the gradients at ``x`` (which a layer whose
        gradient does not depend on ``x`` does rightly), the input gradient at ``x'`` is
        estimated along one Gaussian direction at ``x'`` and at ``x`` (five-point, 12 forwards),
        and the layer is left at ``x`` again.
        """
        identical = all(_same(after[key], grads[key]) for key in grads)
        if identical and "x" in grads:
            v = harness_rng(self.seed, PURPOSE_FRESH_CACHE).standard_normal((1, *other.shape))

            def outputs(points: Array) -> Array:
                return np.stack(
                    [
                        np.asarray(self.forward(p, "forward (fresh-cache check, near x')"), float)
                        for p in points
                    ]
                )

            vmax = float(np.max(np.abs(v)))
            projection = np.array([float(np.sum(after["x"] * v[0]))])
            estimates = []
            for point in (np.asarray(self.x, dtype=np.float64), other):
                step = base_step("five-point", np.zeros(1), typical=typical_scale(point)) / vmax
                textbook = base_step("five-point", np.zeros(1)) / vmax
                estimates.append(
                    directional_derivatives(
                        outputs,
                        point,
                        self.dy,
                        lambda j: v[j],
                        1,
                        step,
                        method="five-point",
                        fallback_step=np.maximum(textbook, step),
                    )
                )
            at_x, at_other = (
                compare(projection, e.value, e.error, rtol=self.rtol).status for e in estimates
            )
            # Stale only where the same estimate agrees with backward at x and disagrees at
            # x': an estimate that cannot follow this layer fails at both, and claims nothing.
            if at_x == "pass" and at_other == "fail":
                self.findings.append(
                    Finding(
                        "stale-cache",
                        "fail",
                        "backward after forward(x') returned exactly the gradient at x, and "
                        "along a random direction the derivative at x' is "
                        f"{estimates[1].value[0]:.6e} against {projection[0]:.6e} from backward "
                        f"(at x: {estimates[0].value[0]:.6e}): backward uses a cache from an "
                        "earlier forward (a cache set only once?)",
                    )
                )
            # Back to x, where every later call (the linearity check's backward) expects it.
            self.forward(call="forward (fresh-cache check, back on x)")

    def check_linear(self, grads: Dict[str, Array]) -> None:
        """backward must be linear in dy: B(dy + 2 dy2) = B(dy) + 2 B(dy2), B(c dy) = c B(dy) for
        c = 2^20, 2^-20 and -1 (exact scalings), and B(0) = 0.

        The backward calls follow one forward: the protocol makes backward a function of the
        last forward, so calling it again with another ``dy`` is within the contract.
        """
        dy2 = harness_rng(self.seed, PURPOSE_DY2).standard_normal(self.dy.shape)
        g2 = self.gradients(dy2, "backward (linearity check, dy2)")
        g3 = self.gradients(self.dy + 2.0 * dy2, "backward (linearity check, dy + 2 dy2)")
        g0 = self.gradients(np.zeros_like(self.dy), "backward (linearity check, dy = 0)")
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
            # The rounding of three backward calls, one draw per entry: pooled (twice the 90th
            # percentile) so that an entry whose draw was small by chance is not trusted more.
            spread = np.abs(g3[key] - expected)
            pooled = 2.0 * float(np.quantile(spread, 0.9)) if spread.size else 0.0
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
                self.backward_noise[key] = np.maximum(spread, pooled)

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

    def check_perturbable(self, objective: LayerObjective) -> None:
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
            if self._moves_an_output(objective, key, rng):
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
    ) -> bool:
        """Whether one forward with ``params[key]`` at a nearby value gives another output."""
        value = np.asarray(self.params[key], dtype=np.float64)
        moved = _nearby_value(value, rng.standard_normal(value.shape))
        out = objective.outputs_param(key)(moved[None])
        return not np.array_equal(np.asarray(out)[0], np.asarray(self.y, dtype=np.float64))

"""Hand-written backward passes as users write them, checked with no adapter of their own.

Two conventions besides the layer protocol, both checked by :func:`gradcheck.check_layer`
through an adapter object built here:

Function pairs (:func:`check_functions`), the course-assignment convention::

    out, cache = affine_forward(x, w, b)          # or: out = f(x, w, b)
    dx, dw, db = affine_backward(dout, cache)     # or: backward(dout, x, w, b)

The forward may return ``(out, cache)`` (then ``backward(dout, cache)`` is called) or ``out``
alone (then ``backward(dout, *inputs, **kwargs)``). The backward returns one gradient per
differentiated input, in the forward's parameter order (a bare array when there is one).
Non-array arguments (``conv_param``, ``bn_param``) are passed as given; every forward gets a
fresh deep copy of them, so a forward that updates running statistics in ``bn_param`` is checked
as the pure function it is within one call and the caller's dict is left alone.

Value-and-gradient functions (:func:`check_value_and_grad`), SciPy's ``jac=True`` style::

    loss, dx = softmax_loss(x, y)                 # loss, (dx, dw) = f(x, w, y) with wrt

checked as a loss layer: the gradient of the scalar value itself.

The differentiated inputs (``wrt``, by parameter name; default every floating-point array for a
pair, the first argument for a value-and-gradient function) become the layer's input and
parameters: the first of them is what ``check_layer`` calls ``x``, the others its ``params``.
Results name each argument by the forward's parameter names (``x``, ``w``, ``b``), in the
signature's order, and carry every verdict, finding and budget ``check_layer`` gives.

:func:`check_adapted` is the check the runner uses for every layer: ``check_layer`` plus what a
user needs to act on a result, namely the file and line where the layer raised
(:mod:`gradcheck.tracebacks`), and, for a forward that is not repeatable, the suggestion to
reseed NumPy's global RNG before every forward (``reseed_global_rng``), which makes a layer
that draws dropout masks with ``np.random.rand`` a fixed function.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .check import check_layer
from .objective import current_draw, is_loss_layer, layer_name
from .result import CheckResult, Finding, worst_status
from .targets import TargetSpec, draw_targets
from .tracebacks import located

Array = np.ndarray
Shape = Tuple[int, ...]
Wrt = Union[None, str, Sequence[str]]

# The placeholder target handed to check_layer for a value-and-gradient function: the adapter
# holds every argument itself (a target among them), and a given target stops check_layer from
# drawing labels of its own.
_NO_TARGET = np.zeros(0)

REPEATABILITY_HINT = (
    "; a forward that draws from NumPy's global RNG (np.random.rand, np.random.randn, as dropout "
    "layers often do) is a different function on every call: rerun with --reseed-global-rng "
    "(API: reseed_global_rng=SEED), which reseeds it before every forward"
)
REPEATABILITY_HINT_RESEEDED = (
    " although NumPy's global RNG was reseeded before every forward: the randomness comes from "
    "elsewhere (a np.random.Generator the layer keeps, state carried from call to call)"
)


# -- signatures ---------------------------------------------------------------------------------


def function_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def signature_text(fn: Any) -> str:
    """``"affine_forward(x, w, b)"``: the name and parameters, for messages."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return f"{function_name(fn)}(...)"
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return f"{function_name(fn)}{sig.replace(parameters=params, return_annotation=sig.empty)}"


def _parameters(fn: Any) -> Optional[List[inspect.Parameter]]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class CallPlan:
    """How to call a user's forward: which arguments by position and which by keyword, which
    are differentiated (``wrt``, in signature order; ``wrt[0]`` plays ``x``), and which are
    floating-point arrays (``arrays``, the default ``wrt`` of a pair)."""

    function: str
    signature: str
    positional: Tuple[str, ...]
    keyword: Tuple[str, ...]
    wrt: Tuple[str, ...]
    arrays: Tuple[str, ...]

    @property
    def x_name(self) -> str:
        return self.wrt[0]

    @property
    def names(self) -> Tuple[str, ...]:
        return self.positional + self.keyword

    def key(self, name: str) -> str:
        """The ``params`` key of a differentiated argument other than the first. ``check_layer``
        calls its input ``"x"``; an argument named ``x`` that is not the first gets another key."""
        if name != "x":
            return name
        key = "x_"
        while key in self.names:
            key += "_"
        return key

    def display_names(self) -> Dict[str, str]:
        """``check_layer``'s argument names to the forward's: ``{"x": first, key: name}``."""
        out = {"x": self.x_name}
        for name in self.wrt[1:]:
            out[self.key(name)] = name
        return out


def _order_wrt(
    wrt: Wrt, default: Sequence[str], candidates: Sequence[str], names: Sequence[str], sig: str
) -> Tuple[str, ...]:
    if wrt is None:
        chosen = list(default)
    else:
        chosen = [wrt] if isinstance(wrt, str) else list(wrt)
    for name in chosen:
        if name not in names:
            raise ValueError(f"wrt names {name!r}, which {sig} does not take")
        if name not in candidates:
            raise ValueError(
                f"wrt names {name!r}, which is not a floating-point array argument of {sig}"
            )
    ordered = tuple(n for n in names if n in chosen)
    if not ordered:
        raise ValueError(
            f"nothing to differentiate: no floating-point array among the inputs of {sig}"
        )
    return ordered


def _is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


def plan_positional(
    fn: Any, inputs: Sequence[Any], kwargs: Mapping[str, Any], wrt: Wrt, first_only: bool = False
) -> CallPlan:
    """The plan for ``fn(*inputs, **kwargs)`` (the API): inputs named by the signature.

    Raises ``ValueError`` naming the signature when the arguments do not fit it.
    """
    sig = signature_text(fn)
    params = _parameters(fn)
    names: List[str] = []
    if params is None:
        names = [f"arg{i}" for i in range(len(inputs))]
    else:
        try:
            inspect.signature(fn).bind(*inputs, **kwargs)
        except TypeError as exc:
            raise ValueError(f"the arguments do not fit {sig}: {exc}") from None
        positional = [p.name for p in params if p.kind in _POSITIONAL]
        star = next((p.name for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL), None)
        for i in range(len(inputs)):
            names.append(positional[i] if i < len(positional) else f"{star}[{i - len(positional)}]")
    arrays = tuple(n for n, v in zip(names, inputs) if _is_float_array(v))
    default = arrays[:1] if first_only else arrays
    if first_only and names and names[0] not in arrays:
        default = ()
    ordered = _order_wrt(wrt, default, arrays, names, sig)
    return CallPlan(function_name(fn), sig, tuple(names), tuple(kwargs), ordered, arrays)


def plan_named(
    fn: Any,
    arrays: Sequence[str],
    fixed: Sequence[str],
    wrt: Wrt,
    first_only: bool = False,
) -> CallPlan:
    """The plan for a call whose arguments are given by name (the command line): ``arrays`` are
    drawn float arrays, ``fixed`` are targets and literals. Passed by position in the signature's
    order as far as they are consecutive, by keyword after that.

    Raises ``ValueError`` listing the signature for a name the function does not take and for a
    required argument not given.
    """
    sig = signature_text(fn)
    params = _parameters(fn)
    given = list(arrays) + list(fixed)
    if params is None:
        raise ValueError(f"cannot read the signature of {sig}; name its arguments in the API")
    by_name = {p.name: p for p in params}
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
    for name in given:
        p = by_name.get(name)
        if (p is None and not var_keyword) or (p is not None and p.kind == p.VAR_POSITIONAL):
            raise ValueError(f"{sig} takes no argument named {name!r}")
    missing = [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in given
    ]
    if missing:
        raise ValueError(f"{sig} needs {', '.join(repr(m) for m in missing)}, which was not given")
    positional: List[str] = []
    for p in params:
        if p.kind not in _POSITIONAL or p.name not in given:
            break
        positional.append(p.name)
    keyword = [n for n in given if n not in positional]
    for name in keyword:
        p = by_name.get(name)
        if p is not None and p.kind == p.POSITIONAL_ONLY:
            raise ValueError(
                f"{sig}: {name!r} is positional-only and an argument before it was not given"
            )
    order = {p.name: i for i, p in enumerate(params)}
    keyword.sort(key=lambda n: order.get(n, len(order)))
    names = tuple(positional) + tuple(keyword)
    float_arrays = tuple(n for n in names if n in arrays)
    default = float_arrays[:1] if first_only else float_arrays
    ordered = _order_wrt(wrt, default, float_arrays, names, sig)
    return CallPlan(
        function_name(fn), sig, tuple(positional), tuple(keyword), ordered, float_arrays
    )


# -- adapters -------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A user function returned something the convention does not allow; ``finding`` says what."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def _recorder() -> Dict[str, Any]:
    # A dict, not attributes: LayerState restores a layer's arrays and scalars after a check,
    # and what was recorded during the check must survive that.
    return {"exceptions": [], "protocol": []}


class FunctionLayer:
    """A user's function(s) as a layer: ``params`` holds the differentiated arguments other than
    the first, ``forward(x)`` calls the user's forward with every argument in place.

    Build with the functions and a :class:`CallPlan`, then :meth:`bind` the argument values.
    """

    supports_batch = False

    def __init__(self, plan: CallPlan, name: Optional[str] = None) -> None:
        self.plan = plan
        self.name = name or plan.function
        self.params: Dict[str, Array] = {}
        self.grads: Dict[str, Array] = {}
        self.cache: Any = None
        self.reseed: Optional[int] = None
        self._fixed: Dict[str, Any] = {}
        self._snapshot: Dict[str, Array] = {}
        self._x_shape: Tuple[int, ...] = ()
        self._gradcheck_record = _recorder()

    def bind(self, values: Mapping[str, Any]) -> Array:
        """Set every argument but the first differentiated one from ``values`` (by name);
        returns that first one, the ``x`` to check. Arrays are copied: the check never touches
        the caller's."""
        plan = self.plan
        self.params = {plan.key(n): np.array(values[n], copy=True) for n in plan.wrt[1:]}
        self._fixed = {
            n: (np.array(values[n], copy=True) if isinstance(values[n], np.ndarray) else values[n])
            for n in plan.names
            if n not in plan.wrt
        }
        self._snapshot = {n: v.copy() for n, v in self._fixed.items() if isinstance(v, np.ndarray)}
        return np.array(values[plan.x_name], copy=True)

    def _arguments(self, x: Any) -> Tuple[List[Any], Dict[str, Any]]:
        plan = self.plan

        def value(name: str) -> Any:
            if name == plan.x_name:
                return x
            if name in plan.wrt:
                return self.params[plan.key(name)]
            v = self._fixed[name]
            return v if isinstance(v, np.ndarray) else copy.deepcopy(v)

        return [value(n) for n in plan.positional], {n: value(n) for n in plan.keyword}

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._gradcheck_record["exceptions"].append(exc)
            raise

    def _protocol(self, code: str, message: str) -> ProtocolError:
        finding = Finding(code, "error", message)
        self._gradcheck_record["protocol"].append(finding)
        return ProtocolError(finding)

    def _reseed(self) -> None:
        if self.reseed is not None:
            # The legacy global RNG on purpose: it is what np.random.rand draws from.
            np.random.seed(self.reseed)  # noqa: NPY002

    def _split_gradients(self, returned: Any, who: str) -> List[Array]:
        """The gradients ``returned`` by ``who``, one per differentiated argument, validated."""
        plan = self.plan
        wrt = plan.wrt
        expected = ", ".join(f"d{n}" for n in wrt)
        if isinstance(returned, (tuple, list)):
            grads = list(returned)
        elif len(wrt) == 1:
            grads = [returned]
        else:
            raise self._protocol(
                "backward-arity",
                f"{who} returned one {type(returned).__name__}; expected {len(wrt)} gradients "
                f"({expected}), one per differentiated argument in the order of {plan.signature}",
            )
        if len(grads) != len(wrt):
            if len(grads) == len(plan.arrays) and set(wrt) <= set(plan.arrays):
                # One gradient per floating-point argument although fewer are differentiated:
                # take the differentiated ones by position, and say which went unchecked.
                grads = [grads[plan.arrays.index(n)] for n in wrt]
                self._gradcheck_record["unchecked"] = [n for n in plan.arrays if n not in wrt]
            else:
                raise self._protocol(
                    "backward-arity",
                    f"{who} returned {len(grads)} gradients; expected {len(wrt)} ({expected}), "
                    f"one per differentiated argument in the order of {plan.signature} "
                    "(choose the differentiated arguments with wrt=, or --wrt on the command line)",
                )
        out = []
        for name, g in zip(wrt, grads):
            shape = self._shape_of(name)
            if g is None:
                raise self._protocol(
                    "backward-none", f"{who} returned None for d{name}; expected shape {shape}"
                )
            arr = np.asarray(g)
            if not np.issubdtype(arr.dtype, np.floating):
                raise self._protocol(
                    "backward-dtype",
                    f"{who} returned d{name} of dtype {arr.dtype}; expected floating point",
                )
            if arr.shape != shape:
                raise self._protocol(
                    "backward-shape",
                    f"{who} returned d{name} of shape {arr.shape}; expected {shape}, the shape of "
                    f"{name}",
                )
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
                raise self._protocol(
                    "backward-nonfinite", f"{who} returned d{name} containing {arr[idx]} at {idx}"
                )
            out.append(arr)
        return out

    def _shape_of(self, name: str) -> Tuple[int, ...]:
        if name == self.plan.x_name:
            return tuple(self._x_shape)
        return tuple(np.shape(self.params[self.plan.key(name)]))

    def _set_gradients(self, grads: List[Array]) -> Array:
        self.grads = {self.plan.key(n): g for n, g in zip(self.plan.wrt[1:], grads[1:])}
        return grads[0]

    def mutated_fixed(self) -> List[Tuple[str, float]]:
        """Fixed array arguments that differ from their values at :meth:`bind`, with the
        largest change (the harness checks ``x`` and ``params`` itself): now, or at any
        :meth:`note_mutations` during the check (the harness's state restore puts the arrays
        back afterwards, which must not hide the mutation)."""
        self.note_mutations()
        seen = self._gradcheck_record.setdefault("mutated", {})
        return sorted(seen.items())

    def note_mutations(self) -> None:
        """Record, by argument name, the largest change of a fixed array argument so far."""
        seen = self._gradcheck_record.setdefault("mutated", {})
        for name, before in self._snapshot.items():
            after = self._fixed[name]
            if after.shape != before.shape:
                seen[name] = float("inf")
            elif not np.array_equal(after, before, equal_nan=True):
                diff = np.abs(after.astype(np.float64) - before.astype(np.float64))
                seen[name] = max(seen.get(name, 0.0), float(np.max(diff)))


class PairLayer(FunctionLayer):
    """``out, cache = forward(...)`` and ``grads = backward(dout, cache)`` as a layer."""

    def __init__(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        plan: CallPlan,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(plan, name)
        self._forward = forward
        self._backward = backward

    def forward(self, x: Array) -> Any:
        args, kwargs = self._arguments(x)
        self._reseed()
        held = self._gradcheck_record.pop("held_cache", None)
        # The cache as the earlier forward returned it, to tell what this forward does to it.
        kept = _deep_copy(held[0]) if held is not None else None
        out = self._call(self._forward, *args, **kwargs)
        if held is not None and kept is not None:
            self._check_cache_kept(held[0], kept, held[1])
        self.note_mutations()
        self._x_shape = np.shape(x)
        if isinstance(out, tuple) and len(out) == 2:
            y, cache = out
            self.cache = ("cache", cache)
        else:
            y = out
            self.cache = ("inputs", (args, kwargs))
        return y

    def backward(self, dy: Array) -> Array:
        how, cache = self.cache
        if how == "cache":
            returned = self._call(self._backward, dy, cache)
            if "cache_checked" not in self._gradcheck_record:
                self._gradcheck_record["cache_checked"] = True
                self._gradcheck_record["held_cache"] = (cache, np.array(dy, copy=True))
        else:
            args, kwargs = cache
            returned = self._call(self._backward, dy, *args, **kwargs)
        grads = self._split_gradients(returned, function_name(self._backward))
        return self._set_gradients(grads)

    def _check_cache_kept(self, cache: Any, kept: Any, dy: Array) -> None:
        """After a later forward, ``backward(dy, cache)`` on the cache an earlier forward
        returned must give what it gives on a copy of that cache taken before (``kept``).

        In a network, every layer's cache is held while the forwards of the layers after it
        run: a cache that aliases a buffer the next forward reuses (a module-level scratch
        array, an ``out=`` buffer) makes the first layer's gradients the last one's. The
        harness's own calls could never see it, since its backward always follows the
        forward that made the cache. Recorded as ``cache-clobbered`` (checked once a check).
        """
        try:
            now = _gradient_arrays(self._backward(dy, cache))
            before = _gradient_arrays(self._backward(dy, kept))
        except Exception:
            return
        if len(now) != len(before):
            return
        for name, a, b in zip(self.plan.wrt, now, before):
            if a.shape == b.shape and np.array_equal(a, b, equal_nan=True):
                continue
            change = (
                float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                if a.shape == b.shape
                else float("inf")
            )
            self._gradcheck_record.setdefault("clobbered", []).append(
                f"the next forward changed the cache that {function_name(self._forward)} "
                f"returned before it: {function_name(self._backward)}(dout, cache) on that "
                f"cache then gives another d{name} (max change {change:.3g}) than on a copy "
                "of the cache taken before; the cache holds a buffer that later forwards reuse, "
                "so in a network a layer's gradients come from the last forward of that shape "
                "(store copies, or fresh arrays, in the cache)"
            )
            return


def _deep_copy(cache: Any) -> Any:
    """A deep copy of ``cache``, or ``None`` where it cannot be copied."""
    try:
        return copy.deepcopy(cache)
    except Exception:
        return None


def _gradient_arrays(returned: Any) -> List[Array]:
    """What a backward returned, as a list of arrays (a bare array is a list of one)."""
    items = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    return [np.asarray(g) for g in items]


class ValueAndGradLayer(FunctionLayer):
    """``value, grad = fun(...)`` as a loss layer: the gradient of the scalar value."""

    is_loss = True

    def __init__(self, fun: Callable[..., Any], plan: CallPlan, name: Optional[str] = None) -> None:
        super().__init__(plan, name)
        self._fun = fun

    def forward(self, x: Array, target: Any = None) -> Any:
        args, kwargs = self._arguments(x)
        self._reseed()
        out = self._call(self._fun, *args, **kwargs)
        self.note_mutations()
        who = self.plan.function
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise self._protocol(
                "forward-return",
                f"{who} returned {type(out).__name__}; a value-and-gradient function returns "
                "the pair (value, gradient)",
            )
        value, grad = out
        if np.ndim(value) != 0:
            raise self._protocol(
                "forward-shape",
                f"{who} returned a value of shape {np.shape(value)}; the value of (value, "
                "gradient) must be a scalar",
            )
        self._x_shape = np.shape(x)
        self.cache = grad
        return value

    def backward(self) -> Array:
        grads = self._split_gradients(self.cache, self.plan.function)
        return self._set_gradients(grads)


class LayerProxy:
    """A layer seen through the harness: it records the exceptions the layer raises (for their
    location) and, with ``reseed``, reseeds NumPy's global RNG before every forward.

    Every attribute but ``forward``, ``backward``, ``name`` and ``supports_batch`` is the
    layer's own (``params`` and ``grads`` are the very same dicts).
    """

    def __init__(self, layer: Any, reseed: Optional[int] = None) -> None:
        self._layer = layer
        self._reseed = reseed
        self._gradcheck_record = _recorder()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_layer", "_reseed", "_gradcheck_record"):
            raise AttributeError(name)
        return getattr(self._layer, name)

    def __dir__(self) -> List[str]:
        # The layer's attributes, as getattr sees them (the check looks for parameters held
        # outside layer.params).
        return sorted(set(dir(self._layer)) | {"forward", "backward", "name", "supports_batch"})

    @property
    def name(self) -> str:
        return layer_name(self._layer)

    @property
    def supports_batch(self) -> bool:
        # A stacked forward would draw one mask for the whole stack: one input at a time.
        return self._reseed is None and bool(getattr(self._layer, "supports_batch", False))

    def forward(self, *args: Any) -> Any:
        if self._reseed is not None:
            draw = current_draw()
            np.random.seed(self._reseed if draw == 0 else [self._reseed, draw])  # noqa: NPY002
        try:
            return self._layer.forward(*args)
        except Exception as exc:
            self._gradcheck_record["exceptions"].append(exc)
            raise

    def backward(self, *args: Any) -> Any:
        try:
            return self._layer.backward(*args)
        except Exception as exc:
            self._gradcheck_record["exceptions"].append(exc)
            raise


# -- checking -------------------------------------------------------------------------------------


def _replace_finding(result: CheckResult, old: Finding, new: Finding) -> None:
    result.findings = [new if f is old else f for f in result.findings]
    if result.reason == f"{old.code}: {old.message}":
        result.reason = f"{new.code}: {new.message}"


def _add_finding(result: CheckResult, finding: Finding) -> None:
    """Append ``finding``; a failure or error it brings makes the verdict (and the reason)."""
    result.findings.append(finding)
    if finding.severity not in ("fail", "error"):
        return
    status = worst_status([result.status, finding.severity])
    if status != result.status or result.reason is None:
        result.reason = f"{finding.code}: {finding.message}"
    result.status = status


def _locate_raised(result: CheckResult, record: Dict[str, Any]) -> None:
    """Give ``*-raised`` findings the layer's file and line, and protocol errors their own
    finding (the adapter's message, not "backward raised ProtocolError")."""
    for f in list(result.findings):
        if not f.code.endswith("-raised"):
            continue
        for finding in reversed(record["protocol"]):
            if finding.message in f.message:
                _replace_finding(result, f, finding)
                break
        else:
            for exc in reversed(record["exceptions"]):
                if f"{type(exc).__name__}: {exc}" in f.message:
                    _replace_finding(result, f, located(f.code, f.severity, f.message, exc))
                    break


def _suggest_reseed(result: CheckResult, reseeded: bool) -> None:
    for f in list(result.findings):
        if f.code == "forward-not-repeatable":
            hint = REPEATABILITY_HINT_RESEEDED if reseeded else REPEATABILITY_HINT
            if hint not in f.message:
                _replace_finding(result, f, dataclasses.replace(f, message=f.message + hint))


def _rename(result: CheckResult, layer: FunctionLayer) -> None:
    """Name every argument as the forward does, and order them as its signature does."""
    mapping = layer.plan.display_names()
    order = {n: i for i, n in enumerate(layer.plan.names)}

    def renamed(args: List[Any]) -> List[Any]:
        out = [dataclasses.replace(a, name=mapping.get(a.name, a.name)) for a in args]
        return sorted(out, key=lambda a: order.get(a.name, len(order)))

    result.arguments = renamed(result.arguments)
    result.screen = renamed(result.screen)
    if all(k == v for k, v in mapping.items()):
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in mapping) + r")\b")

    def sub(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    # The harness's own messages speak of "x" and parameter keys; a raised exception's message
    # and an adapter's protocol message are the user's words, or name arguments already.
    own = [f for f in result.findings if not f.code.endswith("-raised")]
    own = [f for f in own if not any(f is p for p in layer._gradcheck_record["protocol"])]
    texts = {f"{f.code}: {f.message}": f for f in result.findings}
    source = texts.get(result.reason or "")
    new_findings = []
    for f in result.findings:
        new = dataclasses.replace(f, message=sub(f.message)) if any(f is o for o in own) else f
        new_findings.append(new)
        if f is source:
            result.reason = f"{new.code}: {new.message}"
    result.findings = new_findings
    if source is None and result.reason:
        result.reason = sub(result.reason)


def check_adapted(
    layer: Any,
    x: Any,
    *,
    reseed_global_rng: Optional[int] = None,
    **options: Any,
) -> CheckResult:
    """:func:`gradcheck.check_layer` with the findings a user acts on made precise.

    ``layer`` is any layer, or a :class:`FunctionLayer`. With ``reseed_global_rng`` NumPy's
    global RNG is reseeded with that value before every forward (and put back as it was after
    the check). Afterwards: a ``forward-raised``/``backward-raised`` finding names the file and
    line of the layer's frame and keeps the traceback's last frames; a ``forward-not-repeatable``
    finding suggests reseeding; a function's arguments carry the forward's parameter names; a
    fixed array argument that the function modified in place is a ``input-mutated`` failure.
    """
    adapter: Any
    if isinstance(layer, FunctionLayer):
        layer.reseed = reseed_global_rng
        adapter = layer
    else:
        adapter = LayerProxy(layer, reseed_global_rng)
    # Reseeding changes the caller's global RNG; it is put back as it was afterwards.
    state = np.random.get_state() if reseed_global_rng is not None else None  # noqa: NPY002
    try:
        # check_layer reads the parameters after the first forward, so a layer that creates
        # them there has them checked (finding ``params-created-lazily``).
        result = check_layer(adapter, x, **options)
    finally:
        if state is not None:
            np.random.set_state(state)  # noqa: NPY002
    _locate_raised(result, adapter._gradcheck_record)
    _suggest_reseed(result, reseed_global_rng is not None)
    if isinstance(layer, FunctionLayer):
        _rename(result, layer)
        for clobbered in layer._gradcheck_record.get("clobbered", []):
            _add_finding(result, Finding("cache-clobbered", "fail", clobbered))
        unchecked = layer._gradcheck_record.get("unchecked")
        if unchecked:
            names = ", ".join(f"d{n}" for n in unchecked)
            wanted = ", ".join(repr(n) for n in (*layer.plan.wrt, *unchecked))
            _add_finding(
                result,
                Finding(
                    "gradients-unchecked",
                    "warning",
                    f"{layer.plan.function} returned {names} as well, which was not checked: "
                    f"only {', '.join(layer.plan.wrt)} is differentiated (check them all with "
                    f"wrt=({wanted}), or --wrt on the command line)",
                ),
            )
        for name, change in layer.mutated_fixed():
            _add_finding(
                result,
                Finding(
                    "input-mutated",
                    "fail",
                    f"{layer.plan.function} modified its argument {name!r} in place "
                    f"(max change {change:.3g})",
                ),
            )
    return result


def _check_options(seed: int, options: Dict[str, Any]) -> Dict[str, Any]:
    if "target" in options:
        raise TypeError("pass a target as one of the inputs, in the function's own order")
    return dict(options, seed=seed)


def check_functions(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *inputs: Any,
    kwargs: Optional[Mapping[str, Any]] = None,
    wrt: Wrt = None,
    seed: int = 0,
    name: Optional[str] = None,
    reseed_global_rng: Optional[int] = None,
    **options: Any,
) -> CheckResult:
    """Check a forward/backward function pair at ``inputs``.

    ``forward(*inputs, **kwargs)`` returns ``(out, cache)`` or ``out``; ``backward(dout, cache)``
    (or ``backward(dout, *inputs, **kwargs)`` when there is no cache) returns one gradient per
    differentiated input, in the forward's parameter order: ``dx, dw, db`` for
    ``affine_forward(x, w, b)``; a bare array when one input is differentiated.

    ``wrt`` names the differentiated inputs by the forward's parameter names (default: every
    floating-point ``ndarray`` among ``inputs``); ``kwargs`` and the other inputs are passed
    unchanged (non-arrays as a fresh deep copy per call). ``seed`` draws ``dout`` and the
    directions; ``reseed_global_rng`` reseeds ``np.random`` before every forward (dropout).
    ``options`` are :func:`gradcheck.check_layer`'s (``mode``, ``method``, ``rtol``, ``atol``,
    ``dy``, ...). Arguments that do not fit the forward's signature raise ``ValueError``.

    The result names each argument by the forward's parameter names, in signature order::

        >>> r = check_functions(affine_forward, affine_backward, x, w, b)
        >>> [a.name for a in r.arguments]
        ['x', 'w', 'b']
    """
    kwargs = dict(kwargs or {})
    plan = plan_positional(forward, inputs, kwargs, wrt)
    layer = PairLayer(forward, backward, plan, name)
    values = dict(zip(plan.positional, inputs), **kwargs)
    x = layer.bind(values)
    return check_adapted(
        layer, x, reseed_global_rng=reseed_global_rng, **_check_options(seed, options)
    )


def check_value_and_grad(
    fun: Callable[..., Any],
    *inputs: Any,
    kwargs: Optional[Mapping[str, Any]] = None,
    wrt: Wrt = None,
    seed: int = 0,
    name: Optional[str] = None,
    reseed_global_rng: Optional[int] = None,
    **options: Any,
) -> CheckResult:
    """Check ``value, grad = fun(*inputs, **kwargs)``: ``grad`` against the numerical gradient
    of the scalar ``value``.

    ``wrt`` names the differentiated inputs (default: the first, as in SciPy's ``jac=True``
    convention, or every floating-point input when ``fun`` returns a tuple of one gradient per
    floating-point input); ``grad`` is one array, or a tuple with one gradient per name in
    ``wrt`` in the signature's order. Other inputs (labels ``y``, regression targets) are passed
    unchanged. Options as :func:`check_functions`.

        >>> check_value_and_grad(softmax_loss, scores, y).status
        'pass'
    """
    kwargs = dict(kwargs or {})
    plan = plan_positional(fun, inputs, kwargs, wrt, first_only=True)
    if wrt is None and len(plan.arrays) > 1:
        if _gradient_count(fun, inputs, kwargs) == len(plan.arrays):
            # The function says which gradients it computes: every one of them is checked.
            plan = plan_positional(fun, inputs, kwargs, plan.arrays)
    layer = ValueAndGradLayer(fun, plan, name)
    values = dict(zip(plan.positional, inputs), **kwargs)
    x = layer.bind(values)
    return check_adapted(
        layer,
        x,
        target=_NO_TARGET,
        reseed_global_rng=reseed_global_rng,
        **_check_options(seed, options),
    )


def _gradient_count(
    fun: Callable[..., Any], inputs: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    """How many gradients ``fun`` returns beside its value (``None`` for one bare array or where
    the call fails), from one call on copies of the inputs; NumPy's global RNG is put back as
    it was, so the call changes nothing the caller holds."""
    state = np.random.get_state()  # noqa: NPY002
    try:
        out = fun(*copy.deepcopy(list(inputs)), **copy.deepcopy(dict(kwargs)))
    except Exception:
        return None
    finally:
        np.random.set_state(state)  # noqa: NPY002
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], (tuple, list)):
        return len(out[1])
    return None


# -- cases drawn from a seed (the command line, the pytest plugin) ---------------------------------


@dataclass(frozen=True)
class FunctionCase:
    """A function check described by shapes rather than values, drawn afresh for every seed.

    ``arrays`` are ``(name, shape)`` pairs drawn standard normal from ``default_rng(seed)`` in
    the signature's order (the user's stream, as a layer's input); ``targets`` are ``(name,
    TargetSpec)`` pairs drawn from the harness's target stream (:mod:`gradcheck.targets`), ``N``
    being the first dimension of the first differentiated array; ``kwargs`` are fixed values.
    ``backward`` is ``None`` for a value-and-gradient function.
    """

    name: str
    forward: Callable[..., Any]
    backward: Optional[Callable[..., Any]]
    plan: CallPlan
    arrays: Tuple[Tuple[str, Shape], ...]
    targets: Tuple[Tuple[str, TargetSpec], ...] = ()
    kwargs: Tuple[Tuple[str, Any], ...] = ()

    @property
    def x_shape(self) -> Shape:
        return dict(self.arrays)[self.plan.x_name]

    def build(self) -> FunctionLayer:
        """A fresh adapter, its arguments not yet bound (:meth:`prepare` binds them)."""
        if self.backward is None:
            return ValueAndGradLayer(self.forward, self.plan, self.name)
        return PairLayer(self.forward, self.backward, self.plan, self.name)

    def values(self, seed: int) -> Dict[str, Any]:
        """Every argument for ``seed``, by name."""
        shapes = dict(self.arrays)
        rng = np.random.default_rng(seed)
        values: Dict[str, Any] = {}
        for n in self.plan.names:
            if n in shapes:
                values[n] = rng.standard_normal(shapes[n])
        drawn = draw_targets([t for _, t in self.targets], self.x_shape, seed)
        values.update({n: t for (n, _), t in zip(self.targets, drawn)})
        values.update(dict(self.kwargs))
        return values

    def prepare(self, layer: Any, shape: Sequence[int], seed: int) -> Tuple[Array, Optional[Array]]:
        """Draw the arguments for ``seed`` and bind them; returns ``(x, target)`` for
        ``check_layer`` (``shape`` is the first differentiated array's, as registered)."""
        x = layer.bind(self.values(seed))
        return x, (_NO_TARGET if is_loss_layer(layer) else None)


__all__ = [
    "CallPlan",
    "FunctionCase",
    "FunctionLayer",
    "LayerProxy",
    "PairLayer",
    "ProtocolError",
    "ValueAndGradLayer",
    "check_adapted",
    "check_functions",
    "check_value_and_grad",
    "plan_named",
    "plan_positional",
    "signature_text",
]

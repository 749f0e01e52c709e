"""The catalogue of layer variants the report and the pytest battery check.

A variant is registered with :func:`register_layer` (also usable as a decorator) and discovered
by name. Third-party packages add variants through the entry point group ``gradcheck.layers``.
An entry point may name

- a module: importing it registers its variants;
- a function taking no arguments that registers variants when called;
- a layer class (an object with ``forward`` and ``backward``), or a zero-argument factory
  returning a layer: it is registered under the entry point's name.

An entry point that fails to load, or that loads but registers nothing, is reported by name
(:func:`entry_point_errors`) and hides none of the others. The built-in layers arrive through
the same group, from ``layers.catalogue`` (declared in ``pyproject.toml``), so our own variants
take no special path; this module never imports ``layers``. Run from a source tree that was
never installed, the group is empty and the error says so.

Input kinds say what a variant's forward takes:

``"matrix"``
    a float64 batch ``(N, D)``, rows are examples, or any array ``(N, ...)`` of the registered
    rank (``(N, C, H, W)`` for a convolution);
``"logits"``
    float64 logits ``(N, C)`` of a loss layer, with integer labels drawn by the harness;
``"distinct-spectrum"``
    a batch ``(N, D)`` whose covariance has well-separated eigenvalues, for layers that are
    only defined (or only accurate) there: PCA whitening refuses tied eigenvalues, and the
    paper's ``1/(lambda_i - lambda_j)`` chain divides by their gaps.

A loss layer's target (``target=`` of :func:`register_layer`) is one of
:mod:`gradcheck.targets`' kinds (``"labels:C"``, ``"onehot:C"``, ``"normal:Nx1"``); without one,
``check_layer`` draws integer labels.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .functions import signature_text
from .literals import Reference, format_shape, parse_reference
from .objective import is_loss_layer
from .targets import TargetSpec, draw_target, parse_target

ENTRY_POINT_GROUP = "gradcheck.layers"
# The built-in catalogue's entry point, as pyproject.toml declares it.
BUILTIN_ENTRY_POINT = "builtin = layers.catalogue:register"
INPUT_KINDS: Tuple[str, ...] = ("matrix", "logits", "distinct-spectrum")
Shape = Tuple[int, ...]
DEFAULT_SHAPES: Tuple[Shape, ...] = ((8, 3), (16, 5))

Array = np.ndarray
# ``prepare(layer, shape, seed) -> (x, target)``: draws a case's inputs and binds what the layer
# needs besides ``x`` (a function pair's other arguments); see gradcheck.functions.FunctionCase.
Prepare = Callable[[Any, Shape, int], Tuple[Array, Optional[Array]]]


def _is_layer(obj: Any) -> bool:
    return hasattr(obj, "forward") and hasattr(obj, "backward")


@dataclass(frozen=True)
class LayerSpec:
    """One registered variant: how to build it and what inputs it takes.

    ``factory(**options)`` returns a fresh layer; ``options`` names the keyword arguments it
    accepts (for example ``("eps",)``, which the CLI's ``--eps`` fills). ``shapes`` are the
    input shapes the report checks by default, of any rank, the batch first (``(N, D)``,
    ``(N, C, H, W)``); ``min_n`` is the smallest batch the layer allows. ``rtol``/``atol``
    override the harness's derived tolerances where a variant must differ (say why in
    ``description``). ``target`` says how a loss layer's target is drawn; ``prepare`` replaces
    the whole draw (function pairs, see :meth:`draw`).
    """

    name: str
    factory: Callable[..., Any]
    input: str = "matrix"
    shapes: Tuple[Shape, ...] = DEFAULT_SHAPES
    tags: FrozenSet[str] = frozenset()
    rtol: Optional[float] = None
    atol: Optional[float] = None
    options: Tuple[str, ...] = ()
    min_n: int = 1
    description: str = ""
    source: str = "api"
    target: Optional[TargetSpec] = None
    prepare: Optional[Prepare] = None

    def build(self, **options: Any) -> Any:
        """A fresh layer; options not accepted by this variant are ignored."""
        return self.factory(
            **{k: v for k, v in options.items() if k in self.options and v is not None}
        )

    @property
    def is_reference(self) -> bool:
        """Named on a command line (``--layer``, ``--gradcheck-layer``), not registered."""
        return self.source.startswith("--")

    def input_kind(self, layer: Any) -> str:
        """The input kind to draw for ``layer``: a reference has no registration to say it is a
        loss layer, so the built layer is asked (a loss takes logits, unless its target is a
        regression target)."""
        if (
            self.is_reference
            and self.input == "matrix"
            and is_loss_layer(layer)
            and (self.target is None or self.target.kind != "normal")
        ):
            return "logits"
        return self.input

    def draw(self, layer: Any, shape: Sequence[int], seed: int) -> Tuple[Array, Optional[Array]]:
        """The input ``x`` and (for a loss layer with a ``target`` spec) the target of one check.

        ``x`` comes from the user's stream ``default_rng(seed)`` (:func:`make_input`), the
        target from the harness's target stream (:mod:`gradcheck.targets`). ``None`` for the
        target lets ``check_layer`` draw its default labels.
        """
        shape = tuple(int(n) for n in shape)
        if self.prepare is not None:
            return self.prepare(layer, shape, seed)
        x = make_input(self.input_kind(layer), shape, seed)
        target = None
        if self.target is not None and is_loss_layer(layer):
            target = draw_target(self.target, x.shape, seed)
        return x, target


@dataclass
class Registry:
    """Registered variants by name, plus the entry points that failed to load.

    ``log`` lists every name ever registered, in order (a re-registration too): an entry point
    that adds nothing to it while loading registered nothing. ``by_entry_point`` keeps what each
    entry point registered, so that loading again (modules are imported once) is not mistaken
    for an entry point that registers nothing.
    """

    specs: Dict[str, LayerSpec] = field(default_factory=dict)
    load_errors: List[Tuple[str, str]] = field(default_factory=list)
    entry_points_loaded: bool = False
    log: List[str] = field(default_factory=list)
    by_entry_point: Dict[str, List[str]] = field(default_factory=dict)


_REGISTRY = Registry()


def check_shapes(name: str, shapes: Iterable[Sequence[int]]) -> Tuple[Shape, ...]:
    """``shapes`` as tuples of positive ints (any rank, the batch first); ``ValueError`` naming
    the variant otherwise."""
    try:
        shape_list = tuple(tuple(int(v) for v in s) for s in shapes)
    except (TypeError, ValueError):
        shape_list = ()
    if not shape_list or any(len(s) == 0 or min(s) < 1 for s in shape_list):
        raise ValueError(
            f"register_layer({name!r}): shapes must be tuples of positive ints, the batch first, "
            f"such as (N, D) or (N, C, H, W); got {shapes!r}"
        )
    return shape_list


def register_layer(
    name: str,
    factory: Optional[Callable[..., Any]] = None,
    *,
    input: str = "matrix",
    shapes: Iterable[Sequence[int]] = DEFAULT_SHAPES,
    tags: Iterable[str] = (),
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    options: Iterable[str] = (),
    min_n: int = 1,
    description: str = "",
    target: Union[str, TargetSpec, None] = None,
    replace: bool = False,
) -> Any:
    """Add a variant to the catalogue; returns ``factory`` (so it works as a decorator).

    ``register_layer("my-zca", MyZCA, tags=["whitening"])`` or, on a class or factory::

        @register_layer("my-conv", shapes=[(2, 3, 8, 8)])
        class MyConv: ...

    ``shapes`` are input shapes of any rank, the batch first. ``target`` is a loss layer's
    target kind: ``"labels:C"``, ``"onehot:C"`` or ``"normal:SHAPE"`` (``N`` for the batch,
    ``"normal:Nx1"``), see :mod:`gradcheck.targets`.

    Raises ``ValueError`` for an unknown input kind, a malformed shape or target, or a name that
    is already registered (unless ``replace=True``).
    """
    if factory is None:

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            register_layer(
                name,
                f,
                input=input,
                shapes=shapes,
                tags=tags,
                rtol=rtol,
                atol=atol,
                options=options,
                min_n=min_n,
                description=description,
                target=target,
                replace=replace,
            )
            return f

        return decorator
    if input not in INPUT_KINDS:
        raise ValueError(
            f"register_layer({name!r}): input must be one of {INPUT_KINDS}, got {input!r}"
        )
    shape_list = check_shapes(name, shapes)
    if isinstance(target, str):
        try:
            target = parse_target(target)
        except ValueError as exc:
            raise ValueError(f"register_layer({name!r}): target: {exc}") from None
    if name in _REGISTRY.specs and not replace:
        raise ValueError(f"register_layer: a variant named {name!r} is already registered")
    module = getattr(factory, "__module__", "") or ""
    _REGISTRY.specs[name] = LayerSpec(
        name=name,
        factory=factory,
        input=input,
        shapes=shape_list,
        tags=frozenset(tags),
        rtol=rtol,
        atol=atol,
        options=tuple(options),
        min_n=min_n,
        description=description,
        source=module,
        target=target,
    )
    _REGISTRY.log.append(name)
    return factory


def unregister_layer(name: str) -> None:
    """Remove a variant (tests use it to keep the catalogue clean)."""
    _REGISTRY.specs.pop(name, None)


def _entry_points() -> List[Any]:
    from importlib.metadata import entry_points

    eps = entry_points()
    if hasattr(eps, "select"):
        found = list(eps.select(group=ENTRY_POINT_GROUP))
    else:
        found = list(eps.get(ENTRY_POINT_GROUP, []))  # Python 3.9
    # Python 3.9 lists a distribution once per sys.path entry that holds it (a folder on both
    # PYTHONPATH and the working directory, say); load each entry point once.
    unique: Dict[Tuple[str, str], Any] = {}
    for ep in found:
        unique.setdefault((ep.name, ep.value), ep)
    return list(unique.values())


class EntryPointEmpty(Exception):
    """An entry point loaded but registered nothing."""


def _load_entry_point(ep: Any) -> None:
    """Load one entry point; raises what it raised, or :class:`EntryPointEmpty`."""
    key = f"{ep.name} = {ep.value}"
    before = len(_REGISTRY.log)
    obj = ep.load()
    if inspect.isclass(obj):
        if not _is_layer(obj):
            raise EntryPointEmpty(
                f"it names the class {obj.__name__}, which has no forward/backward; name a layer "
                "class, a zero-argument factory, a registering function or a module"
            )
        kind = "logits" if is_loss_layer(obj) else "matrix"
        register_layer(ep.name, obj, input=kind, replace=True)
    elif callable(obj):
        returned = obj()
        if _is_layer(returned):
            kind = "logits" if is_loss_layer(returned) else "matrix"
            register_layer(ep.name, obj, input=kind, replace=True)
    added = _REGISTRY.log[before:]
    if added:
        _REGISTRY.by_entry_point[key] = added
        return
    # Modules are imported once: loading again registers nothing new, and is no error when what
    # it registered the first time is still there.
    earlier = _REGISTRY.by_entry_point.get(key)
    if earlier and all(n in _REGISTRY.specs for n in earlier):
        return
    what = "importing the module" if inspect.ismodule(obj) else "calling it"
    raise EntryPointEmpty(
        f"{what} registered no layer variant; an entry point must name a module or function "
        "that calls gradcheck.register_layer, a layer class, or a zero-argument factory "
        "returning a layer"
    )


def _shadow_hint(ep: Any) -> str:
    """Name the cause when a module of the user's (``layers.py`` in the working folder, say)
    hides the package an entry point lives in."""
    top = str(ep.value).split(":")[0].split(".")[0]
    module = sys.modules.get(top)
    if module is None or hasattr(module, "__path__") or "." not in str(ep.value).split(":")[0]:
        return ""
    where = getattr(module, "__file__", None) or top
    return (
        f" (the module {where} hides the package {top!r} this entry point lives in; rename it, "
        "or run from another folder)"
    )


def load_entry_points(force: bool = False) -> List[Tuple[str, str]]:
    """Load every ``gradcheck.layers`` entry point once; returns ``(name, error)`` failures.

    A broken entry point, or one that registers nothing, is recorded by name and does not hide
    the others. When the built-in catalogue's own entry point is missing (a source tree that
    was never installed), that is recorded too: the built-ins are never imported another way.
    """
    if _REGISTRY.entry_points_loaded and not force:
        return list(_REGISTRY.load_errors)
    _REGISTRY.entry_points_loaded = True
    _REGISTRY.load_errors = []
    found = sorted(_entry_points(), key=lambda e: e.name)
    for ep in found:
        try:
            _load_entry_point(ep)
        except EntryPointEmpty as exc:
            _REGISTRY.load_errors.append((f"{ep.name} = {ep.value}", str(exc)))
        except Exception as exc:
            _REGISTRY.load_errors.append(
                (f"{ep.name} = {ep.value}", f"{type(exc).__name__}: {exc}{_shadow_hint(ep)}")
            )
    if not any(f"{ep.name} = {ep.value}" == BUILTIN_ENTRY_POINT for ep in found):
        _REGISTRY.load_errors.append(
            (
                BUILTIN_ENTRY_POINT,
                "the built-in layers' entry point is not installed, so the built-in variants "
                "are missing: gradcheck is running from a source tree that was never installed "
                "(install it with pip install -e . in the repository)",
            )
        )
    return list(_REGISTRY.load_errors)


def registered_layers(tags: Optional[Iterable[str]] = None) -> List[LayerSpec]:
    """All registered variants (entry points loaded on first use), in name order.

    With ``tags``, only variants carrying at least one of them.
    """
    load_entry_points()
    specs = sorted(_REGISTRY.specs.values(), key=lambda s: s.name)
    if tags is not None:
        wanted = set(tags)
        specs = [s for s in specs if s.tags & wanted]
    return specs


def get_layer_spec(name: str) -> LayerSpec:
    load_entry_points()
    try:
        return _REGISTRY.specs[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.specs)) or "none"
        raise KeyError(f"no registered layer variant named {name!r}; known: {known}") from None


def entry_point_errors() -> List[Tuple[str, str]]:
    load_entry_points()
    return list(_REGISTRY.load_errors)


def import_attribute(module_name: str, attr: str, text: str, option: str = "--layer") -> Any:
    """``module_name.attr`` (``attr`` may be dotted), or ``ValueError`` naming ``option``.

    Like ``python -m``, a module in the current directory can be found.
    """
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(
            f"{option} {text}: module {module_name!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option} {text}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve(
    ref: Union[str, Reference], option: str = "--layer"
) -> Tuple[Callable[..., Any], Reference]:
    """``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)`` to ``(factory, reference)``.

    ``factory()`` builds the layer: the attribute itself, or with ``ARGS`` a
    ``functools.partial`` that passes them. Raises ``ValueError`` with a message fit for the
    command line when the reference is malformed, the module does not import, or the attribute
    is missing or not callable (arguments that do not fit are for the caller to find out, with
    ``inspect.signature``).
    """
    parsed = parse_reference(ref, option) if isinstance(ref, str) else ref
    obj = import_attribute(parsed.module, parsed.attr, parsed.text, option)
    if not callable(obj):
        raise ValueError(
            f"{option} {parsed.text}: {parsed.attr!r} is not a layer class or a factory function"
        )
    if parsed.called:
        return functools.partial(obj, *parsed.args, **parsed.kwargs), parsed
    return obj, parsed


def resolve_reference(ref: str) -> Callable[..., Any]:
    """``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)`` to a zero-argument factory (see :func:`resolve`)."""
    return resolve(ref)[0]


def spec_from_reference(
    ref: str,
    option: str = "--layer",
    target: Optional[TargetSpec] = None,
    shapes: Optional[Sequence[Sequence[int]]] = None,
) -> LayerSpec:
    """A spec for ``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)`` named on a command line (``option``).

    Raises ``ValueError`` (a message fit for the command line, with the signature) when the
    reference does not resolve, or its arguments do not fit the callable's signature, or it
    needs arguments and none were given. Whether it builds a layer is left to the caller.
    """
    factory, parsed = resolve(ref, option)
    obj = import_attribute(parsed.module, parsed.attr, parsed.text, option)
    try:
        inspect.signature(obj).bind(*parsed.args, **parsed.kwargs)
    except TypeError as exc:
        sig = signature_text(obj)
        if parsed.called:
            raise ValueError(f"{option} {ref}: the arguments do not fit {sig}: {exc}") from exc
        raise ValueError(
            f"{option} {ref}: it cannot be called with no arguments ({exc}); its signature is "
            f"{sig}: give the arguments as literals, {option} '{parsed.module}:{parsed.attr}"
            "(...)', or point at a factory function taking none"
        ) from exc
    except ValueError:
        pass  # no signature to inspect (some builtins); calling it will tell
    return LayerSpec(
        name=ref,
        factory=factory,
        source=option,
        target=target,
        shapes=check_shapes(ref, shapes) if shapes else DEFAULT_SHAPES,
    )


def make_input(spec_input: str, shape: Sequence[int], seed: int) -> np.ndarray:
    """A float64 input of ``shape`` (any rank) for an input kind, from ``default_rng(seed)``.

    This is the user's stream on purpose: the harness's own draws (``dy``, directions, labels)
    come from a separate stream, see :func:`gradcheck.finite_diff.harness_rng`.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(shape))
    if spec_input == "logits":
        # Logits of a few units give a non-degenerate softmax (not one-hot, not uniform).
        x = 3.0 * x
    return x


__all__ = [
    "DEFAULT_SHAPES",
    "ENTRY_POINT_GROUP",
    "INPUT_KINDS",
    "LayerSpec",
    "Registry",
    "entry_point_errors",
    "format_shape",
    "get_layer_spec",
    "load_entry_points",
    "make_input",
    "register_layer",
    "registered_layers",
    "resolve",
    "resolve_reference",
    "spec_from_reference",
    "unregister_layer",
]

"""The catalogue of layer variants the report and the pytest battery check.

A variant is registered with :func:`register_layer` (also usable as a decorator) and discovered
by name. Third-party packages add variants through the entry point group ``gradcheck.layers``:
each entry point names a module (importing it registers its variants) or a zero-argument callable
(calling it registers them). The built-in layers arrive through the same group, from
``layers.catalogue``, so our own variants take no special path.

Input kinds say what a variant's forward takes:

``"matrix"``
    a float64 batch ``(N, D)``, rows are examples;
``"logits"``
    float64 logits ``(N, C)`` of a loss layer, with integer labels drawn by the harness;
``"distinct-spectrum"``
    a batch ``(N, D)`` whose covariance has well-separated eigenvalues, for layers that are
    only defined (or only accurate) there: PCA whitening refuses tied eigenvalues, and the
    paper's ``1/(lambda_i - lambda_j)`` chain divides by their gaps.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

import numpy as np

ENTRY_POINT_GROUP = "gradcheck.layers"
INPUT_KINDS: Tuple[str, ...] = ("matrix", "logits", "distinct-spectrum")
DEFAULT_SHAPES: Tuple[Tuple[int, int], ...] = ((8, 3), (16, 5))


@dataclass(frozen=True)
class LayerSpec:
    """One registered variant: how to build it and what inputs it takes.

    ``factory(**options)`` returns a fresh layer; ``options`` names the keyword arguments it
    accepts (for example ``("eps",)``, which the CLI's ``--eps`` fills). ``shapes`` are the
    ``(N, D)`` shapes the report checks by default; ``min_n`` is the smallest batch the layer
    allows. ``rtol``/``atol`` override the harness's derived tolerances where a variant must
    differ (say why in ``description``).
    """

    name: str
    factory: Callable[..., Any]
    input: str = "matrix"
    shapes: Tuple[Tuple[int, int], ...] = DEFAULT_SHAPES
    tags: FrozenSet[str] = frozenset()
    rtol: Optional[float] = None
    atol: Optional[float] = None
    options: Tuple[str, ...] = ()
    min_n: int = 1
    description: str = ""
    source: str = "api"

    def build(self, **options: Any) -> Any:
        """A fresh layer; options not accepted by this variant are ignored."""
        return self.factory(
            **{k: v for k, v in options.items() if k in self.options and v is not None}
        )


@dataclass
class Registry:
    """Registered variants by name, plus the entry points that failed to load."""

    specs: Dict[str, LayerSpec] = field(default_factory=dict)
    load_errors: List[Tuple[str, str]] = field(default_factory=list)
    entry_points_loaded: bool = False


_REGISTRY = Registry()


def register_layer(
    name: str,
    factory: Optional[Callable[..., Any]] = None,
    *,
    input: str = "matrix",
    shapes: Iterable[Tuple[int, int]] = DEFAULT_SHAPES,
    tags: Iterable[str] = (),
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    options: Iterable[str] = (),
    min_n: int = 1,
    description: str = "",
    replace: bool = False,
) -> Any:
    """Add a variant to the catalogue; returns ``factory`` (so it works as a decorator).

    ``register_layer("my-zca", MyZCA, tags=["whitening"])`` or, on a class or factory::

        @register_layer("my-zca", tags=["whitening"])
        class MyZCA: ...

    Raises ``ValueError`` for an unknown input kind, a malformed shape, or a name that is already
    registered (unless ``replace=True``).
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
                replace=replace,
            )
            return f

        return decorator
    if input not in INPUT_KINDS:
        raise ValueError(
            f"register_layer({name!r}): input must be one of {INPUT_KINDS}, got {input!r}"
        )
    shape_list = tuple(tuple(int(v) for v in s) for s in shapes)
    if not shape_list or any(len(s) != 2 or min(s) < 1 for s in shape_list):
        raise ValueError(
            f"register_layer({name!r}): shapes must be (N, D) pairs of positive ints, "
            f"got {shapes!r}"
        )
    if name in _REGISTRY.specs and not replace:
        raise ValueError(f"register_layer: a variant named {name!r} is already registered")
    module = getattr(factory, "__module__", "") or ""
    _REGISTRY.specs[name] = LayerSpec(
        name=name,
        factory=factory,
        input=input,
        shapes=shape_list,  # type: ignore[arg-type]
        tags=frozenset(tags),
        rtol=rtol,
        atol=atol,
        options=tuple(options),
        min_n=min_n,
        description=description,
        source=module,
    )
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


def load_entry_points(force: bool = False) -> List[Tuple[str, str]]:
    """Import every ``gradcheck.layers`` entry point once; returns ``(name, error)`` failures.

    A broken entry point is recorded by name and does not hide the others.
    """
    if _REGISTRY.entry_points_loaded and not force:
        return list(_REGISTRY.load_errors)
    _REGISTRY.entry_points_loaded = True
    _REGISTRY.load_errors = []
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:
            _REGISTRY.load_errors.append(
                (f"{ep.name} = {ep.value}", f"{type(exc).__name__}: {exc}")
            )
    if not any(spec.source.startswith("layers.") for spec in _REGISTRY.specs.values()):
        # Running from a source tree that was never installed: there is no entry point
        # metadata, so register the built-ins directly rather than report an empty catalogue.
        try:
            importlib.import_module("layers.catalogue").register()
        except Exception as exc:
            _REGISTRY.load_errors.append(
                ("builtin = layers.catalogue:register", f"{type(exc).__name__}: {exc}")
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


def resolve_reference(ref: str) -> Callable[[], Any]:
    """``MODULE:ATTR`` to a zero-argument factory (a layer class or a function returning a layer).

    Raises ``ValueError`` with a message fit for the command line when the reference is malformed,
    the module does not import, or the attribute is missing or not callable.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"--layer expects MODULE:ATTR (for example mypkg.layers:MyLayer), got {ref!r}"
        )
    if "" not in sys.path and "." not in sys.path:
        # Like `python -m`, let a module in the current directory be found.
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(
            f"--layer {ref}: module {module_name!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--layer {ref}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--layer {ref}: {attr!r} is not a layer class or a factory function")
    return obj  # type: ignore[no-any-return]


def make_input(spec_input: str, shape: Tuple[int, int], seed: int) -> np.ndarray:
    """A float64 input of ``shape`` for an input kind, drawn from ``default_rng(seed)``.

    This is the user's stream on purpose: the harness's own draws (``dy``, directions, labels)
    come from a separate stream, see :func:`gradcheck.finite_diff.harness_rng`.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if spec_input == "logits":
        # Logits of a few units give a non-degenerate softmax (not one-hot, not uniform).
        x = 3.0 * x
    return x

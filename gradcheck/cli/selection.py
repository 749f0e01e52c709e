"""Which layers ``gradcheck report`` checks: ``--layer`` references, a function, the catalogue.

:func:`select_specs` turns the parsed ``report`` options into the list of
:class:`~gradcheck.registry.LayerSpec` to check: each ``--layer MODULE:ATTR`` or
``MODULE:ATTR(ARGS)`` (:func:`reference_spec`, which probes what the reference builds in a worker
process so that a non-layer is a usage error and a constructor that hangs or crashes is the
layer's own report row), the ``--pair`` or ``--value-and-grad`` function with its ``--input``,
``--kwarg``, ``--target`` and ``--wrt`` (:func:`function_spec`), and the registered catalogue,
filtered by the ``--only`` / ``--skip`` shell patterns. Every contradiction or reference that
names nothing is a :class:`~gradcheck.argtypes.UsageError` with the option in its message.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..argtypes import UsageError
from ..functions import FunctionCase, plan_named, signature_text
from ..isolation import Crash, Worker, can_fork
from ..objective import is_loss_layer
from ..registry import LayerSpec, import_attribute, registered_layers, spec_from_reference
from ..runner import DEFAULT_TIMEOUT, LayerTimeout, time_limit
from ..targets import TargetSpec

_PROBE_TIMEOUT = 5.0


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def reference_spec(
    ref: str,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    target: Optional[TargetSpec] = None,
    option: str = "--layer",
) -> LayerSpec:
    """``--layer MODULE:ATTR`` or ``MODULE:ATTR(ARGS)`` to a spec; a ``UsageError`` when it
    cannot name a layer.

    Usage errors: the module does not import, the attribute is missing or not callable, the
    arguments do not fit its signature (or it needs some and none were given), or what it
    returns has no forward/backward. A factory that raises or hangs is the layer's own failure:
    it is left for its report row (``build-raised``, ``timeout``). ``target`` is attached when
    the layer is a loss layer (or could not be built to tell).
    """
    try:
        # Whatever the module prints on import belongs on stderr, not in a JSON report.
        with contextlib.redirect_stdout(sys.stderr):
            spec = spec_from_reference(ref, option, target)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    # Only to tell a layer from a non-layer early; a slow constructor gets its full --timeout
    # in its own row. In a worker process where one can be forked: a constructor that calls
    # os._exit, crashes or loops past the limit costs its own row, not the CLI.
    limit = None if timeout is None else min(timeout, _PROBE_TIMEOUT)
    probe = _probe_layer(spec.factory, limit)
    if probe is not None and not probe[1]:
        raise UsageError(f"{option} {ref}: it returned {probe[0]}, which has no forward/backward")
    if target is not None and probe is not None and not probe[2]:
        spec = dataclasses.replace(spec, target=None)
    return spec


def _describe_layer(factory: Callable[[], Any]) -> Tuple[str, bool, bool]:
    """(type name, has forward and backward, is a loss layer) of what ``factory`` builds."""
    with contextlib.redirect_stdout(sys.stderr):
        layer = factory()
    is_layer = hasattr(layer, "forward") and hasattr(layer, "backward")
    return type(layer).__name__, is_layer, is_layer and is_loss_layer(layer)


def _probe_layer(
    factory: Callable[[], Any], limit: Optional[float]
) -> Optional[Tuple[str, bool, bool]]:
    """:func:`_describe_layer`, or ``None`` when building raised, crashed or hung."""
    if can_fork():
        with Worker(lambda _index: _describe_layer(factory)) as worker:
            outcome = worker.run(0, limit)
        if isinstance(outcome, Crash) or not outcome[0]:
            return None
        return outcome[1]  # type: ignore[no-any-return]
    try:
        with time_limit(limit):
            return _describe_layer(factory)
    except (Exception, SystemExit, LayerTimeout):
        return None


def _function(ref: str, option: str) -> Tuple[str, str, Any]:
    """``MODULE:NAME`` to ``(module, name, function)``; a ``UsageError`` when it names none."""
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise UsageError(
            f"{option} expects MODULE:NAME (for example mypkg.layers:affine), got {ref!r}"
        )
    try:
        with contextlib.redirect_stdout(sys.stderr):
            fn = import_attribute(module, name, ref, option)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not callable(fn):
        raise UsageError(f"{option} {ref}: {name!r} is not a function")
    return module, name, fn


def _forward_names(module: str) -> str:
    mod = sys.modules.get(module)
    names = sorted(n for n in dir(mod) if n.endswith("_forward") and callable(getattr(mod, n)))
    return ", ".join(names) if names else "none"


def _resolve_pair(ref: str) -> Tuple[Any, Any]:
    """``--pair MODULE:NAME`` (``NAME_forward``, ``NAME_backward``) or ``MODULE:FWD,BWD``."""
    module, sep, names = ref.partition(":")
    if "," in names:
        fwd, _, bwd = names.partition(",")
        _, _, forward = _function(f"{module}:{fwd.strip()}", "--pair")
        _, _, backward = _function(f"{module}:{bwd.strip()}", "--pair")
        return forward, backward
    if not sep or not module or not names:
        raise UsageError(
            f"--pair expects MODULE:NAME or MODULE:FWD,BWD (for example mypkg.layers:affine), "
            f"got {ref!r}"
        )
    found = []
    for suffix in ("_forward", "_backward"):
        try:
            found.append(_function(f"{module}:{names}{suffix}", "--pair")[2])
        except UsageError as exc:
            if "has no attribute" not in str(exc):
                raise
            raise UsageError(
                f"--pair {ref}: module {module!r} has no function {names}{suffix}; its *_forward "
                f"functions: {_forward_names(module)}. Name both with --pair MODULE:FWD,BWD"
            ) from None
    return found[0], found[1]


def function_spec(args: argparse.Namespace) -> Optional[LayerSpec]:
    """The ``--pair`` or ``--value-and-grad`` function as a spec, or ``None``; a ``UsageError``
    (listing the signature) for arguments it does not take or needs and was not given."""
    named_targets = [(n, t) for n, t in args.target if n is not None]
    ref = args.pair or args.value_and_grad
    if ref is None:
        for flag, given in (
            ("--input", args.input),
            ("--kwarg", args.kwarg),
            ("--wrt", args.wrt),
            ("--target NAME=SPEC", named_targets),
        ):
            if given:
                raise UsageError(
                    f"{flag} gives an argument of a function: use it with --pair or "
                    "--value-and-grad"
                )
        return None
    option = "--pair" if args.pair else "--value-and-grad"
    if args.pair:
        forward, backward = _resolve_pair(args.pair)
    else:
        forward, backward = _function(args.value_and_grad, option)[2], None
    names = [n for n, _ in args.input] + [n for n, *_ in args.kwarg] + [n for n, _ in named_targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"{option} {ref}: {', '.join(repeated)} given more than once")
    if not args.input:
        raise UsageError(
            f"{option} {ref}: give its array arguments with --input NAME=SHAPE; its signature is "
            f"{signature_text(forward)}"
        )
    inputs = [n for n, _ in args.input]
    for name in args.wrt:
        if name not in inputs:
            raise UsageError(
                f"--wrt {name}: not one of the --input arrays ({', '.join(inputs)}); only they "
                "are differentiated"
            )
    try:
        plan = plan_named(
            forward,
            inputs,
            [n for n, *_ in args.kwarg] + [n for n, _ in named_targets],
            args.wrt or None,
            first_only=backward is None,
        )
    except ValueError as exc:
        raise UsageError(f"{option} {ref}: {exc}") from exc
    case = FunctionCase(
        name=ref,
        forward=forward,
        backward=backward,
        plan=plan,
        arrays=tuple((n, tuple(shape)) for n, shape in args.input),
        targets=tuple(named_targets),
        kwargs=tuple((n, value) for n, value, _ in args.kwarg),
    )
    return LayerSpec(
        name=ref,
        factory=case.build,
        shapes=(case.x_shape,),
        source=option,
        prepare=case.prepare,
    )


def uses_catalogue(args: argparse.Namespace) -> bool:
    """Whether the registered catalogue is checked: with --registered, or when nothing else is
    named (no --layer, no function)."""
    named = bool(args.layer) or bool(args.pair or args.value_and_grad)
    return bool(args.registered) or not named


def select_specs(args: argparse.Namespace) -> List[LayerSpec]:
    """The variants to check: ``--layer`` references, the ``--pair``/``--value-and-grad``
    function and/or the registered catalogue, filtered by ``--only`` and ``--skip``; a
    ``UsageError`` when nothing is left or the options contradict each other."""
    layer_targets = [t for n, t in args.target if n is None]
    if len(layer_targets) > 1:
        raise UsageError("--target SPEC (for --layer loss layers) given more than once")
    target = layer_targets[0] if layer_targets else None
    if target is not None and not args.layer:
        raise UsageError(
            "--target SPEC sets the target of --layer loss layers; a function's target is "
            "--target NAME=SPEC"
        )
    function = function_spec(args)
    if args.shape and not args.layer and not args.registered and function is not None:
        raise UsageError(
            "--shape sets a layer's input shape; a function's arrays are given with "
            "--input NAME=SHAPE"
        )
    specs = [reference_spec(ref, args.timeout, target) for ref in args.layer]
    if target is not None and not any(s.target is not None for s in specs):
        raise UsageError(
            "--target SPEC is for loss layers (is_loss = True, forward(x, target)); none of the "
            "--layer layers is one"
        )
    if function is not None:
        specs.append(function)
    if uses_catalogue(args):
        specs += registered_layers()
    if args.only:
        specs = [s for s in specs if _matches(s.name, args.only)]
    if args.skip:
        specs = [s for s in specs if not _matches(s.name, args.skip)]
    if not specs:
        raise UsageError("no layer matches the selection (see 'gradcheck list')")
    return specs

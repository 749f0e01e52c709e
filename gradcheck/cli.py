"""The ``gradcheck`` command line: ``report``, ``list``, ``mutants``, ``paper``, ``plot step-size``.

What ``report`` checks: layers (``--layer MODULE:ATTR`` or ``MODULE:ATTR(ARGS)``, the registered
catalogue), a forward/backward function pair (``--pair``) or a value-and-gradient function
(``--value-and-grad``) whose arguments are drawn from ``--input NAME=SHAPE`` and given by
``--kwarg NAME=LITERAL`` and ``--target NAME=SPEC`` (see :mod:`gradcheck.functions`).

Exit codes: 0 all checks passed; 1 a check failed or errored (or, with ``--strict``, was
inconclusive); 2 a usage or input error (unknown layer, malformed ``--shape``, a module that does
not import, an ``--input`` the function does not take, a negative ``--seed``, matplotlib missing
for ``plot``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import os
import shlex
import sys
import textwrap
import time
from typing import IO, Any, Callable, List, Optional, Sequence, Tuple

from .argtypes import (
    UsageError,
    parse_entry,
    parse_input,
    parse_kwarg,
    parse_seed,
    parse_shape,
    parse_target_option,
)
from .argtypes import nonnegative_float as _nonnegative_float
from .argtypes import nonnegative_int as _nonnegative_int
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .check import MODES
from .finite_diff import METHODS
from .functions import FunctionCase, plan_named, signature_text
from .isolation import Crash, Worker, can_fork
from .literals import format_shape
from .objective import is_loss_layer
from .paper.command import add_paper_command
from .progress import Progress
from .registry import (
    LayerSpec,
    entry_point_errors,
    get_layer_spec,
    import_attribute,
    registered_layers,
    spec_from_reference,
)
from .report import FORMATS, Report, render, write_atomic
from .runner import CheckOptions, Job, LayerTimeout, RunInterrupted, run_jobs, time_limit
from .targets import TARGET_FORMS, TargetSpec

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
DEFAULT_SEEDS = (0, 1)
# None: adaptive (batches of 8, 8, 16, 32 until a single wrong entry of 1e-6 is resolved).
DEFAULT_DIRECTIONS = None
DEFAULT_TIMEOUT = 120.0
_PROBE_TIMEOUT = 5.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


MAIN_EXAMPLES = """\
examples:
  gradcheck report                          check every built-in layer
  gradcheck report --layer mypkg.layers:MyLayer --shape 32x8
  gradcheck list                            the registered layer variants
  gradcheck plot step-size --layer tanh     error against step size, as a PNG
  gradcheck report --help                   every option of a command

Run 'gradcheck COMMAND --help' for the options of a command.
"""

REPORT_EXAMPLES = """\
examples:
  gradcheck report                                   every built-in layer, default shapes and seeds
  gradcheck report --only 'zca*' --shape 64x16 --seed 3
  gradcheck report --layer mypkg.layers:MyLayer --shape 32x8
  gradcheck report --layer 'mypkg.layers:Conv(3, 8, k=3)' --shape 2x3x8x8
  gradcheck report --layer mypkg.layers:MyLayer --registered    yours and the catalogue
  gradcheck report --layer mypkg.losses:MSE --shape 8x1 --target normal:Nx1
  gradcheck report --pair layers:affine --input x=4x5 --input w=5x3 --input b=3
  gradcheck report --pair layers:conv_forward_naive,conv_backward_naive --input x=2x3x5x5 \\
      --input w=2x3x3x3 --input b=2 --kwarg 'conv_param={"stride": 1, "pad": 1}'
  gradcheck report --value-and-grad layers:softmax_loss --input x=8x10 --target y=labels:10
  gradcheck report --layer mypkg.layers:Dropout --reseed-global-rng
  gradcheck report --format json --output report.json
  gradcheck report --format junit --output junit.xml --quiet   for a CI test reporter
  gradcheck report --format markdown >> "$GITHUB_STEP_SUMMARY"
  gradcheck report --mode full --method richardson --strict

exit status: 0 all checks passed; 1 a check failed or errored (inconclusive too with --strict),
or an entry point failed to load; 2 a usage or input error.
"""

LIST_EXAMPLES = """\
examples:
  gradcheck list
  gradcheck list | grep whitening

columns: name, input kind, default shapes, tags.
"""

PLOT_EXAMPLES = """\
examples:
  gradcheck plot step-size --layer tanh
  gradcheck plot step-size --layer zca-eigh --shape 16x4 --entry 3,1 --output zca-step.png
  gradcheck plot step-size --layer mypkg.layers:MyLayer --shape 8x4 --method five-point

Needs matplotlib: pip install matplotlib (or pip install 'gradcheck-dbn[plot]').
"""

STEP_SIZE_DESCRIPTION = """\
Sweep the finite-difference step h over 1e-14 .. 1e-1 and print, then plot (log-log), the error
of the numerical derivative of L(x) = <forward(x), dy> against the layer's analytic backward: for
one entry of the input (--entry i,j; absolute error) or for all entries (relative 2-norm error;
every entry's step is h * max(1, |x_i|), as in the harness). The curve is a V: truncation error
(slope 2 for central, 4 for five-point) on the right, round-off (slope -1, eps / h) on the left.
The truncation line is the estimator's own error estimate, the round-off line the eps bound, and
the step the harness chooses (gradcheck.finite_diff.base_step) is marked. Exit 0 on success, 1
if the layer fails to run, 2 on a usage error or when matplotlib is missing.
"""


def _wrap(text: str) -> str:
    """A description wrapped to the width of the hand-wrapped epilogs (the raw formatter that
    keeps the epilogs' layout would print a description as one long line)."""
    return textwrap.fill(text, width=96)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradcheck",
        description="Verify hand-written NumPy backward passes against numerical gradients.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=MAIN_EXAMPLES,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    rep = sub.add_parser(
        "report",
        help="check layers and print the gradient-error report",
        description=_wrap(
            "Check every selected layer at each shape and seed, print one row per check "
            "and a summary, and for every check that does not pass its worst entries side by side "
            "with a command that reproduces it. Exit 0 when all pass, 1 when any fails or errors, "
            "2 on a usage error."
        ),
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = rep.add_argument_group("what to check")
    src.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a layer class or factory in an importable module (repeatable), with constructor "
        "arguments as Python literals if it needs them: 'mypkg.layers:BatchNorm(4, eps=1e-3)'; "
        "replaces the registered catalogue unless --registered is given too",
    )
    fn = src.add_mutually_exclusive_group()
    fn.add_argument(
        "--pair",
        metavar="MODULE:NAME",
        help="a forward/backward function pair: NAME_forward(...) -> (out, cache) and "
        "NAME_backward(dout, cache) -> one gradient per differentiated input; "
        "MODULE:FWD,BWD names both. Its arguments come from --input, --kwarg, --target",
    )
    fn.add_argument(
        "--value-and-grad",
        metavar="MODULE:NAME",
        help="a function returning (value, gradient) such as loss, dx = softmax_loss(x, y); "
        "its arguments come from --input, --kwarg, --target",
    )
    src.add_argument(
        "--registered",
        action="store_true",
        help="every registered variant, the built-ins and third-party entry points "
        "(the default without --layer; with --layer, checks both)",
    )
    src.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep layers whose name matches this shell pattern (repeatable)",
    )
    src.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="drop layers whose name matches this shell pattern (repeatable)",
    )
    inp = rep.add_argument_group("inputs")
    inp.add_argument(
        "--shape",
        action="append",
        type=parse_shape,
        default=[],
        metavar="NxD",
        help="a layer's input shape, any rank: 16x4, 2x3x8x8 (repeatable); default: each "
        "layer's own shapes",
    )
    inp.add_argument(
        "--input",
        action="append",
        type=parse_input,
        default=[],
        metavar="NAME=SHAPE",
        help="an array argument of the --pair or --value-and-grad function, drawn standard "
        "normal from the seed: x=2x3x8x8 (repeatable; passed in the signature's order)",
    )
    inp.add_argument(
        "--kwarg",
        action="append",
        type=parse_kwarg,
        default=[],
        metavar="NAME=LITERAL",
        help="a non-array argument of the function, a Python literal: "
        """'conv_param={"stride": 1, "pad": 1}' (repeatable)""",
    )
    inp.add_argument(
        "--target",
        action="append",
        type=parse_target_option,
        default=[],
        metavar="[NAME=]SPEC",
        help=f"a target, never differentiated: {TARGET_FORMS}. NAME=SPEC for an argument of "
        "the function (y=labels:10), SPEC alone for --layer loss layers (repeatable)",
    )
    inp.add_argument(
        "--wrt",
        action="append",
        default=[],
        metavar="NAME",
        help="differentiate the function with respect to this --input (repeatable); default: "
        "every --input of a --pair, the first one of a --value-and-grad",
    )
    inp.add_argument(
        "--seed",
        action="append",
        type=parse_seed,
        default=[],
        metavar="N",
        help="seed for the input and the harness's draws, >= 0 (repeatable); "
        f"default {' and '.join(str(s) for s in DEFAULT_SEEDS)}",
    )
    inp.add_argument(
        "--reseed-global-rng",
        action="store_true",
        help="reseed NumPy's global RNG (np.random.seed) with the check's seed before every "
        "forward, so that a layer drawing dropout masks from np.random is a fixed function",
    )
    inp.add_argument(
        "--eps",
        type=_positive_float,
        default=None,
        help="eps for the layers that take one (whitening, standardization)",
    )
    inp.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="input dtype (default float64; float32 needs --allow-float32)",
    )
    inp.add_argument(
        "--allow-float32",
        action="store_true",
        help="check float32 inputs with the looser rtol = sqrt(eps32) = 3.5e-4",
    )
    met = rep.add_argument_group("method")
    met.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="full: every entry; directional: random directions; auto (default): "
        "directional screen, then full mode where it does not pass",
    )
    met.add_argument(
        "--method", choices=METHODS, default="central", help="numerical estimator (default central)"
    )
    met.add_argument(
        "--directions",
        type=_positive_int,
        default=DEFAULT_DIRECTIONS,
        metavar="K",
        help="random directions per argument in the directional screen (default: adaptive, "
        "8 to 64, until one entry wrong by a relative 1e-6 is resolved)",
    )
    met.add_argument(
        "--budget",
        type=_nonnegative_int,
        default=None,
        metavar="N",
        help="forward evaluations auto mode may spend beyond its first screen, on more "
        "directions and on localizing a failure (default max(256, 2^28 / entries)); over it, a "
        "failed screen stays a fail and wrong entries are found by bisection",
    )
    met.add_argument(
        "--no-escalate",
        dest="escalate",
        action="store_false",
        help="report a central/five-point estimate that cannot resolve the tolerance as "
        "inconclusive instead of repeating it with richardson",
    )
    met.add_argument(
        "--rtol",
        type=_nonnegative_float,
        default=None,
        help="relative tolerance (default derived: sqrt(eps) = 1.5e-8)",
    )
    met.add_argument(
        "--atol",
        type=_nonnegative_float,
        default=None,
        help="absolute tolerance (default rtol times the largest gradient entry)",
    )
    met.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="stop a single check after this long and report it as an error "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    met.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run the checks in this process instead of a worker process (to debug a layer "
        "with pdb); a layer that crashes or ignores signals then stops the whole run",
    )
    out = rep.add_argument_group("output")
    out.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default text)"
    )
    out.add_argument(
        "--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout"
    )
    out.add_argument("--strict", action="store_true", help="count inconclusive checks as failures")
    out.add_argument(
        "--plots",
        metavar="DIR",
        help="write an error picture (PNG) of each failing check into DIR, linked from the "
        "Markdown report (needs matplotlib)",
    )
    out.add_argument(
        "--quiet",
        action="store_true",
        help="no progress counter and no summary line on stderr",
    )
    rep.set_defaults(handler=cmd_report)

    mut = sub.add_parser(
        "mutants",
        help="mutation self-test: the battery must catch every deliberately wrong backward",
        description=_wrap(
            "Run the standard battery on a catalogue of deliberately wrong backward "
            "passes derived from the built-in layers (layers/mutants.py) and on every correct "
            "registered variant. Prints the mutation score and the false-alarm count. Exit 0 when "
            "every mutant is caught and no correct layer fails, 1 otherwise."
        ),
        epilog="examples:\n  gradcheck mutants\n  gradcheck mutants --format markdown --seed 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mut.add_argument(
        "--seed",
        action="append",
        type=parse_seed,
        default=[],
        metavar="N",
        help="seeds of the battery (repeatable); default 0 and 1",
    )
    mut.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format (default text)",
    )
    mut.add_argument(
        "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout"
    )
    mut.set_defaults(handler=cmd_mutants)

    paper = add_paper_command(sub)

    lst = sub.add_parser(
        "list",
        help="list the registered layer variants",
        description=_wrap(
            "List every registered layer variant with its input kind, default shapes "
            "and tags. An entry point that fails to load is named on stderr (exit status 1)."
        ),
        epilog=LIST_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lst.set_defaults(handler=cmd_list)

    plot = sub.add_parser(
        "plot",
        help="pictures: the error of the numerical derivative against the step size",
        description="Draw pictures of how the harness's numbers behave. Needs matplotlib.",
        epilog=PLOT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot_sub = plot.add_subparsers(dest="picture", metavar="PICTURE", parser_class=_Parser)
    plot.set_defaults(handler=lambda args: _missing_subcommand(plot))
    step = plot_sub.add_parser(
        "step-size",
        help="error against step size: the V-shaped curve, the harness's step marked",
        description=STEP_SIZE_DESCRIPTION,
        epilog=PLOT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    step.add_argument(
        "--layer",
        required=True,
        metavar="NAME|MODULE:ATTR",
        help="a registered variant (see 'gradcheck list') or a layer class or factory, "
        "'MODULE:ATTR(ARGS)' with constructor arguments",
    )
    step.add_argument(
        "--shape",
        type=parse_shape,
        default=None,
        metavar="NxD",
        help="input shape, any rank (default: the variant's first registered shape, or 8x3)",
    )
    step.add_argument(
        "--seed", type=parse_seed, default=0, metavar="N", help="seed, >= 0 (default 0)"
    )
    step.add_argument(
        "--method",
        choices=("central", "five-point"),
        default="central",
        help="finite-difference stencil (default central)",
    )
    step.add_argument(
        "--entry",
        type=parse_entry,
        default=None,
        metavar="i,j",
        help="one entry of the input, one index per dimension (absolute error); default: all "
        "entries (relative error)",
    )
    step.add_argument(
        "--eps", type=_positive_float, default=None, help="eps for layers that take one"
    )
    step.add_argument(
        "--output",
        metavar="FILE.png",
        default="step-size.png",
        help="where to write the picture (default step-size.png)",
    )
    step.set_defaults(handler=cmd_plot_step_size)
    for command in (rep, mut, paper, lst, step):
        # Lets main() report a mistake found after parsing with the subcommand's own usage.
        command.set_defaults(command_parser=command)
    return parser


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"{parser.prog}: error: choose a picture (see '{parser.prog} --help')\n")
    return EXIT_USAGE


# -- report -----------------------------------------------------------------------------------


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _glob_escape(name: str) -> str:
    """``name`` as a shell pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


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


def _uses_catalogue(args: argparse.Namespace) -> bool:
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
    if _uses_catalogue(args):
        specs += registered_layers()
    if args.only:
        specs = [s for s in specs if _matches(s.name, args.only)]
    if args.skip:
        specs = [s for s in specs if not _matches(s.name, args.skip)]
    if not specs:
        raise UsageError("no layer matches the selection (see 'gradcheck list')")
    return specs


def _function_words(args: argparse.Namespace) -> List[str]:
    words = ["--pair", args.pair] if args.pair else ["--value-and-grad", args.value_and_grad]
    for name, shape in args.input:
        words += ["--input", f"{name}={format_shape(shape)}"]
    for name, _, literal in args.kwarg:
        words += ["--kwarg", f"{name}={literal}"]
    for name, target in args.target:
        if name is not None:
            words += ["--target", f"{name}={target.text}"]
    for name in args.wrt:
        words += ["--wrt", name]
    return words


def reproduce_command(
    spec: LayerSpec, shape: Sequence[int], seed: int, args: argparse.Namespace
) -> str:
    """One command line that reruns exactly this check: same layer, shape, seed and options."""
    words = ["gradcheck", "report"]
    if spec.prepare is not None:
        words += _function_words(args)
        words += ["--seed", str(seed)]
    else:
        if spec.is_reference:
            words += ["--layer", spec.name]
            if spec.target is not None:
                words += ["--target", spec.target.text]
        else:
            words += ["--only", _glob_escape(spec.name)]
        words += ["--shape", format_shape(shape), "--seed", str(seed)]
    if getattr(args, "reseed_global_rng", False):
        words.append("--reseed-global-rng")
    words += ["--mode", args.mode, "--method", args.method]
    if args.mode != "full" and args.directions != DEFAULT_DIRECTIONS:
        words += ["--directions", str(args.directions)]
    if args.mode == "auto" and getattr(args, "budget", None) is not None:
        words += ["--budget", str(args.budget)]
    for flag in ("rtol", "atol", "eps"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag}", repr(value)]
    if args.dtype != "float64":
        words += ["--dtype", args.dtype, "--allow-float32"]
    if not args.escalate:
        words.append("--no-escalate")
    if args.timeout != DEFAULT_TIMEOUT:
        words += ["--timeout", f"{args.timeout:g}"]
    return " ".join(shlex.quote(w) for w in words)


def plan_jobs(specs: Sequence[LayerSpec], args: argparse.Namespace) -> List[Job]:
    """One job per spec, shape and seed; a function is checked at its ``--input`` shapes."""
    seeds = args.seed or list(DEFAULT_SEEDS)
    reseed = getattr(args, "reseed_global_rng", False)
    jobs = []
    for spec in specs:
        shapes = list(spec.shapes) if spec.prepare is not None else args.shape or list(spec.shapes)
        for shape in shapes:
            for seed in seeds:
                command = reproduce_command(spec, shape, seed, args)
                jobs.append(Job(spec, tuple(shape), seed, command, seed if reseed else None))
    return jobs


def _wants_colour(stream: IO[str]) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set to anything non-empty (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _check_output_path(path: str) -> None:
    """Refuse an unwritable ``--output`` before the checks run, not after."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--output {path}: is a directory")
    if not os.path.isdir(folder):
        raise UsageError(f"--output {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output {path}: the folder {folder} is not writable")


def cmd_report(args: argparse.Namespace) -> int:
    if args.dtype == "float32" and not args.allow_float32:
        raise UsageError(
            "--dtype float32 is refused: finite differences in float32 keep only a few digits. "
            "Add --allow-float32 to check with the looser rtol = sqrt(eps32) = 3.5e-4"
        )
    if args.output:
        _check_output_path(args.output)
    if args.plots:
        from . import plot

        try:
            plot.prepare_picture_folder(args.plots)
        except (plot.MatplotlibMissing, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    specs = select_specs(args)
    jobs = plan_jobs(specs, args)
    options = CheckOptions(
        mode=args.mode,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        directions=args.directions,
        budget=args.budget,
        allow_float32=args.allow_float32,
        dtype=args.dtype,
        layer_options={"eps": args.eps},
        timeout=args.timeout,
        escalate=args.escalate,
    )
    notes = []
    if args.dtype == "float32":
        import numpy as np

        from .compare import default_rtol

        rtol = default_rtol(np.dtype(np.float32)) if args.rtol is None else args.rtol
        notes.append(
            f"float32 inputs (--allow-float32): rtol = {rtol:.2e}"
            + (" = sqrt(eps32)" if args.rtol is None else " (from --rtol)")
            + f", against {default_rtol():.2e} in float64; errors below that go unseen"
        )
    progress = Progress(sys.stderr) if not args.quiet and sys.stderr.isatty() else None
    start = time.perf_counter()
    interrupted = False
    try:
        # A layer that prints (a debugging print in its forward) must not corrupt a JSON or
        # JUnit document on stdout: its output goes to stderr while the checks run.
        with contextlib.redirect_stdout(sys.stderr):
            results = run_jobs(
                jobs, options, progress.update if progress else None, isolate=args.isolate
            )
    except RunInterrupted as stop:
        # Ctrl-C: the checks that finished are still worth a report.
        results, interrupted = stop.results, True
    finally:
        if progress is not None:
            progress.close()
    report = Report(
        results=results,
        config={
            "mode": args.mode,
            "method": args.method,
            "escalate": args.escalate,
            "rtol": args.rtol,
            "atol": args.atol,
            "tolerance_rule": "per entry fail if |a - n| > atol + rtol*|n| + 2 * (the estimate's "
            "own error); defaults rtol = sqrt(eps), atol = rtol * median|gradient|",
            "directions": args.directions,
            "budget": args.budget,
            "seeds": args.seed or list(DEFAULT_SEEDS),
            "shapes": [list(s) for s in args.shape] or None,
            "eps": args.eps,
            "dtype": args.dtype,
            "timeout": args.timeout,
            "strict": args.strict,
            "layers": [s.name for s in specs],
        },
        load_errors=entry_point_errors() if _uses_catalogue(args) else [],
        strict=args.strict,
        elapsed=time.perf_counter() - start,
        notes=notes,
        interrupted=interrupted,
    )
    if args.plots:
        base = os.path.dirname(os.path.abspath(args.output)) if args.output else None
        report.plots = plot.write_error_pictures(results, args.plots, link_from=base)
    if args.output:
        colour = False
        # Rendered inside the write: a renderer that fails leaves no partial file behind.
        write_atomic(args.output, lambda fh: fh.write(render(report, args.format, colour)))
        if not args.quiet:
            sys.stderr.write(report.summary_line() + "\n")
    else:
        colour = args.format == "text" and _wants_colour(sys.stdout)
        sys.stdout.write(render(report, args.format, colour=colour))
    if interrupted:
        sys.stderr.write(
            f"gradcheck report: interrupted after {len(results)} of {len(jobs)} checks\n"
        )
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAIL


# -- other commands ---------------------------------------------------------------------------


def cmd_mutants(args: argparse.Namespace) -> int:
    import json

    from layers.mutants import mutant_catalogue

    from .battery import BATTERY_SEEDS
    from .mutation import render_mutation_markdown, render_mutation_text, run_mutation_test

    if args.output:
        _check_output_path(args.output)
    report = run_mutation_test(mutant_catalogue(), seeds=args.seed or BATTERY_SEEDS)
    if args.format == "json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    elif args.format == "markdown":
        text = render_mutation_markdown(report)
    else:
        text = render_mutation_text(report)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_list(args: argparse.Namespace) -> int:
    specs = registered_layers()
    width = max(len(s.name) for s in specs) if specs else 4
    shapes = {s.name: " ".join(format_shape(shape) for shape in s.shapes) for s in specs}
    shape_width = max([16, *(len(v) for v in shapes.values())])
    for s in specs:
        tags = ",".join(sorted(s.tags))
        print(f"{s.name:<{width}}  {s.input:<17} {shapes[s.name]:<{shape_width}} {tags}".rstrip())
    errors = entry_point_errors()
    for name, err in errors:
        print(f"entry point {name} failed to load: {err}", file=sys.stderr)
    return EXIT_FAIL if errors else EXIT_OK


def _plot_spec(name: str, timeout: float = DEFAULT_TIMEOUT) -> LayerSpec:
    if ":" in name:
        return reference_spec(name, timeout)
    try:
        return get_layer_spec(name)
    except KeyError:
        raise UsageError(
            f"no registered layer variant named {name!r} (see 'gradcheck list'; for your own "
            "layer use MODULE:ATTR)"
        ) from None


def cmd_plot_step_size(args: argparse.Namespace) -> int:
    from . import plot

    # The arguments first (an unknown layer is the same mistake with or without matplotlib),
    # then matplotlib, before any time is spent on the sweep.
    if not args.output.lower().endswith(".png"):
        raise UsageError(f"--output {args.output}: the picture is a PNG; name it FILE.png")
    _check_output_path(args.output)
    spec = _plot_spec(args.layer)
    try:
        plot.require_matplotlib()
    except plot.MatplotlibMissing as exc:
        raise UsageError(str(exc)) from exc
    shape = args.shape or (spec.shapes[0] if not spec.is_reference else (8, 3))
    if args.entry is not None:
        entry = ",".join(str(i) for i in args.entry)
        if len(args.entry) != len(shape):
            raise UsageError(
                f"--entry {entry} has {len(args.entry)} "
                f"{'index' if len(args.entry) == 1 else 'indices'}; the {format_shape(shape)} "
                f"input has {len(shape)} dimensions"
            )
        if any(i >= n for i, n in zip(args.entry, shape)):
            raise UsageError(f"--entry {entry} is outside the {format_shape(shape)} input")
    try:
        layer = spec.build(eps=args.eps)
        x, target = spec.draw(layer, shape, args.seed)
        with contextlib.redirect_stdout(sys.stderr):
            sweep = plot.step_sweep(
                layer,
                x,
                seed=args.seed,
                method=args.method,
                entry=args.entry,
                name=spec.name,
                target=target,
            )
    except plot.PlotError as exc:
        print(f"gradcheck plot step-size: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:
        print(
            f"gradcheck plot step-size: the layer {spec.name} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAIL
    sys.stdout.write(sweep.table())
    plot.draw_step_sweep(sweep, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"gradcheck {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gradcheck list | head`); silence the interpreter's own flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL

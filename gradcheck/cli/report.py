"""``gradcheck report``: check the selected layers and print the gradient-error report.

:func:`add_report_command` adds the subcommand and its options; :func:`cmd_report` runs it: the
layers chosen by :func:`gradcheck.cli.selection.select_specs`, one job per layer, shape and seed
(:func:`plan_jobs`, each with the command line that reruns exactly that check,
:func:`reproduce_command`), run by :func:`gradcheck.runner.run_jobs` (in a worker process unless
``--no-isolate``) and rendered in the ``--format`` chosen, to stdout or atomically to
``--output``. Exit 0 when every check passes, 1 when one fails or errors (or, with ``--strict``,
is inconclusive) or an entry point fails to load, 2 on a usage error, 130 when interrupted (the
checks that finished are still reported).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import IO, Any, List, Sequence

import numpy as np

from .. import plot
from ..argtypes import (
    UsageError,
    add_workers_option,
    nonnegative_float,
    nonnegative_int,
    parse_input,
    parse_kwarg,
    parse_seed,
    parse_shape,
    parse_target_option,
    positive_float,
    positive_int,
    workers_of,
)
from ..check import MODES
from ..compare import default_rtol
from ..finite_diff import METHODS
from ..literals import format_shape
from ..progress import Progress
from ..registry import LayerSpec, entry_point_errors
from ..report import FORMATS, Report, render, write_atomic
from ..runner import DEFAULT_TIMEOUT, Job, RunInterrupted, RunOptions, run_jobs
from ..runner import reproduce_command as runner_reproduce_command
from ..targets import TARGET_FORMS
from .common import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    check_output_path,
    wrap,
)
from .selection import select_specs, uses_catalogue

DEFAULT_SEEDS = (0, 1)
# None: adaptive (batches of 8, 8, 16, 32 until a single wrong entry of 1e-6 is resolved).
DEFAULT_DIRECTIONS = None

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


def add_report_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    rep = subparsers.add_parser(
        "report",
        help="check layers and print the gradient-error report",
        description=wrap(
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
        type=positive_float,
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
        type=positive_int,
        default=DEFAULT_DIRECTIONS,
        metavar="K",
        help="random directions per argument in the directional screen (default: adaptive, "
        "8 to 64, until one entry wrong by a relative 1e-6 is resolved)",
    )
    met.add_argument(
        "--budget",
        type=nonnegative_int,
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
        type=nonnegative_float,
        default=None,
        help="relative tolerance (default derived: sqrt(eps) = 1.5e-8)",
    )
    met.add_argument(
        "--atol",
        type=nonnegative_float,
        default=None,
        help="absolute tolerance (default rtol times the typical gradient entry, the median)",
    )
    met.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="stop a single check after this long and report it as an error "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    add_workers_option(
        met, "run up to N checks", "every check's verdict and numbers are the same for any N"
    )
    met.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run the checks in this process, one at a time, instead of in worker processes "
        "(to debug a layer with pdb); a layer that crashes or ignores signals then stops the "
        "whole run",
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
    return rep


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


def run_options(args: argparse.Namespace) -> RunOptions:
    """The options of every job, from ``gradcheck report``'s parsed arguments."""
    return RunOptions(
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


def reproduce_command(
    spec: LayerSpec,
    shape: Sequence[int],
    seed: int,
    args: argparse.Namespace,
    options: RunOptions,
) -> str:
    """One command line that reruns exactly this check (see :func:`runner.reproduce_command`)."""
    return runner_reproduce_command(
        spec,
        shape,
        seed,
        options,
        reseed_global_rng=getattr(args, "reseed_global_rng", False),
        function_words=_function_words(args) if spec.prepare is not None else (),
    )


def plan_jobs(
    specs: Sequence[LayerSpec], args: argparse.Namespace, options: RunOptions
) -> List[Job]:
    """One job per spec, shape and seed; a function is checked at its ``--input`` shapes."""
    seeds = args.seed or list(DEFAULT_SEEDS)
    reseed = getattr(args, "reseed_global_rng", False)
    jobs = []
    for spec in specs:
        shapes = list(spec.shapes) if spec.prepare is not None else args.shape or list(spec.shapes)
        for shape in shapes:
            for seed in seeds:
                command = reproduce_command(spec, shape, seed, args, options)
                jobs.append(Job(spec, tuple(shape), seed, command, seed if reseed else None))
    return jobs


def _wants_colour(stream: IO[str]) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set to anything non-empty (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``gradcheck report`` with the parsed options; returns the exit code."""
    if args.dtype == "float32" and not args.allow_float32:
        raise UsageError(
            "--dtype float32 is refused: finite differences in float32 keep only a few digits. "
            "Add --allow-float32 to check with the looser rtol = sqrt(eps32) = 3.5e-4"
        )
    if args.output:
        check_output_path(args.output)
    if args.plots:
        try:
            plot.prepare_picture_folder(args.plots)
        except (plot.MatplotlibMissing, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    specs = select_specs(args)
    options = run_options(args)
    jobs = plan_jobs(specs, args, options)
    notes = []
    if args.dtype == "float32":
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
                jobs,
                options,
                progress.update if progress else None,
                isolate=args.isolate,
                workers=workers_of(args),
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
        load_errors=entry_point_errors() if uses_catalogue(args) else [],
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

"""The ``gradcheck`` command line: ``report``, ``list``, ``mutants``, ``paper``, ``plot step-size``.

Exit codes: 0 all checks passed; 1 a check failed or errored (or, with ``--strict``, was
inconclusive); 2 a usage or input error (unknown layer, malformed ``--shape``, a module that does
not import, matplotlib missing for ``plot``).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import inspect
import os
import shlex
import sys
import textwrap
import time
from typing import IO, Callable, List, Optional, Sequence, Tuple

from .argtypes import UsageError, parse_entry, parse_shape
from .argtypes import nonnegative_float as _nonnegative_float
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .check import MODES
from .finite_diff import METHODS
from .paper.command import add_paper_command
from .progress import Progress
from .registry import (
    LayerSpec,
    entry_point_errors,
    get_layer_spec,
    registered_layers,
    resolve_reference,
)
from .report import FORMATS, Report, render, write_atomic
from .runner import CheckOptions, Job, LayerTimeout, RunInterrupted, run_jobs, time_limit

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
DEFAULT_SEEDS = (0, 1)
DEFAULT_DIRECTIONS = 3
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
  gradcheck report --layer mypkg.layers:MyLayer --registered    yours and the catalogue
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
        help="a layer class or zero-argument factory in an importable module (repeatable); "
        "replaces the registered catalogue unless --registered is given too",
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
        help="input shape (repeatable); default: each layer's own shapes",
    )
    inp.add_argument(
        "--seed",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="seed for the input and the harness's draws (repeatable); "
        f"default {' and '.join(str(s) for s in DEFAULT_SEEDS)}",
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
        help=f"random directions per argument in directional mode (default {DEFAULT_DIRECTIONS})",
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
        type=int,
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

    add_paper_command(sub)

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
        help="a registered variant (see 'gradcheck list') or a layer class or factory",
    )
    step.add_argument(
        "--shape",
        type=parse_shape,
        default=None,
        metavar="NxD",
        help="input shape (default: the variant's first registered shape, or 8x3)",
    )
    step.add_argument("--seed", type=int, default=0, metavar="N", help="seed (default 0)")
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
        help="one entry of the input (absolute error); default: all entries (relative error)",
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


def reference_spec(ref: str, timeout: Optional[float] = DEFAULT_TIMEOUT) -> LayerSpec:
    """``--layer MODULE:ATTR`` to a spec; a ``UsageError`` when it cannot name a layer.

    Usage errors: the module does not import, the attribute is missing or not callable, it needs
    arguments, or what it returns has no forward/backward. A factory that raises or hangs is the
    layer's own failure: it is left for its report row (``build-raised``, ``timeout``).
    """
    try:
        # Whatever the module prints on import belongs on stderr, not in a JSON report.
        with contextlib.redirect_stdout(sys.stderr):
            factory = resolve_reference(ref)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise UsageError(
            f"--layer {ref}: it cannot be called with no arguments ({exc}); point --layer at a "
            "layer class whose arguments have defaults, or at a factory function taking none"
        ) from exc
    except ValueError:
        pass  # no signature to inspect (some builtins); calling it will tell
    try:
        # Only to tell a layer from a non-layer early; a slow constructor gets its full
        # --timeout in its own row.
        limit = None if timeout is None else min(timeout, _PROBE_TIMEOUT)
        with time_limit(limit), contextlib.redirect_stdout(sys.stderr):
            layer = factory()
    except (Exception, SystemExit, LayerTimeout):
        layer = None
    if layer is not None and not (hasattr(layer, "forward") and hasattr(layer, "backward")):
        raise UsageError(
            f"--layer {ref}: it returned {type(layer).__name__}, which has no forward/backward"
        )
    return LayerSpec(name=ref, factory=factory, source="--layer")


def select_specs(args: argparse.Namespace) -> List[LayerSpec]:
    """The variants to check: ``--layer`` references and/or the registered catalogue, filtered
    by ``--only`` and ``--skip``; a ``UsageError`` when nothing is left."""
    specs = [reference_spec(ref, args.timeout) for ref in args.layer]
    if args.registered or not args.layer:
        specs += registered_layers()
    if args.only:
        specs = [s for s in specs if _matches(s.name, args.only)]
    if args.skip:
        specs = [s for s in specs if not _matches(s.name, args.skip)]
    if not specs:
        raise UsageError("no layer matches the selection (see 'gradcheck list')")
    return specs


def reproduce_command(
    spec: LayerSpec, shape: Tuple[int, int], seed: int, args: argparse.Namespace
) -> str:
    """One command line that reruns exactly this check: same layer, shape, seed and options."""
    words = ["gradcheck", "report"]
    if spec.source == "--layer":
        words += ["--layer", spec.name]
    else:
        words += ["--only", _glob_escape(spec.name)]
    words += ["--shape", f"{shape[0]}x{shape[1]}", "--seed", str(seed)]
    words += ["--mode", args.mode, "--method", args.method]
    if args.mode != "full" and args.directions != DEFAULT_DIRECTIONS:
        words += ["--directions", str(args.directions)]
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
    seeds = args.seed or list(DEFAULT_SEEDS)
    jobs = []
    for spec in specs:
        for shape in args.shape or list(spec.shapes):
            for seed in seeds:
                jobs.append(Job(spec, shape, seed, reproduce_command(spec, shape, seed, args)))
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
            "tolerance_rule": "per entry |a - n| <= atol + rtol*|n| (+ the estimate's own error); "
            "defaults rtol = sqrt(eps), atol = rtol * max|gradient|",
            "directions": args.directions,
            "seeds": args.seed or list(DEFAULT_SEEDS),
            "shapes": [list(s) for s in args.shape] or None,
            "eps": args.eps,
            "dtype": args.dtype,
            "timeout": args.timeout,
            "strict": args.strict,
            "layers": [s.name for s in specs],
        },
        load_errors=entry_point_errors() if (args.registered or not args.layer) else [],
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

    from .battery import BATTERY_SEEDS
    from .mutation import render_mutation_markdown, render_mutation_text, run_mutation_test

    if args.output:
        _check_output_path(args.output)
    report = run_mutation_test(seeds=args.seed or BATTERY_SEEDS)
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
    for s in specs:
        tags = ",".join(sorted(s.tags))
        shapes = " ".join(f"{n}x{d}" for n, d in s.shapes)
        print(f"{s.name:<{width}}  {s.input:<17} {shapes:<16} {tags}".rstrip())
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
    from .registry import make_input

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
    shape = args.shape or (spec.shapes[0] if spec.source != "--layer" else (8, 3))
    if args.entry is not None and not (args.entry[0] < shape[0] and args.entry[1] < shape[1]):
        raise UsageError(f"--entry {args.entry[0]},{args.entry[1]} is outside the {shape} input")
    try:
        layer = spec.build(eps=args.eps)
        kind = spec.input
        if spec.source == "--layer" and getattr(layer, "is_loss", False):
            kind = "logits"
        x = make_input(kind, shape, args.seed)
        with contextlib.redirect_stdout(sys.stderr):
            sweep = plot.step_sweep(
                layer, x, seed=args.seed, method=args.method, entry=args.entry, name=spec.name
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

"""The ``gradcheck`` command line: ``gradcheck report``, ``gradcheck list``, ...

Exit codes: 0 all checks passed; 1 a check failed or errored (or, with ``--strict``, was
inconclusive); 2 a usage or input error (unknown layer, malformed ``--shape``, a module that does
not import).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import sys
import time
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from .check import MODES
from .finite_diff import METHODS
from .registry import LayerSpec, entry_point_errors, registered_layers, resolve_reference
from .report import FORMATS, Report, render, write_atomic
from .runner import CheckOptions, Job, run_jobs

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_SEEDS = (0, 1)


class UsageError(Exception):
    """A problem with the command line or its inputs: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_shape(text: str) -> Tuple[int, int]:
    """``"NxD"`` to ``(N, D)``; raises ``argparse.ArgumentTypeError`` otherwise."""
    parts = text.lower().split("x")
    try:
        n, d = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must look like NxD (for example 16x4), got {text!r}"
        ) from None
    if n < 1 or d < 1:
        raise argparse.ArgumentTypeError(f"shape dimensions must be positive, got {text!r}")
    return n, d


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


REPORT_EXAMPLES = """\
examples:
  gradcheck report                                   every built-in layer, default shapes and seeds
  gradcheck report --only 'zca*' --shape 64x16 --seed 3
  gradcheck report --layer mypkg.layers:MyLayer --shape 32x8
  gradcheck report --format json --output report.json
  gradcheck report --mode full --method richardson --strict
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradcheck",
        description="Verify hand-written NumPy backward passes against numerical gradients.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'gradcheck COMMAND --help' for the options of a command.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    rep = sub.add_parser(
        "report",
        help="check layers and print the gradient-error report",
        description="Check every selected layer at each shape and seed, print one row per check "
        "and a summary. Exit 0 when all pass, 1 when any fails or errors, 2 on a usage error.",
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
        "replaces the built-in catalogue",
    )
    src.add_argument(
        "--registered",
        action="store_true",
        help="every registered variant, including third-party entry points (the default "
        "when --layer is not given)",
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
        f"default {list(DEFAULT_SEEDS)}",
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
        type=int,
        default=3,
        metavar="K",
        help="random directions per argument in directional mode (default 3)",
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
        default=120.0,
        metavar="SECONDS",
        help="stop a single check after this long and report it as an error (default 120)",
    )
    out = rep.add_argument_group("output")
    out.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default text)"
    )
    out.add_argument(
        "--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout"
    )
    out.add_argument("--strict", action="store_true", help="count inconclusive checks as failures")
    out.add_argument("--quiet", action="store_true", help="no progress on stderr")
    rep.set_defaults(handler=cmd_report)

    mut = sub.add_parser(
        "mutants",
        help="mutation self-test: the battery must catch every deliberately wrong backward",
        description="Run the standard battery on a catalogue of deliberately wrong backward "
        "passes derived from the built-in layers (layers/mutants.py) and on every correct "
        "registered variant. Prints the mutation score and the false-alarm count. Exit 0 when "
        "every mutant is caught and no correct layer fails, 1 otherwise.",
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
    mut.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    mut.add_argument(
        "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout"
    )
    mut.set_defaults(handler=cmd_mutants)

    from .paper_suite import add_paper_command

    add_paper_command(sub)

    lst = sub.add_parser(
        "list",
        help="list the registered layer variants",
        description="List every registered layer variant with its input kind and tags.",
    )
    lst.set_defaults(handler=cmd_list)
    return parser


# -- report -----------------------------------------------------------------------------------


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _reference_spec(ref: str) -> LayerSpec:
    factory = resolve_reference(ref)
    return LayerSpec(name=ref, factory=factory, source="--layer")


def _infer_input_kind(spec: LayerSpec) -> LayerSpec:
    """A ``--layer`` loss layer takes logits; build it once to ask."""
    try:
        layer = spec.factory()
    except Exception as exc:
        raise UsageError(
            f"--layer {spec.name}: calling it with no arguments raised {type(exc).__name__}: {exc}"
        ) from exc
    if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
        raise UsageError(
            f"--layer {spec.name}: it returned {type(layer).__name__}, "
            "which has no forward/backward"
        )
    if getattr(layer, "is_loss", False):
        return LayerSpec(name=spec.name, factory=spec.factory, input="logits", source=spec.source)
    return spec


def select_specs(args: argparse.Namespace) -> List[LayerSpec]:
    if args.layer:
        try:
            specs = [_infer_input_kind(_reference_spec(ref)) for ref in args.layer]
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    else:
        specs = registered_layers()
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
    """One command line that reruns exactly this check, in full mode so it names the entries."""
    words = ["gradcheck", "report"]
    words += ["--layer", spec.name] if spec.source == "--layer" else ["--only", spec.name]
    words += [
        "--shape",
        f"{shape[0]}x{shape[1]}",
        "--seed",
        str(seed),
        "--mode",
        "full",
        "--method",
        args.method,
    ]
    for flag in ("rtol", "atol", "eps"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag}", repr(value)]
    if args.dtype != "float64":
        words += ["--dtype", args.dtype, "--allow-float32"]
    if not args.escalate:
        words.append("--no-escalate")
    return " ".join(shlex.quote(w) for w in words)


def plan_jobs(specs: Sequence[LayerSpec], args: argparse.Namespace) -> List[Job]:
    seeds = args.seed or list(DEFAULT_SEEDS)
    jobs = []
    for spec in specs:
        for shape in args.shape or list(spec.shapes):
            for seed in seeds:
                jobs.append(Job(spec, shape, seed, reproduce_command(spec, shape, seed, args)))
    return jobs


def _progress_printer(stream: TextIO, enabled: bool) -> Optional[Callable[[int, int, Job], None]]:
    """A one-line counter on a terminal, shown once a run has lasted about a second."""
    if not enabled or not stream.isatty():
        return None
    start = time.perf_counter()
    shown = [False]

    def progress(done: int, total: int, job: Job) -> None:
        if time.perf_counter() - start < 1.0 and not shown[0]:
            return
        shown[0] = True
        end = "\n" if done == total else ""
        stream.write(f"\r[{done}/{total}] {job.label[:60]:<60}{end}")
        stream.flush()

    return progress


def cmd_report(args: argparse.Namespace) -> int:
    if args.dtype == "float32" and not args.allow_float32:
        raise UsageError(
            "--dtype float32 is refused: finite differences in float32 keep only a few digits. "
            "Add --allow-float32 to check with the looser rtol = sqrt(eps32) = 3.5e-4"
        )
    if args.directions < 1:
        raise UsageError(f"--directions must be at least 1, got {args.directions}")
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
    start = time.perf_counter()
    results = run_jobs(jobs, options, _progress_printer(sys.stderr, not args.quiet))
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
            "layers": [s.name for s in specs],
        },
        load_errors=[] if args.layer else entry_point_errors(),
        strict=args.strict,
        elapsed=time.perf_counter() - start,
    )
    colour = (
        args.format == "text"
        and not args.output
        and sys.stdout.isatty()
        and "NO_COLOR" not in os.environ
    )
    text = render(report, args.format, colour=colour)
    if args.output:
        write_atomic(args.output, text)
        if not args.quiet:
            sys.stderr.write(report.summary_line() + "\n")
    else:
        sys.stdout.write(text)
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_mutants(args: argparse.Namespace) -> int:
    import json

    from .battery import BATTERY_SEEDS
    from .mutation import render_mutation_markdown, render_mutation_text, run_mutation_test

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
        print(f"{s.name:<{width}}  {s.input:<7} {shapes:<16} {tags}")
    for name, err in entry_point_errors():
        print(f"entry point {name} failed to load: {err}", file=sys.stderr)
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
        return 130
    except BrokenPipeError:
        # The reader went away (`gradcheck list | head`); silence the interpreter's own flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL

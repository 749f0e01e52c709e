"""``gradcheck plot step-size``: the error of the numerical derivative against the step size.

:func:`add_plot_command` adds ``plot`` and its one picture, ``step-size``;
:func:`cmd_plot_step_size` checks the arguments (a registered variant or a ``MODULE:ATTR``
reference, the ``--entry`` against the shape, a ``.png`` ``--output``) and that matplotlib is
installed before it spends any time, then sweeps the step with :func:`gradcheck.plot.step_sweep`,
prints the table and draws the picture. Exit 0 on success, 1 when the layer fails to run, 2 on a
usage error or when matplotlib is missing. (:mod:`gradcheck.plot` imports matplotlib only when it
draws, so importing it here costs nothing when matplotlib is absent.)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from .. import plot
from ..argtypes import UsageError, parse_entry, parse_seed, parse_shape, positive_float
from ..literals import format_shape
from ..registry import LayerSpec, get_layer_spec
from ..runner import DEFAULT_TIMEOUT
from .common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, Parser, check_output_path
from .selection import reference_spec

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


def add_plot_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plot`` subcommand and its pictures to an ``argparse`` subparsers object; returns
    the parser of ``plot step-size``, the one that runs (``plot`` alone prints its usage)."""
    plot_parser = subparsers.add_parser(
        "plot",
        help="pictures: the error of the numerical derivative against the step size",
        description="Draw pictures of how the harness's numbers behave. Needs matplotlib.",
        epilog=PLOT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot_sub = plot_parser.add_subparsers(dest="picture", metavar="PICTURE", parser_class=Parser)
    plot_parser.set_defaults(handler=lambda args: _missing_subcommand(plot_parser))
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
        "--eps", type=positive_float, default=None, help="eps for layers that take one"
    )
    step.add_argument(
        "--output",
        metavar="FILE.png",
        default="step-size.png",
        help="where to write the picture (default step-size.png)",
    )
    step.set_defaults(handler=cmd_plot_step_size)
    return step


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    """``gradcheck plot`` without a picture: its usage and exit status 2."""
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"{parser.prog}: error: choose a picture (see '{parser.prog} --help')\n")
    return EXIT_USAGE


def _plot_spec(name: str, timeout: float = DEFAULT_TIMEOUT) -> LayerSpec:
    """A registered variant by name, or a ``MODULE:ATTR`` reference; a ``UsageError`` if none."""
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
    """Run ``gradcheck plot step-size`` with the parsed options; returns the exit code."""
    # The arguments first (an unknown layer is the same mistake with or without matplotlib),
    # then matplotlib, before any time is spent on the sweep.
    if not args.output.lower().endswith(".png"):
        raise UsageError(f"--output {args.output}: the picture is a PNG; name it FILE.png")
    check_output_path(args.output)
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

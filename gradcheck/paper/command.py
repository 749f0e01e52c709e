"""``gradcheck paper``: the argparse subcommand that runs the study and prints its report.

:func:`add_paper_command` adds it to an ``argparse`` subparsers object (``gradcheck.cli`` does);
its handler :func:`cmd_paper` returns the exit code: 0 when the measured verdicts match the
derivation, 1 when they do not, 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any, Optional

from ..argtypes import add_workers_option, parse_seed, positive_int, workers_of
from ..progress import Progress
from ..report import write_atomic

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2

#: The ``--format`` choices: the keys of :data:`gradcheck.paper.render.RENDERERS`.
FORMATS = ("text", "json", "markdown")


PAPER_EXAMPLES = """\
examples:
  gradcheck paper                               verdict table for the four variants
  gradcheck paper --format markdown --output verdicts.md
  gradcheck paper --gap-study --plot gap.png    stability near equal eigenvalues, with a plot
"""


def add_paper_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``paper`` subcommand to an ``argparse`` subparsers object; returns its parser.

    The handler (``args.handler``) returns 0 when the measured verdicts match the derivation
    (printed variant wrong, corrected right, the two single fixes wrong), 1 when they do not,
    2 on a usage problem (``--plot`` without matplotlib).
    """
    p = subparsers.add_parser(
        "paper",
        help="check the DBN paper's backward formula: four variants, verdicts, gap study",
        description="Compare the four variants of the Decorrelated Batch Normalization paper's "
        "dL/dX (D or D^T in (B1); dL/dSigma symmetrized or not) with the numerical gradient, and "
        "search for each one's smallest counterexample with Hypothesis. Exit 0 when the measured "
        "verdicts match the derivation, 1 when they do not, 2 on a usage error.",
        epilog=PAPER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument(
        "--seed",
        type=parse_seed,
        default=0,
        metavar="N",
        help="seed of the random draws and of the Hypothesis search (default 0)",
    )
    p.add_argument(
        "--examples",
        type=positive_int,
        default=32,
        metavar="K",
        help="random batches per variant (default 32)",
    )
    p.add_argument(
        "--gap-study",
        action="store_true",
        help="also run the stability study near equal eigenvalues; writes a PNG "
        "(paper-gap-study.png, or --plot FILE) when matplotlib is installed",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        help="write the gap study's plot to FILE (PNG; implies --gap-study; needs matplotlib)",
    )
    add_workers_option(p, "measure up to N variants", "the report is the same for any N")
    p.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.set_defaults(handler=cmd_paper)
    return p


def _have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


MATPLOTLIB_HINT = (
    "the plot needs matplotlib: pip install matplotlib (or install this package's 'plot' "
    "extra: pip install 'gradcheck-dbn[plot]')"
)


def cmd_paper(args: argparse.Namespace) -> int:
    """Run the suite as ``args`` say; print or write the report; return the exit code."""
    # The study is imported when the command runs, not when the parser is built: it brings
    # Hypothesis, SciPy and the layers (about 0.6 s), which every other subcommand would pay.
    from .gap_plot import plot_gap_study
    from .render import RENDERERS
    from .suite import run_paper_suite

    gap = bool(args.gap_study or args.plot)
    plot_path: Optional[str] = args.plot
    if plot_path and not _have_matplotlib():
        print(f"gradcheck paper: error: {MATPLOTLIB_HINT}", file=sys.stderr)
        return EXIT_USAGE
    # The counter goes to a terminal's stderr only: stdout, a file and a piped stderr stay clean.
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = run_paper_suite(
            args.seed,
            args.examples,
            gap=gap,
            progress=progress.show if progress else None,
            workers=workers_of(args),
        )
    finally:
        if progress is not None:
            progress.close()
    text = RENDERERS[args.format](report)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    if gap and report.gap_rows is not None:
        if plot_path is None and _have_matplotlib():
            plot_path = "paper-gap-study.png"
        if plot_path is not None:
            plot_gap_study(report.gap_rows, plot_path)
            print(f"gradcheck paper: wrote the gap-study plot to {plot_path}", file=sys.stderr)
        else:
            print(f"gradcheck paper: no plot written; {MATPLOTLIB_HINT}", file=sys.stderr)
    if not report.ok:
        for v in report.verdicts:
            if not v.matches:
                print(
                    f"gradcheck paper: {v.variant}: measured {v.verdict}, expected {v.expected} "
                    f"(seed {args.seed})",
                    file=sys.stderr,
                )
                for line in v.failures[:3]:
                    print(f"  {line}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_MISMATCH


__all__ = ["add_paper_command", "cmd_paper"]

"""The ``gradcheck`` command itself: the top-level parser built from the subcommands, and ``main``.

:func:`build_parser` assembles the parser from each subcommand module's ``add_*_command`` (in the
order ``gradcheck --help`` lists them: ``report``, ``mutants``, ``paper``, ``list``, ``plot``);
each sets its handler as ``args.handler``. :func:`main` parses the command line and runs the
handler: a :class:`~gradcheck.argtypes.UsageError` it raises is printed as
``gradcheck COMMAND: error: ...`` with exit status 2, Ctrl-C exits 130, and a reader that goes
away (``gradcheck list | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from ..argtypes import UsageError
from ..paper.command import add_paper_command
from ..version import __version__
from .common import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_USAGE, Parser
from .listing import add_list_command
from .mutants import add_mutants_command
from .plot import add_plot_command
from .report import add_report_command

MAIN_EXAMPLES = """\
examples:
  gradcheck report                          check every built-in layer
  gradcheck report --layer mypkg.layers:MyLayer --shape 32x8
  gradcheck list                            the registered layer variants
  gradcheck plot step-size --layer tanh     error against step size, as a PNG
  gradcheck report --help                   every option of a command

Run 'gradcheck COMMAND --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``gradcheck`` parser with every subcommand."""
    parser = Parser(
        prog="gradcheck",
        description="Verify hand-written NumPy backward passes against numerical gradients.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=MAIN_EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands = (
        add_report_command(sub),
        add_mutants_command(sub),
        add_paper_command(sub),
        add_list_command(sub),
        add_plot_command(sub),
    )
    for command in commands:
        # Lets main() report a mistake found after parsing with the subcommand's own usage.
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``gradcheck`` command line ``argv`` (default ``sys.argv[1:]``); returns the exit
    code."""
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

"""``gradcheck mutants``: the mutation self-test, run on the catalogue of wrong backward passes.

:func:`add_mutants_command` adds the subcommand; :func:`cmd_mutants` runs the standard battery
(:func:`gradcheck.mutation.run_mutation_test`) on the deliberately wrong variants of
``layers/mutants.py`` and on every correct registered variant, and prints the mutation score and
the false-alarm count as text, JSON or Markdown. Exit 0 when every mutant is caught and no
correct layer fails, 1 otherwise, 2 on a usage error. It is the one subcommand that imports the
layer zoo itself (when it runs): the harness works on any layer it is given, so the CLI hands it
the mutants.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..argtypes import add_workers_option, parse_seed, workers_of
from ..battery import BATTERY_SEEDS
from ..mutation import render_mutation_markdown, render_mutation_text, run_mutation_test
from ..report import write_atomic
from .common import EXIT_FAIL, EXIT_OK, check_output_path, wrap


def add_mutants_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``mutants`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    mut = subparsers.add_parser(
        "mutants",
        help="mutation self-test: the battery must catch every deliberately wrong backward",
        description=wrap(
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
    add_workers_option(mut, "run up to N batteries", "the report is the same for any N")
    mut.set_defaults(handler=cmd_mutants)
    return mut


def cmd_mutants(args: argparse.Namespace) -> int:
    """Run ``gradcheck mutants`` with the parsed options; returns the exit code."""
    # Imported here, not at module level: the layer zoo pulls in SciPy, which would double the
    # start-up time of every other command (--help, report --layer on the user's own layers),
    # and only this command needs it. Not a cycle: layers imports only gradcheck's registry.
    from layers.mutants import mutant_catalogue

    if args.output:
        check_output_path(args.output)
    report = run_mutation_test(
        mutant_catalogue(),
        seeds=args.seed or BATTERY_SEEDS,
        workers=workers_of(args),
    )
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

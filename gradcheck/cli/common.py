"""What every ``gradcheck`` subcommand shares: the exit codes, the parser class that exits 2.

A usage mistake found by ``argparse`` (an unknown option, a malformed ``--shape``) and one found
after parsing (a :class:`~gradcheck.argtypes.UsageError` raised by a handler) both end with exit
status :data:`EXIT_USAGE`; :class:`Parser` makes ``argparse`` use that code for its own errors.
Also here: the wrapper that keeps the descriptions as wide as the hand-wrapped epilogs, the
default per-check timeout (used by ``report``, the layer references it resolves and ``plot``) and
the check that an ``--output`` file can be written before any work is done.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from ..argtypes import UsageError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors exit with :data:`EXIT_USAGE`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def wrap(text: str) -> str:
    """A description wrapped to the width of the hand-wrapped epilogs (the raw formatter that
    keeps the epilogs' layout would print a description as one long line)."""
    return textwrap.fill(text, width=96)


def check_output_path(path: str) -> None:
    """Refuse an unwritable ``--output`` before the checks run, not after."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--output {path}: is a directory")
    if not os.path.isdir(folder):
        raise UsageError(f"--output {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output {path}: the folder {folder} is not writable")

"""Command-line argument types shared by every ``gradcheck`` subcommand, and the usage error.

Each type is a function ``text -> value`` for ``argparse``'s ``type=``: it returns the parsed
value or raises ``argparse.ArgumentTypeError`` with a message that shows the bad text and what
was expected, which argparse prints as ``gradcheck CMD: error: argument --opt: MESSAGE`` and exit
status 2. :class:`UsageError` is the same kind of mistake found after parsing (an unknown layer,
an unwritable ``--output``); the CLI turns it into exit status 2 as well.
"""

from __future__ import annotations

import argparse
import math
from typing import Tuple


class UsageError(Exception):
    """A problem with the command line or its inputs: exit code 2."""


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


def parse_entry(text: str) -> Tuple[int, int]:
    """``"i,j"`` to ``(i, j)``; raises ``argparse.ArgumentTypeError`` otherwise."""
    try:
        i, j = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"entry must look like i,j (for example 2,1), got {text!r}"
        ) from None
    if i < 0 or j < 0:
        raise argparse.ArgumentTypeError(f"entry indices must be non-negative, got {text!r}")
    return i, j


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (``"nan"`` and ``"inf"`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number ``>= 0`` (``"nan"`` and ``"inf"`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == math.inf:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ``>= 1``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


__all__ = [
    "UsageError",
    "nonnegative_float",
    "parse_entry",
    "parse_shape",
    "positive_float",
    "positive_int",
]

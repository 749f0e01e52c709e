"""Command-line argument types shared by every ``gradcheck`` subcommand, the usage error, and
the ``--workers`` option of the subcommands that run many checks.

Each type is a function ``text -> value`` for ``argparse``'s ``type=``: it returns the parsed
value or raises ``argparse.ArgumentTypeError`` with a message that shows the bad text and what
was expected, which argparse prints as ``gradcheck CMD: error: argument --opt: MESSAGE`` and exit
status 2. :class:`UsageError` is the same kind of mistake found after parsing (an unknown layer,
an unwritable ``--output``); the CLI turns it into exit status 2 as well.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Optional, Tuple

from . import literals
from .isolation import available_cores
from .targets import TargetSpec, parse_target


class UsageError(Exception):
    """A problem with the command line or its inputs: exit code 2."""


def parse_shape(text: str) -> Tuple[int, ...]:
    """``"NxD"`` or ``"2x3x8x8"`` (any rank) to a tuple; ``ArgumentTypeError`` otherwise."""
    try:
        return literals.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_entry(text: str) -> Tuple[int, ...]:
    """``"i,j"`` (one index per input dimension) to a tuple; ``ArgumentTypeError`` otherwise."""
    try:
        index = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"entry must look like i,j (for example 2,1; i,j,k,l for a 4-D input), got {text!r}"
        ) from None
    if any(i < 0 for i in index):
        raise argparse.ArgumentTypeError(f"entry indices must be non-negative, got {text!r}")
    return index


def parse_seed(text: str) -> int:
    """A seed: an integer >= 0 (``numpy.random.default_rng`` refuses negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be a non-negative integer, got {text!r}")
    return value


def parse_input(text: str) -> Tuple[str, Tuple[int, ...]]:
    """``NAME=SHAPE`` (``x=2x3x8x8``) to ``(name, shape)``."""
    try:
        name, shape = literals.parse_assignment(text, "NAME=SHAPE (for example x=2x3x8x8)")
        return name, literals.parse_shape(shape)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_kwarg(text: str) -> Tuple[str, Any, str]:
    """``NAME=LITERAL`` to ``(name, value, literal text)``; the value by ``ast.literal_eval``."""
    try:
        name, literal = literals.parse_assignment(
            text, 'NAME=LITERAL (for example conv_param={"stride": 1, "pad": 1})'
        )
        return name, literals.parse_literal(literal), literal
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_target_option(text: str) -> Tuple[Optional[str], TargetSpec]:
    """``SPEC`` (a loss layer's target) or ``NAME=SPEC`` (a function's argument ``NAME``)."""
    name: Optional[str] = None
    spec = text
    if "=" in text:
        try:
            name, spec = literals.parse_assignment(text, "NAME=SPEC (for example y=labels:10)")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    try:
        return name, parse_target(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(text: str, convert: Callable[[str], Any], kind: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def _bounded(value: Any, ok: bool, expected: str, text: str) -> Any:
    if not ok:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (``"nan"`` and ``"inf"`` are refused)."""
    value = _number(text, float, "a number")
    return _bounded(value, value > 0 and value != math.inf, "a positive number", text)


def nonnegative_float(text: str) -> float:
    """A finite number ``>= 0`` (``"nan"`` and ``"inf"`` are refused)."""
    value = _number(text, float, "a number")
    return _bounded(value, value >= 0 and value != math.inf, "a non-negative number", text)


def nonnegative_int(text: str) -> int:
    """An integer ``>= 0``."""
    value = _number(text, int, "an integer")
    return _bounded(value, value >= 0, "an integer >= 0", text)


def positive_int(text: str) -> int:
    """An integer ``>= 1``."""
    value = _number(text, int, "an integer")
    return _bounded(value, value >= 1, "an integer >= 1", text)


def add_workers_option(parser: Any, doing: str, same: str) -> None:
    """Add ``--workers N`` to ``parser``: ``doing`` says what N bounds ("run up to N checks"),
    ``same`` what stays the same for any N. Read it back with :func:`workers_of`."""
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"{doing} at once, each in its own worker process (default: the cores this process "
        f"may use); {same}",
    )


def workers_of(args: argparse.Namespace) -> int:
    """``--workers`` as given, or the cores this process may use."""
    return available_cores() if args.workers is None else int(args.workers)


__all__ = [
    "UsageError",
    "add_workers_option",
    "nonnegative_float",
    "nonnegative_int",
    "parse_entry",
    "parse_input",
    "parse_kwarg",
    "parse_seed",
    "parse_shape",
    "parse_target_option",
    "positive_float",
    "positive_int",
    "workers_of",
]

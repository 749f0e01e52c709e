"""gradcheck.argtypes: the CLI's argument types, directly and through the console script."""

from __future__ import annotations

import argparse

import pytest
from test_cli import run_many

from gradcheck.argtypes import (
    UsageError,
    nonnegative_float,
    parse_entry,
    parse_shape,
    positive_float,
    positive_int,
)


@pytest.mark.parametrize(
    ("text", "value"), [("16x4", (16, 4)), ("1X1", (1, 1)), (" 3x2 ", (3, 2)), ("08x5", (8, 5))]
)
def test_parse_shape(text, value):
    assert parse_shape(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ax4", "must look like NxD"),
        ("16by4", "must look like NxD"),
        ("", "must look like NxD"),
        ("0x4", "dimensions must be positive"),
        ("4x-1", "dimensions must be positive"),
    ],
)
def test_parse_shape_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message) as info:
        parse_shape(text)
    assert repr(text) in str(info.value)  # the message shows what was typed


def test_parse_shape_takes_any_rank():
    assert parse_shape("16") == (16,)
    assert parse_shape("2x3x8x8") == (2, 3, 8, 8)


def test_parse_entry():
    assert parse_entry("2,1") == (2, 1)
    assert parse_entry("0,0") == (0, 0)
    assert parse_entry("1,2,3") == (1, 2, 3)  # one index per dimension, checked at run time
    for bad in ("2;1", "a,b", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="must look like i,j"):
            parse_entry(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="non-negative"):
        parse_entry("-1,0")


def test_positive_int():
    assert positive_int("1") == 1 and positive_int("32") == 32
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer >= 1, got '0'"):
        positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer, got '2\.5'"):
        positive_int("2.5")


@pytest.mark.parametrize("bad", ["0", "-1e-3", "nan", "inf", "-inf"])
def test_positive_float_refuses(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number"):
        positive_float(bad)


@pytest.mark.parametrize("bad", ["-1e-300", "nan", "inf"])
def test_nonnegative_float_refuses(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a non-negative number"):
        nonnegative_float(bad)


def test_numbers_that_pass():
    assert positive_float("1e-5") == 1e-5 and positive_float("120") == 120.0
    assert nonnegative_float("0") == 0.0 and nonnegative_float("1.5e-8") == 1.5e-8
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number, got 'x'"):
        positive_float("x")


def test_usage_error_is_an_ordinary_exception():
    assert issubclass(UsageError, Exception) and not issubclass(UsageError, SystemExit)


def test_the_console_script_reports_bad_arguments_with_exit_2():
    shape, examples, timeout, entry = run_many(
        [
            ("report", "--shape", "16by4"),
            ("paper", "--examples", "0"),
            ("report", "--timeout", "0"),
            ("plot", "step-size", "--layer", "tanh", "--entry", "1"),
        ]
    )
    assert shape.returncode == 2 and "must look like NxD" in shape.stderr
    assert "argument --shape" in shape.stderr and shape.stdout == ""
    assert examples.returncode == 2 and "expected an integer >= 1, got '0'" in examples.stderr
    assert timeout.returncode == 2 and "expected a positive number, got '0'" in timeout.stderr
    assert entry.returncode == 2 and "has 1 index; the 8x3 input has 2 dimensions" in entry.stderr

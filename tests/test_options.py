"""The one list of a check's options: check_layer's keywords, the runner's job options."""

import dataclasses
import inspect

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.options import DEFAULTS, CheckOptions
from gradcheck.runner import RunOptions


class Double:
    def forward(self, x):
        return 2.0 * x

    def backward(self, dy):
        return 2.0 * dy


def test_check_layer_takes_exactly_the_options_and_their_defaults():
    params = inspect.signature(check_layer).parameters
    keywords = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    data = {"dy": None, "target": None, "seed": 0}
    options = {f.name: f.default for f in dataclasses.fields(CheckOptions) if f.name != "dtype"}
    assert keywords == {**data, **options}
    assert DEFAULTS.check_keywords() == options


def test_the_runners_options_extend_the_checks():
    run = RunOptions(mode="full", rtol=1e-6, layer_options={"eps": 1e-3}, timeout=5.0)
    assert isinstance(run, CheckOptions)
    assert (
        run.check_keywords()
        == dataclasses.replace(DEFAULTS, mode="full", rtol=1e-6).check_keywords()
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.mode = "auto"  # type: ignore[misc]


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"mode": "fast"},
            "check_layer: unknown mode 'fast'; expected one of auto, full, directional",
        ),
        ({"method": "forward"}, "check_layer: unknown method 'forward'"),
        ({"budget": -1}, "check_layer: budget must be at least 0, got -1"),
        ({"directions": 0}, "check_layer: directions must be at least 1, got 0"),
    ],
)
def test_invalid_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_layer(Double(), np.ones((2, 3)), **options)
    with pytest.raises(ValueError, match="report: "):
        CheckOptions(**options).validate("report")


def test_a_valid_option_set_checks_as_its_keywords_say():
    options = CheckOptions(mode="full", method="five-point")
    result = check_layer(Double(), np.ones((2, 3)), **options.check_keywords())
    assert (result.status, result.mode, result.method) == ("pass", "full", "five-point")

"""What a check returns: statuses and their order, the worst argument, the explanation text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcheck.compare import compare
from gradcheck.result import (
    STATUS_ORDER,
    ArgumentResult,
    CheckResult,
    Diagnosis,
    Finding,
    entry_label,
    printable,
    worst_status,
)


def _argument(name: str, analytic, numeric, kind: str = "param", mode: str = "full"):
    a, n = np.asarray(analytic, float), np.asarray(numeric, float)
    cmp = compare(a, n, np.zeros_like(n), rtol=1e-8, atol=1e-12)
    return ArgumentResult(name, kind, mode, "central", cmp, evaluations=4 * a.size + 1)


def _result(*arguments: ArgumentResult, findings=(), reproduce=None) -> CheckResult:
    status = worst_status([a.status for a in arguments] + ["pass"])
    return CheckResult(
        "toy", (2, 2), 0, "full", "central", status, list(arguments), list(findings),
        reproduce=reproduce,
    )


@pytest.mark.parametrize(
    "statuses, worst",
    [
        ([], "pass"),
        (["pass", "pass"], "pass"),
        (["pass", "inconclusive"], "inconclusive"),
        (["inconclusive", "fail", "pass"], "fail"),
        (["fail", "error"], "error"),
    ],
)
def test_worst_status_follows_the_order(statuses, worst):
    assert worst_status(statuses) == worst
    assert STATUS_ORDER == ("pass", "inconclusive", "fail", "error")


def test_the_worst_argument_is_the_failing_one_and_names_its_entry():
    good = _argument("b", [1.0, 2.0], [1.0, 2.0])
    bad = _argument("W", [[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.5]])
    x = _argument("x", [0.5], [0.5], kind="input")
    r = _result(x, good, bad)
    assert r.status == "fail" and not r.passed
    assert r.worst is bad and r.worst_index == (1, 1)
    assert r.input is x and set(r.params) == {"b", "W"}
    assert r.tolerance == {"rtol": 1e-8, "atol": 1e-12}


def test_explain_shows_the_failing_entries_side_by_side_and_the_findings():
    bad = _argument("W", [[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.5]])
    finding = Finding("dy-mutated", "fail", "backward changed dy in place")
    text = _result(bad, findings=[finding], reproduce="gradcheck report --only toy").explain()
    lines = text.splitlines()
    assert lines[0].startswith("toy [2x2, seed 0]: fail")
    assert "param 'W' (full, central): fail" in lines[1] and "1/4 entries" in lines[1]
    assert lines[2].split() == ["entry", "analytic", "numeric", "|diff|", "tolerance", "est.err"]
    assert lines[3].split()[:3] == ["W[1,", "1]", "4.000000e+00"]
    assert "[fail] dy-mutated: backward changed dy in place" in text
    assert text.endswith("reproduce: gradcheck report --only toy")


def test_a_passing_argument_prints_no_table():
    text = _result(_argument("b", [1.0], [1.0])).explain()
    assert "entry" not in text and "pass" in text.splitlines()[0]


def test_directional_rows_are_labelled_as_directions():
    a = _argument("x", [1.0, 2.0], [1.0, 2.5], kind="input", mode="directional")
    assert entry_label(a, (1,)) == "x dir 1"
    assert "rerun with --mode full" in _result(a).explain()


def test_control_characters_from_a_layer_are_escaped():
    assert printable("bad\x1b[31m\x00") == "bad\\x1b[31m\\x00"
    finding = Finding("forward-raised", "error", "boom\x1b[2J")
    assert "\x1b" not in _result(_argument("b", [1.0], [1.0]), findings=[finding]).explain()


def test_to_dict_is_json_and_leaves_the_arrays_out():
    bad = _argument("W", [[1.0, 2.0]], [[1.0, 2.5]])
    data = _result(bad).to_dict()
    json.dumps(data)
    assert data["status"] == "fail" and data["worst_argument"] == "W"
    assert data["worst_index"] == [0, 1]
    assert "analytic" not in data["arguments"][0]


def test_a_diagnosis_carries_only_its_kinds_fields():
    d = Diagnosis("scale", "the gradient is 1/N times too small", factor=0.25, factor_name="1/N")
    assert d.label == "scale 1/N"
    assert d.to_dict() == {
        "kind": "scale",
        "message": "the gradient is 1/N times too small",
        "factor": 0.25,
        "factor_name": "1/N",
    }

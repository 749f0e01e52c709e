"""The report's data model and renderers, in-process, on results of real checks."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.report import (
    FORMATS,
    Report,
    explain,
    render,
    render_json,
    render_junit,
    render_markdown,
    render_text,
    write_atomic,
)
from gradcheck.result import CheckResult, Finding

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report-schema.json"


class Scale:
    """y = x * w, one weight per feature."""

    def __init__(self, wrong_w: bool = False, wrong_x: bool = False) -> None:
        self.params = {"w": np.array([0.5, 1.0, 1.5])}
        self.grads: dict = {}
        self.wrong_w, self.wrong_x = wrong_w, wrong_x

    def forward(self, x):
        self.x = x
        return x * self.params["w"]

    def backward(self, dy):
        gw = (dy * self.x).sum(axis=0)
        self.grads = {"w": gw * (1.01 if self.wrong_w else 1.0)}
        return dy * self.params["w"] * (1.01 if self.wrong_x else 1.0)


X = np.random.default_rng(0).standard_normal((4, 3))


@pytest.fixture(scope="module")
def results():
    good = check_layer(Scale(), X, seed=0)
    bad_w = check_layer(Scale(wrong_w=True), X, seed=0)
    bad_x = check_layer(Scale(wrong_x=True), X, seed=0, mode="directional")
    error = CheckResult(
        layer="broken|name",
        shape=(4, 3),
        seed=0,
        mode="auto",
        method="central",
        status="error",
        findings=[Finding("forward-raised", "error", "forward raised \x1b[31mValueError\x00")],
        reason="forward-raised: forward raised \x1b[31mValueError\x00",
        reproduce="gradcheck report --layer m:broken --shape 4x3 --seed 0",
    )
    for r, name in ((good, "good"), (bad_w, "bad-w"), (bad_x, "bad-x")):
        r.layer = name
        r.reproduce = f"gradcheck report --only {name} --shape 4x3 --seed 0 --mode auto"
    return {"good": good, "bad_w": bad_w, "bad_x": bad_x, "error": error}


def make_report(results, **kwargs):
    return Report(
        results=[results[k] for k in ("good", "bad_w", "bad_x", "error")],
        config={"mode": "auto", "method": "central", "seeds": [0], "layers": ["good"]},
        elapsed=0.5,
        **kwargs,
    )


def test_explain_names_the_parameter_and_its_entries(results):
    text = explain(results["bad_w"])
    assert "param 'w' (full, central+five-point+richardson): fail" in text
    lines = text.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["entry", "analytic", "numeric"]
    )
    assert lines[header + 1].lstrip().startswith("w[")
    # analytic is 1.01 times numeric: side by side in the same row.
    entry = results["bad_w"].params["w"].comparison.worst[0]
    assert (
        f"{entry.analytic:.6e}" in lines[header + 1] and f"{entry.numeric:.6e}" in lines[header + 1]
    )
    assert text.splitlines()[-1].startswith("  reproduce: gradcheck report --only bad-w")


def test_explain_in_directional_mode_names_directions(results):
    text = explain(results["bad_x"])
    assert "input 'x' (directional, richardson): fail" in text
    assert "x dir " in text and "rerun with --mode full" in text
    # directional mode without directions= screens 8 directions first (then more, if needed)
    assert "8/8 directions beyond tolerance" in text


def test_text_table_is_aligned_and_coloured_only_on_request(results):
    report = make_report(results)
    plain = render_text(report)
    assert "\033[" not in plain
    table = plain.split("\n\n")[0].splitlines()
    status_col = table[0].index("status")
    # A failing row may be followed by its diagnosis, indented, which is not a table row.
    rows = [line for line in table[2:] if not line.startswith("  diagnosis of ")]
    assert all(len(line) >= status_col for line in rows)
    assert [line[status_col:].strip() for line in rows] == ["pass", "fail", "fail", "error"]
    coloured = render_text(report, colour=True)
    assert "\033[31mfail\033[0m" in coloured and "\033[32mpass\033[0m" in coloured
    assert "\033[31mFAILED: 4 checks" in coloured
    # Colour never moves a column: strip the codes and the text is the plain one.
    import re

    assert re.sub("\033\\[[0-9;]*m", "", coloured) == plain


def test_notes_and_load_errors_are_shown_in_every_human_format(results):
    report = make_report(results, notes=["float32 inputs"], load_errors=[("ep = m:f", "boom")])
    assert not report.ok
    for text in (render_text(report), render_markdown(report)):
        assert "float32 inputs" in text and "ep = m:f" in text and "boom" in text


def test_markdown_escapes_table_cells(results):
    md = render_markdown(make_report(results))
    assert "`broken\\|name`" in md
    assert md.count("<details>") == 3  # one per check that did not pass


def test_junit_is_well_formed_even_with_control_characters(results):
    report = make_report(results, load_errors=[("ep = m:f", "ImportError: \x07gone")])
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "5",
        "failures": "2",
        "errors": "2",
        "skipped": "0",
    }
    error = next(c for c in suite.iter("testcase") if c.get("classname") == "gradcheck.broken|name")
    assert "ValueError" in error.find("error").get("message")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["mode"] == "auto" and json.loads(props["seeds"]) == [0]


def test_json_is_strict_json_and_follows_the_schema(results):
    jsonschema = pytest.importorskip("jsonschema")
    r = results["good"]
    r.spectrum = {"min_eigenvalue": np.float64(1e-3), "condition_number": float("inf")}
    try:
        text = render_json(make_report(results))
    finally:
        r.spectrum = None
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert doc["results"][0]["spectrum"] == {"min_eigenvalue": 1e-3, "condition_number": "inf"}
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert not errors, errors[0].message


def test_summary_counts_and_strictness(results):
    inconclusive = CheckResult(
        layer="i", shape=(2, 2), seed=0, mode="auto", method="central", status="inconclusive"
    )
    lenient = Report(results=[results["good"], inconclusive])
    strict = Report(results=[results["good"], inconclusive], strict=True)
    assert lenient.ok and not strict.ok
    assert lenient.summary()["inconclusive"] == 1
    assert "(strict: counted as failures)" in strict.summary_line()
    root = ET.fromstring(render_junit(lenient)).find("testsuite")
    assert (root.get("skipped"), root.get("failures")) == ("1", "0")


def test_render_dispatches_and_rejects_unknown_formats(results):
    report = make_report(results)
    for fmt in FORMATS:
        assert render(report, fmt)
    with pytest.raises(ValueError, match="unknown format"):
        render(report, "yaml")


def test_write_atomic_text_bytes_and_callable(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(str(path), "one\n")
    assert path.read_text() == "one\n"
    write_atomic(str(path), b"\x00two")
    assert path.read_bytes() == b"\x00two"
    write_atomic(str(path), lambda fh: fh.write("three\n"))
    assert path.read_text() == "three\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_atomic_keeps_the_old_file_when_rendering_fails(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    def half_written(fh):
        fh.write("partial")
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        write_atomic(str(path), half_written)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    write_atomic(str(path), "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_the_tolerance_column_names_the_term_that_decided():
    """The column used to say 'rtol 1.5e-08' whatever decided, so a pass on atol read like a
    fail; it now names the larger term of the worst entry's tolerance."""
    from gradcheck.report import decisive_tolerance

    # An explicit atol far above rtol |n| (the default atol is rtol times the median entry,
    # which the larger entries' rtol term can exceed).
    on_atol = check_layer(Scale(), X, seed=0, mode="full", atol=1e-6)
    on_rtol = check_layer(Scale(), X, seed=0, mode="full", atol=0.0)
    assert on_atol.passed and on_rtol.passed
    kind, value = decisive_tolerance(on_atol)
    worst = on_atol.worst.comparison.worst[0]
    rtol = on_atol.worst.comparison.rtol
    assert kind == "atol" and value == pytest.approx(worst.tolerance - rtol * abs(worst.numeric))
    assert decisive_tolerance(on_rtol) == ("rtol", on_rtol.worst.comparison.rtol)
    text = render_text(Report([on_atol, on_rtol]))
    assert f"atol {value:.1e}" in text and "rtol 1.5e-08" in text
    assert f"| atol {value:.1e} | pass |" in render_markdown(Report([on_atol]))

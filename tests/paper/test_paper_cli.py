"""``gradcheck paper``: formats, output file, exit codes, the plot option.

The command is attached to a local argparse parser with ``add_paper_command`` (the project's
``gradcheck.cli`` wires the same function). The measured report is computed once
(``_paper_common.full_report``); the handler's own call of ``run_paper_suite`` is replaced by a
stub that records its arguments and returns that report, so each format costs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
from _paper_common import EXAMPLES, SEED, full_report

from gradcheck import paper_suite
from gradcheck.paper_suite import VARIANT_NAMES, add_paper_command, gap_study


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gradcheck")
    add_paper_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["paper", *argv])


@pytest.fixture
def stub(monkeypatch):
    """Replace the measurement by the cached report; return the recorded calls."""
    calls = []

    def fake(seed=0, examples=32, *, gap=False, **kwargs):
        calls.append({"seed": seed, "examples": examples, "gap": gap})
        report = full_report()
        rows = gap_study(seed, gaps=(1e-1, 1e-6, 0.0), repeats=1) if gap else None
        return dataclasses.replace(report, gap_rows=rows)

    monkeypatch.setattr(paper_suite, "run_paper_suite", fake)
    return calls


def run(*argv: str) -> int:
    args = parse(*argv)
    return args.handler(args)


def test_text_table(stub, capsys):
    assert run("--seed", str(SEED), "--examples", str(EXAMPLES)) == 0
    assert stub == [{"seed": SEED, "examples": EXAMPLES, "gap": False}]
    out = capsys.readouterr().out
    for variant in VARIANT_NAMES:
        assert variant in out
    assert "worst rel. error" in out and "smallest counterexample" in out
    assert "counterexample for printed" in out and "x (N x D" in out
    assert "match the derivation" in out


def test_json(stub, capsys):
    assert run("--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    verdicts = {v["variant"]: v for v in data["verdicts"]}
    assert set(verdicts) == set(VARIANT_NAMES)
    assert data["matches_expected"] is True
    assert verdicts["corrected"]["verdict"] == "correct"
    assert verdicts["corrected"]["counterexample"] is None
    found = verdicts["printed"]["counterexample"]
    assert found["shape"][1] >= 2 and len(found["x"]) == found["shape"][0]
    assert found["rel_error"] > 0.1 and isinstance(found["seed"], int)


def test_markdown_with_gap_study(stub, capsys, monkeypatch):
    monkeypatch.setattr(paper_suite, "_have_matplotlib", lambda: False)
    assert run("--format", "markdown", "--gap-study") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("| Variant | (B1) | dL/dSigma |")
    assert captured.out.count("| **wrong** |") == 3 and captured.out.count("| **correct** |") == 1
    assert "| 0 (tie) |" in captured.out
    assert "pip install matplotlib" in captured.err  # no plot, and says how to get one


def test_output_file(stub, capsys, tmp_path):
    path = tmp_path / "verdicts.md"
    assert run("--format", "markdown", "--output", str(path)) == 0
    assert capsys.readouterr().out == ""
    assert path.read_text(encoding="utf-8").startswith("| Variant |")


def test_plot_without_matplotlib_is_a_usage_error(stub, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(paper_suite, "_have_matplotlib", lambda: False)
    assert run("--plot", str(tmp_path / "gap.png")) == 2
    err = capsys.readouterr().err
    assert "pip install matplotlib" in err and "[plot]" in err
    assert stub == []  # refused before measuring anything
    assert not (tmp_path / "gap.png").exists()


def test_plot_with_matplotlib(stub, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "gap.png"
    assert run("--plot", str(path)) == 0
    assert stub[0]["gap"] is True
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert str(path) in capsys.readouterr().err


def test_exit_code_1_when_a_verdict_differs_from_the_derivation(monkeypatch, capsys):
    report = full_report()
    flipped = [
        dataclasses.replace(v, verdict="correct") if v.variant == "printed" else v
        for v in report.verdicts
    ]
    wrong = dataclasses.replace(report, verdicts=flipped)
    monkeypatch.setattr(paper_suite, "run_paper_suite", lambda *a, **k: wrong)
    assert run() == 1
    captured = capsys.readouterr()
    assert "DO NOT match" in captured.out
    assert "printed: measured correct, expected wrong (seed 0)" in captured.err


def test_handler_runs_the_real_suite_end_to_end(monkeypatch, capsys):
    """Unstubbed (but with the search off, which test_paper_verdicts.py covers)."""
    real = paper_suite.run_paper_suite
    monkeypatch.setattr(
        paper_suite, "run_paper_suite", lambda *a, **k: real(*a, **{**k, "search": False})
    )
    assert run("--examples", "8", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [v["checks"] for v in data["verdicts"]] == [8, 8, 8, 8]


def test_bad_examples_value_is_rejected():
    with pytest.raises(SystemExit):
        parse("--examples", "0")

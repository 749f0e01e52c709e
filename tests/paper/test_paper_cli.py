"""``gradcheck paper``: formats, output file, exit codes, the plot option.

The command is attached to a local argparse parser with ``add_paper_command`` (the project's
``gradcheck.cli`` wires the same function). The measured report is computed once
(``_paper_common.full_report``); the handler's own call of ``suite.run_paper_suite`` is replaced
by a stub that records its arguments and returns that report, so each format costs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
from _paper_common import EXAMPLES, SEED, full_report

from gradcheck.paper import command, suite
from gradcheck.paper.cases import VARIANT_NAMES
from gradcheck.paper.command import FORMATS, add_paper_command
from gradcheck.paper.gap import gap_study
from gradcheck.paper.render import RENDERERS
from gradcheck.paper.suite import run_paper_suite


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

    monkeypatch.setattr(suite, "run_paper_suite", fake)
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
    monkeypatch.setattr(command, "_have_matplotlib", lambda: False)
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
    monkeypatch.setattr(command, "_have_matplotlib", lambda: False)
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
    monkeypatch.setattr(suite, "run_paper_suite", lambda *a, **k: wrong)
    assert run() == 1
    captured = capsys.readouterr()
    assert "DO NOT match" in captured.out
    assert "printed: measured correct, expected wrong (seed 0)" in captured.err


def test_handler_runs_the_real_suite_end_to_end(monkeypatch, capsys):
    """Unstubbed (but with the search off, which test_paper_verdicts.py covers)."""
    real = suite.run_paper_suite
    monkeypatch.setattr(
        suite, "run_paper_suite", lambda *a, **k: real(*a, **{**k, "search": False})
    )
    assert run("--examples", "8", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [v["checks"] for v in data["verdicts"]] == [8, 8, 8, 8]


def test_the_format_choices_are_the_renderers():
    assert FORMATS == tuple(RENDERERS)


def test_bad_examples_value_is_rejected():
    with pytest.raises(SystemExit):
        parse("--examples", "0")


class _Terminal:
    """A stand-in for a terminal's stderr: records what is written, says it is a tty."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_counter_only_on_a_terminal(monkeypatch, capsys, tty):
    """On a terminal the counter shows each step and erases itself; piped, stderr stays empty."""
    calls = []

    def fake(seed=0, examples=32, *, gap=False, progress=None, **kwargs):
        calls.append(progress)
        if progress is not None:
            progress(0, 2, "printed: draw 1/1, 3x2 rows")
            progress(1, 2, "printed: Hypothesis search")
        return full_report()

    class Immediate(command.Progress):
        def __init__(self, stream):
            super().__init__(stream, delay=0.0)  # draw from the first step on

    terminal = _Terminal(tty)
    monkeypatch.setattr(suite, "run_paper_suite", fake)
    monkeypatch.setattr(command, "Progress", Immediate)
    monkeypatch.setattr(command.sys, "stderr", terminal)
    assert run() == 0
    out = capsys.readouterr().out
    assert "match the derivation" in out and "\r" not in out
    if tty:
        assert calls[0] is not None
        assert "[0/2] printed: draw 1/1, 3x2 rows" in terminal.text
        assert "[1/2] printed: Hypothesis search" in terminal.text
        assert terminal.text.endswith("\r")  # erased before the report is written
    else:
        assert calls == [None] and terminal.text == ""


def test_the_suite_reports_every_step_to_its_progress_callback():
    steps = []
    report = run_paper_suite(
        seed=0,
        examples=3,
        search=False,
        variants=("corrected", "printed"),
        progress=lambda *step: steps.append(step),
    )
    assert [v.n_checks for v in report.verdicts] == [3, 3]
    assert [(done, total) for done, total, _ in steps] == [(k, 6) for k in range(6)]
    assert steps[0][2].startswith("corrected: draw 1/3, ")
    assert steps[3][2].startswith("printed: draw 1/3, ")


def test_the_gap_study_reports_each_gap():
    labels = []
    gap_study(0, gaps=(1e-1, 0.0), repeats=1, on_step=labels.append)
    assert labels == ["gap study: gap 0.1", "gap study: gap 0"]


def test_workers_give_the_same_report_and_progress_by_part():
    def measured(workers, steps):
        report = run_paper_suite(
            seed=0,
            examples=3,
            search=False,
            variants=("corrected", "printed", "transpose-only"),
            progress=lambda *step: steps.append(step),
            workers=workers,
        )
        data = report.to_dict()
        data.pop("elapsed")
        return data

    alone, side_by_side = [], []
    assert measured(2, side_by_side) == measured(1, alone)
    assert [(done, total) for done, total, _ in alone] == [(k, 9) for k in range(9)]
    # With workers, progress comes as each part ends: 3 steps a variant, the last not shown.
    assert [(done, total) for done, total, _ in side_by_side] == [(3, 9), (6, 9)]


def test_bad_workers_value_is_rejected():
    with pytest.raises(SystemExit):
        parse("--workers", "0")

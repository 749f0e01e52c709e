"""The command line, through the real console script in a subprocess.

Every option, output format and exit code of ``gradcheck report`` is exercised here, plus
``gradcheck plot step-size`` and the ``--help`` of every command. Runs that only wait (sleeping
layers, help texts) are started side by side to keep the module fast.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

PARALLEL = 4
ENTRY_HEADER = ["entry", "analytic", "numeric"]
ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "docs" / "report-schema.json"
SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]

USER_LAYERS = textwrap.dedent(
    """
    import sys
    import time
    import numpy as np

    class Good:
        def forward(self, x):
            self.x = x
            return np.sin(x)
        def backward(self, dy):
            return dy * np.cos(self.x)

    class Bad(Good):
        def backward(self, dy):
            return dy * np.cos(self.x) * 1.001

    class BadParam:
        # y = x * w (w per feature); the gradient of w forgets to sum over the examples.
        def __init__(self):
            self.params = {"w": np.linspace(0.5, 1.5, 3)}
            self.grads = {}
        def forward(self, x):
            self.x = x
            return x * self.params["w"]
        def backward(self, dy):
            self.grads = {"w": (dy * self.x)[0]}
            return dy * self.params["w"]

    class Hangs(Good):
        def forward(self, x):
            time.sleep(30)
            return super().forward(x)

    class HangsLater(Good):
        # Hangs from its fifth forward on: the timeout fires in the middle of the estimate,
        # and the harness's cleanup (one more forward) must be interrupted as well.
        calls = 0
        def forward(self, x):
            HangsLater.calls += 1
            if HangsLater.calls > 4:
                time.sleep(30)
            return super().forward(x)

    class Nan(Good):
        def backward(self, dy):
            return dy * np.nan

    class Exits(Good):
        def backward(self, dy):
            sys.exit(3)

    class BrokenInit:
        def __init__(self):
            raise RuntimeError("no weights file")

    class NeedsArgs(Good):
        def __init__(self, width):
            self.width = width

    class Prints(Good):
        def __init__(self):
            print("debug: built")
        def forward(self, x):
            print("debug: forward called")
            return super().forward(x)

    class Slow(Good):
        def __init__(self):
            time.sleep(0.35)

    class Loss:
        is_loss = True
        def forward(self, x, target):
            self.x = x
            return float(np.sum(x ** 2))
        def backward(self):
            return 2 * self.x

    def make_good():
        return Good()

    def not_a_layer():
        return 42

    NOT_CALLABLE = 3
    """
)

THIRD_PARTY = textwrap.dedent(
    """
    import numpy as np
    from gradcheck import register_layer

    class Cube:
        def forward(self, x):
            self.x = x
            return x ** 3
        def backward(self, dy):
            return 3 * dy * self.x ** 2

    def register():
        register_layer("tp-cube", Cube, shapes=[(4, 3)], replace=True)
    """
)

ENTRY_POINTS = textwrap.dedent(
    """
    [gradcheck.layers]
    tp = tplayers:register
    zbroken = tplayers:does_not_exist
    """
)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("userlayers")
    (d / "userlayers.py").write_text(USER_LAYERS)
    return d


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """A package 'installed' on PYTHONPATH: a module plus a dist-info declaring entry points."""
    d = tmp_path_factory.mktemp("thirdparty")
    (d / "tplayers.py").write_text(THIRD_PARTY)
    info = d / "tplayers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tplayers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return {"PYTHONPATH": str(d)}


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid(validator, doc):
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors[:10])


def _env(env_extra: Optional[Dict[str, str]]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    if env_extra:
        env.update(env_extra)
    return env


def run(*args, cwd=None, env_extra=None, timeout=120):
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(env_extra),
        timeout=timeout,
    )


def run_many(commands: Sequence[Sequence[str]], **kwargs: Any) -> List[Any]:
    """Run several commands side by side (each mostly waits on its imports or sleeps)."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda args: run(*args, **kwargs), commands))


def run_on_pty(*args, stream="stderr", cwd=None, env_extra=None):
    """Run with ``stream`` ("stdout" or "stderr") on a pseudo-terminal; the other is a pipe.

    Returns (returncode, what the terminal received, what the pipe received).
    """
    master, slave = pty.openpty()
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: slave}
    proc = subprocess.Popen([*COMMAND, *args], cwd=cwd, env=_env(env_extra), **kwargs)  # type: ignore[call-overload]
    os.close(slave)
    received = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side has closed it
                break
            if not chunk:
                break
            received += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    pipe = proc.stdout if stream == "stderr" else proc.stderr
    other = pipe.read().decode()
    proc.wait(timeout=10)
    return proc.returncode, received.decode(errors="replace"), other


# -- the default run and the JSON schema -------------------------------------------------------


def test_report_on_builtins_passes_with_exit_0():
    proc = run("report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["layer", "shape", "seed"]
    assert lines[-1].startswith("OK: ")
    for name in (
        "center",
        "standardize",
        "zca-eigh",
        "zca-svd",
        "dbn",
        "softmax-ce",
        "dense",
        "relu",
    ):
        assert any(line.startswith(name + " ") for line in lines), name
    assert proc.stderr == ""  # no terminal: no progress counter


def test_json_report_follows_the_schema(validator):
    proc = run("report", "--format", "json", "--only", "zca*", "--seed", "3")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert_valid(validator, doc)
    assert doc["schema_version"] == 2
    assert doc["summary"]["total"] == len(doc["results"]) > 0
    assert doc["summary"]["ok"] is True
    assert all(r["layer"].startswith("zca") and r["seed"] == 3 for r in doc["results"])
    assert any(r["spectrum"] is not None for r in doc["results"])
    assert all(r["arguments"] and r["screen"] for r in doc["results"])


def _without_timings(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_timings(v) for k, v in doc.items() if k != "elapsed"}
    if isinstance(doc, list):
        return [_without_timings(v) for v in doc]
    return doc


def test_workers_change_no_verdict_or_number_and_keep_the_order(user_dir):
    args = ["report", "--format", "json", "--quiet", "--layer", "userlayers:Bad", "--registered"]
    one, two = run_many([[*args, "--workers", "1"], [*args, "--workers", "2"]], cwd=user_dir)
    assert one.returncode == two.returncode == 1, one.stderr + two.stderr
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    assert _without_timings(first) == _without_timings(second)
    assert {r["status"] for r in first["results"]} == {"pass", "fail"}


def test_workers_must_be_a_positive_count():
    proc = run("report", "--workers", "0")
    assert proc.returncode == 2
    assert "--workers" in proc.stderr and "an integer >= 1" in proc.stderr


@pytest.fixture(scope="module")
def mixed(user_dir, tmp_path_factory):
    """One run with a pass, a fail, an error and an inconclusive check, in JSON and JUnit."""
    out = tmp_path_factory.mktemp("mixed")
    args = [
        "report",
        "--layer",
        "userlayers:Good",
        "--layer",
        "userlayers:Bad",
        "--layer",
        "userlayers:Nan",
        "--registered",
        "--only",
        "userlayers:*",
        "--only",
        "zca-eigh",
        "--shape",
        "4x6",
        "--seed",
        "0",
        "--eps",
        "1e-9",
        "--mode",
        "full",
        "--no-escalate",
        "--quiet",
    ]
    procs = run_many(
        [
            [*args, "--format", "json"],
            [*args, "--format", "junit", "--output", str(out / "junit.xml")],
            [*args, "--format", "junit", "--output", str(out / "strict.xml"), "--strict"],
            [*args, "--format", "markdown"],
        ],
        cwd=user_dir,
    )
    return {"procs": procs, "dir": out}


def test_every_status_in_json_follows_the_schema(mixed, validator):
    proc = mixed["procs"][0]
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert_valid(validator, doc)
    status = {r["layer"]: r["status"] for r in doc["results"]}
    assert status == {
        "userlayers:Good": "pass",
        "userlayers:Bad": "fail",
        "userlayers:Nan": "error",
        "zca-eigh": "inconclusive",
    }
    summary = doc["summary"]
    assert (summary["pass"], summary["fail"], summary["error"], summary["inconclusive"]) == (
        1,
        1,
        1,
        1,
    )
    bad = next(r for r in doc["results"] if r["status"] == "fail")
    worst = bad["arguments"][0]["worst"][0]
    assert bad["worst_argument"] == "x" and bad["worst_index"] == worst["index"]
    assert worst["analytic"] == pytest.approx(1.001 * worst["numeric"], rel=1e-6)


def test_junit_has_failures_errors_and_skipped_and_strict_moves_skipped(mixed):
    assert [p.returncode for p in mixed["procs"][1:3]] == [1, 1]
    root = ET.parse(mixed["dir"] / "junit.xml").getroot()
    suite = root.find("testsuite")
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "4", "failures": "1", "errors": "1", "skipped": "1"}
    cases = {c.get("classname"): c for c in suite.iter("testcase")}
    assert cases["gradcheck.userlayers:Bad"].find("failure") is not None
    assert "x[" in cases["gradcheck.userlayers:Bad"].find("failure").text
    assert cases["gradcheck.userlayers:Nan"].find("error") is not None
    assert cases["gradcheck.zca-eigh"].find("skipped") is not None
    assert len(list(cases["gradcheck.userlayers:Good"])) == 0
    strict = ET.parse(mixed["dir"] / "strict.xml").getroot().find("testsuite")
    assert (strict.get("failures"), strict.get("skipped")) == ("2", "0")


def test_markdown_is_a_table_with_collapsible_details(mixed):
    md = mixed["procs"][3].stdout
    assert md.startswith("### gradcheck report: FAILED")
    assert "| layer | shape | seed |" in md and "|---|" in md
    assert "| `userlayers:Bad` | 4x6 | 0 | full |" in md and "**FAIL**" in md
    assert "**ERROR**" in md and "_inconclusive_" in md
    assert md.count("<details>") == 3 and "reproduce: gradcheck report" in md


# -- user layers, failures and where they are ---------------------------------------------------


def test_user_layer_by_module_and_attribute(user_dir):
    proc = run(
        "report",
        "--layer",
        "userlayers:Good",
        "--layer",
        "userlayers:make_good",
        "--shape",
        "5x3",
        cwd=user_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("userlayers:") == 4  # two layers x two default seeds


def test_user_loss_layer_gets_labels(user_dir):
    proc = run("report", "--layer", "userlayers:Loss", "--shape", "4x3", cwd=user_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_failure_shows_the_worst_entries_and_a_command_that_reproduces_it_exactly(user_dir):
    proc = run("report", "--layer", "userlayers:Bad", "--shape", "4x3", "--seed", "2", cwd=user_dir)
    assert proc.returncode == 1
    out = proc.stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ENTRY_HEADER)
    assert lines[header + 1].lstrip().startswith("x[")  # the input, with the entry's index
    repro = next(line for line in lines if "reproduce:" in line).split("reproduce: ")[1]
    assert "--shape 4x3 --seed 2 --mode auto" in repro
    again = run(*repro.split()[1:], cwd=user_dir)
    assert again.returncode == 1
    # The same check: the same table row and the same worst entries, number for number.
    row = next(line for line in lines if line.startswith("userlayers:Bad "))
    assert row in again.stdout.splitlines()
    assert lines[header : header + 6] == again.stdout.splitlines()[header : header + 6]


def test_a_wrong_parameter_gradient_is_named(user_dir):
    proc = run(
        "report", "--layer", "userlayers:BadParam", "--shape", "4x3", "--seed", "0", cwd=user_dir
    )
    assert proc.returncode == 1
    assert "param 'w' (full, central+five-point+richardson): fail" in proc.stdout
    assert "input 'x' (full, central)" not in proc.stdout  # x passed its screen
    assert "    w[" in proc.stdout


def test_directional_mode_names_directions_and_reproduces_its_options(user_dir):
    proc = run(
        "report",
        "--layer",
        "userlayers:Bad",
        "--shape",
        "4x3",
        "--seed",
        "0",
        "--mode",
        "directional",
        "--directions",
        "5",
        "--method",
        "five-point",
        "--rtol",
        "1e-7",
        "--atol",
        "1e-9",
        cwd=user_dir,
    )
    assert proc.returncode == 1
    assert "x dir 0" in proc.stdout or "x dir 1" in proc.stdout
    assert "rerun with --mode full" in proc.stdout
    assert "rtol 1.00e-07, atol 1.00e-09, 5/5 directions beyond tolerance" in proc.stdout
    repro = next(line for line in proc.stdout.splitlines() if "reproduce:" in line)
    for option in (
        "--mode directional",
        "--method five-point",
        "--directions 5",
        "--rtol 1e-07",
        "--atol 1e-09",
    ):
        assert option in repro


def test_crashing_hanging_and_garbage_layers_are_rows_and_the_rest_still_run(user_dir, tmp_path):
    out = tmp_path / "r.json"
    layers = ("Nan", "Hangs", "HangsLater", "Exits", "BrokenInit", "Good")
    args = [arg for name in layers for arg in ("--layer", f"userlayers:{name}")]
    start = time.monotonic()
    proc = run(
        "report",
        *args,
        "--shape",
        "3x2",
        "--seed",
        "0",
        # Generous enough for the good layer on a loaded machine (its check also pays the
        # first-use imports), short enough to keep the test quick.
        "--timeout",
        "2",
        "--format",
        "json",
        "--output",
        str(out),
        cwd=user_dir,
    )
    assert time.monotonic() - start < 25
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(out.read_text())
    rows = {r["layer"].split(":")[1]: r for r in doc["results"]}
    assert {name: r["status"] for name, r in rows.items()} == {
        "Nan": "error",
        "Hangs": "error",
        "HangsLater": "error",
        "Exits": "error",
        "BrokenInit": "error",
        "Good": "pass",
    }
    assert "timeout" in rows["Hangs"]["reason"] and "timeout" in rows["HangsLater"]["reason"]
    assert "nonfinite" in rows["Nan"]["reason"]
    assert "SystemExit" in rows["Exits"]["reason"]
    assert "no weights file" in rows["BrokenInit"]["reason"]
    assert proc.stderr.startswith("FAILED: 6 checks, 1 passed, 0 failed, 5 errors")


def test_a_shape_that_does_not_fit_a_fixed_width_layer_is_an_explained_row():
    proc = run("report", "--only", "dense", "--only", "tanh", "--shape", "4x3", "--seed", "0")
    assert proc.returncode == 1
    row = next(line for line in proc.stdout.splitlines() if line.startswith("dense "))
    assert row.split()[-1] == "error"
    assert "dense takes D = 5 features (its registered shapes: 8x5, 1x5)" in proc.stdout
    assert "Pass --shape Nx5" in proc.stdout
    assert any(
        line.startswith("tanh ") and line.endswith("pass") for line in proc.stdout.splitlines()
    )


def test_a_layer_that_prints_does_not_corrupt_json_on_stdout(user_dir):
    proc = run(
        "report", "--layer", "userlayers:Prints", "--shape", "3x2", "--format", "json", cwd=user_dir
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["summary"]["ok"] is True
    assert "debug: built" in proc.stderr and "debug: forward called" in proc.stderr


# -- selection ----------------------------------------------------------------------------------


def test_only_and_skip_select_by_pattern():
    proc = run("report", "--format", "json", "--only", "zca*", "--skip", "zca-svd", "--seed", "0")
    names = {r["layer"] for r in json.loads(proc.stdout)["results"]}
    assert names == {"zca-eigh", "zca-uncentered", "zca-examples"}


def test_registered_adds_the_catalogue_and_third_party_entry_points(user_dir, third_party):
    procs = run_many(
        [
            [
                "report",
                "--layer",
                "userlayers:Good",
                "--only",
                "userlayers:*",
                "--only",
                "tp-*",
                "--seed",
                "0",
                "--format",
                "json",
            ],
            [
                "report",
                "--layer",
                "userlayers:Good",
                "--registered",
                "--only",
                "userlayers:*",
                "--only",
                "tp-*",
                "--seed",
                "0",
                "--format",
                "json",
            ],
            ["report", "--registered", "--only", "tp-*", "--seed", "0", "--format", "junit"],
            ["list"],
        ],
        cwd=user_dir,
        env_extra=third_party,
    )
    alone, both, junit, listing = procs
    assert alone.returncode == 0
    assert {r["layer"] for r in json.loads(alone.stdout)["results"]} == {"userlayers:Good"}
    # With --registered, the catalogue (here: the third-party variant) is checked as well,
    # and an entry point that does not load fails the run without hiding the others.
    assert both.returncode == 1
    doc = json.loads(both.stdout)
    assert {r["layer"] for r in doc["results"]} == {"userlayers:Good", "tp-cube"}
    assert all(r["status"] == "pass" for r in doc["results"])
    assert [e["entry_point"] for e in doc["load_errors"]] == ["zbroken = tplayers:does_not_exist"]
    suite = ET.fromstring(junit.stdout).find("testsuite")
    assert (suite.get("tests"), suite.get("errors")) == ("2", "1")
    assert listing.returncode == 1 and "tp-cube" in listing.stdout
    assert "entry point zbroken = tplayers:does_not_exist failed to load" in listing.stderr


# -- usage errors -------------------------------------------------------------------------------


# Each a different path to exit status 2, through the console script.
USAGE_ERRORS = [
    (["report", "--shape", "4by3"], "NxD"),
    (["report", "--layer", "no_such_module_xyz:Layer"], "does not import"),
    (["report", "--layer", "userlayers:Missing"], "no attribute"),
    (["report", "--layer", "userlayers"], "MODULE:ATTR"),
    (["report", "--layer", "userlayers:NOT_CALLABLE"], "not a layer class"),
    (["report", "--layer", "userlayers:not_a_layer"], "no forward/backward"),
    (["report", "--layer", "userlayers:NeedsArgs"], "cannot be called with no arguments"),
    (["report", "--only", "nothing-matches-this"], "no layer matches"),
    (["report", "--dtype", "float32"], "--allow-float32"),
    (["report", "--format", "yaml"], "invalid choice"),
    (["report", "--output", "no/such/folder/r.txt"], "does not exist"),
    ([], "COMMAND"),
    (["plot"], "choose a picture"),
    (["plot", "step-size", "--layer", "no-such-variant"], "gradcheck list"),
    (["plot", "step-size", "--layer", "tanh", "--entry", "9,0"], "outside"),
    (["plot", "step-size", "--layer", "tanh", "--entry", "1"], "the 8x3 input has 2 dimensions"),
    (["plot", "step-size", "--layer", "tanh", "--output", "x.svg"], "PNG"),
]

# Rejected by the argument parser itself: checked in-process, where they cost no interpreter.
PARSE_ERRORS = [
    (["report", "--shape", "0x3"], "positive"),
    (["report", "--seed", "one"], "invalid int"),
    (["report", "--mode", "sideways"], "invalid choice"),
    (["report", "--method", "forward"], "invalid choice"),
    (["report", "--rtol", "-1"], "non-negative"),
    (["report", "--atol", "x"], "expected a number"),
    (["report", "--eps", "0"], "positive"),
    (["report", "--timeout", "0"], "positive"),
    (["report", "--directions", "0"], ">= 1"),
    (["report", "--no-such-option"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    (["plot", "step-size"], "--layer"),
    (["plot", "step-size", "--layer", "tanh", "--entry", "1,x"], "i,j"),
    (["plot", "step-size", "--layer", "tanh", "--shape", "3x"], "NxD"),
]


@pytest.mark.parametrize("args, message", PARSE_ERRORS)
def test_malformed_options_exit_2(capsys, args, message):
    from gradcheck.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def usage_runs(user_dir):
    runs = run_many([args for args, _ in USAGE_ERRORS], cwd=user_dir)
    return {tuple(args): proc for (args, _), proc in zip(USAGE_ERRORS, runs)}


@pytest.mark.parametrize("args, message", USAGE_ERRORS)
def test_usage_errors_exit_2_with_a_clear_message(usage_runs, args, message):
    proc = usage_runs[tuple(args)]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_every_command_has_help_with_examples():
    commands = [
        [],
        ["report"],
        ["list"],
        ["mutants"],
        ["paper"],
        ["plot"],
        ["plot", "step-size"],
    ]
    for args, proc in zip(commands, run_many([[*c, "--help"] for c in commands])):
        assert proc.returncode == 0, args
        assert "usage: gradcheck" in proc.stdout and "examples:" in proc.stdout, args
    assert "--version" in run("--help").stdout


# -- output -------------------------------------------------------------------------------------


def test_output_is_written_atomically_with_the_summary_on_stderr(tmp_path):
    out = tmp_path / "report.txt"
    proc = run("report", "--only", "tanh", "--output", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text().rstrip().splitlines()[-1].startswith("OK:")
    assert proc.stderr.startswith("OK: ")
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    quiet = run("report", "--only", "tanh", "--output", str(out), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""


# Runs the real CLI with the JSON renderer replaced by one that fails: the report is rendered
# while the temporary file is open, so the temporary file must be cleaned up.
FAILING_RENDERER = textwrap.dedent(
    """
    import sys
    import gradcheck.report

    def boom(report):
        raise RuntimeError("renderer failed")

    gradcheck.report.render_json = boom
    from gradcheck.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_failing_renderer_leaves_the_old_file_and_no_temporary_file(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("previous report\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FAILING_RENDERER,
            "report",
            "--only",
            "tanh",
            "--format",
            "json",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=_env(None),
    )
    assert proc.returncode != 0 and "renderer failed" in proc.stderr
    assert out.read_text() == "previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_usage_error_leaves_an_existing_output_untouched(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("previous report\n")
    proc = run("report", "--only", "no-such-layer", "--output", str(out))
    assert proc.returncode == 2
    assert out.read_text() == "previous report\n"


# -- options that change the check ---------------------------------------------------------------


def test_eps_reaches_the_whitening_layers():
    proc = run(
        "report",
        "--format",
        "json",
        "--only",
        "zca-eigh",
        "--shape",
        "4x6",
        "--seed",
        "0",
        "--eps",
        "1e-3",
    )
    doc = json.loads(proc.stdout)
    assert doc["config"]["eps"] == 1e-3
    assert doc["results"][0]["spectrum"]["min_eigenvalue"] == pytest.approx(1e-3, rel=1e-6)


def test_strict_turns_inconclusive_into_failure():
    args = [
        "report",
        "--only",
        "zca-eigh",
        "--shape",
        "4x6",
        "--seed",
        "0",
        "--eps",
        "1e-9",
        "--mode",
        "full",
        "--no-escalate",
    ]
    lenient, strict = run_many([args, [*args, "--strict"]])
    assert lenient.returncode == 0 and "inconclusive" in lenient.stdout
    assert "1 inconclusive in" in lenient.stdout
    assert strict.returncode == 1
    assert "1 inconclusive (strict: counted as failures)" in strict.stdout


def test_float32_with_allow_states_its_tolerance():
    as_json, as_text = run_many(
        [
            [
                "report",
                "--only",
                "tanh",
                "--dtype",
                "float32",
                "--allow-float32",
                "--format",
                "json",
            ],
            ["report", "--only", "tanh", "--dtype", "float32", "--allow-float32"],
        ]
    )
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 0
    assert doc["results"][0]["tolerance"]["rtol"] == pytest.approx(3.45e-4, rel=1e-2)
    assert doc["config"]["dtype"] == "float32"
    assert "rtol = 3.45e-04 = sqrt(eps32)" in doc["notes"][0]
    assert as_text.returncode == 0
    assert "note: float32 inputs (--allow-float32): rtol = 3.45e-04" in as_text.stdout


@pytest.mark.parametrize("method", ["richardson", "complex-step"])
def test_methods_and_full_mode(method):
    proc = run(
        "report",
        "--only",
        "dense",
        "--seed",
        "0",
        "--mode",
        "full",
        "--method",
        method,
        "--format",
        "json",
    )
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert {a["mode"] for r in doc["results"] for a in r["arguments"]} == {"full"}
    assert {a["method"] for r in doc["results"] for a in r["arguments"]} == {method}


# -- terminals: colour and progress --------------------------------------------------------------


def on_ptys(*runs: Dict[str, Any]) -> List[Any]:
    """``run_on_pty`` for several keyword sets side by side."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda kw: run_on_pty(*kw.pop("args"), **kw), runs))


def test_colour_on_a_terminal_never_in_a_pipe_or_with_no_color():
    args = ("report", "--only", "tanh", "--seed", "0")
    tty, no_color, empty = on_ptys(
        {"args": args, "stream": "stdout"},
        {"args": args, "stream": "stdout", "env_extra": {"NO_COLOR": "1"}},
        # no-color.org: an empty NO_COLOR does not disable colour.
        {"args": args, "stream": "stdout", "env_extra": {"NO_COLOR": ""}},
    )
    assert tty[0] == 0 and "\033[32mpass\033[0m" in tty[1]
    assert "\033[32mOK: " in tty[1]
    assert "\033[" not in no_color[1] and "pass" in no_color[1]
    assert "\033[32m" in empty[1]
    assert "\033[" not in run(*args).stdout


def test_progress_counter_on_a_terminal_after_a_second_only(user_dir):
    # Five checks of a layer that takes 0.35 s to build: about 1.8 s in all.
    seeds = [a for s in range(5) for a in ("--seed", str(s))]
    args = ("report", "--layer", "userlayers:Slow", "--shape", "3x2", *seeds)
    with ThreadPoolExecutor(max_workers=1) as pool:
        piped = pool.submit(run, *args, cwd=user_dir)
        (code, terminal, stdout), (_, quiet, _), (_, short, _) = on_ptys(
            {"args": args, "stream": "stderr", "cwd": user_dir},
            {"args": (*args, "--quiet"), "stream": "stderr", "cwd": user_dir},
            {"args": ("report", "--only", "tanh", "--seed", "0"), "stream": "stderr"},
        )
        piped = piped.result()
    assert code == 0 and stdout.rstrip().splitlines()[-1].startswith("OK:")
    counters = re.findall(r"\[(\d)/5\] userlayers:Slow 3x2 seed \d  (\d+) s", terminal)
    assert counters, terminal
    assert all(int(seconds) >= 1 for _, seconds in counters)  # nothing in the first second
    assert counters[-1][0] == "5"
    assert terminal.endswith("\r")  # the counter erases itself
    assert quiet == ""
    assert short == ""  # a run shorter than a second stays silent
    assert piped.returncode == 0 and piped.stderr == ""


# -- other commands -----------------------------------------------------------------------------


def test_python_dash_m_works():
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", "report", "--only", "relu"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "relu" in proc.stdout, proc.stdout + proc.stderr


def test_list_shows_the_catalogue():
    proc = run("list")
    assert proc.returncode == 0
    assert "zca-eigh" in proc.stdout and "softmax-ce" in proc.stdout
    dense = next(line for line in proc.stdout.splitlines() if line.startswith("dense "))
    assert dense.split()[1:4] == ["matrix", "8x5", "1x5"]


def test_plot_step_size_prints_the_table_and_writes_a_png(tmp_path):
    out = tmp_path / "step.png"
    one = tmp_path / "entry.png"
    whole, entry = run_many(
        [
            ["plot", "step-size", "--layer", "zca-eigh", "--output", str(out)],
            [
                "plot",
                "step-size",
                "--layer",
                "tanh",
                "--shape",
                "4x3",
                "--seed",
                "1",
                "--entry",
                "2,1",
                "--method",
                "five-point",
                "--output",
                str(one),
            ],
        ]
    )
    assert whole.returncode == 0, whole.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = whole.stdout.splitlines()
    assert lines[0] == (
        "step-size study: zca-eigh, input 16x4, seed 0, all 64 entries, central differences"
    )
    assert any("<- gradcheck's step, eps^(1/3)" in line for line in lines)
    assert lines[-1].startswith("smallest error ")
    assert f"wrote {out}" in whole.stderr
    assert entry.returncode == 0, entry.stderr
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "entry (2, 1), five-point differences" in entry.stdout
    assert "eps^(1/5)" in entry.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.png", "step.png"]


def test_plot_without_matplotlib_says_how_to_install_it_and_exits_2(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    out = tmp_path / "step.png"
    proc = run(
        "plot",
        "step-size",
        "--layer",
        "tanh",
        "--output",
        str(out),
        env_extra={"PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "pip install matplotlib" in proc.stderr
    assert "pip install 'gradcheck-dbn[plot]'" in proc.stderr
    assert not out.exists()


def test_plot_of_a_user_layer_and_of_a_crashing_one(user_dir, tmp_path):
    good, crash = run_many(
        [
            [
                "plot",
                "step-size",
                "--layer",
                "userlayers:Loss",
                "--output",
                str(tmp_path / "loss.png"),
            ],
            [
                "plot",
                "step-size",
                "--layer",
                "dense",
                "--shape",
                "4x3",
                "--output",
                str(tmp_path / "dense.png"),
            ],
        ],
        cwd=user_dir,
    )
    assert good.returncode == 0, good.stderr
    assert "step-size study: userlayers:Loss, input 8x3" in good.stdout
    assert crash.returncode == 1
    assert "must have 5 features" in crash.stderr
    assert not (tmp_path / "dense.png").exists()


WARNED_LAYER = textwrap.dedent(
    '''
    import numpy as np


    class AttrDense:
        """Parameters held as attributes, with no layer.params: only dx can be checked."""

        def __init__(self):
            self.W = np.random.default_rng(0).standard_normal((3, 2))

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, dy):
            self.dW = self.x.T @ dy
            return dy @ self.W.T
    '''
)


def test_the_warnings_of_passing_checks_are_printed(tmp_path):
    # A pass prints no details; a warning of one (parameters the check could not see) would
    # otherwise reach nobody who reads the report.
    (tmp_path / "warned.py").write_text(WARNED_LAYER)
    proc = run("report", "--layer", "warned:AttrDense", "--shape", "4x3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warnings of checks that passed:" in proc.stdout, proc.stdout
    assert "warned:AttrDense 4x3 (seed 0, 1) [params-unnamed]" in proc.stdout, proc.stdout
    assert "holds arrays W that no forward changes" in proc.stdout, proc.stdout

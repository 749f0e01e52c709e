"""The command line, through the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]

USER_LAYERS = textwrap.dedent(
    """
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

    class Hangs(Good):
        def forward(self, x):
            time.sleep(30)
            return super().forward(x)

    class Nan(Good):
        def backward(self, dy):
            return dy * np.nan

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


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("userlayers")
    (d / "userlayers.py").write_text(USER_LAYERS)
    return d


def run(*args, cwd=None, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    if env_extra:
        env.update(env_extra)
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


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


def test_json_report_has_the_documented_shape():
    proc = run("report", "--format", "json", "--only", "zca*", "--seed", "3")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert doc["summary"]["total"] == len(doc["results"]) > 0
    assert doc["summary"]["ok"] is True
    row = doc["results"][0]
    for key in ("layer", "shape", "status", "max_abs_error", "rel_error", "seed", "reproduce"):
        assert key in row
    assert all(r["layer"].startswith("zca") and r["seed"] == 3 for r in doc["results"])


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


def test_failing_layer_exits_1_and_shows_where_with_a_reproduce_command(user_dir):
    proc = run("report", "--layer", "userlayers:Bad", "--shape", "4x3", "--seed", "2", cwd=user_dir)
    assert proc.returncode == 1
    out = proc.stdout
    assert "fail" in out and "analytic" in out and "numeric" in out
    repro = next(line for line in out.splitlines() if "reproduce:" in line).split("reproduce:")[1]
    again = run(*repro.split()[1:], cwd=user_dir)
    assert again.returncode == 1
    assert "--mode full" in repro and "--seed 2" in repro


def test_garbage_and_hanging_layers_are_rows_and_the_rest_still_run(user_dir, tmp_path):
    out = tmp_path / "r.json"
    proc = run(
        "report",
        "--layer",
        "userlayers:Nan",
        "--layer",
        "userlayers:Hangs",
        "--layer",
        "userlayers:Good",
        "--shape",
        "3x2",
        "--seed",
        "0",
        "--timeout",
        "1",
        "--format",
        "json",
        "--output",
        str(out),
        cwd=user_dir,
    )
    assert proc.returncode == 1
    doc = json.loads(out.read_text())
    status = {r["layer"]: r["status"] for r in doc["results"]}
    assert status == {
        "userlayers:Nan": "error",
        "userlayers:Hangs": "error",
        "userlayers:Good": "pass",
    }
    hang = next(r for r in doc["results"] if r["layer"] == "userlayers:Hangs")
    assert "timeout" in hang["reason"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "4by3"], "NxD"),
        (["--shape", "0x3"], "positive"),
        (["--layer", "no_such_module_xyz:Layer"], "does not import"),
        (["--layer", "userlayers:Missing"], "no attribute"),
        (["--layer", "userlayers"], "MODULE:ATTR"),
        (["--layer", "userlayers:NOT_CALLABLE"], "not a layer class"),
        (["--layer", "userlayers:not_a_layer"], "no forward/backward"),
        (["--only", "nothing-matches-this"], "no layer matches"),
        (["--dtype", "float32"], "--allow-float32"),
        (["--format", "yaml"], "invalid choice"),
        (["--rtol", "-1"], "non-negative"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(user_dir, args, message):
    proc = run("report", *args, cwd=user_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_no_command_is_a_usage_error():
    assert run().returncode == 2


def test_only_and_skip_select_by_pattern():
    proc = run("report", "--format", "json", "--only", "zca*", "--skip", "zca-svd", "--seed", "0")
    names = {r["layer"] for r in json.loads(proc.stdout)["results"]}
    assert names == {"zca-eigh", "zca-uncentered", "zca-examples"}


def test_markdown_and_junit_formats(tmp_path, user_dir):
    md = run("report", "--format", "markdown", "--only", "center", "--seed", "0")
    assert md.returncode == 0
    assert "| layer | shape |" in md.stdout and "`center`" in md.stdout
    out = tmp_path / "junit.xml"
    proc = run(
        "report",
        "--format",
        "junit",
        "--output",
        str(out),
        "--layer",
        "userlayers:Bad",
        "--layer",
        "userlayers:Good",
        "--shape",
        "3x2",
        "--seed",
        "0",
        cwd=user_dir,
    )
    assert proc.returncode == 1
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert len(root.iter("failure").__next__().text) > 0


def test_output_is_written_atomically_and_nothing_on_stdout(tmp_path):
    out = tmp_path / "report.txt"
    proc = run("report", "--only", "tanh", "--output", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text().rstrip().splitlines()[-1].startswith("OK:")
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]


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
    lenient = run(*args)
    assert lenient.returncode == 0 and "inconclusive" in lenient.stdout
    strict = run(*args, "--strict")
    assert strict.returncode == 1


def test_float32_with_allow_states_its_tolerance():
    proc = run(
        "report", "--only", "tanh", "--dtype", "float32", "--allow-float32", "--format", "json"
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert doc["results"][0]["tolerance"]["rtol"] == pytest.approx(3.45e-4, rel=1e-2)


def test_colour_only_on_a_terminal_and_never_with_no_color():
    plain = run("report", "--only", "tanh")
    assert "\033[" not in plain.stdout


def test_python_dash_m_works():
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", "report", "--only", "relu"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "relu" in proc.stdout


def test_list_shows_the_catalogue():
    proc = run("list")
    assert proc.returncode == 0
    assert "zca-eigh" in proc.stdout and "softmax-ce" in proc.stdout

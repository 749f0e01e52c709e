"""The CLI survives any layer: the real console script, in a subprocess, with layers that end
the process, segfault, swallow every signal, or are stopped by Ctrl-C.

Each check runs in a worker process watched by the CLI, so such a layer is one error row, the
other rows are kept and the report is written (to ``--output`` too). Ctrl-C (SIGINT to the
process group, as a terminal sends it) writes the report of what finished, marked interrupted,
and exits 130. The runs mostly wait, so they are started side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from gradcheck.isolation import can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="isolation needs fork (POSIX)")

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "docs" / "report-schema.json"
SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]
LIMIT = 120  # seconds: only so that a regression fails instead of hanging the suite

LAYERS = textwrap.dedent(
    """
    import ctypes
    import os
    import time
    import numpy as np

    class Good:
        def forward(self, x):
            self.x = x
            return np.sin(x)
        def backward(self, dy):
            return dy * np.cos(self.x)

    class Exits(Good):
        def forward(self, x):
            os._exit(7)

    class Segfaults(Good):
        def backward(self, dy):
            ctypes.string_at(0)

    class Swallows(Good):
        # A retry loop with a bare except: it swallows whatever a signal handler raises.
        def forward(self, x):
            while True:
                try:
                    time.sleep(0.01)
                except:
                    pass

    class ExitsWhenBuilt(Good):
        # The constructor itself ends the process: the CLI probes it before the run.
        def __init__(self):
            os._exit(5)

    class Sleeps(Good):
        # Says where it runs, then sleeps: the test presses Ctrl-C meanwhile.
        def forward(self, x):
            with open(os.environ["SLEEPS_MARKER"] + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(os.environ["SLEEPS_MARKER"] + ".tmp", os.environ["SLEEPS_MARKER"])
            time.sleep(60)
            return super().forward(x)
    """
)


@pytest.fixture(scope="module")
def layer_env(tmp_path_factory) -> Dict[str, str]:
    d = tmp_path_factory.mktemp("crashlayers")
    (d / "crashlayers.py").write_text(LAYERS)
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)  # its traceback dump is not what is tested
    env.pop("NO_COLOR", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(d), env.get("PYTHONPATH")) if p)
    return env


def layer_args(*names: str) -> List[str]:
    return [arg for name in names for arg in ("--layer", f"crashlayers:{name}")]


def run(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=LIMIT)


def rows(doc: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(r["layer"].split(":")[-1], r["status"]) for r in doc["results"]]


def assert_valid(doc: Dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors[:10])


AGREE = ["report", "--only", "tanh", "--only", "dbn", "--only", "softmax-ce", "--seed", "0"]


@pytest.fixture(scope="module")
def runs(layer_env, tmp_path_factory):
    """Started side by side: one report over a good layer, one that exits, one that segfaults,
    one that swallows every signal and the good layer again; and a few built-ins with and
    without --no-isolate."""
    out = tmp_path_factory.mktemp("crashout") / "report.json"
    crash = [
        "report",
        *layer_args("Good", "Exits", "Segfaults", "Swallows", "Good"),
        "--shape",
        "3x2",
        "--seed",
        "0",
        "--timeout",
        "2",
        "--format",
        "json",
        "--output",
        str(out),
    ]
    agree = [*AGREE, "--format", "json"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = list(
            pool.map(lambda a: run(layer_env, *a), [crash, agree, [*agree, "--no-isolate"]])
        )
    return {
        "crash": (procs[0], json.loads(out.read_text()) if out.exists() else None),
        "isolated": procs[1],
        "inline": procs[2],
    }


@pytest.fixture
def crash_run(runs):
    return runs["crash"]


def row(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    return next(r for r in doc["results"] if r["layer"] == f"crashlayers:{name}")


def test_a_layer_calling_os_exit_is_one_row_and_the_report_is_written(crash_run):
    proc, doc = crash_run
    assert proc.returncode == 1, proc.stderr
    assert doc is not None, "no --output file"
    assert_valid(doc)
    assert rows(doc) == [
        ("Good", "pass"),
        ("Exits", "error"),
        ("Segfaults", "error"),
        ("Swallows", "error"),
        ("Good", "pass"),
    ]
    exits = row(doc, "Exits")
    assert [f["code"] for f in exits["findings"]] == ["worker-exited"]
    assert "exited with status 7" in exits["reason"]
    assert "--layer crashlayers:Exits" in exits["reproduce"]
    assert proc.stderr.startswith("FAILED: 5 checks, 2 passed, 0 failed, 3 errors")


def test_a_segfaulting_layer_is_a_row_naming_the_signal(crash_run):
    _, doc = crash_run
    segv = row(doc, "Segfaults")
    assert [f["code"] for f in segv["findings"]] == ["worker-killed"]
    assert "SIGSEGV" in segv["reason"]


def test_a_layer_that_swallows_every_signal_is_stopped_at_the_timeout(crash_run):
    _, doc = crash_run
    hang = row(doc, "Swallows")
    assert [f["code"] for f in hang["findings"]] == ["timeout"]
    assert "ran past --timeout 2 s" in hang["reason"]


def test_isolated_and_in_process_reports_agree(runs):
    isolated, inline = runs["isolated"], runs["inline"]
    assert isolated.returncode == inline.returncode == 0, isolated.stderr + inline.stderr
    docs = [json.loads(p.stdout)["results"] for p in (isolated, inline)]
    for results in docs:
        for r in results:
            r.pop("elapsed")
    assert docs[0] == docs[1] and len(docs[0]) > 0


def interrupted_run(env: Dict[str, str], marker: Path, *args: str) -> Tuple[int, str, str, int]:
    """Start a report whose second check sleeps, press Ctrl-C once it has started (the first
    row is done then: one worker runs the checks one after another), and return (exit status,
    stdout, stderr, the sleeping worker's pid)."""
    env = {**env, "SLEEPS_MARKER": str(marker)}
    layers = layer_args("Good", "Sleeps", "Good")
    proc = subprocess.Popen(
        [*COMMAND, "report", *layers, "--shape", "3x2", "--workers", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + LIMIT
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=LIMIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err, int(marker.read_text())


def test_ctrl_c_writes_the_report_so_far_marked_interrupted_and_exits_130(layer_env, tmp_path):
    out = tmp_path / "report.json"
    jobs = [
        (tmp_path / "marker-json", ("--seed", "0", "--format", "json", "--output", str(out))),
        (tmp_path / "marker-text", ("--seed", "0")),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        (code, _, err, pid), (text_code, text, text_err, text_pid) = pool.map(
            lambda j: interrupted_run(layer_env, j[0], *j[1]), jobs
        )

    assert code == 130, err
    doc = json.loads(out.read_text())
    assert_valid(doc)
    assert rows(doc) == [("Good", "pass")]
    assert doc["summary"]["interrupted"] is True and doc["summary"]["ok"] is False
    assert "interrupted after 1 of 3 checks" in err
    assert "Traceback" not in err

    assert text_code == 130, text_err
    lines = text.strip().splitlines()
    assert lines[2].startswith("crashlayers:Good ") and lines[2].endswith("pass")
    assert lines[-1].startswith("INTERRUPTED: 1 check, 1 passed")
    assert "interrupted after 1 of 3 checks" in text_err

    for worker in (pid, text_pid):  # the sleeping worker was killed and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)


def test_a_constructor_that_ends_the_process_is_one_row(layer_env, tmp_path):
    """The CLI builds a --layer once to tell a layer from a non-layer: in a worker, so a
    constructor calling os._exit costs its own row, and the other layer's row is kept."""
    out = tmp_path / "report.json"
    proc = run(
        layer_env,
        "report",
        *layer_args("ExitsWhenBuilt", "Good"),
        "--shape",
        "4x3",
        "--seed",
        "0",
        "--format",
        "json",
        "--output",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(out.read_text())
    assert rows(doc) == [("ExitsWhenBuilt", "error"), ("Good", "pass")]
    assert "status 5" in doc["results"][0]["reason"]

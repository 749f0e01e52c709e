"""The runner through the API: jobs in a forked worker (``isolate=True``) and in this process.

A worker that ends (``os._exit``), crashes (a segfault), is killed (as the out-of-memory killer
does) or loops through every signal costs one error row naming how it ended, and the next job
runs in a fresh worker; results of isolated runs equal in-process runs; Ctrl-C stops with
:class:`RunInterrupted` carrying what finished and leaves no worker behind. The console script
is exercised the same way in tests/test_cli_isolation.py.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import pickle
import signal
import time
from typing import Any, Dict, List

import numpy as np
import pytest

from gradcheck.cli import build_parser
from gradcheck.cli.report import run_options
from gradcheck.isolation import (
    Crash,
    Worker,
    WorkerFailed,
    can_fork,
    describe_status,
    map_concurrently,
    run_concurrently,
    signal_label,
)
from gradcheck.registry import LayerSpec, get_layer_spec, spec_from_reference
from gradcheck.result import CheckResult
from gradcheck.runner import (
    Job,
    RunInterrupted,
    RunOptions,
    reproduce_command,
    run_jobs,
)

pytestmark = pytest.mark.skipif(not can_fork(), reason="isolation needs fork (POSIX)")


class Sine:
    def forward(self, x):
        self.x = x
        return np.sin(x)

    def backward(self, dy):
        return dy * np.cos(self.x)


class WrongSine(Sine):
    def backward(self, dy):
        return dy * np.cos(self.x) * 1.001


class Exits(Sine):
    def forward(self, x):
        os._exit(7)


class Segfaults(Sine):
    def backward(self, dy):
        faulthandler.disable()  # pytest's traceback dump would only clutter the output
        ctypes.string_at(0)  # reads address 0: SIGSEGV


class KilledFromOutside(Sine):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


class SwallowsEverything(Sine):
    """A retry loop with a bare except: no exception a signal handler raises gets out."""

    def forward(self, x):
        while True:
            try:
                time.sleep(0.01)
            except:  # noqa: E722
                pass


def spec(name: str, factory: Any, **kwargs: Any) -> LayerSpec:
    # A lambda factory: a spec that could not be pickled to a spawned process.
    return LayerSpec(name=name, factory=lambda: factory(), shapes=((3, 2),), **kwargs)


def job(s: LayerSpec, seed: int = 0) -> Job:
    return Job(s, s.shapes[0], seed, reproduce=f"gradcheck report --layer {s.name}")


def plain(result: CheckResult) -> str:
    """Everything a result says except how long it took."""
    d = result.to_dict()
    d.pop("elapsed")
    return json.dumps(d, sort_keys=True)


def finding_codes(result: CheckResult) -> List[str]:
    return [f.code for f in result.findings]


def test_isolated_results_equal_in_process_results():
    specs = [get_layer_spec(n) for n in ("tanh", "dense", "dbn", "softmax-ce", "zca-eigh")]
    specs.append(spec("wrong-sine", WrongSine))
    jobs = [Job(s, shape, seed) for s in specs for shape in s.shapes for seed in (0, 1)]
    options = RunOptions()
    inline = run_jobs(jobs, options)
    isolated = run_jobs(jobs, options, isolate=True)
    assert [plain(r) for r in isolated] == [plain(r) for r in inline]
    assert {r.status for r in isolated if r.layer == "wrong-sine"} == {"fail"}
    assert {r.status for r in isolated if r.layer != "wrong-sine"} == {"pass"}


def test_results_are_the_same_with_any_number_of_workers_and_in_the_order_of_the_jobs():
    specs = [get_layer_spec(n) for n in ("tanh", "dense", "zca-eigh")]
    specs.append(spec("wrong-sine", WrongSine))
    jobs = [Job(s, shape, seed) for s in specs for shape in s.shapes for seed in (0, 1)]
    one = run_jobs(jobs, RunOptions(), isolate=True, workers=1)
    three = run_jobs(jobs, RunOptions(), isolate=True, workers=3)
    assert [plain(r) for r in three] == [plain(r) for r in one]
    assert [(r.layer, r.seed) for r in three] == [(j.spec.name, j.seed) for j in jobs]


def test_crashes_and_timeouts_among_concurrent_workers_cost_their_own_rows_only():
    good = spec("sine", Sine)
    bad = [spec("exits", Exits), spec("segfaults", Segfaults), spec("swallows", SwallowsEverything)]
    jobs = [job(good)] + [j for s in bad for j in (job(s), job(good, seed=1))]
    started: List[str] = []
    start = time.monotonic()
    results = run_jobs(
        jobs,
        RunOptions(timeout=1.0),
        lambda done, total, j: started.append(j.spec.name),
        isolate=True,
        workers=2,
    )
    assert time.monotonic() - start < 30
    assert [r.layer for r in results] == [j.spec.name for j in jobs]
    assert started[: len(jobs)] == [j.spec.name for j in jobs]
    assert [r.status for r in results if r.layer == "sine"] == ["pass"] * 4
    rows: Dict[str, CheckResult] = {r.layer: r for r in results if r.layer != "sine"}
    assert finding_codes(rows["exits"]) == ["worker-exited"]
    assert finding_codes(rows["segfaults"]) == ["worker-killed"]
    assert finding_codes(rows["swallows"]) == ["timeout"]


def test_tasks_run_at_once_on_several_workers(tmp_path):
    """Two tasks that each wait for the other to have started can only finish side by side."""
    marks = [tmp_path / f"started-{i}" for i in range(2)]

    def task(i: int) -> int:
        marks[i].touch()
        deadline = time.monotonic() + 20
        while not marks[1 - i].exists():
            if time.monotonic() > deadline:
                return -1
            time.sleep(0.01)
        return i

    outcomes = sorted((index, outcome) for index, outcome, _ in run_concurrently(task, 2, 2))
    assert outcomes == [(0, (True, 0)), (1, (True, 1))]


def test_map_concurrently_keeps_the_order_and_a_crash_is_an_error():
    ended: List[int] = []
    assert map_concurrently(lambda i: i * i, 5, 2, done=ended.append) == [0, 1, 4, 9, 16]
    assert sorted(ended) == list(range(5))
    assert map_concurrently(lambda i: i * i, 5, 1) == [0, 1, 4, 9, 16]

    def task(i: int) -> int:
        if i == 2:
            os._exit(3)
        return i

    with pytest.raises(WorkerFailed, match="exited with status 3"):
        map_concurrently(task, 4, 2)


def test_a_crashing_worker_is_one_row_and_the_next_job_still_runs():
    good = spec("sine", Sine)
    bad = [
        spec("exits", Exits),
        spec("segfaults", Segfaults),
        spec("killed", KilledFromOutside),
        spec("swallows", SwallowsEverything),
    ]
    jobs = [job(good)] + [j for s in bad for j in (job(s), job(good, seed=1))]
    results = run_jobs(jobs, RunOptions(timeout=1.0), isolate=True)
    rows: Dict[str, CheckResult] = {r.layer: r for r in results if r.layer != "sine"}
    assert [r.status for r in results if r.layer == "sine"] == ["pass"] * 5
    assert finding_codes(rows["exits"]) == ["worker-exited"]
    assert "exited with status 7" in rows["exits"].reason
    assert finding_codes(rows["segfaults"]) == ["worker-killed"]
    assert "SIGSEGV" in rows["segfaults"].reason
    assert finding_codes(rows["killed"]) == ["worker-killed"]
    assert "SIGKILL" in rows["killed"].reason and "out-of-memory" in rows["killed"].reason
    assert finding_codes(rows["swallows"]) == ["timeout"]
    assert "ran past --timeout 1 s" in rows["swallows"].reason
    for r in rows.values():
        assert r.status == "error" and r.reproduce == f"gradcheck report --layer {r.layer}"
        assert r.shape == (3, 2) and r.seed == 0


def test_the_same_layers_in_process_raise_no_worker_codes():
    # The in-process path stays what it was: a correct layer passes, a wrong one fails.
    results = run_jobs([job(spec("sine", Sine)), job(spec("wrong", WrongSine))], RunOptions())
    assert [r.status for r in results] == ["pass", "fail"]


def test_a_worker_serves_many_tasks_and_is_replaced_only_after_a_crash():
    def task(i: int) -> int:
        if i == 3:
            os._exit(3)
        return i * i

    with Worker(task) as worker:
        outcomes = [worker.run(i, timeout=10) for i in range(6)]
        assert worker.forks == 2
    assert outcomes[:3] == [(True, 0), (True, 1), (True, 4)]
    assert isinstance(outcomes[3], Crash) and outcomes[3].code == "worker-exited"
    assert outcomes[4:] == [(True, 16), (True, 25)]


def test_a_result_that_cannot_be_pickled_is_a_crash_and_the_worker_survives():
    def task(i: int) -> Any:
        return (lambda: None) if i == 0 else i

    with Worker(task) as worker:
        first, second = worker.run(0), worker.run(1)
        assert worker.forks == 1
    assert isinstance(first, Crash) and first.code == "worker-raised"
    assert "pickle" in first.message.lower()
    assert second == (True, 1)


def test_interrupting_an_isolated_run_keeps_finished_results_and_kills_the_worker(tmp_path):
    pid_file = tmp_path / "pid"

    class Sleeps(Sine):
        def forward(self, x):
            pid_file.write_text(str(os.getpid()))
            time.sleep(30)

    jobs = [job(spec("sine", Sine)), job(spec("sleeps", Sleeps)), job(spec("sine", Sine))]

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def progress(done: int, total: int, j: Job) -> None:
        if j.spec.name == "sleeps":  # Ctrl-C while the sleeping layer's check runs
            signal.setitimer(signal.ITIMER_REAL, 0.5)

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(RunInterrupted) as stop:
            run_jobs(jobs, RunOptions(), progress, isolate=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert [r.layer for r in stop.value.results] == ["sine"] and stop.value.total == 3
    assert isinstance(stop.value, KeyboardInterrupt)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(int(pid_file.read_text()), 0)


def test_interrupting_concurrent_workers_keeps_every_finished_result_in_order(tmp_path):
    pid_file = tmp_path / "pid"

    class Sleeps(Sine):
        def forward(self, x):
            pid_file.write_text(str(os.getpid()))
            time.sleep(30)

    jobs = [job(spec("sine", Sine), seed=s) for s in range(3)]
    jobs.insert(1, job(spec("sleeps", Sleeps)))

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def progress(done: int, total: int, j: Job) -> None:
        if j.spec.name == "sleeps":  # the other worker finishes the three sines meanwhile
            signal.setitimer(signal.ITIMER_REAL, 3.0)

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(RunInterrupted) as stop:
            run_jobs(jobs, RunOptions(), progress, isolate=True, workers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert [(r.layer, r.seed) for r in stop.value.results] == [("sine", s) for s in range(3)]
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(int(pid_file.read_text()), 0)


def test_interrupting_an_in_process_run_keeps_finished_results():
    class Interrupts(Sine):
        def forward(self, x):
            raise KeyboardInterrupt

    jobs = [job(spec("sine", Sine)), job(spec("ctrl-c", Interrupts)), job(spec("sine", Sine))]
    with pytest.raises(RunInterrupted) as stop:
        run_jobs(jobs, RunOptions())
    assert [r.status for r in stop.value.results] == ["pass"] and stop.value.total == 3


def test_statuses_and_signals_are_named():
    assert signal_label(int(signal.SIGSEGV)).startswith("signal 11 (SIGSEGV")
    assert signal_label(99) == "signal 99"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(5)
    _, status = os.waitpid(pid, 0)
    crash = describe_status(status)
    assert crash.code == "worker-exited" and "status 5" in crash.message
    assert pickle.loads(pickle.dumps(crash)) == crash


# -- the reproduce command ----------------------------------------------------------------------

# (report options, what the command says after the seed): the command line's rules, as its own
# reproduce_command wrote them before it called this one.
REPORT_ARGS = [
    ([], "--mode auto --method central"),
    (
        ["--mode", "full", "--method", "five-point", "--directions", "4", "--budget", "9"],
        "--mode full --method five-point",
    ),
    (
        ["--mode", "directional", "--directions", "4", "--budget", "9", "--rtol", "1e-06"],
        "--mode directional --method central --directions 4 --rtol 1e-06",
    ),
    (
        ["--budget", "0", "--atol", "1e-09", "--eps", "0.001", "--no-escalate"],
        "--mode auto --method central --budget 0 --atol 1e-09 --eps 0.001 --no-escalate",
    ),
    (
        ["--dtype", "float32", "--allow-float32", "--timeout", "2.5", "--reseed-global-rng"],
        "--reseed-global-rng --mode auto --method central --dtype float32 --allow-float32 "
        "--timeout 2.5",
    ),
]
NAMES = [
    ("zca-eigh", "--only zca-eigh"),
    ("odd*name[1]", "--only 'odd[*]name[[]1]'"),
    ("layers.dense:Dense(5, 3)", "--layer 'layers.dense:Dense(5, 3)'"),
]


@pytest.mark.parametrize("extra, said", REPORT_ARGS)
@pytest.mark.parametrize("name, named", NAMES)
def test_the_reproduce_command_follows_the_command_lines_rules(name, named, extra, said):
    args = build_parser().parse_args(["report", *extra])
    if ":" in name:
        layer_spec = spec_from_reference(name, "--layer", None, None)
    else:
        layer_spec = LayerSpec(name=name, factory=lambda: None)
    words = reproduce_command(
        layer_spec, (8, 3), 1, run_options(args), reseed_global_rng=args.reseed_global_rng
    )
    assert words == f"gradcheck report {named} --shape 8x3 --seed 1 {said}"


def test_the_reproduce_command_of_a_function_names_it_by_its_words():
    args = build_parser().parse_args(["report", "--mode", "full"])
    layer_spec = LayerSpec(name="affine", factory=lambda: None, prepare=lambda *a: a)
    function_words = ["--pair", "course_layers:affine", "--input", "x=4x5"]
    words = reproduce_command(
        layer_spec, (4, 5), 3, run_options(args), function_words=function_words
    )
    assert words == (
        "gradcheck report --pair course_layers:affine --input x=4x5 --seed 3 --mode full "
        "--method central"
    )

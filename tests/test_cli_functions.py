"""The command line's options for users' own code, through the real console script.

Every convention of examples/course_layers.py and examples/scratch_layers.py runs from the CLI
with no adapter and its buggy twin fails; every new option is used; every new usage error exits
2 with its message (and, for a function's arguments, its signature). The commands are started
side by side: each mostly waits on its interpreter and imports.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]
PARALLEL = 6

USER = textwrap.dedent(
    """
    import numpy as np

    def soft_ce(x, t):
        # cross-entropy against one-hot targets t, mean over the batch
        z = x - x.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return float(-(t * np.log(p)).sum() / len(x)), (p - t) / len(x)

    def mse(pred, target):
        d = pred - target
        return float((d ** 2).mean()), 2 * d / d.size

    def mse_buggy(pred, target):
        d = pred - target
        return float((d ** 2).mean()), d / d.size

    class Raises:
        def forward(self, x):
            return x @ np.ones((x.shape[1] + 1, 2))
        def backward(self, dy):
            return dy

    class BrokenInit:
        def __init__(self, width=3):
            raise RuntimeError("no weights file")

    NOT_CALLABLE = 3
    """
)

THIRD_PARTY = textwrap.dedent(
    """
    from scratch_layers import Conv2D
    from gradcheck import register_layer

    class Conv:
        def __init__(self):
            self.inner = Conv2D(3, 2, k=3, pad=1)
            self.params = self.inner.params
            self.grads = self.inner.grads
        def forward(self, x):
            return self.inner.forward(x)
        def backward(self, dy):
            dx = self.inner.backward(dy)
            self.grads.update(self.inner.grads)
            return dx

    def register():
        register_layer("tp-conv", Conv, shapes=[(2, 3, 4, 4)], replace=True)

    def nothing():
        pass
    """
)

ENTRY_POINTS = textwrap.dedent(
    """
    [gradcheck.layers]
    tp = tplayers:register
    tp-class = scratch_layers:Dropout
    tp-nothing = tplayers:nothing
    """
)

AFFINE = ["--input", "x=4x5", "--input", "w=5x3", "--input", "b=3"]
CONV = ["--input", "x=2x3x5x5", "--input", "w=2x3x3x3", "--input", "b=2"]
CONV_PARAM = ["--kwarg", 'conv_param={"stride": 1, "pad": 1}']
POOL_PARAM = ["--kwarg", 'pool_param={"pool_height": 2, "pool_width": 2, "stride": 2}']
BN = ["--input", "x=6x4", "--input", "gamma=4", "--input", "beta=4"]
BN_PARAM = ["--kwarg", 'bn_param={"mode": "train"}']
SOFTMAX_ARGS = ["--input", "x=6x4", "--target", "y=labels:4"]
MSE_ARGS = ["--input", "pred=8x1", "--target", "target=normal:Nx1"]
CONV_CLASS = "scratch_layers:Conv2D(3, 2, k=3, pad=1)"
FAST = ["--seed", "0", "--format", "json"]


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    return env


def run(*args: str, cwd: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def run_many(commands: Sequence[Sequence[str]], cwd: Path, env: Dict[str, str]) -> List:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda args: run(*args, cwd=cwd, env=env), commands))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The examples and a user module in one folder, as a user would run them."""
    d = tmp_path_factory.mktemp("usercode")
    for name in ("course_layers.py", "scratch_layers.py"):
        shutil.copy(EXAMPLES / name, d / name)
    (d / "userfns.py").write_text(USER)
    return d


@pytest.fixture(scope="module")
def env():
    return _env()


# -- every convention, right and wrong ----------------------------------------------------------

CONVENTIONS = {
    "affine": (["--pair", "course_layers:affine", *AFFINE], "pass"),
    "affine-buggy": (
        ["--pair", "course_layers:affine_buggy_forward,affine_buggy_backward", *AFFINE],
        "fail",
    ),
    "affine-buggy-wrt": (
        ["--pair", "course_layers:affine_buggy", *AFFINE, "--wrt", "x", "--wrt", "w"],
        "pass",
    ),
    "relu": (["--pair", "course_layers:relu", "--input", "x=4x5"], "pass"),
    "relu-buggy": (["--pair", "course_layers:relu_buggy", "--input", "x=4x5"], "fail"),
    "conv": (["--pair", "course_layers:conv", *CONV, *CONV_PARAM], "pass"),
    "conv-buggy": (["--pair", "course_layers:conv_buggy", *CONV, *CONV_PARAM], "fail"),
    "pool": (["--pair", "course_layers:max_pool", "--input", "x=2x3x4x4", *POOL_PARAM], "pass"),
    "pool-buggy": (
        ["--pair", "course_layers:max_pool_buggy", "--input", "x=2x3x4x4", *POOL_PARAM],
        "fail",
    ),
    "bn": (["--pair", "course_layers:batchnorm", *BN, *BN_PARAM], "pass"),
    "bn-buggy": (["--pair", "course_layers:batchnorm_buggy", *BN, *BN_PARAM], "fail"),
    "softmax": (
        ["--value-and-grad", "course_layers:softmax_loss", *SOFTMAX_ARGS],
        "pass",
    ),
    "softmax-buggy": (
        ["--value-and-grad", "course_layers:softmax_loss_buggy", *SOFTMAX_ARGS],
        "fail",
    ),
    "onehot": (
        ["--value-and-grad", "userfns:soft_ce", "--input", "x=6x4", "--target", "t=onehot:4"],
        "pass",
    ),
    "mse-fn": (
        ["--value-and-grad", "userfns:mse", *MSE_ARGS],
        "pass",
    ),
    "mse-fn-buggy": (
        ["--value-and-grad", "userfns:mse_buggy", *MSE_ARGS],
        "fail",
    ),
    "batchnorm-class": (["--layer", "scratch_layers:BatchNorm(4)", "--shape", "8x4"], "pass"),
    "batchnorm-class-buggy": (
        ["--layer", "scratch_layers:BatchNormBuggy(4)", "--shape", "8x4"],
        "fail",
    ),
    "conv-class": (
        ["--layer", "scratch_layers:Conv2D(3, 2, k=3, pad=1)", "--shape", "2x3x5x5"],
        "pass",
    ),
    "conv-class-buggy": (
        ["--layer", "scratch_layers:Conv2DBuggy(3, 2, k=3, pad=1)", "--shape", "2x3x5x5"],
        "fail",
    ),
    "lazy-dense": (["--layer", "scratch_layers:Dense(3)", "--shape", "6x4"], "pass"),
    "lazy-dense-buggy": (["--layer", "scratch_layers:DenseBuggy(3)", "--shape", "6x4"], "fail"),
    "dropout": (["--layer", "scratch_layers:Dropout(0.5)", "--shape", "6x4"], "fail"),
    "dropout-reseeded": (
        ["--layer", "scratch_layers:Dropout(0.5)", "--shape", "6x4", "--reseed-global-rng"],
        "pass",
    ),
    "dropout-buggy-reseeded": (
        ["--layer", "scratch_layers:DropoutBuggy(0.5)", "--shape", "6x4", "--reseed-global-rng"],
        "fail",
    ),
    "mse-class": (
        ["--layer", "scratch_layers:MSELoss", "--shape", "8x1", "--target", "normal:Nx1"],
        "pass",
    ),
    "mse-class-buggy": (
        ["--layer", "scratch_layers:MSELossBuggy", "--shape", "8x1", "--target", "normal:Nx1"],
        "fail",
    ),
    "raises": (["--layer", "userfns:Raises", "--shape", "4x3"], "error"),
    "broken-init": (["--layer", "userfns:BrokenInit", "--shape", "4x3"], "error"),
}


@pytest.fixture(scope="module")
def conventions(folder, env):
    names = list(CONVENTIONS)
    procs = run_many([["report", *CONVENTIONS[n][0], *FAST] for n in names], folder, env)
    return dict(zip(names, procs))


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_each_convention_runs_from_the_cli_and_its_twin_fails(conventions, name):
    proc = conventions[name]
    expected = CONVENTIONS[name][1]
    assert proc.returncode == (0 if expected == "pass" else 1), proc.stdout + proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["status"] == expected, result["reason"]


def test_function_results_name_the_forwards_arguments(conventions):
    (r,) = json.loads(conventions["affine-buggy"].stdout)["results"]
    assert [a["name"] for a in r["arguments"]] == ["x", "w", "b"]
    assert r["reason"].startswith(
        "b: 3/3 entries beyond tolerance, confirmed by richardson; worst at b["
    )
    (r,) = json.loads(conventions["mse-fn"].stdout)["results"]
    assert [a["name"] for a in r["arguments"]] == ["pred"] and r["shape"] == [8, 1]
    (r,) = json.loads(conventions["affine-buggy-wrt"].stdout)["results"]
    assert [a["name"] for a in r["arguments"]] == ["x", "w"]


def test_the_reproduce_line_reruns_the_failing_check(conventions, folder, env):
    (r,) = json.loads(conventions["conv-buggy"].stdout)["results"]
    words = shlex.split(r["reproduce"])
    assert words[:4] == ["gradcheck", "report", "--pair", "course_layers:conv_buggy"]
    assert "--kwarg" in words and 'conv_param={"stride": 1, "pad": 1}' in words
    again = run(*words[1:], "--format", "json", cwd=folder, env=env)
    assert again.returncode == 1
    (r2,) = json.loads(again.stdout)["results"]
    assert (r2["status"], r2["rel_error"], r2["reproduce"]) == (
        "fail",
        r["rel_error"],
        r["reproduce"],
    )


def test_dropout_finding_suggests_the_option_and_reproduce_keeps_it(conventions):
    (r,) = json.loads(conventions["dropout"].stdout)["results"]
    assert r["reason"].startswith("forward-not-repeatable") and "--reseed-global-rng" in r["reason"]
    (r,) = json.loads(conventions["dropout-buggy-reseeded"].stdout)["results"]
    assert "--reseed-global-rng" in r["reproduce"]
    (r,) = json.loads(conventions["mse-class-buggy"].stdout)["results"]
    assert "--target normal:Nx1" in r["reproduce"]


def test_a_raising_layer_names_its_file_and_line_in_text_and_json(conventions):
    (r,) = json.loads(conventions["raises"].stdout)["results"]
    (f,) = r["findings"]
    assert f["code"] == "forward-raised" and f["location"].startswith("userfns.py:")
    assert f["location"] in f["message"] and any("x @ np.ones" in t for t in f["traceback"])
    (r,) = json.loads(conventions["broken-init"].stdout)["results"]
    (f,) = r["findings"]
    assert f["code"] == "build-raised" and "(at userfns.py:" in f["message"]
    assert "in __init__" in f["location"]


def test_lazy_parameters_are_checked(conventions):
    (r,) = json.loads(conventions["lazy-dense-buggy"].stdout)["results"]
    assert r["reason"].startswith("W: ")
    assert any(f["code"] == "params-created-lazily" for f in r["findings"])


def test_nd_shapes_in_text_list_and_plot(folder, env, tmp_path):
    tp = tmp_path / "tp"
    tp.mkdir()
    (tp / "tplayers.py").write_text(THIRD_PARTY)
    shutil.copy(EXAMPLES / "scratch_layers.py", tp / "scratch_layers.py")  # installed beside it
    info = tp / "tplayers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tplayers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    with_tp = dict(env, PYTHONPATH=os.pathsep.join([str(tp), env.get("PYTHONPATH", "")]))
    png = tmp_path / "conv.png"
    listing, report, plot = run_many(
        [
            ["list"],
            ["report", "--registered", "--only", "tp-conv", "--seed", "0", "--format", "json"],
            [
                *("plot", "step-size", "--layer", CONV_CLASS, "--shape", "2x3x5x5"),
                *("--entry", "1,2,3,4", "--output", str(png)),
            ],
        ],
        folder,
        with_tp,
    )
    assert "tp-conv" in listing.stdout and "2x3x4x4" in listing.stdout
    # An entry point naming a layer class is registered under its own name; one that registers
    # nothing is named on stderr.
    assert any(line.startswith("tp-class ") for line in listing.stdout.splitlines())
    assert "entry point tp-nothing = tplayers:nothing failed to load" in listing.stderr
    assert "registered no layer variant" in listing.stderr and listing.returncode == 1
    doc = json.loads(report.stdout)
    assert [(r["layer"], r["shape"], r["status"]) for r in doc["results"]] == [
        ("tp-conv", [2, 3, 4, 4], "pass")
    ]
    assert report.returncode == 1  # the entry point that registers nothing fails the run
    assert plot.returncode == 0, plot.stderr
    assert "entry (1, 2, 3, 4)" in plot.stdout and png.exists()


# -- negative seeds, every subcommand ----------------------------------------------------------

SEEDS = [
    ["report", "--seed", "-1"],
    ["mutants", "--seed", "-2"],
    ["paper", "--seed", "-1"],
    ["plot", "step-size", "--layer", "tanh", "--seed", "-1"],
]


def test_a_negative_seed_is_a_usage_error_for_every_command(folder, env):
    for args, proc in zip(SEEDS, run_many(SEEDS, folder, env)):
        assert proc.returncode == 2, (args, proc.stderr)
        assert "a seed must be a non-negative integer" in proc.stderr, args
        assert proc.stdout == "" and "Traceback" not in proc.stderr


# -- usage errors ----------------------------------------------------------------------------------

PAIR = ["report", "--pair", "course_layers:affine"]
USAGE = [
    ([*PAIR, "--input", "x=4x5", "--input", "w=5x3"], "affine_forward(x, w, b) needs 'b'"),
    ([*PAIR, *AFFINE, "--input", "q=3"], "affine_forward(x, w, b) takes no argument named 'q'"),
    ([*PAIR], "give its array arguments with --input NAME=SHAPE; its signature is affine_forward"),
    (["report", "--input", "x=4x5"], "--input gives an argument of a function"),
    (["report", "--kwarg", "p=1"], "--kwarg gives an argument of a function"),
    (["report", "--wrt", "x"], "--wrt gives an argument of a function"),
    (["report", "--target", "y=labels:3"], "--target NAME=SPEC gives an argument of a function"),
    ([*PAIR, *AFFINE, "--wrt", "z"], "--wrt z: not one of the --input arrays (x, w, b)"),
    ([*PAIR, *AFFINE, "--kwarg", "x=1"], "x given more than once"),
    ([*PAIR, *AFFINE, "--kwarg", "p=dict(a=1)"], "is not a Python literal"),
    ([*PAIR, "--input", "x=4by5"], "shape must look like"),
    ([*PAIR, "--input", "4x5"], "NAME=SHAPE"),
    ([*PAIR, *AFFINE, "--target", "y=gauss:3"], "a target is one of"),
    ([*PAIR, *AFFINE, "--shape", "4x5"], "a function's arrays are given with --input"),
    (["report", "--target", "labels:3"], "--target SPEC sets the target of --layer loss layers"),
    (
        ["report", "--layer", "scratch_layers:BatchNorm(4)", "--target", "labels:3"],
        "none of the --layer layers is one",
    ),
    (
        ["report", "--pair", "course_layers:nothing", "--input", "x=3"],
        "has no function nothing_forward; its *_forward functions: affine_buggy_forward, "
        "affine_forward",
    ),
    (["report", "--pair", "course_layers"], "MODULE:NAME"),
    (["report", "--pair", "no_such_module_xyz:affine"], "does not import"),
    (
        ["report", "--pair", "course_layers:affine", "--value-and-grad", "userfns:mse"],
        "not allowed with argument",
    ),
    (["report", "--value-and-grad", "course_layers:nope"], "has no attribute"),
    (["report", "--value-and-grad", "userfns:NOT_CALLABLE"], "is not a function"),
    (
        ["report", "--layer", "scratch_layers:BatchNorm(4, colour=1)"],
        "do not fit BatchNorm(num_features, eps=1e-05, momentum=0.9)",
    ),
    (["report", "--layer", "scratch_layers:BatchNorm(n)"], "argument n is not a Python literal"),
    (
        ["report", "--layer", "scratch_layers:BatchNorm"],
        "cannot be called with no arguments (missing a required argument: 'num_features'); its "
        "signature is BatchNorm(num_features, eps=1e-05, momentum=0.9)",
    ),
    (
        ["plot", "step-size", "--layer", CONV_CLASS, "--shape", "2x3x5x5", "--entry", "0,1"],
        "--entry 0,1 has 2 indices; the 2x3x5x5 input has 4 dimensions",
    ),
]


@pytest.fixture(scope="module")
def usage(folder, env):
    return run_many([args for args, _ in USAGE], folder, env)


@pytest.mark.parametrize("i", range(len(USAGE)), ids=[m[:40] for _, m in USAGE])
def test_usage_errors_exit_2_with_a_clear_message(usage, i):
    args, message = USAGE[i]
    proc = usage[i]
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert message in proc.stderr, (args, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_help_shows_the_new_options(folder, env):
    proc = run("report", "--help", cwd=folder, env=env)
    for option in (
        "--pair",
        "--value-and-grad",
        "--input NAME=SHAPE",
        "--kwarg NAME=LITERAL",
        "--target [NAME=]SPEC",
        "--wrt NAME",
        "--reseed-global-rng",
    ):
        assert option in proc.stdout, option

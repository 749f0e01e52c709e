"""Pictures: the step-size study (NumPy computation, matplotlib drawing) and the error pictures
of failing checks, in-process and through ``gradcheck report --plots``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.compare import FAIL_MARGIN
from gradcheck.finite_diff import base_step
from gradcheck.plot import (
    INSTALL_HINT,
    STENCILS,
    MatplotlibMissing,
    PlotError,
    allowed_difference,
    draw_error_picture,
    draw_step_sweep,
    drawable_arguments,
    fold_2d,
    prepare_picture_folder,
    require_matplotlib,
    step_grid,
    step_sweep,
    write_error_pictures,
)


class Tanh:
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1.0 - self.y**2)


class Linear:
    def forward(self, x):
        return 2.0 * x

    def backward(self, dy):
        return 2.0 * dy


class Loss:
    is_loss = True

    def forward(self, x, target):
        self.x = x
        return float(np.sum(np.sin(x)))

    def backward(self):
        return np.cos(self.x)


class NoneBackward(Tanh):
    def backward(self, dy):
        return None


X = np.random.default_rng(0).standard_normal((6, 3))


def slope(sweep, low, high):
    """Least-squares slope of log(error) against log(h) for low <= h <= high."""
    keep = (sweep.steps >= low) & (sweep.steps <= high) & (sweep.error > 0)
    return np.polyfit(np.log10(sweep.steps[keep]), np.log10(sweep.error[keep]), 1)[0]


def test_the_grid_spans_the_decades():
    grid = step_grid()
    assert grid[0] == pytest.approx(1e-14) and grid[-1] == pytest.approx(1e-1)
    assert len(grid) == 53
    assert np.allclose(np.diff(np.log10(grid)), 0.25)


@pytest.mark.parametrize(
    "method, order, exponent", [("central", 2, 1 / 3), ("five-point", 4, 1 / 5)]
)
def test_the_curve_is_a_v_with_the_theoretical_slopes(method, order, exponent):
    sweep = step_sweep(Tanh(), X, method=method, name="tanh")
    assert sweep.order == order
    # Right arm: truncation, slope = the order; left arm: round-off, slope about -1.
    assert slope(sweep, 1e-3 if order == 2 else 2e-2, 1e-1) == pytest.approx(order, abs=0.3)
    assert -1.4 < slope(sweep, 1e-14, 1e-10) < -0.6
    # The bottom is far below both ends, and the harness's step is near the bottom.
    _, best_error = sweep.best
    assert best_error < 1e-6 * min(sweep.error[0], sweep.error[-1])
    assert sweep.chosen_step == pytest.approx(np.finfo(float).eps ** exponent)
    assert sweep.chosen_error < 30 * best_error
    # The truncation line is the estimator's own estimate: it lies on the right arm.
    right = sweep.steps >= 1e-3 if order == 2 else sweep.steps >= 3e-2
    assert np.allclose(sweep.truncation[right], sweep.error[right], rtol=0.5)
    # The round-off line is a bound: the left arm stays below it.
    left = sweep.steps <= 1e-9
    assert np.all(sweep.error[left] <= 2 * sweep.roundoff[left])


def test_one_entry_uses_absolute_steps_and_errors():
    sweep = step_sweep(Tanh(), X, entry=(2, 1), seed=3)
    assert sweep.entry == (2, 1)
    assert sweep.chosen_step == pytest.approx(float(base_step("central", np.asarray(X[2, 1]))))
    assert sweep.best[1] < 1e-9
    assert "entry (2, 1)" in sweep.table()


def test_the_table_marks_the_chosen_step_and_the_minimum():
    sweep = step_sweep(Tanh(), X, name="tanh")
    lines = sweep.table().splitlines()
    assert (
        lines[0] == "step-size study: tanh, input 6x3, seed 0, all 18 entries, central differences"
    )
    marked = [line for line in lines if "<- gradcheck's step" in line]
    assert len(marked) == 1
    assert lines[-1].startswith("smallest error")
    assert len(lines) == 3 + len(sweep.steps) + 1 + 1
    assert set(sweep.to_dict()) >= {"steps", "error", "truncation", "roundoff", "chosen_step"}


def test_a_linear_layer_has_no_truncation_line():
    sweep = step_sweep(Linear(), X)
    assert np.all(sweep.truncation == 0.0)
    assert sweep.error[-1] < 1e-14  # exact for every step large enough to avoid round-off


def test_a_loss_layer_is_studied_with_its_labels():
    sweep = step_sweep(Loss(), X)
    assert sweep.best[1] < 1e-9


def test_garbage_and_bad_arguments_are_refused():
    with pytest.raises(PlotError, match="None"):
        step_sweep(NoneBackward(), X)
    with pytest.raises(ValueError, match="outside"):
        step_sweep(Tanh(), X, entry=(6, 0))
    with pytest.raises(ValueError, match="unknown method"):
        step_sweep(Tanh(), X, method="richardson")


def test_drawing_writes_a_png_and_nothing_else(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "step.png"
    draw_step_sweep(step_sweep(Tanh(), X), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["step.png"]


def test_without_matplotlib_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    # None in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MatplotlibMissing) as info:
        require_matplotlib()
    assert str(info.value) == INSTALL_HINT
    assert "pip install matplotlib" in INSTALL_HINT and "gradcheck-dbn[plot]" in INSTALL_HINT
    with pytest.raises(MatplotlibMissing):
        draw_step_sweep(step_sweep(Linear(), X), str(tmp_path / "x.png"))
    assert list(tmp_path.iterdir()) == []


# -- error pictures of failing checks -----------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


class TanhForgetsSquare(Tanh):
    """The wrong twin of Tanh: 1 - y instead of 1 - y^2."""

    def backward(self, dy):
        return dy * (1.0 - self.y)


class AffineSwapped:
    """y = x * gamma + beta with the two parameter gradients exchanged."""

    def __init__(self):
        self.params = {"gamma": np.array([1.5, -0.5, 2.0]), "beta": np.array([0.1, 0.2, 0.3])}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x * self.params["gamma"] + self.params["beta"]

    def backward(self, dy):
        self.grads = {"gamma": dy.sum(axis=0), "beta": (dy * self.x).sum(axis=0)}
        return dy * self.params["gamma"]


def test_fold_2d_labels_every_shape():
    assert fold_2d(np.array(2.0), "x")[0].shape == (1, 1)
    vec, rows, cols = fold_2d(np.arange(5.0), "b")
    assert vec.shape == (1, 5) and rows == "" and cols == "b index (axis 0, 5)"
    _, rows, cols = fold_2d(np.zeros((8, 3)), "x")
    assert rows == "axis 0: examples (N = 8)" and cols == "axis 1: features (D = 3)"
    assert fold_2d(np.zeros((4, 2)), "W")[1:] == ("axis 0 (4)", "axis 1 (2)")
    stack, rows, cols = fold_2d(np.arange(24.0).reshape(2, 3, 4), "x")
    assert stack.shape == (6, 4) and stack[3, 0] == 12.0  # axis 0 outermost
    assert rows == "axes 0..1 folded (2 x 3, axis 0 outermost)" and cols == "axis 2 (4)"


def test_the_allowed_difference_comes_from_compare_and_marks_the_failures():
    result = check_layer(TanhForgetsSquare(), X, seed=0, mode="full")
    (arg,) = drawable_arguments(result)
    ratio = (arg.analytic - arg.numeric) / allowed_difference(arg)
    assert int(np.sum(np.abs(ratio) > 1.0)) == arg.comparison.n_failed
    worst = arg.comparison.worst[0]
    assert (
        allowed_difference(arg)[worst.index] == worst.tolerance + FAIL_MARGIN * worst.error_estimate
    )
    passing = check_layer(Tanh(), X, seed=0, mode="full")
    assert drawable_arguments(passing) == []
    with pytest.raises(ValueError, match="no failing full-mode argument"):
        draw_error_picture(passing, "never.png")


def test_error_pictures_one_png_per_failing_check(tmp_path):
    pytest.importorskip("matplotlib")
    results = [
        check_layer(Tanh(), X, seed=0),
        check_layer(AffineSwapped(), X, seed=0),  # two failing parameters: two rows
        check_layer(TanhForgetsSquare(), X, seed=0, mode="directional"),  # nothing to draw
    ]
    for r, name in zip(results, ("tanh", "my layer:Affine", "tanh-bad")):
        r.layer = name
    links = write_error_pictures(results, str(tmp_path / "pics"), link_from=str(tmp_path))
    assert links == {1: "pics/001-my-layer-Affine-6x3-seed0.png"}
    assert (tmp_path / links[1]).read_bytes()[:8] == PNG
    assert [p.name for p in (tmp_path / "pics").iterdir()] == ["001-my-layer-Affine-6x3-seed0.png"]
    assert write_error_pictures(results[:1], str(tmp_path / "pics")) == {}


def test_error_pictures_without_matplotlib_write_nothing(monkeypatch, tmp_path):
    result = check_layer(TanhForgetsSquare(), X, seed=0, mode="full")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MatplotlibMissing, match="pip install matplotlib"):
        draw_error_picture(result, str(tmp_path / "x.png"))
    with pytest.raises(MatplotlibMissing):
        write_error_pictures([result], str(tmp_path / "pics"))
    assert list(tmp_path.iterdir()) == []


def test_the_picture_folder_must_be_a_folder(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        prepare_picture_folder(str(tmp_path / "file"))
    prepare_picture_folder(str(tmp_path / "new" / "deeper"))
    assert (tmp_path / "new" / "deeper").is_dir()


# -- gradcheck report --plots, through the real console script ----------------------------

SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]
# A correct layer and the mutant that forgets mean(dy): one pass, one failing check.
LAYERS = ["--layer", "layers.centering:Center", "--layer", "layers.mutants:CenterForgetsMean"]
REPORT = ["report", *LAYERS, "--shape", "8x3", "--seed", "0"]


def run_cli(*args, extra_path=None):
    env = dict(os.environ)
    # Keep the PYTHONPATH that points at this source tree; put the blocker (if any) first.
    paths = [str(extra_path)] if extra_path else []
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] or [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_report_plots_writes_pngs_and_the_markdown_links_them(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    out.mkdir()
    # The two runs only wait on their own process: side by side.
    with ThreadPoolExecutor(2) as pool:
        md_run = pool.submit(
            run_cli,
            *REPORT,
            "--format",
            "markdown",
            "--output",
            str(out / "r.md"),
            "--plots",
            str(out / "p"),
        )
        js_run = pool.submit(run_cli, *REPORT, "--format", "json", "--plots", str(tmp_path / "j"))
        md, js = md_run.result(), js_run.result()
    assert md.returncode == 1, md.stderr
    pngs = sorted(p.name for p in (out / "p").iterdir())
    assert pngs == ["001-layers.mutants-CenterForgetsMean-8x3-seed0.png"]
    assert (out / "p" / pngs[0]).read_bytes()[:8] == PNG
    text = (out / "r.md").read_text()
    assert f"](p/{pngs[0]})" in text  # relative to the Markdown file
    assert "| ↳ `x`: analytic - numeric is the same in every row" in text
    assert js.returncode == 1, js.stderr
    doc = json.loads(js.stdout)
    assert "plot" not in doc["results"][0]
    assert doc["results"][1]["plot"] == str(tmp_path / "j" / pngs[0])
    assert doc["results"][1]["arguments"][0]["diagnosis"]["kind"] == "offset"


def test_report_plots_without_matplotlib_exits_2_with_the_hint(tmp_path):
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    proc = run_cli(
        *REPORT,
        "--output",
        str(tmp_path / "r.txt"),
        "--plots",
        str(tmp_path / "p"),
        extra_path=tmp_path / "block",
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install matplotlib" in proc.stderr
    assert "pip install 'gradcheck-dbn[plot]'" in proc.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "r.txt").exists()


def test_step_study_stencils_come_from_the_estimators_table():
    # The textbook stencils, (L(x+h) - L(x-h)) / 2h and (8 (L(x+h) - L(x-h)) - (L(x+2h) -
    # L(x-2h))) / 12h, derived bitwise from gradcheck.finite_diff.STENCILS.
    assert STENCILS == {
        "central": (2, ((1.0, 0.5),)),
        "five-point": (4, ((1.0, 8.0 / 12.0), (2.0, -1.0 / 12.0))),
    }

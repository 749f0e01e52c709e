"""The step-size study: the computation (NumPy only) and the drawing (matplotlib, optional)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gradcheck.finite_diff import base_step
from gradcheck.plot import (
    INSTALL_HINT,
    MatplotlibMissing,
    PlotError,
    draw_step_sweep,
    require_matplotlib,
    step_grid,
    step_sweep,
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

"""LayerObjective: outputs copied, parameters perturbed in place, a raising point is a NaN row."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.objective import LayerObjective

F64 = np.dtype(np.float64)


def x_of(shape=(3, 2), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


class Sin:
    def forward(self, x):
        return np.sin(x)


class ReusesBuffer:
    """Returns the same array object from every forward (a preallocated output)."""

    def __init__(self, batched=False):
        self.supports_batch = batched
        self.out = None

    def forward(self, x):
        if self.out is None or self.out.shape != x.shape:
            self.out = np.empty(x.shape)
        np.sin(x, out=self.out)
        return self.out.astype(np.float64, copy=False)


@pytest.mark.parametrize("batched", [False, True])
def test_outputs_are_copied_as_they_are_collected(batched):
    x = x_of()
    points = np.stack([x, x + 1.0, x + 2.0])
    layer = ReusesBuffer(batched)
    objective = LayerObjective(layer, x, None, F64)
    first = objective.outputs_x(points)
    assert np.array_equal(first, np.sin(points))
    objective.outputs_x(points[::-1])  # the next call overwrites the layer's buffer
    assert np.array_equal(first, np.sin(points))
    # The correct twin: a forward that returns a fresh array gives the same numbers.
    assert np.array_equal(LayerObjective(Sin(), x, None, F64).outputs_x(points), first)


def test_a_forward_that_writes_into_its_input_cannot_change_the_callers_points():
    class WritesInput:
        def forward(self, x):
            y = np.sin(x)
            x[...] = 0.0
            return y

    x = x_of()
    points = x[None]  # what the estimators pass as the centre: a view of x
    y = LayerObjective(WritesInput(), x, None, F64).outputs_x(points)
    assert np.array_equal(y[0], np.sin(x_of()))
    assert np.array_equal(x, x_of())


class Scaled:
    """y = x * w with w = params["w"]; ``aliased`` reads its own reference ``self.w``."""

    def __init__(self, aliased):
        self.w = np.array([0.5, 2.0])
        self.params = {"w": self.w}
        self.aliased = aliased

    def forward(self, x):
        return x * (self.w if self.aliased else self.params["w"])


@pytest.mark.parametrize("aliased", [False, True])
def test_a_parameter_is_perturbed_in_place_and_restored_bitwise(aliased):
    layer = Scaled(aliased)
    w_object, w_bits = layer.params["w"], layer.params["w"].tobytes()
    x = x_of()
    points = np.array([[1.0, 1.0], [-0.0, 3.0]])
    y = LayerObjective(layer, x, None, F64).outputs_param("w")(points)
    assert np.array_equal(y, x[None] * points[:, None, :])
    assert layer.params["w"] is w_object and layer.w is w_object
    assert layer.params["w"].tobytes() == w_bits


def test_a_parameter_that_cannot_take_the_values_is_rebound_and_says_why():
    layer = Scaled(aliased=False)
    layer.params["w"] = np.array([0.5, 2.0], dtype=np.float32)
    objective = LayerObjective(layer, x_of(), None, F64)
    assert "float32" in objective.in_place_obstacle("w")
    read_only = Scaled(aliased=False)
    read_only.params["w"].flags.writeable = False
    assert "read-only" in LayerObjective(read_only, x_of(), None, F64).in_place_obstacle("w")
    assert LayerObjective(Scaled(aliased=True), x_of(), None, F64).in_place_obstacle("w") is None
    original = layer.params["w"]
    points = np.array([[1.0, 1.0], [0.25, 3.0]])
    y = objective.outputs_param("w")(points)
    assert np.array_equal(y, x_of()[None] * points[:, None, :])
    assert layer.params["w"] is original


def test_complex_points_rebind_the_parameter():
    layer = Scaled(aliased=False)
    original = layer.params["w"]
    points = np.array([[1.0 + 1e-20j, 2.0]])
    y = LayerObjective(layer, x_of(), None, F64).outputs_param("w")(points)
    assert np.iscomplexobj(y) and y[0, 0, 0].imag == pytest.approx(x_of()[0, 0] * 1e-20)
    assert layer.params["w"] is original and not np.iscomplexobj(original)


class Log:
    def __init__(self, batched=False):
        self.supports_batch = batched

    def forward(self, x):
        if np.any(x <= 0):
            raise ValueError("math domain error")
        return np.log(x)


@pytest.mark.parametrize("batched", [False, True])
def test_a_point_that_raises_is_a_nan_row_and_is_recorded(batched):
    x = np.full((2, 2), 0.5)
    points = np.stack([x, x - 1.0, x + 1.0])
    objective = LayerObjective(Log(batched), x, None, F64, output_shape=(2, 2))
    y = objective.outputs_x(points)
    assert y.shape == (3, 2, 2)
    assert np.array_equal(y[[0, 2]], np.log(points[[0, 2]]))
    assert np.isnan(y[1]).all()
    assert objective.point_failures == [(1, "ValueError: math domain error")]
    # The stacked call raised because of one point: batching stays on for the next calls.
    assert objective.batched == batched


def test_when_every_point_raises_the_rows_are_nan_not_an_exception():
    x = np.full((2, 2), 0.5)
    objective = LayerObjective(Log(), x, None, F64, output_shape=(2, 2))
    y = objective.outputs_x(np.stack([x - 1.0, x - 2.0]))
    assert y.shape == (2, 2, 2) and np.isnan(y).all()
    assert [i for i, _ in objective.point_failures] == [0, 1]
    # Without a declared output shape it is learnt from forward(x) itself.
    unknown = LayerObjective(Log(), x, None, F64)
    assert unknown.outputs_x((x - 1.0)[None]).shape == (1, 2, 2)


def test_a_parameter_point_that_raises_is_a_nan_row_and_the_parameter_is_restored():
    class Sqrt:
        def __init__(self):
            self.params = {"c": np.array([1.0])}

        def forward(self, x):
            if self.params["c"][0] < 0:
                raise ValueError("negative offset")
            return np.sqrt(x + self.params["c"])

    layer = Sqrt()
    objective = LayerObjective(layer, np.ones((2, 1)), None, F64, output_shape=(2, 1))
    y = objective.outputs_param("c")(np.array([[3.0], [-1.0]]))
    assert np.array_equal(y[0], np.full((2, 1), 2.0)) and np.isnan(y[1]).all()
    assert objective.point_failures == [(1, "ValueError: negative offset")]
    assert layer.params["c"][0] == 1.0


def test_a_point_with_the_wrong_output_shape_is_a_nan_row():
    class Shrinks:
        def forward(self, x):
            return np.sin(x) if x[0, 0] < 1 else np.sin(x)[:1]

    x = np.zeros((2, 2))
    objective = LayerObjective(Shrinks(), x, None, F64, output_shape=(2, 2))
    y = objective.outputs_x(np.stack([x, x + 2.0]))
    assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()
    assert "shape (1, 2)" in objective.point_failures[0][1]


@pytest.mark.parametrize("escape", [SystemExit(3), KeyboardInterrupt()])
def test_system_exit_and_keyboard_interrupt_are_not_turned_into_nan(escape):
    class Escapes:
        def __init__(self):
            self.params = {"w": np.array([1.0])}

        def forward(self, x):
            if self.params["w"][0] != 1.0:
                raise escape
            return x * self.params["w"]

    layer = Escapes()
    objective = LayerObjective(layer, np.ones(2), None, F64)
    with pytest.raises(type(escape)):
        objective.outputs_param("w")(np.array([[2.0]]))
    assert layer.params["w"][0] == 1.0


class FirstSliceStatistics:
    """Centres every stacked slice by the mean of the first slice."""

    supports_batch = True

    def forward(self, x):
        flat = x.reshape(-1, *x.shape[-2:])
        return x - flat[0].mean(axis=0)


class Centers:
    supports_batch = True

    def forward(self, x):
        return x - x.mean(axis=-2, keepdims=True)


def test_batch_support_is_verified_on_every_slice():
    x = x_of((4, 2))
    probes = np.stack([x + 0.1, x - 0.2])
    y = Centers().forward(x)
    assert LayerObjective(Centers(), x, None, F64).batch_support_holds(probes, y)
    # Slice 0 of the stack is right, the others are not: comparing slice 0 only missed it,
    # and so does a probe equal to x.
    broken = LayerObjective(FirstSliceStatistics(), x, None, F64)
    assert broken.batch_support_holds(x.copy(), y)
    assert not broken.batch_support_holds(probes, y)
    assert not broken.batch_support_holds(probes[0], y)

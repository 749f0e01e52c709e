"""Mistake signatures: each kind on a layer written for it, its correct twin, and the guards.

Every wrong layer below makes one kind of mistake and must get exactly that signature from
``check_layer``; its correct twin passes and gets none. The pure function :func:`diagnose` is
also driven on arrays to show that a signature is never a guess: a discrepancy no correction
explains to within the estimate's error, or one a correction could only explain by having as
many free numbers as entries, gets ``None``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.diagnosis import KINDS, diagnose, diagnose_results, named_factors
from gradcheck.paper.cases import draw_cases
from gradcheck.paper.verdicts import measure_variant
from gradcheck.report import Report, render_json, render_markdown, render_text
from gradcheck.result import Diagnosis
from layers.mutants import ZCANoCovariancePath, ZCANoSymmetrization
from layers.paper import PaperDBNWhitening
from layers.whitening import ZCAWhitening

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report-schema.json"
RNG = np.random.default_rng(2024)
X = RNG.standard_normal((8, 3))  # N = 8 examples, D = 3 features
SQUARE = RNG.standard_normal((5, 5))


def full(layer, x=X, **kwargs):
    return check_layer(layer, x, seed=0, mode="full", **kwargs)


def diagnosis_of(result, name="x"):
    arg = next(a for a in result.arguments if a.name == name)
    assert arg.status == "fail", result.summary()
    return arg.diagnosis


def assert_correct(layer, x=X):
    result = full(layer, x)
    assert result.status == "pass", result.summary()
    assert all(a.diagnosis is None for a in result.arguments)


# -- layers written for each kind: a wrong one (``wrong=...``) and its correct twin -----------


class Sine:
    """y = sin(x); backward multiplied by ``factor`` (1 is correct)."""

    def __init__(self, factor=1.0):
        self.factor = factor

    def forward(self, x):
        self.x = x
        return np.sin(x)

    def backward(self, dy):
        return self.factor * dy * np.cos(self.x)


class Softplus:
    """y = log(1 + e^x); the wrong one copies ReLU's mask, or returns no gradient at all."""

    def __init__(self, wrong=None):
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.logaddexp(0.0, x)

    def backward(self, dy):
        grad = dy / (1.0 + np.exp(-self.x))
        if self.wrong == "mask":
            return grad * (self.x > 0)
        if self.wrong == "all":
            return np.zeros_like(grad)
        return grad


class CenterCube:
    """y = c(x)^3 with c centering over ``axis``; the wrong one forgets the centering's mean."""

    def __init__(self, axis=0, wrong=False):
        self.axis, self.wrong = axis, wrong

    def forward(self, x):
        self.c = x - x.mean(axis=-2 + self.axis, keepdims=True)
        return self.c**3

    def backward(self, dy):
        g = 3.0 * self.c**2 * dy
        if self.wrong:
            return g
        return g - g.mean(axis=-2 + self.axis, keepdims=True)


class Gate:
    """y_ij = x_ij * tanh(<x_i, w>): a per-example gate; the wrong one drops the gate's path,
    which is off by an outer product (row sums times w)."""

    def __init__(self, wrong=False):
        self.wrong = wrong
        self.w = np.array([0.3, -0.7, 0.5])

    def forward(self, x):
        self.x = x
        self.g = np.tanh(x @ self.w)[..., None]
        return x * self.g

    def backward(self, dy):
        dx = dy * self.g
        if self.wrong:
            return dx
        s = (dy * self.x).sum(axis=-1, keepdims=True) * (1.0 - self.g**2)
        return dx + s * self.w


class Square:
    """y = x^2; the wrong one botches some rows, columns or entries (``where``)."""

    def __init__(self, where=None):
        self.where = where

    def forward(self, x):
        self.x = x
        return x**2

    def backward(self, dy):
        dx = 2.0 * self.x * dy
        if self.where is not None:
            dx[self.where] = self.x[self.where] * dy[self.where]
        return dx


class Elementwise:
    """y = tanh(x) for a square (or any) x; the wrong ones transpose the gradient (or permute
    its axes), or use dy transposed."""

    def __init__(self, wrong=None):
        self.wrong = wrong

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        d = 1.0 - self.y**2
        if self.wrong == "transpose":
            return (dy * d).T.copy()
        if self.wrong == "permute":
            return np.transpose(dy * d, (0, 2, 1)).copy()
        if self.wrong == "dy":
            return dy.T * d
        return dy * d


class Affine:
    """y = x * gamma + beta; the wrong one exchanges the two parameter gradients."""

    def __init__(self, wrong=False):
        self.params = {"gamma": np.array([1.5, -0.5, 2.0]), "beta": np.array([0.1, 0.2, 0.3])}
        self.grads = {}
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return x * self.params["gamma"] + self.params["beta"]

    def backward(self, dy):
        g, b = (dy * self.x).sum(axis=0), dy.sum(axis=0)
        self.grads = {"gamma": b, "beta": g} if self.wrong else {"gamma": g, "beta": b}
        return dy * self.params["gamma"]


class GramMix:
    """y = x S with the symmetric S = x^T x / N (through a symmetric matrix, like a covariance).

    ``dL/dS`` as formed is ``G = x^T dy``; the right contribution to ``dx`` is
    ``x (G + G^T) / N``, the wrong one ``2 x G / N`` (it assumes G symmetric). The layer offers
    the diagnosis hook ``backward_symmetrized``.
    """

    def __init__(self, wrong=False, hook=True):
        self.wrong = wrong
        if not hook:
            self.backward_symmetrized = None

    def forward(self, x):
        self.x = x
        self.s = x.swapaxes(-1, -2) @ x / x.shape[-2]
        return x @ self.s

    def _chain(self, dy, symmetrize):
        x, n = self.x, self.x.shape[-2]
        g = x.T @ dy
        if symmetrize:
            g = 0.5 * (g + g.T)
        return dy @ self.s.T + 2.0 * x @ g / n

    def backward(self, dy):
        return self._chain(dy, symmetrize=not self.wrong)

    def backward_symmetrized(self, dy):
        return self._chain(dy, symmetrize=True)


# -- one test per kind --------------------------------------------------------------------


@pytest.mark.parametrize(
    "factor, name",
    [
        (-1.0, "-1"),
        (2.0, "2"),
        (0.5, "1/2"),
        (8.0, "N"),
        (1 / 8, "1/N"),
        (3.0, "D"),
        (1 / 3, "1/D"),
    ],
)
def test_scale_names_the_factor(factor, name):
    d = diagnosis_of(full(Sine(factor)))
    assert (d.kind, d.factor_name, d.factor) == ("scale", name, pytest.approx(factor))
    assert d.label == f"scale {name}"
    assert f"x {factor:.6g} = {name}:" in d.message


def test_scale_by_an_unnamed_factor_gives_the_factor_only():
    d = diagnosis_of(full(Sine(1.001)))
    assert d.kind == "scale" and d.factor_name is None and d.factor == pytest.approx(1.001)
    assert d.label == "scale"
    assert_correct(Sine(1.0))


def test_the_named_factors_drop_sizes_of_one_and_alias_equal_ones():
    assert [n for n, _ in named_factors(1, 1)] == ["-1", "2", "1/2"]
    d = diagnosis_of(full(Sine(0.2), SQUARE))  # N = D = 5: 1/N is also 1/D
    assert d.factor_name == "1/N" and "= 1/N = 1/D:" in d.message


@pytest.mark.parametrize("wrong, count", [("mask", None), ("all", 24)])
def test_zero(wrong, count):
    d = diagnosis_of(full(Softplus(wrong)))
    assert d.kind == "zero"
    assert d.count == (int(np.sum(X <= 0)) if count is None else count)
    assert d.message.startswith(
        "backward returned zeros at " if wrong == "mask" else "backward returned zeros, but"
    )
    assert_correct(Softplus())


@pytest.mark.parametrize("axis", [0, 1])
def test_offset_names_the_axis(axis):
    d = diagnosis_of(full(CenterCube(axis, wrong=True)))
    assert (d.kind, d.axis) == ("offset", axis)
    assert ("every row" in d.message) == (axis == 0)
    assert_correct(CenterCube(axis))


def test_rank_one():
    d = diagnosis_of(full(Gate(wrong=True)))
    assert d.kind == "rank-one"
    assert_correct(Gate())


def test_rows_columns_and_entries_are_listed():
    rows = diagnosis_of(full(Square((slice(6, 8), slice(None)))))
    assert rows.kind == "rows" and rows.rows == (6, 7) and "rows 6, 7 (of 8)" in rows.message
    columns = diagnosis_of(full(Square((slice(None), 0))))
    assert columns.kind == "columns" and columns.columns == (0,)
    entries = diagnosis_of(full(Square((np.array([0, 5]), np.array([0, 2])))))
    assert entries.kind == "entries" and entries.entries == ((0, 0), (5, 2))
    assert "(0, 0), (5, 2)" in entries.message
    assert_correct(Square())


def test_transpose_of_the_gradient_of_dy_and_of_axes():
    d = diagnosis_of(full(Elementwise("transpose"), SQUARE))
    assert (d.kind, d.axes, d.operand) == ("transpose", (1, 0), "gradient")
    d = diagnosis_of(full(Elementwise("dy"), SQUARE))
    assert (d.kind, d.operand) == ("transpose", "dy") and "backward(dy^T)" in d.message
    stack = RNG.standard_normal((2, 3, 3))
    d = diagnosis_of(full(Elementwise("permute"), stack))
    assert (d.kind, d.axes) == ("transpose", (0, 2, 1))
    assert_correct(Elementwise(), SQUARE)


def test_swapped_names_the_other_argument():
    result = full(Affine(wrong=True))
    assert result.input.status == "pass"
    gamma, beta = diagnosis_of(result, "gamma"), diagnosis_of(result, "beta")
    assert (gamma.kind, gamma.other) == ("swapped", "beta")
    assert (beta.kind, beta.other) == ("swapped", "gamma")
    assert_correct(Affine())


def test_symmetric_part_through_the_hook():
    d = diagnosis_of(full(GramMix(wrong=True)))
    assert d.kind == "symmetric-part" and "backward_symmetrized" in d.message
    assert_correct(GramMix())
    # Without the hook nothing proves it: no signature (the discrepancy x (G - G^T) / N has
    # full rank here).
    assert diagnosis_of(full(GramMix(wrong=True, hook=False))) is None


def test_every_kind_has_a_test_above():
    tested = {"scale", "zero", "offset", "rank-one", "rows", "columns", "entries"}
    tested |= {"transpose", "swapped", "symmetric-part"}
    assert tested == set(KINDS)


# -- the ZCA examples: the paper's mistake, and one with no simple signature ---------------


def test_zca_without_symmetrization_is_symmetric_part_and_the_dropped_path_is_nothing():
    x = np.random.default_rng(0).standard_normal((16, 4))
    assert diagnosis_of(full(ZCANoSymmetrization(), x)).kind == "symmetric-part"
    assert diagnosis_of(full(ZCANoCovariancePath(), x)) is None
    assert_correct(ZCAWhitening(), x)


def test_the_paper_variants_and_the_suite_report_their_signatures():
    x = np.random.default_rng(1).standard_normal((10, 3))
    got = {
        name: diagnosis_of(full(PaperDBNWhitening.variant(name), x))
        for name in ("printed", "transpose-only", "symmetrize-only")
    }
    assert got["transpose-only"].kind == "symmetric-part"
    assert got["printed"] is None and got["symmetrize-only"] is None
    assert_correct(PaperDBNWhitening.variant("corrected"), x)
    verdict = measure_variant("transpose-only", draw_cases(0, 3), search=False)
    assert verdict.diagnoses == {"symmetric-part": 3}
    assert verdict.to_dict()["diagnoses"] == {"symmetric-part": 3}
    assert measure_variant("corrected", draw_cases(0, 2), search=False).diagnoses == {}


# -- never a guess ---------------------------------------------------------------------------


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(shape)
    return n, np.full(shape, 1e-12)


def test_nothing_for_a_pass_or_for_noise_beyond_tolerance():
    n, e = _arrays((8, 3))
    assert diagnose(n, n, e) is None  # it passes: nothing to explain
    noise = np.random.default_rng(1).standard_normal(n.shape)
    assert diagnose(n + 1e-3 * noise, n, e) is None
    # A scale plus noise far beyond the tolerance (1e-5 against rtol 1.5e-8): not "scale".
    assert diagnose(1.5 * n + 1e-5 * noise, n, e) is None
    assert diagnose(1.5 * n, n, e).label == "scale"


def test_a_correction_with_as_many_numbers_as_entries_is_never_offered():
    # Any 2 x k or 3 x 3 discrepancy of rank one would be "explained" by too many numbers.
    for shape in ((2, 5), (3, 3)):
        n, e = _arrays(shape)
        rng = np.random.default_rng(3)
        a = n + np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1]))
        assert diagnose(a, n, e) is None, shape
    n, e = _arrays((6, 4))
    rng = np.random.default_rng(4)
    a = n + np.outer(rng.standard_normal(6), rng.standard_normal(4))
    assert diagnose(a, n, e).kind == "rank-one"
    # A single-row matrix: no offset along its axis of length one, no rows, no rank one.
    n1, e1 = _arrays((1, 4))
    assert diagnose(n1 + np.array([[1.0, 2.0, -1.0, 0.5]]), n1, e1) is None


def test_confined_signatures_need_few_lines_or_entries():
    n, e = _arrays((8, 4))
    a = n.copy()
    a[:3] += np.random.default_rng(6).standard_normal((3, 4))  # 3 of 8 rows: over a quarter
    assert diagnose(a, n, e) is None
    a = n.copy()
    a[[0, 1, 2, 3, 4], [0, 1, 2, 3, 0]] += 1.0  # 5 of 32 entries: more than an eighth
    assert diagnose(a, n, e) is None
    a = n.copy()
    a[[0, 1, 2, 3], [0, 1, 2, 3]] += 1.0  # 4 of 32 entries
    assert diagnose(a, n, e).entries == ((0, 0), (1, 1), (2, 2), (3, 3))


def test_an_inconclusive_correction_is_not_a_pass():
    n, _ = _arrays((8, 3))
    e = np.full(n.shape, 1e-3)  # the estimate cannot resolve the tolerance anywhere
    assert diagnose(-n, n, e) is None


def test_the_check_options_are_the_comparison_used():
    # With a loose rtol, a 1.001 scale passes outright; with the default, it is named.
    result = full(Sine(1.001), rtol=1e-2)
    assert result.status == "pass" and result.input.diagnosis is None


class Counting(Elementwise):
    """Counts backward calls: the extra calls of the diagnosis must leave the count as found."""

    calls = 0

    def backward(self, dy):
        self.calls += 1
        return super().backward(dy)


class Raising(GramMix):
    def backward_symmetrized(self, dy):
        raise RuntimeError("not supported here")


def test_extra_backward_calls_leave_the_layer_as_found_and_may_fail():
    layer = Counting("dy")
    result = full(layer, SQUARE)
    calls = layer.calls
    assert result.input.diagnosis.operand == "dy"
    again = diagnose_results(result.arguments, layer=layer, x_shape=SQUARE.shape, dy=None)
    assert again[0].diagnosis is None  # without dy, backward(dy^T) cannot be tried
    dy = np.random.default_rng(5).standard_normal(SQUARE.shape)
    diagnose_results(result.arguments, layer=layer, x_shape=SQUARE.shape, dy=dy)
    assert layer.calls == calls
    # A hook that raises proves nothing and breaks nothing.
    assert diagnosis_of(full(Raising(wrong=True))) is None


def test_directional_and_passing_arguments_are_left_alone():
    result = check_layer(Sine(2.0), X, seed=0, mode="directional")
    assert result.status == "fail" and result.input.analytic is None
    assert result.input.diagnosis is None
    auto = check_layer(Sine(2.0), X, seed=0)  # auto: the failing argument is re-run in full
    assert auto.input.mode == "full" and auto.input.diagnosis.label == "scale 2"


# -- the report ------------------------------------------------------------------------------


def test_diagnosis_to_dict_keeps_only_its_fields():
    d = Diagnosis("entries", "m", entries=((0, 1), (2, 3)))
    assert d.to_dict() == {"kind": "entries", "message": "m", "entries": [[0, 1], [2, 3]]}
    assert Diagnosis("scale", "m", factor=0.5, factor_name="1/2").to_dict() == {
        "kind": "scale",
        "message": "m",
        "factor": 0.5,
        "factor_name": "1/2",
    }


def test_the_reports_print_the_diagnosis_under_the_failing_row():
    bad = full(Sine(1 / 8))
    bad.layer = "sine-mean"
    good = full(Sine())
    good.layer = "sine"
    report = Report(results=[good, bad])
    text = render_text(report)
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("sine-mean "))
    message = "analytic = numeric x 0.125 = 1/N: a mean where a sum belongs?"
    assert lines[row + 1] == f"  diagnosis of x: {message}"
    assert f"    diagnosis (scale): {message}" in text  # and in the details
    markdown = render_markdown(report)
    assert f"| ↳ `x`: {message} | | | | | | | |" in markdown
    doc = json.loads(render_json(report))
    assert doc["schema_version"] == 2
    assert doc["results"][0]["arguments"][0]["diagnosis"] is None
    assert doc["results"][1]["arguments"][0]["diagnosis"] == {
        "kind": "scale",
        "message": message,
        "factor": 0.125,
        "factor_name": "1/N",
    }
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert not errors, errors[0].message

"""A verdict of "pass" must be earned: wrong backwards that the harness once passed, and the
correct twins it must not fail.

Each class of the issue (non-finite stencil points, overflow, one large entry, tiny inputs,
constant outputs, localized errors, unconverged fails, budgets) has a layer written here, in
the plain protocol (``forward(x) -> y``, ``backward(dy) -> dx``), a wrong twin that must fail and
a correct one that must pass (or be inconclusive only where ``docs/estimators.md`` says why).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.compare import compare, relative_error, scaled_norm
from layers.pca_whitening import PCAWhitening
from layers.whitening import ZCAWhitening


class Elementwise:
    """``y = f(x)`` entry by entry; ``backward`` scales the true derivative by ``1 + wrong``
    (everywhere, or at ``wrong_at`` only)."""

    def __init__(self, f, df, wrong: float = 0.0, wrong_at: Optional[tuple] = None) -> None:
        self.f, self.df, self.wrong, self.wrong_at = f, df, wrong, wrong_at
        self.name = f"{f.__name__}{'-wrong' if wrong else ''}"

    def forward(self, x):
        self.x = np.array(x, copy=True)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return self.f(x)

    def backward(self, dy):
        g = self.df(self.x) * dy
        if self.wrong_at is None:
            return g * (1.0 + self.wrong)
        g = g.copy()
        g[self.wrong_at] *= 1.0 + self.wrong
        return g


def log_layer(wrong: float = 0.0) -> Elementwise:
    return Elementwise(np.log, lambda x: 1.0 / x, wrong)


def sqrt_layer(wrong: float = 0.0) -> Elementwise:
    return Elementwise(np.sqrt, lambda x: 0.5 / np.sqrt(x), wrong)


def x_in(lo: float, hi: float, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


# -- 1. non-finite stencil points are information, never a pass ------------------------------


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_pole_next_to_one_entry_does_not_launder_a_wrong_log(mode):
    x = x_in(0.5, 2.0, (8, 4))
    x[0, 0] = 1e-7
    wrong = check_layer(log_layer(0.01), x, mode=mode)
    assert wrong.status == "fail", wrong.explain()
    right = check_layer(log_layer(), x, mode=mode)
    assert right.status == "pass", right.explain()


def test_sqrt_near_zero_in_a_large_input_does_not_launder_a_wrong_gradient():
    x = x_in(0.5, 2.0, (64, 32))
    x[3, 7] = 1e-6
    wrong = check_layer(sqrt_layer(0.01), x)
    assert wrong.status == "fail", wrong.explain()
    assert check_layer(sqrt_layer(), x).status == "pass"


def test_nonfinite_stencil_points_are_named_in_a_finding():
    x = x_in(0.5, 2.0, (4, 3))
    x[1, 2] = 1e-7
    result = check_layer(log_layer(), x, mode="full")
    codes = {f.code: f.message for f in result.findings}
    assert "estimate-nonfinite-recovered" in codes, result.explain()
    assert "x[1, 2]" in codes["estimate-nonfinite-recovered"]
    assert "- h" in codes["estimate-nonfinite-recovered"]


def test_a_forward_that_is_finite_on_one_side_only_is_estimated_one_sided():
    """``sqrt`` at exactly 0: every two-sided step leaves the domain, the right side is fine
    (the derivative there is infinite, so a finite backward cannot be confirmed: inconclusive
    or fail, never pass); an input just inside is estimated one-sided and checked."""

    class HalfLine:
        """``y = x^2`` for ``x >= 0``, NaN for ``x < 0``: a domain edge at 0."""

        def forward(self, x):
            self.x = np.array(x, copy=True)
            with np.errstate(invalid="ignore"):
                return np.where(x >= 0, x * x, np.nan)

        def backward(self, dy):
            return 2.0 * self.x * dy

    x = x_in(0.5, 2.0, (3, 3))
    x[0, 0] = 0.0
    result = check_layer(HalfLine(), x, mode="full")
    codes = {f.code: f.message for f in result.findings}
    assert "estimate-nonfinite-recovered" in codes, result.explain()
    assert "one-sided" in codes["estimate-nonfinite-recovered"]
    assert result.status == "pass", result.explain()

    class HalfLineWrong(HalfLine):
        def backward(self, dy):
            g = 2.0 * self.x * dy
            g[0, 1] += 0.01  # the true gradient there, at the edge x = 0, is 0
            return g

    x[0, 1] = 0.0
    assert check_layer(HalfLineWrong(), x, mode="full").status == "fail"


def test_no_finite_stencil_at_all_is_inconclusive_never_pass():
    class Nowhere:
        """Finite at x exactly, NaN at every perturbation of x[0, 0]."""

        def forward(self, x):
            self.x0 = float(x[0, 0])
            y = np.array(x, copy=True)
            if not hasattr(self, "origin"):
                self.origin = self.x0
            if x[0, 0] != self.origin:
                y[0, 0] = np.nan
            return y

        def backward(self, dy):
            return dy * 1.5  # wrong everywhere

    result = check_layer(Nowhere(), x_in(0.5, 2.0, (3, 2)), mode="full")
    assert result.status == "fail"  # the other entries are checkable and wrong
    entry = result.input.comparison
    assert entry.n_inconclusive + entry.n_failed == entry.n_entries


def test_compare_never_passes_nan():
    a = np.array([1.0, 2.0])
    assert compare(a, np.array([1.0, np.nan]), np.zeros(2)).status == "inconclusive"
    assert compare(a, a, np.array([0.0, np.nan])).status == "inconclusive"
    assert compare(np.array([1.0, np.nan]), a, np.zeros(2)).status == "fail"
    assert compare(a, a, np.zeros(2), atol=np.inf).status == "inconclusive"


# -- 2. overflow -----------------------------------------------------------------------------


def test_gradients_near_the_top_of_the_float_range():
    x = x_in(690.0, 700.0, (6, 4))
    exp = Elementwise(np.exp, np.exp)
    assert check_layer(exp, x).status == "pass"
    wrong = check_layer(Elementwise(np.exp, np.exp, 0.01), x)
    assert wrong.status == "fail", wrong.explain()


def test_norms_do_not_overflow():
    big = np.full(10, 1e300)
    assert scaled_norm(big) == pytest.approx(1e300 * np.sqrt(10))
    assert relative_error(big, big * (1 + 1e-3)) == pytest.approx(1e-3, rel=1e-2)


# -- 3. one large entry hides nothing --------------------------------------------------------


class ColumnScale:
    """``y = x * c`` with one column of ``c`` at 1e8; ``wrong`` scales the other columns."""

    def __init__(self, wrong: float = 0.0, d: int = 8) -> None:
        self.c = np.ones(d)
        self.c[0] = 1e8
        self.wrong = wrong

    def forward(self, x):
        return x * self.c

    def backward(self, dy):
        g = dy * self.c
        g[:, 1:] *= 1.0 + self.wrong
        return g


@pytest.mark.parametrize("wrong", [0.1, 1e-6])
@pytest.mark.parametrize("mode", ["auto", "full"])
def test_one_large_column_does_not_hide_errors_in_the_others(wrong, mode):
    x = x_in(-1.0, 1.0, (16, 8))
    result = check_layer(ColumnScale(wrong), x, mode=mode)
    assert result.status == "fail", result.explain()
    assert check_layer(ColumnScale(), x, mode=mode).status == "pass"


class ScaledSine:
    """``y = sin(x) * s`` with column scales ``s`` from 1e-6 to 1e6; the backward's column 0
    (gradient entries about 5e-7) is scaled by ``1 + wrong``."""

    SCALES = 10.0 ** np.linspace(-6, 6, 8)

    def __init__(self, wrong: float = 0.0) -> None:
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.sin(x) * self.SCALES

    def backward(self, dy):
        g = dy * np.cos(self.x) * self.SCALES
        g[:, 0] *= 1.0 + self.wrong
        return g


class SmallBesideLarge:
    """``y = 1e6 sin(x0) + 1e-6 (x1 + x2 + x3)``, one output per row: the gradient of
    ``x1..x3`` is 1e-6 and their estimates carry the rounding of an output of 1e6. The
    backward's ``dx1..dx3`` are multiplied by ``factor``."""

    supports_batch = True

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def forward(self, x):
        self.x = x
        return (1e6 * np.sin(x[..., 0]) + 1e-6 * x[..., 1:].sum(-1))[..., None]

    def backward(self, dy):
        dx = np.zeros_like(self.x)
        dx[..., 0] = 1e6 * np.cos(self.x[..., 0]) * dy[..., 0]
        dx[..., 1:] = self.factor * 1e-6 * dy[..., :1]
        return dx


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_entry_beside_large_outputs_is_held_to_its_own_tolerance(seed):
    """The estimates of ``dx1..dx3`` have errors of 1e-4 at the base step, within the
    gradient-wide floor (rtol times 1e6) and far above their own tolerance: the old check
    passed them doubled in full mode. At larger steps their rounding falls and the doubled
    entries fail; the correct twin passes, saying which entries only the floor verifies."""
    x = x_in(-1.0, 1.0, (8, 4), seed=seed)
    wrong = check_layer(SmallBesideLarge(2.0), x, mode="full", seed=seed)
    assert wrong.status == "fail", wrong.explain()
    assert all(e.index[1] > 0 for e in wrong.input.comparison.worst)
    assert check_layer(SmallBesideLarge(2.0), x, seed=seed).status != "pass"
    right = check_layer(SmallBesideLarge(), x, mode="full", seed=seed)
    assert right.status == "pass", right.explain()
    assert check_layer(SmallBesideLarge(), x, seed=seed).status == "pass"


@pytest.mark.parametrize("wrong", [-1.0, -2.0])
@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_noise_of_large_outputs_is_not_lent_to_small_ones(wrong, mode, seed):
    """Found by an adversarial helper: a zeroed (or sign-flipped) column of small gradients
    passed, because the pooled round-off noise of the 1e6 column (error estimates of 1.1e-6)
    was given to entries of 5e-7. Noise is now pooled among directions that move outputs of
    the same size."""
    x = np.random.default_rng(0).standard_normal((16, 8))
    result = check_layer(ScaledSine(wrong), x, mode=mode, seed=seed)
    assert result.status == "fail", result.explain()
    right = check_layer(ScaledSine(), x, mode=mode, seed=seed)
    assert right.status == "pass", right.explain()
    if mode == "full":
        assert np.max(right.input.error_estimate[:, 0]) < 1e-10


# -- 3b. an entry below the floor is held to its own tolerance -----------------------------


class TinyColumn:
    """``y = tanh(x) * c`` with the last column of ``c`` at ``scale``: that column's gradient is
    far under ``atol = rtol * median``. ``wrong``: ``"zero"`` returns zeros there, a number
    scales it by ``1 + wrong``; ``residue`` adds rounding of the size of the largest entries to
    it (``1e-16 dy``: a discrepancy of the size of a backward's rounding)."""

    def __init__(self, scale: float, wrong=None, residue: bool = False) -> None:
        self.scale, self.wrong, self.residue = scale, wrong, residue

    def forward(self, x):
        self.x = x
        c = np.ones(x.shape[-1])
        c[-1] = self.scale
        self.c = c
        return np.tanh(x) * c

    def backward(self, dy):
        g = dy * (1.0 - np.tanh(self.x) ** 2) * self.c
        if self.residue:
            g[:, -1] += 1e-16 * dy[:, -1]
        if self.wrong == "zero":
            g[:, -1] = 0.0
        elif self.wrong is not None:
            g[:, -1] *= 1.0 + self.wrong
        return g


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
# (1e-12, 1e-2) is 1e-14 absolute: under the thousand-ulp floor, documented as not caught.
@pytest.mark.parametrize(
    ("scale", "wrong"), [(1e-9, "zero"), (1e-9, 1.0), (1e-9, 1e-2), (1e-12, "zero"), (1e-12, 1.0)]
)
@pytest.mark.parametrize("shape", [(8, 4), (64, 32)])
def test_a_wrong_column_far_under_the_floor_fails(mode, scale, wrong, shape):
    """Found while hunting for wrong passes: a column of gradients of 1e-9 beside ones of 1
    disagrees by less than ``atol = rtol * median`` wherever it is wrong, so a backward that
    returned zeros there passed. Entries under the floor now fail beyond their own relative
    tolerance where the estimate resolves it and beyond a thousand ulps of the largest entry;
    in a directional screen they are a band of their own."""
    x = np.random.default_rng(0).standard_normal(shape)
    result = check_layer(TinyColumn(scale, wrong), x, mode=mode)
    assert result.status == "fail", result.explain()
    assert result.input.comparison.n_failed >= 1
    if mode == "full":
        cmp = result.input.comparison
        assert all(e.index[1] == shape[1] - 1 for e in cmp.worst[: cmp.n_failed])
    right = check_layer(TinyColumn(scale), x, mode=mode)
    assert right.status == "pass", right.explain()


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_rounding_residue_in_a_tiny_column_is_not_a_failure(mode):
    """A discrepancy of 1e-16 in the column of 1e-9 (``+ 1e-16 dy``): 1e-7 of the entries
    themselves, but under the thousand-ulp floor (2e-13 here), so it passes, as the rounding
    a right backward that sums cancelling terms of size 1 leaves must."""
    x = np.random.default_rng(1).standard_normal((8, 4))
    result = check_layer(TinyColumn(1e-9, residue=True), x, mode=mode)
    assert result.status == "pass", result.explain()


def test_below_the_floor_with_a_stated_atol_is_the_users_floor():
    """With ``atol`` given the user has said what is small enough: the zeroed column of 1e-9
    passes under ``atol=1e-6`` and fails under a floor of a thousandth of its size."""
    x = np.random.default_rng(0).standard_normal((8, 4))
    assert check_layer(TinyColumn(1e-9, "zero"), x, atol=1e-6).status == "pass"
    assert check_layer(TinyColumn(1e-9, "zero"), x, atol=1e-12, mode="full").status == "fail"


class PCAScaledEntry(PCAWhitening):
    """PCA whitening whose backward scales ``dx[4, 3]`` by ``1 + wrong``."""

    def __init__(self, wrong: float = 0.0) -> None:
        super().__init__()
        self.wrong = wrong

    def backward(self, dy):
        dx = np.array(super().backward(dy), copy=True)
        dx[4, 3] *= 1.0 + self.wrong
        return dx


@pytest.mark.parametrize("wrong", [0.0, 1e-5])
def test_an_unresolved_richardson_entry_is_estimated_again_at_finer_steps(wrong):
    """Found when numpy 2.4 moved an estimate: PCA whitening of a 5x5 batch (condition number
    2.4e5) left one richardson entry at an error of 6.3e-8 against 5.5e-8 to resolve; at a
    quarter of its step the same stencil resolves it to 1e-9. The right backward passes; one
    wrong by 1e-5 at that entry fails (at 1e-6, 8 error estimates of the unresolved step, it
    stays inconclusive: a finer step only settles an error bar, never overturns it)."""
    x = np.random.default_rng(2).standard_normal((5, 5))
    result = check_layer(PCAScaledEntry(wrong), x, seed=2, mode="full", method="richardson")
    if wrong:
        assert result.status == "fail", result.explain()
        assert result.input.comparison.worst_index == (4, 3)
        assert check_layer(PCAScaledEntry(1e-6), x, seed=2).status == "inconclusive"
    else:
        assert result.status == "pass", result.explain()
        assert result.input.error_estimate[4, 3] < 1e-8


def test_finer_steps_never_overturn_an_unresolved_entry_into_a_failure():
    """Found by the whitening property: ZCA of a batch with degenerate eigenvalues (gap 5e-21,
    condition number 2.8e6) left one richardson entry unresolved (error 1.5e-5); at a quarter
    of the step its error fell to 4e-8 and the entry disagreed by 4e-6 (2e-8 of itself), which
    failed a right layer. A finer step may settle an error bar, not overturn it."""
    x = np.full((5, 6), 2.0953196025017307e-67)
    x[2, 2], x[3, 5], x[4, 0] = -7.810832832883152, 9.056227962265005, 7.785144500435798
    x[4, 2], x[4, 5] = -5.9726138461416, 10.0
    result = check_layer(ZCAWhitening(), x, seed=48366)
    assert result.status == "inconclusive", result.explain()


class ScaledSoftmax:
    """Row softmax of ``scale * x``; ``wrong``: ``"sum"`` drops the ``- sum(p dy)`` term,
    ``"flush"`` zeroes entries under 1e-8, a number scales the whole gradient by it."""

    def __init__(self, scale: float, wrong=None) -> None:
        self.scale, self.wrong = scale, wrong

    def forward(self, x):
        z = self.scale * x
        e = np.exp(z - z.max(axis=1, keepdims=True))
        self.p = e / e.sum(axis=1, keepdims=True)
        return self.p

    def backward(self, dy):
        p = self.p
        if self.wrong == "sum":
            return self.scale * p * dy
        g = self.scale * p * (dy - (p * dy).sum(axis=1, keepdims=True))
        if self.wrong == "flush":
            g = np.where(np.abs(g) < 1e-8, 0.0, g)
        elif self.wrong is not None:
            g = g * (1.0 + self.wrong)
        return g


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
@pytest.mark.parametrize(("scale", "seed"), [(16.0, 1), (20.0, 1), (30.0, 0), (300.0, 0)])
def test_a_saturated_softmax_is_not_failed(mode, scale, seed):
    """Found by an adversarial helper (scale 16 to 30; 300 was a strict xfail): moving a logit
    of p ~ 1e-19 changes the row's p ~ 1 below its ulp at every step, so that share of the
    derivative was lost while the estimate's error (counting outputs seen moving) was 1e-27,
    and a right softmax failed in every mode. Outputs that move only at about the input's own
    scale now count, and every claimed failure is held to what such outputs can hide."""
    x = np.random.default_rng(seed).standard_normal((32, 16))
    result = check_layer(ScaledSoftmax(scale), x, mode=mode, seed=seed)
    assert result.status != "fail", result.explain()


@pytest.mark.parametrize("wrong", ["sum", "flush", 1e-4])
@pytest.mark.parametrize("scale", [8.0, 30.0])
def test_a_saturated_softmax_that_is_wrong_still_fails(wrong, scale):
    x = np.random.default_rng(0).standard_normal((32, 16))
    for mode in ("auto", "directional"):
        result = check_layer(ScaledSoftmax(scale, wrong), x, mode=mode)
        assert result.status == "fail", result.explain()


# -- 4. tiny inputs --------------------------------------------------------------------------


def cube(x):
    return x**3


def test_inputs_at_1e_minus_8_can_fail_and_pass():
    x = x_in(0.5e-8, 2e-8, (6, 4))
    wrong = check_layer(Elementwise(cube, lambda x: 3 * x**2, 0.1), x, mode="full")
    assert wrong.status == "fail", wrong.explain()
    right = check_layer(Elementwise(cube, lambda x: 3 * x**2), x)
    assert right.status == "pass", right.explain()


class FarthestPoint(ZCAWhitening):
    """ZCA whitening (SVD) that records how far from ``x0`` any evaluated point was, in a
    class attribute (the harness evaluates copies of a layer), and refuses points past 1e100
    (whose covariance overflows; LAPACK's SVD of an inf never returns)."""

    farthest = 0.0

    def __init__(self, x0: np.ndarray, wrong: float = 0.0) -> None:
        super().__init__(method="svd")
        self.x0, self.wrong = x0, wrong
        FarthestPoint.farthest = 0.0

    def forward(self, x):
        far = float(np.max(np.abs(np.asarray(x) - self.x0)))
        FarthestPoint.farthest = max(FarthestPoint.farthest, far)
        if far > 1e100:
            raise FloatingPointError(f"a point {far:.1e} away from x")
        return super().forward(x)

    def backward(self, dy):
        return super().backward(dy) * (1.0 + self.wrong)


def _tiny_beside_one_entry() -> np.ndarray:
    """9x4 of 1.6e-240 but for one entry of 0.054 (a batch Hypothesis drew for zca-svd)."""
    x = np.full((9, 4), 1.5874141348114415e-240)
    x[5, 1] = 0.05419678990374699
    return x


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_probe_steps_of_tiny_entries_stay_at_the_textbook_scale(mode):
    # Richardson's doubtful levels once multiplied the probe-to-step ratio of the base steps
    # (6e-3 / 1e-242) into steps that were already the probe's: points 1e+234 away, whose
    # covariance is inf, and an SVD of inf that never returned (CI timed out on it).
    x = _tiny_beside_one_entry()
    result = check_layer(FarthestPoint(x), x, seed=65535, mode=mode)
    assert result.status in ("pass", "inconclusive"), result.explain()
    assert FarthestPoint.farthest <= 100.0, FarthestPoint.farthest
    wrong = check_layer(FarthestPoint(x, wrong=1e-3), x, seed=65535, mode=mode)
    assert wrong.status == "fail", wrong.explain()
    assert FarthestPoint.farthest <= 100.0, FarthestPoint.farthest


class OffsetBump:
    """Outputs ``[Y + c x, S sin(x / S), a x exp(-x^2 / 2 L^2)]`` side by side (helper-17's
    layer): the first block's change is lost to rounding at the steps of a 1e-10 input, so
    richardson's finer levels are re-estimated at their probe steps; the last is a bump of
    width 5e-3 that only those finer levels can see. ``right=False`` leaves the bump's slope
    out of the backward (8% of the gradient)."""

    supports_batch = True
    Y, c, S, a, L = 5e6, 1e-6, 1e4, 0.05, 5e-3

    def __init__(self, right: bool) -> None:
        self.right = right

    def forward(self, x):
        self.x = x = np.asarray(x, dtype=np.float64)
        bump = self.a * x * np.exp(-x * x / (2 * self.L**2))
        return np.concatenate([self.Y + self.c * x, self.S * np.sin(x / self.S), bump], axis=-1)

    def backward(self, dy):
        x, d = self.x, self.x.shape[-1]
        dx = self.c * dy[..., :d] + np.cos(x / self.S) * dy[..., d : 2 * d]
        if self.right:
            slope = self.a * (1 - x * x / self.L**2) * np.exp(-x * x / (2 * self.L**2))
            dx = dx + slope * dy[..., 2 * d :]
        return dx


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_capped_probes_of_finer_levels_do_not_certify_a_far_estimate(mode, seed):
    # With every level's probe capped at one step, the four levels were one estimate taken at
    # a step of about 6, blind to the bump, and agreeing with itself: the wrong twin passed in
    # auto and directional mode. The finer levels' probes now shrink with their steps.
    x = 1e-10 * np.random.default_rng(seed).standard_normal((8, 8))
    x[0, 0] = 1.0
    assert check_layer(OffsetBump(right=False), x, seed=seed, mode=mode).status != "pass"
    right = check_layer(OffsetBump(right=True), x, seed=seed, mode=mode)
    assert right.status in ("pass", "inconclusive"), right.explain()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["auto", "full"])
def test_an_output_whose_change_shows_only_at_textbook_steps_is_counted_as_hidden(mode, seed):
    # All entries 1e-10: the block Y + c x moves only at steps from about 5e-4, far past 16x
    # the input's own scale, where the share unmoved outputs can hide was looked for; its
    # slope c dy (1e-6) was missing from the estimate and the right twin failed. The share is
    # now looked for out to 16x the textbook scale, max(1, typical |x|).
    x = 1e-10 * np.random.default_rng(seed).standard_normal((8, 8))
    right = check_layer(OffsetBump(right=True), x, seed=seed, mode=mode)
    assert right.status in ("pass", "inconclusive"), right.explain()
    assert check_layer(OffsetBump(right=False), x, seed=seed, mode=mode).status == "fail"


# -- 5. a constant output --------------------------------------------------------------------


class Constant:
    def __init__(self, leak: float = 0.0) -> None:
        self.leak = leak

    def forward(self, x):
        return np.full_like(x, 3.0)

    def backward(self, dy):
        return self.leak * dy


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_a_constant_output_passes_with_a_zero_gradient_and_fails_without(mode):
    x = x_in(-1.0, 1.0, (5, 3))
    assert check_layer(Constant(), x, mode=mode).status == "pass"
    assert check_layer(Constant(1e-3), x, mode=mode).status == "fail"


# -- 6. the default check resolves a single wrong entry --------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_default_check_catches_one_entry_wrong_by_1e_minus_6(seed):
    """Gradient entries of one scale (|x| < 1 keeps tanh' in [0.42, 1], dy is +-1), one entry
    wrong by a relative 1e-6 of itself, 2048 entries: the default check fails it."""
    rng = np.random.default_rng(100 + seed)
    x = rng.uniform(-1.0, 1.0, (64, 32))
    dy = rng.choice([-1.0, 1.0], size=x.shape)
    tanh = Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, 1e-6, wrong_at=(17, 5))
    result = check_layer(tanh, x, dy=dy, seed=seed)
    assert result.status == "fail", result.explain()
    assert result.input.comparison.worst[0].index == (17, 5)
    right = check_layer(Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2), x, dy=dy, seed=seed)
    assert right.status == "pass", right.explain()
    screen = right.input
    assert screen.resolves_entry is not None and screen.resolves_entry <= 1e-6
    assert screen.resolves_gradient is not None and screen.resolves_gradient < 1e-6


# -- 7. fail only on a converged disagreement ------------------------------------------------


class BatchStandardize:
    """``(x - mean) / sqrt(var + eps)`` over the examples (rows), eps possibly 0."""

    def __init__(self, eps: float = 0.0) -> None:
        self.eps = eps

    def forward(self, x):
        mu = x.mean(axis=0)
        self.xc = x - mu
        self.inv = 1.0 / np.sqrt((self.xc**2).mean(axis=0) + self.eps)
        self.y = self.xc * self.inv
        return self.y

    def backward(self, dy):
        n = dy.shape[0]
        return self.inv / n * (n * dy - dy.sum(axis=0) - self.y * (dy * self.y).sum(axis=0))


@pytest.mark.parametrize("seed", range(3))
def test_full_mode_does_not_fail_a_correct_layer_of_tiny_spread(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 3))
    x[:, 1] = 1.0 + 1e-7 * rng.standard_normal(8)
    result = check_layer(BatchStandardize(), x, mode="full", seed=seed)
    assert result.status in ("pass", "inconclusive"), result.explain()
    tiny = 1e-8 * rng.standard_normal((8, 3))
    result = check_layer(BatchStandardize(), tiny, mode="full", seed=seed)
    assert result.status in ("pass", "inconclusive"), result.explain()


def test_a_fail_names_the_estimate_that_confirmed_it():
    x = x_in(0.5, 2.0, (4, 3))
    result = check_layer(log_layer(0.01), x, mode="full")
    assert result.status == "fail"
    assert "confirmed by richardson" in result.reason


# -- 7b. a disagreement that moves at smaller steps is not a converged one ------------------

#: Where the bends: ``c`` and its width ``ell``, far below every estimator's step at scale 1.
BEND_AT, BEND_WIDTH = 0.3, 1e-7


def _bend(x):
    return x - BEND_WIDTH * np.tanh((x - BEND_AT) / BEND_WIDTH)


def _bend_slope(x):
    return np.tanh((x - BEND_AT) / BEND_WIDTH) ** 2


def _bent_input() -> np.ndarray:
    x = x_in(0.5, 2.0, (4, 3))
    x[2, 1] = BEND_AT  # the true slope there is 0; on every step of 1e-6 and more it looks 1
    return x


@pytest.mark.parametrize("method", ["central", "five-point", "richardson", "complex-step"])
@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_a_bend_below_every_step_is_never_a_fail(mode, method):
    """``y = x - ell tanh((x - c) / ell)``, smooth, bends on the scale ell = 1e-7: at the steps
    of every estimator it is ``x`` shifted by ``-+ell``, and the estimates converge, tidily, to
    the slope 1 where the truth is 0. Only smaller steps show the bend."""
    result = check_layer(Elementwise(_bend, _bend_slope), _bent_input(), mode=mode, method=method)
    assert result.status != "fail", result.explain()
    if mode == "full" and method != "complex-step":
        codes = {f.code: f.message for f in result.findings}
        assert "x[2, 1]" in codes["estimate-not-converged"], result.explain()


def test_a_wrong_gradient_beside_the_bend_still_fails():
    """The re-estimate at smaller steps confirms a real disagreement: a wrong entry far from
    the bend fails, and only the bend's entry is left unresolved."""
    layer = Elementwise(_bend, _bend_slope, wrong=0.01, wrong_at=(0, 0))
    result = check_layer(layer, _bent_input(), mode="full")
    assert result.status == "fail", result.explain()
    assert result.input.comparison.worst[0].index == (0, 0)
    assert result.input.comparison.n_failed == 1


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_wrong_smooth_layer_fails_with_its_disagreement_confirmed(mode):
    x = x_in(0.5, 2.0, (16, 8))
    result = check_layer(log_layer(0.01), x, mode=mode)
    assert result.status == "fail", result.explain()
    assert "estimate-not-converged" not in {f.code for f in result.findings}


#: A rank-deficient batch (rank 2 of 4 rows, 6 columns) that Hypothesis found: a correct
#: ZCA(eps=1e-13) failed at x[0, 4] in auto and full mode with every method (analytic 3.46e3,
#: richardson -1.77e1 with error 3.5e2; central differences at steps 1e-9..1e-7 give 3.4e3).
RANK_DEFICIENT_4X6 = np.array(
    [
        [
            -0.019681319623943469,
            -0.019080643850109987,
            -0.015643111152788901,
            -0.024362901535847758,
            0.013058567044883588,
            0.99965048744941110,
        ],
        [
            0.60856457183827251,
            0.38219268562453135,
            -0.46912321054584633,
            0.00082167571207103496,
            -0.91325089952798733,
            1.1740657541214143,
        ],
        [
            -0.47079134419797186,
            -0.28572208555967948,
            0.40852293157029618,
            0.035381177055310242,
            0.73088414502669830,
            0.85752706845147730,
        ],
        [
            -0.11809190801635719,
            -0.077389956214741859,
            0.076243390128339097,
            -0.011839951231533516,
            0.16930818745640555,
            0.96875668997769682,
        ],
    ]
)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_the_rank_deficient_whitening_false_alarm_is_gone(mode):
    from layers import ZCAWhitening

    result = check_layer(ZCAWhitening(eps=1e-13, method="svd"), RANK_DEFICIENT_4X6, mode=mode)
    assert result.status == "inconclusive", result.explain()


# -- 7c. escalation costs what it must -------------------------------------------------------


def _noisy_sine(amplitude: float) -> Elementwise:
    """``sin(x)`` plus a deterministic wiggle of ``amplitude`` at a frequency of 1e9: to every
    step a difference can take it is noise of that size (as an ill-conditioned forward's
    rounding is), and ``cos`` is the derivative at every resolvable scale."""

    def noisy(x):
        return np.sin(x) + amplitude * np.sin(1e9 * x)

    return Elementwise(noisy, np.cos)


@pytest.mark.parametrize(
    "amplitude, first, stages",
    [(1e-13, "central", "central+five-point"), (1e-12, "five-point", "five-point")],
)
def test_full_mode_goes_to_the_cheapest_stencil_that_resolves(amplitude, first, stages):
    """Noise of 1e-12 hides the tolerance from central differences at every entry and not from
    five-point: a trial of 32 entries says so, and every entry starts with five-point."""
    x = x_in(-1.0, 1.0, (16, 16))
    right = check_layer(_noisy_sine(amplitude), x, mode="full")
    assert right.status == "pass", right.explain()
    assert right.input.method == stages
    # 6 (or 4 + 6 on some) an entry, plus the trial of 32 entries (central, then five-point).
    assert right.input.evaluations < (6 if first == "five-point" else 10) * x.size + 12 * 32
    chose = "five-point-for-full" in {f.code for f in right.findings}
    assert chose == (first == "five-point")
    layer = _noisy_sine(amplitude)
    layer.wrong, layer.wrong_at = 1e-6, (3, 4)
    wrong = check_layer(layer, x, mode="full")
    assert wrong.status == "fail", wrong.explain()
    assert wrong.input.method == f"{stages}+richardson"
    assert wrong.input.comparison.n_failed == 1
    assert wrong.input.comparison.worst[0].index == (3, 4)


def test_full_mode_skips_five_point_where_it_cannot_help():
    """sin(80 x): five-point's longer step is too long for the curvature, so the entries
    central differences leave unresolved go straight to richardson."""
    x = x_in(-1.0, 1.0, (16, 16))
    k = 80.0
    layer = Elementwise(lambda x: np.sin(k * x), lambda x: k * np.cos(k * x))
    result = check_layer(layer, x, mode="full")
    assert result.status == "pass", result.explain()
    assert result.input.method == "central+richardson"


# -- 8. a budget for localization ------------------------------------------------------------


def test_a_failed_screen_over_budget_stays_a_fail_and_names_entries():
    x = np.random.default_rng(0).standard_normal((400, 50))
    tanh = Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, 0.01)
    result = check_layer(tanh, x, budget=400)
    assert result.status == "fail", result.explain()
    arg = result.input
    assert arg.mode == "localized"
    assert arg.comparison.worst, result.explain()
    assert any(f.code == "localized-by-bisection" for f in result.findings)
    assert arg.evaluations <= 400
    right = Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)
    assert check_layer(right, x, budget=400).status == "pass"


def test_bisection_isolates_a_single_wrong_entry_within_budget():
    x = np.random.default_rng(1).standard_normal((500, 40))
    tanh = Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, 0.05, wrong_at=(321, 9))
    result = check_layer(tanh, x, budget=600)
    assert result.status == "fail", result.explain()
    assert result.input.mode == "localized"
    assert result.input.comparison.worst[0].index == (321, 9)


def test_bisection_names_entries_of_an_error_on_one_entry_in_a_hundred():
    """1% of the entries of 100,000 wrong by 1%, with a budget of 300 evaluations: both
    halves of the whole disagree, and a random sample of single entries (the former way) named
    about one wrong entry in four checks. A depth-first bisection, whose second half follows
    from the first by subtraction, reaches single entries in about 17 tests, and every entry it
    names is one of the wrong ones."""
    x = np.random.default_rng(2).standard_normal((400, 250))
    mask = np.random.default_rng(3).random(x.shape) < 0.01

    def wrong_grad(x):
        g = 1.0 - np.tanh(x) ** 2
        return np.where(mask, 1.01 * g, g)

    result = check_layer(Elementwise(np.tanh, wrong_grad), x, budget=300)
    assert result.status == "fail", result.explain()
    arg = result.input
    assert arg.mode == "localized" and arg.method == "central (bisection)"
    assert arg.evaluations <= 300
    named = [e.index for e in arg.comparison.worst]
    assert len(named) >= 3, result.explain()
    assert all(mask[i] for i in named), named
    right = Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)
    assert check_layer(right, x, budget=300).status == "pass"


def test_bisection_names_many_entries_of_an_error_spread_everywhere():
    x = np.random.default_rng(4).standard_normal((400, 250))
    result = check_layer(Elementwise(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, 0.01), x, budget=300)
    assert result.status == "fail", result.explain()
    assert result.input.comparison.n_failed >= 15, result.explain()


# -- the complex step needs a holomorphic forward, output by output ---------------------------


class AbsOneEntry:
    """``sin(x)`` plus ``2e-5 |x|`` at one entry: not holomorphic there."""

    def __init__(self, right: bool) -> None:
        self.right = right

    def forward(self, x):
        self.x = x
        y = np.sin(x)
        y[3, 5] = y[3, 5] + 2e-5 * np.abs(x[3, 5])
        return y

    def backward(self, dy):
        g = np.cos(self.x)
        if self.right:
            g = g.copy()
            g[3, 5] += 2e-5 * np.sign(self.x[3, 5])
        return dy * g


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_complex_step_does_not_pass_a_wrong_backward_of_a_non_holomorphic_entry(mode):
    """Found by an adversarial helper: the complex-step trial compared one projection
    ``<J v, dy>`` over 2,048 outputs at 1e-6, where the one output with ``abs`` (whose
    derivative the imaginary part loses) is lost, so the wrong backward passed and the right
    one failed. The trial now compares output by output, finds the forward not holomorphic and
    falls back to richardson, saying so."""
    x = np.random.default_rng(0).standard_normal((64, 32))
    wrong = check_layer(AbsOneEntry(right=False), x, seed=0, mode=mode, method="complex-step")
    assert wrong.status == "fail", wrong.explain()
    right = check_layer(AbsOneEntry(right=True), x, seed=0, mode=mode, method="complex-step")
    assert right.status == "pass", right.explain()
    for result in (wrong, right):
        assert result.input.method.startswith("richardson")
        assert "complex-step-unavailable" in [f.code for f in result.findings]


def test_the_default_method_gets_the_non_holomorphic_entry_right():
    """The twin of the xfail above, in the default mode: wrong fails, right passes."""
    x = np.random.default_rng(0).standard_normal((64, 32))
    assert check_layer(AbsOneEntry(right=False), x, seed=0).status == "fail"
    assert check_layer(AbsOneEntry(right=True), x, seed=0).status == "pass"


# -- a longer stencil is held to the shorter one's estimate ----------------------------------


class NoisyWiggle:
    """``y = x + a sin(x / w) + noise(x)``: a wiggle of width ``w = 1e-4`` and slope ``a / w =
    1e-6`` under a rounding-like noise of 1e-12 (a hash of the bits of ``x``). Central
    differences (step 6e-6) see the wiggle but are too noisy to resolve the tolerance;
    richardson's steps (0.018 and up) average it away, and agree, tightly, with a backward
    that leaves the wiggle's slope out (``right=False``)."""

    def __init__(self, right: bool, w: float = 1e-4, slope: float = 1e-6, noise: float = 1e-12):
        self.right, self.w, self.a, self.noise = right, w, slope * w, noise

    def forward(self, x):
        self.x = x
        bits = np.frombuffer(np.ascontiguousarray(x).tobytes(), dtype=np.uint64).reshape(x.shape)
        hashed = (bits * np.uint64(2654435761)) % np.uint64(1000003)
        return x + self.a * np.sin(x / self.w) + self.noise * (hashed / 1000003.0 - 0.5)

    def backward(self, dy):
        slope = self.a / self.w * np.cos(self.x / self.w) if self.right else 0.0
        return dy * (1.0 + slope)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_longer_stencil_that_smooths_away_a_feature_does_not_pass_a_wrong_backward(mode):
    """Found by a wiggle under noise: the wrong backward passed (full mode: central, then
    richardson for every entry; auto mode went straight to richardson after its screen). A
    richardson estimate that disagrees with central's beyond both errors now carries the gap
    in its error, and auto's full stage starts with central: inconclusive, not pass."""
    x = np.random.default_rng(0).standard_normal((32, 16))
    result = check_layer(NoisyWiggle(right=False), x, seed=0, mode=mode)
    assert result.status != "pass", result.explain()


def test_a_longer_stencil_agrees_with_the_shorter_one_where_nothing_is_hidden():
    """The twin with a tenth of the noise: central resolves the wiggle, and the right backward
    passes while the wrong one fails."""
    x = np.random.default_rng(0).standard_normal((32, 16))
    assert check_layer(NoisyWiggle(right=True, noise=1e-13), x, seed=0).status == "pass"
    assert check_layer(NoisyWiggle(right=False, noise=1e-13), x, seed=0).status == "fail"


class _DeclaresComplexWithAbs:
    """Found by an adversarial helper: ``tanh(x) + 0.1 |x|`` declaring ``supports_complex``.
    The declaration skipped the holomorphy trial, so the complex step (which loses the |x|
    term) passed the backward that drops it and failed the right one."""

    supports_complex = True

    def __init__(self, drop: bool) -> None:
        self.drop = drop

    def forward(self, x):
        self.x = x
        return np.tanh(x) + 0.1 * np.abs(x)

    def backward(self, dy):
        g = dy * (1 - np.tanh(self.x) ** 2)
        return g if self.drop else g + 0.1 * dy * np.sign(self.x)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_declared_supports_complex_is_still_tried(mode):
    x = np.random.default_rng(0).standard_normal((6, 4))
    wrong = check_layer(_DeclaresComplexWithAbs(drop=True), x, mode=mode, method="complex-step")
    assert wrong.status == "fail", wrong.explain()
    right = check_layer(_DeclaresComplexWithAbs(drop=False), x, mode=mode, method="complex-step")
    assert right.status == "pass", right.explain()
    codes = [f.code for f in right.findings]
    assert codes.count("complex-step-unavailable") == 1
    (note,) = [f.message for f in right.findings if f.code == "complex-step-unavailable"]
    assert "although the layer declares supports_complex" in note

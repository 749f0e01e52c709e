"""Pictures of the harness's numbers: the step-size study and the error pictures of failed checks.

**Error pictures.** For a failing check, :func:`draw_error_picture` draws one row per failing
full-mode argument: the per-entry ratio ``(analytic - numeric) / allowed`` (``allowed`` being
the entry's tolerance plus the estimate's error, both from :func:`gradcheck.compare.compare`, so
``|ratio| > 1`` is exactly a failed entry) beside the analytic and the numeric gradient as
images, with the argument's mistake signature (:mod:`gradcheck.diagnosis`) as the row's title.
Arrays of more than two axes are folded to a matrix (the last axis is the columns, the others
the rows, the first outermost); the axes say so. :func:`write_error_pictures` writes one PNG per
failing check into a folder (``gradcheck report --plots DIR``).

**The step-size study.**

A central difference ``D(h) = (L(x + h e_i) - L(x - h e_i)) / 2h`` of ``L(x) = <F(x), w>`` is
wrong by truncation, ``h^2 L''' / 6 + O(h^4)``, and by round-off, at most about
``eps * M / h`` with ``M = <|F(x)|, |w|>`` (the floor :mod:`gradcheck.finite_diff` adds to every
error estimate). On a log-log plot the first is a line of slope 2 on the right, the second a line
of slope -1 on the left, and the measured error follows the larger of the two: a V whose bottom
lies near ``h = eps^(1/3)``, the step :func:`gradcheck.finite_diff.base_step` chooses. The
five-point stencil has slope 4 and its bottom near ``eps^(1/5)``.

The model lines are not fitted to the curve they are drawn over. Round-off uses the bound above;
truncation uses the estimator's own error estimate (``|D(h) - D(2h)| / 3`` for central,
``|F(h) - F(2h)| / 15`` for five-point) at a reference step well inside the truncation regime.
Where the measured curve leaves the lines, the layer is not smooth on that scale (a kink, an
ill-conditioned covariance) or its forward rounds worse than ``eps`` per output.

:func:`step_sweep` needs only NumPy; :func:`draw_step_sweep` and the error pictures import
matplotlib when called.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .compare import FAIL_MARGIN, compare
from .finite_diff import STENCILS as FD_STENCILS
from .finite_diff import base_step
from .objective import LayerObjective, is_loss_layer
from .report import write_atomic
from .result import ArgumentResult, CheckResult
from .streams import PURPOSE_DEFAULT_LABELS, PURPOSE_DY, harness_rng

Array = np.ndarray

STEP_METHODS: Tuple[str, ...] = ("central", "five-point")
# (order of the truncation error, ((offset s, weight c), ...)) with D = sum c (L(x+sh) - L(x-sh))/h,
# from finite_diff's table: a weight w on D(s h) = (L(x+sh) - L(x-sh)) / 2sh is c = w / 2s.
STENCILS: Dict[str, Tuple[int, Tuple[Tuple[float, float], ...]]] = {
    method: (
        FD_STENCILS[method].order,
        tuple(
            (s, w / (2.0 * s))
            for s, w in zip(FD_STENCILS[method].offsets, FD_STENCILS[method].weights)
            if w != 0.0
        ),
    )
    for method in STEP_METHODS
}
STEP_RANGE = (1e-14, 1e-1)
STEPS_PER_DECADE = 4
# Far enough right of the optimum that truncation dominates round-off by orders of magnitude,
# small enough that the leading term of the expansion still describes a smooth layer.
_REFERENCE_STEP = {"central": 1e-3, "five-point": 1e-2}
# dy and the labels come from the streams gradcheck.check draws them from, so the sweep studies
# the very objective a check of this layer and seed differentiates.
_CHUNK = 256

INSTALL_HINT = (
    "drawing needs matplotlib, which is not installed; install it with "
    "pip install matplotlib (or pip install 'gradcheck-dbn[plot]')"
)


class PlotError(Exception):
    """The layer cannot be studied (its backward returned garbage, say)."""


class MatplotlibMissing(Exception):
    """matplotlib is not installed; the message says how to install it."""


def require_matplotlib() -> None:
    """Raise :class:`MatplotlibMissing` with :data:`INSTALL_HINT` if matplotlib does not import."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MatplotlibMissing(INSTALL_HINT) from exc


def step_grid(
    low: float = STEP_RANGE[0], high: float = STEP_RANGE[1], per_decade: int = STEPS_PER_DECADE
) -> Array:
    """Steps spaced evenly on a log scale from ``low`` to ``high``."""
    decades = np.log10(high) - np.log10(low)
    return np.logspace(np.log10(low), np.log10(high), round(decades * per_decade) + 1)


@dataclass(frozen=True)
class StepSweep:
    """Errors of a finite-difference derivative over a grid of steps, with the model lines.

    With ``entry`` set, ``steps`` are absolute steps for that entry and ``error`` is the
    absolute error ``|numeric - analytic|``. Without it, entry ``i`` is stepped by
    ``steps * max(1, |x_i|)`` (the harness's scaling) and ``error`` is the relative 2-norm
    error ``||numeric - analytic|| / ||analytic||`` over all entries; ``truncation`` and
    ``roundoff`` are then measured the same way.
    """

    name: str
    shape: Tuple[int, ...]
    seed: int
    method: str
    entry: Optional[Tuple[int, ...]]
    steps: Array
    error: Array
    truncation: Array
    roundoff: Array
    chosen_step: float
    chosen_error: float

    @property
    def order(self) -> int:
        return STENCILS[self.method][0]

    @property
    def best(self) -> Tuple[float, float]:
        """The grid step with the smallest measured error, and that error."""
        finite = np.where(np.isfinite(self.error), self.error, np.inf)
        k = int(np.argmin(finite))
        return float(self.steps[k]), float(self.error[k])

    def describe(self) -> str:
        what = (
            f"entry {tuple(self.entry)}"
            if self.entry is not None
            else f"all {int(np.prod(self.shape))} entries"
        )
        shape = "x".join(str(s) for s in self.shape)
        return (
            f"step-size study: {self.name}, input {shape}, seed {self.seed}, {what}, "
            f"{self.method} differences"
        )

    def table(self) -> str:
        """The sweep as text: one row per step, the harness's step marked, then the minimum."""
        exponent = "1/3" if self.method == "central" else "1/5"
        if self.entry is None:
            head = (
                "error = ||numeric - analytic|| / ||analytic|| over all entries; "
                "entry i is stepped by h * max(1, |x_i|)"
            )
        else:
            head = "error = |numeric - analytic| of this entry; h is the absolute step"
        rows: List[Tuple[float, str]] = [
            (
                float(h),
                f"{h:10.2e}  {_num(e):>10}  {_num(t):>10}  {_num(r):>10}",
            )
            for h, e, t, r in zip(self.steps, self.error, self.truncation, self.roundoff)
        ]
        chosen_model = self._model_at(self.chosen_step)
        rows.append(
            (
                self.chosen_step,
                f"{self.chosen_step:10.2e}  {_num(self.chosen_error):>10}  "
                f"{_num(chosen_model[0]):>10}  {_num(chosen_model[1]):>10}  "
                f"<- gradcheck's step, eps^({exponent})"
                + (" * max(1, |x_i|)" if self.entry is None else " * max(1, |x|)"),
            )
        )
        rows.sort(key=lambda row: row[0])
        best_h, best_e = self.best
        lines = [
            self.describe(),
            head,
            f"{'h':>10}  {'error':>10}  {'truncation':>10}  {'round-off':>10}",
            *(text for _, text in rows),
            f"smallest error {best_e:.2e} at h = {best_h:.2e}; gradcheck's step "
            f"h = {self.chosen_step:.2e} gives {self.chosen_error:.2e}",
        ]
        return "\n".join(lines) + "\n"

    def _model_at(self, h: float) -> Tuple[float, float]:
        """The model lines at ``h``, interpolated on the log-log grid (they are straight)."""
        logs = np.log10(self.steps)
        out = []
        for line in (self.truncation, self.roundoff):
            positive = line > 0
            if not positive.any():
                out.append(0.0)
                continue
            out.append(
                float(10 ** np.interp(np.log10(h), logs[positive], np.log10(line[positive])))
            )
        return out[0], out[1]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "layer": self.name,
            "shape": list(self.shape),
            "seed": self.seed,
            "method": self.method,
            "entry": None if self.entry is None else list(self.entry),
            "steps": self.steps.tolist(),
            "error": self.error.tolist(),
            "truncation": self.truncation.tolist(),
            "roundoff": self.roundoff.tolist(),
            "chosen_step": self.chosen_step,
            "chosen_error": self.chosen_error,
        }


def _num(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.2e}"


def _analytic(
    layer: Any, x: Array, seed: int, dy: Optional[Array], target: Optional[Array]
) -> Tuple[Array, Array, Optional[Array]]:
    """(analytic gradient, weights ``w`` of ``L = <F, w>``, labels) after one forward/backward."""
    if is_loss_layer(layer):
        if target is None:
            n_classes = int(getattr(layer, "n_classes", None) or x.shape[-1])
            rng = harness_rng(seed, PURPOSE_DEFAULT_LABELS)
            target = rng.integers(0, n_classes, size=x.shape[:-1])
        layer.forward(x, target)
        grad = layer.backward()
        w = np.ones(())
    else:
        y = np.asarray(layer.forward(x))
        if dy is None:
            dy = harness_rng(seed, PURPOSE_DY).standard_normal(y.shape)
        grad = layer.backward(dy)
        w = np.asarray(dy, dtype=np.float64)
    if grad is None:
        raise PlotError("backward returned None")
    grad = np.asarray(grad)
    if grad.shape != x.shape or not np.issubdtype(grad.dtype, np.floating):
        raise PlotError(
            f"backward returned {grad.dtype} of shape {grad.shape}; expected float of {x.shape}"
        )
    if not np.all(np.isfinite(grad)):
        raise PlotError("backward returned NaN or Inf")
    return np.array(grad, dtype=np.float64), w, target


def step_sweep(
    layer: Any,
    x: Any,
    *,
    seed: int = 0,
    method: str = "central",
    entry: Optional[Sequence[int]] = None,
    steps: Optional[Array] = None,
    name: Optional[str] = None,
    dy: Optional[Array] = None,
    target: Optional[Array] = None,
) -> StepSweep:
    """Measure the error of ``method`` against the layer's backward over ``steps``.

    ``x`` is the input (float64); ``dy`` (or a loss layer's ``target``) defaults to what
    :func:`gradcheck.check_layer` draws for ``seed``. ``entry`` picks one input entry (absolute
    error); by default all entries are studied (relative 2-norm error). ``steps`` defaults to
    :func:`step_grid`. Raises :class:`PlotError` if the backward returns garbage; exceptions of
    the layer's forward propagate.
    """
    if method not in STENCILS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(STEP_METHODS)}")
    x = np.array(x, dtype=np.float64)
    if entry is not None:
        entry = tuple(int(i) for i in entry)
        if len(entry) != x.ndim or any(not 0 <= i < n for i, n in zip(entry, x.shape)):
            raise ValueError(f"entry {entry} is outside an input of shape {x.shape}")
    grid = step_grid() if steps is None else np.asarray(steps, dtype=np.float64)
    grad, w, target = _analytic(layer, x, seed, dy, target)
    objective = LayerObjective(layer, x, target, np.dtype(np.float64))
    order, stencil = STENCILS[method]
    eps = float(np.finfo(np.float64).eps)

    flat = x.ravel()
    idx = (
        np.arange(flat.size)
        if entry is None
        else np.array([np.ravel_multi_index(entry, x.shape)], dtype=np.intp)
    )
    # One entry: absolute steps. All entries: the harness's scaling, h_i = h * max(1, |x_i|).
    scale = np.ones(1) if entry is not None else np.maximum(1.0, np.abs(flat[idx]))
    analytic = grad.ravel()[idx]
    norm = max(float(np.linalg.norm(analytic)), float(np.finfo(np.float64).tiny))

    def contract(values: Array) -> Array:
        return values.reshape(values.shape[0], -1) @ w.reshape(-1)

    def outputs(points: Array) -> Array:
        return np.concatenate(
            [objective.outputs_x(points[lo : lo + _CHUNK]) for lo in range(0, len(points), _CHUNK)]
        )

    def differences(h: Array, s: float) -> Array:
        """``F(x + s h_i e_i) - F(x - s h_i e_i)`` for every studied entry ``i``."""
        plus = np.repeat(flat[None], len(idx), axis=0)
        minus = plus.copy()
        rows = np.arange(len(idx))
        plus[rows, idx] += s * h
        minus[rows, idx] -= s * h
        return outputs(plus.reshape(-1, *x.shape)) - outputs(minus.reshape(-1, *x.shape))

    def exact_steps(h_nominal: Array) -> Array:
        # Rounded so that x_i +- h is exactly the distance the formula divides by.
        return (flat[idx] + h_nominal) - flat[idx]

    def derivative(h_nominal: Array) -> Array:
        """The stencil's derivative estimate per studied entry, at nominal steps ``h_nominal``."""
        h = exact_steps(h_nominal)
        total = np.zeros(len(idx))
        for s, c in stencil:
            with np.errstate(divide="ignore", invalid="ignore"):
                total += c * contract(differences(h, s)) / h
        return np.where(h > 0, total, np.nan)

    def measure(values: Array) -> float:
        if entry is not None:
            return float(abs(values[0] - analytic[0]))
        return float(np.linalg.norm(values - analytic) / norm)

    def size(per_entry: Array) -> Array:
        """Per-entry model errors ``(n_steps, n_entries)`` to the measure's units."""
        if entry is not None:
            return per_entry[:, 0]
        return np.linalg.norm(per_entry, axis=1) / norm

    error = np.array([measure(derivative(t * scale)) for t in grid])

    # Only the outputs a perturbation of entry i touches carry rounding into its difference;
    # the others cancel exactly (an elementwise layer touches one output per entry).
    y0 = outputs(x[None])[0]
    h_ref = _REFERENCE_STEP[method] * scale
    touched = differences(exact_steps(h_ref), 1.0) != 0.0
    magnitude = touched.reshape(len(idx), -1) @ np.ravel(np.abs(y0) * np.abs(w))
    weight = sum(2.0 * abs(c) for _, c in stencil)
    roundoff = size(weight * eps * magnitude[None] / (grid[:, None] * scale[None]))

    d1, d2 = derivative(h_ref), derivative(2.0 * h_ref)
    spread = np.abs(d1 - d2)
    # A spread within round-off says nothing about truncation (a linear layer has none): no line.
    resolved = spread > 2.0 * weight * eps * magnitude / h_ref
    coefficient = np.where(resolved, spread, 0.0) / ((2.0**order - 1.0) * h_ref**order)
    truncation = size(coefficient * (grid[:, None] * scale[None]) ** order)

    if entry is not None:
        chosen = float(base_step(method, np.asarray(flat[idx[0]])))
        chosen_error = measure(derivative(np.array([chosen])))
    else:
        chosen = float(base_step(method, np.asarray(0.0)))
        chosen_error = measure(derivative(chosen * scale))
    return StepSweep(
        name=name or getattr(layer, "name", None) or type(layer).__name__,
        shape=tuple(x.shape),
        seed=seed,
        method=method,
        entry=entry,  # type: ignore[arg-type]
        steps=grid,
        error=error,
        truncation=truncation,
        roundoff=roundoff,
        chosen_step=chosen,
        chosen_error=chosen_error,
    )


def draw_step_sweep(sweep: StepSweep, path: str, dpi: int = 120) -> None:
    """Write the sweep as a log-log PNG to ``path`` (atomically); needs matplotlib."""
    require_matplotlib()
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global state and no GUI backend, so this works headless.
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    steps, error = sweep.steps, sweep.error
    shown = np.isfinite(error) & (error > 0)
    ax.loglog(steps[shown], error[shown], "o-", ms=3.5, lw=1.2, color="C0", label="measured error")
    if np.any(sweep.truncation > 0):
        ax.loglog(
            steps,
            sweep.truncation,
            "--",
            color="C1",
            label=rf"truncation $\propto h^{sweep.order}$ (the estimator's own estimate)",
        )
    ax.loglog(
        steps,
        sweep.roundoff,
        ":",
        color="C2",
        lw=1.6,
        label=r"round-off bound $\propto \epsilon / h$",
    )
    ax.axvline(sweep.chosen_step, color="C3", lw=1.0, alpha=0.7)
    if np.isfinite(sweep.chosen_error) and sweep.chosen_error > 0:
        ax.loglog(
            [sweep.chosen_step],
            [sweep.chosen_error],
            "*",
            ms=13,
            color="C3",
            label=f"gradcheck's step h = {sweep.chosen_step:.1e}",
        )
    if shown.any():
        low = float(error[shown].min())
        high = float(error[shown].max())
        ax.set_ylim(low / 30.0, high * 30.0)
    ax.set_xlim(steps[0] / 1.5, steps[-1] * 1.5)
    if sweep.entry is None:
        ax.set_xlabel(r"step $h$ (entry $i$ is stepped by $h \cdot \max(1, |x_i|)$)")
        ax.set_ylabel(r"relative error $\|n - a\| / \|a\|$")
    else:
        ax.set_xlabel("step h")
        ax.set_ylabel(f"absolute error of entry {tuple(sweep.entry)}")
    ax.set_title(sweep.describe(), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center")

    def write(fh: IO[bytes]) -> None:
        fig.savefig(fh, format="png", dpi=dpi)

    write.binary = True  # type: ignore[attr-defined]
    write_atomic(path, write)


# -- error pictures of failed checks ---------------------------------------------------------


def drawable_arguments(result: CheckResult) -> List[ArgumentResult]:
    """The arguments of ``result`` an error picture shows: failing, full mode, arrays kept."""
    return [
        a
        for a in result.arguments
        if a.status == "fail"
        and a.mode == "full"
        and a.analytic is not None
        and a.numeric is not None
        and a.error_estimate is not None
    ]


def allowed_difference(arg: ArgumentResult) -> Array:
    """Per entry, what ``|analytic - numeric|`` may be: the tolerance plus the estimate's error
    (times ``FAIL_MARGIN``, as the fail test allows).

    The tolerance of every entry is read from :func:`compare` itself (asked for all entries,
    with the comparison's own ``rtol``, ``atol`` and ``small_floor``), not recomputed here.
    """
    a, n, e = arg.analytic, arg.numeric, arg.error_estimate
    assert a is not None and n is not None and e is not None
    c = arg.comparison
    full = compare(
        a, n, e, rtol=c.rtol, atol=c.atol, small_floor=c.small_floor, n_worst=int(np.size(a))
    )
    allowed = np.empty(np.shape(a), dtype=np.float64)
    for entry in full.worst:
        allowed[entry.index] = entry.tolerance + FAIL_MARGIN * entry.error_estimate
    return allowed


def fold_2d(a: Array, name: str) -> Tuple[Array, str, str]:
    """``a`` as a matrix for an image, with the labels of its row and column axes.

    A vector is one row; a matrix is itself (rows are examples for the input ``x``); more axes
    are folded into the rows, the first outermost, the last axis staying the columns.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return a.reshape(1, 1), "", ""
    if a.ndim == 1:
        return a.reshape(1, -1), "", f"{name} index (axis 0, {a.shape[0]})"
    if a.ndim == 2:
        if name == "x":
            return a, f"axis 0: examples (N = {a.shape[0]})", f"axis 1: features (D = {a.shape[1]})"
        return a, f"axis 0 ({a.shape[0]})", f"axis 1 ({a.shape[1]})"
    lead = " x ".join(str(s) for s in a.shape[:-1])
    rows = f"axes 0..{a.ndim - 2} folded ({lead}, axis 0 outermost)"
    return a.reshape(-1, a.shape[-1]), rows, f"axis {a.ndim - 1} ({a.shape[-1]})"


def _title(arg: ArgumentResult) -> str:
    c = arg.comparison
    head = f"{arg.kind} {arg.name!r}: {c.n_failed}/{c.n_entries} entries fail"
    if arg.diagnosis is not None:
        text = f"{head}. {arg.diagnosis.kind}: {arg.diagnosis.message}"
    else:
        text = f"{head}. No mistake signature explains the discrepancy."
    return "\n".join(textwrap.wrap(text, 120))


def _symlog_ticks(big: float) -> List[float]:
    """A few colour-bar ticks for a symmetric-log scale reaching ``big``: 0, +-1, +-10^k."""
    top = max(1, int(np.ceil(np.log10(big))))
    step = max(1, int(np.ceil(top / 3)))
    powers = [10.0**k for k in range(0, top + 1, step)]
    return sorted([0.0, *powers, *(-p for p in powers)])


def _panel_height(values: Array) -> float:
    return 1.9 if values.shape[0] == 1 else 3.4


def draw_error_picture(result: CheckResult, path: str, dpi: int = 110) -> None:
    """Write the error picture of ``result`` to ``path`` (PNG, atomically); needs matplotlib.

    One row per :func:`drawable_arguments` entry, titled with its mistake signature:
    ``(analytic - numeric) / allowed`` on a symmetric-log colour scale (linear inside
    ``[-1, 1]``, where entries pass; crosses mark the failing entries of arrays up to 400
    entries), then analytic and numeric on one shared colour scale. Raises ``ValueError`` when
    the check has nothing to draw.
    """
    args = drawable_arguments(result)
    if not args:
        raise ValueError(f"{result.summary()}: no failing full-mode argument to draw")
    require_matplotlib()
    from matplotlib.colors import SymLogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    folded = [
        (arg, *fold_2d(np.asarray(arg.analytic) - np.asarray(arg.numeric), arg.name))
        for arg in args
    ]
    heights = [_panel_height(f[1]) + 0.9 for f in folded]
    fig = Figure(figsize=(14.0, 0.5 + sum(heights)), layout="constrained")
    shape = "x".join(str(s) for s in result.shape)
    fig.suptitle(
        f"{result.layer} [{shape}, seed {result.seed}]: {result.status}"
        + (f"  (reproduce: {result.reproduce})" if result.reproduce else ""),
        fontsize=10,
    )
    subfigs = fig.subfigures(len(args), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, (arg, _, ylabel, xlabel) in zip(subfigs, folded):
        sub.suptitle(_title(arg), fontsize=9.5, weight="bold")
        row = sub.subplots(1, 3)
        a, n = np.asarray(arg.analytic), np.asarray(arg.numeric)
        ratio = (a - n) / np.maximum(allowed_difference(arg), np.finfo(np.float64).tiny)
        ratio2 = fold_2d(ratio, arg.name)[0]
        a2, n2 = fold_2d(a, arg.name)[0], fold_2d(n, arg.name)[0]
        big = max(float(np.max(np.abs(ratio2))), 10.0)
        image = row[0].imshow(
            ratio2,
            cmap="RdBu_r",
            norm=SymLogNorm(linthresh=1.0, vmin=-big, vmax=big, base=10),
            aspect="auto",
            interpolation="nearest",
        )
        bar = sub.colorbar(image, ax=row[0], ticks=_symlog_ticks(big))
        bar.ax.tick_params(labelsize=7)
        failed = np.argwhere(np.abs(ratio2) > 1.0)
        if 0 < len(failed) <= 400:
            row[0].scatter(failed[:, 1], failed[:, 0], marker="x", s=12, c="k", linewidths=0.6)
        row[0].set_title("(analytic - numeric) / allowed;  |.| > 1 fails (x)", fontsize=9)
        scale = max(float(np.max(np.abs(a2))), float(np.max(np.abs(n2))), 1e-300)
        for ax, values, what in ((row[1], a2, "analytic (backward)"), (row[2], n2, "numeric")):
            im = ax.imshow(
                values,
                cmap="PuOr_r",
                vmin=-scale,
                vmax=scale,
                aspect="auto",
                interpolation="nearest",
            )
            sub.colorbar(im, ax=ax).ax.tick_params(labelsize=7)
            ax.set_title(what, fontsize=9)
        for ax in row:
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if ratio2.shape[0] == 1:
                ax.set_yticks([])

    def write(fh: IO[bytes]) -> None:
        fig.savefig(fh, format="png", dpi=dpi)

    write.binary = True  # type: ignore[attr-defined]
    write_atomic(path, write)


def prepare_picture_folder(folder: str) -> None:
    """Make sure error pictures can be written to ``folder`` (created if missing) and that
    matplotlib imports; ``ValueError`` or :class:`MatplotlibMissing` say what is wrong."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--plots {folder}: exists and is not a folder")
    require_matplotlib()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--plots {folder}: cannot create the folder: {exc}") from exc
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--plots {folder}: the folder is not writable")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "layer"


def write_error_pictures(
    results: Sequence[CheckResult], folder: str, link_from: Optional[str] = None
) -> Dict[int, str]:
    """One PNG per failing check with something to draw, in ``folder``; needs matplotlib.

    Files are named ``NNN-<layer>-<shape>-seed<seed>.png`` (``NNN`` the result's position).
    Returns ``{index in results: link}``, the link relative to the folder ``link_from`` (where
    the Markdown report is written), or the path as written when ``link_from`` is ``None``.
    """
    prepare_picture_folder(folder)
    links: Dict[int, str] = {}
    for i, r in enumerate(results):
        if r.status != "fail" or not drawable_arguments(r):
            continue
        shape = "x".join(str(s) for s in r.shape)
        path = os.path.join(folder, f"{i:03d}-{_slug(r.layer)}-{shape}-seed{r.seed}.png")
        draw_error_picture(r, path)
        link = path if link_from is None else os.path.relpath(os.path.abspath(path), link_from)
        links[i] = link.replace(os.sep, "/")
    return links

"""One check of one layer on one input: validate, run, estimate, compare.

:func:`check_layer` is the harness's central function. It runs the layer's forward and backward
once, records every contract the layer breaks as a named :class:`~gradcheck.result.Finding`
(arguments mutated in place, a backward that is not repeatable or not linear in ``dy``, ``None``,
wrong shapes, NaN or Inf), then estimates the gradient of ``L(x) = <forward(x), dy>`` numerically
for the input and every parameter and compares, entry by entry, with what backward returned.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .compare import (
    FAIL_MARGIN,
    Comparison,
    Entry,
    compare,
    default_resolve_atol,
    default_rtol,
    default_small_floor,
    failing_entries,
    magnitude_bands,
    scaled_norm,
    sub_floor_bands,
    typical_gradient,
)
from .contracts import Abort, LayerCalls, nonfinite_index
from .diagnosis import diagnose_results
from .finite_diff import (
    PROBE_FACTOR,
    RECOVERY_FAILED,
    RECOVERY_NONE,
    RECOVERY_TEXT,
    Estimate,
    apart,
    base_step,
    complex_step_holds,
    directional_derivatives,
    hidden_by_unmoved,
    partial_derivatives,
    points_per_direction,
    steady_under_refinement,
    typical_scale,
    unit_directions,
)
from .objective import LayerObjective, blas_single_thread, is_loss_layer, layer_name, layer_params
from .options import DEFAULTS, CheckOptions
from .options import MODES as MODES  # gradcheck.check.MODES: the CLI imports it from here
from .result import ArgumentResult, CheckResult, Finding, worst_status
from .state import LayerState
from .streams import (
    PURPOSE_COMPLEX_TRIAL,
    PURPOSE_DEFAULT_LABELS,
    PURPOSE_DIRECTIONS,
    PURPOSE_LOCALIZE,
    harness_rng,
)

Array = np.ndarray

# The relative gradient error for which a directional check states its miss probability.
REFERENCE_RELATIVE_ERROR = 1e-4

# What the default check must resolve: a single entry wrong by this relative amount (of a
# typical entry) slips through the directional screen with probability at most MISS_TARGET.
TARGET_ENTRY_ERROR = 1e-6
MISS_TARGET = 1e-6
# Gradient entries more than BAND_RATIO (compare.py) above the median are screened in bands of
# their own; a band of at most SMALL_BAND entries is estimated entry by entry.
SMALL_BAND = 8
# Entries whose whole value is under the fail floor of the median band (a column scaled by 1e-9,
# zeros where the truth is not) are screened in bands of their own by this many directions each.
SUB_FLOOR_DIRECTIONS = 2
# Adaptive screens draw directions in batches until the target is resolved or this many are used.
DIRECTION_BATCHES: Tuple[int, ...] = (8, 8, 16, 32)
# The fail test's absolute floor for a directional derivative, as a fraction of rtol * ||g||
# (the floor the estimate must resolve): it covers the rounding of the projected analytic
# gradient on a direction whose projection is small by chance, while making each direction
# about four times as sensitive to a single wrong entry as a floor of rtol * ||g|| would.
DIRECTIONAL_FLOOR = 0.25
# The default localization budget, in forward evaluations, is this many input entries' worth
# (2^28 floats: about a second of a cheap elementwise forward), and never less than MIN_BUDGET.
BUDGET_ENTRIES = 2**28
MIN_BUDGET = 256
# A claimed failure is estimated again at smaller steps for at most this many entries or
# directions, the worst first (each costs 18 forward evaluations).
REFINEMENT_CAP = 256
# A directional screen that central differences leave unresolved is tried with five-point
# before richardson (6 evaluations a direction instead of about 13) when its largest error is
# within this factor of the floor to resolve: five-point's step is eps^(1/5) against
# eps^(1/3), so the rounding in its estimate is about 100 times smaller; past this factor it
# would rarely resolve and only add its cost.
FIVE_POINT_REACH = 30.0
# Entries a full check estimates with central differences first, to choose its stencil.
FULL_TRIAL = 32
# ... and switches to five-point for all when central leaves more than this fraction unresolved
# (break-even at 1/3: 4 + 6 f = 6 evaluations an entry; a little above it for the sample's sake).
FULL_TRIAL_SWITCH = 0.4

# Steps, as multiples of the base step, at which full mode estimates again an entry that passed
# only at the gradient-wide floor (its error, the rounding of large outputs it moves, above its
# own tolerance): rounding falls as the step grows, so a wrong entry of 1e-6 beside outputs of
# 1e6 is resolved at the larger steps where it hid at the base one.
COARSENING: Tuple[float, ...] = (16.0, 256.0, 4096.0)
# ... and at which it estimates again an entry left unresolved (its error over what it had to
# resolve): a richardson error estimate is not monotone in the step (a whitening's eigenvector
# rotation within the step inflates it at one step and not at a quarter of it). Finer steps
# only: a longer one can average away a feature (a wiggle) the estimate was unresolved on.
RESTEPPING: Tuple[float, ...] = (0.25, 0.0625)
# ... only where at most this many entries are unresolved (each costs two richardson estimates).
RESTEP_CAP = 16
# ... when that error is more than this many times the entry's own tolerance: a wrong entry
# can then hide in up to (1 + 2 x 8) own tolerances, about 2.5e-7 of the entry, inside the
# default check's target of 1e-6 (TARGET_ENTRY_ERROR).
COARSE_TRIGGER = 8.0

# Inputs at least this large are evaluated with single-threaded BLAS: the stacked evaluations
# are many tiny matrix problems, where BLAS threads cost far more than they save.
_THREAD_LIMIT_SIZE = 256


def miss_probability(thresholds: Array, gradient_norm: float, relative_error: float) -> float:
    """Probability that a gradient wrong by ``relative_error`` passes every direction.

    For a Gaussian direction ``v``, the error ``e`` of a wrong gradient projects to
    ``<e, v> ~ N(0, ||e||^2)`` with ``||e|| = relative_error * ||g||``. It slips through
    direction ``j`` when ``|<e, v>|`` stays under that direction's threshold ``tau_j``, with
    probability ``erf(tau_j / (sqrt(2) ||e||))``; directions are independent, so the
    probabilities multiply.
    """
    from scipy.special import erf

    with np.errstate(over="ignore"):
        err = relative_error * np.float64(gradient_norm)
    if not err > 0 or not np.isfinite(err):
        return 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.asarray(thresholds, dtype=np.float64) / (np.sqrt(2.0) * err)
    # A direction without a finite threshold resolves nothing: it cannot catch the error.
    ratio = np.where(np.isfinite(ratio), ratio, np.inf)
    return float(np.prod(erf(ratio)))


def resolved_error(thresholds: Array, scale: float, target: float = MISS_TARGET) -> float:
    """The smallest error ``delta = r * scale`` that slips through every direction with
    probability at most ``target``, as the relative size ``r`` (inf if none does).

    An error vector ``e`` projects onto a Gaussian direction as ``N(0, ||e||^2)``; a single wrong
    entry with error ``delta`` projects as ``N(0, delta^2)``. So with ``scale`` a typical gradient
    entry (``||g|| / sqrt(n)``) this is the single-entry relative error resolved, and with
    ``scale = ||g||`` the whole-gradient relative error.
    """
    if not scale > 0 or not np.isfinite(scale):
        return float("inf")
    if miss_probability(thresholds, scale, 1e6) > target:
        return float("inf")
    lo, hi = -20.0, 6.0  # log10 of r
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if miss_probability(thresholds, scale, 10.0**mid) <= target:
            hi = mid
        else:
            lo = mid
    return float(10.0**hi)


# Beyond this ratio of the largest to the smallest nonzero magnitude of an input or parameter,
# every estimate probes for output changes lost to rounding (about 1/eps^(1/2)).
EXTREME_RANGE = 1e8

# Below this a typical gradient entry counts as zero when stating relative resolutions.
TINY_SCALE = 1e-300


def dynamic_range(a: Any) -> float:
    """``max |a_i| / min |a_i|`` over the finite nonzero entries (1 when there are none)."""
    try:
        mag = np.abs(np.ravel(np.asarray(a, dtype=np.float64)))
    except (TypeError, ValueError):
        return 1.0
    mag = mag[np.isfinite(mag) & (mag > 0)]
    with np.errstate(over="ignore"):
        return float(mag.max() / mag.min()) if mag.size else 1.0


def _rows(v: Array, idx: Array) -> Array:
    """The directions ``v[idx]``: a stack of directions as the estimators ask for them."""
    return v[idx]


def _project(v: Array, analytic: Array) -> Array:
    """``<v_j, analytic>`` for every direction ``v_j`` (rows of ``v``), computed scaled so that
    a finite gradient near the top of the float range does not overflow the sum."""
    flat = analytic.ravel()
    top = float(np.max(np.abs(flat), initial=0.0))
    if top == 0.0 or not np.isfinite(top):
        return np.sum(v.reshape(v.shape[0], -1) * flat, axis=1)
    return np.sum(v.reshape(v.shape[0], -1) * (flat / top), axis=1) * top


def _scatter(est: Estimate, indices: Array, shape: Tuple[int, ...]) -> Estimate:
    """An estimate over ``indices`` (flat) seen as one over the whole array, for its recovery
    codes only (values and errors are not scattered)."""
    if est.recovery is None or est.nonfinite_side is None:
        return est
    recovery = np.full(int(np.prod(shape)), RECOVERY_NONE)
    side = np.zeros(int(np.prod(shape)))
    recovery[indices] = est.recovery
    side[indices] = est.nonfinite_side
    return Estimate(
        est.value,
        est.error,
        est.method,
        est.step,
        est.evaluations,
        recovery.reshape(shape),
        side.reshape(shape),
    )


def _entry_label(key: str, index: Tuple[int, ...]) -> str:
    return f"{key}[{', '.join(str(i) for i in index)}]"


def _nonfinite_finding(key: str, est: Estimate, shape: Tuple[int, ...], mode: str) -> List[Finding]:
    """Findings naming where the forward was not finite (or raised) during the estimate."""
    if est.recovery is None or est.nonfinite_side is None:
        return []
    recovery = np.ravel(est.recovery)
    sides = np.ravel(est.nonfinite_side)
    out: List[Finding] = []
    for code, text in RECOVERY_TEXT.items():
        where = np.flatnonzero(recovery == code)
        if where.size == 0:
            continue
        first = int(where[0])
        side = {1.0: "+ h", -1.0: "- h", 2.0: "+ h and - h"}.get(float(sides[first]), "+- h")
        if mode == "full":
            label = _entry_label(key, tuple(int(i) for i in np.unravel_index(first, shape)))
            what = f"{where.size} entr{'y' if where.size == 1 else 'ies'} of {key}"
        else:
            label = f"{key} + t v (direction {first})"
            what = f"{where.size} of {recovery.size} directions of {key}"
        failed = code == RECOVERY_FAILED
        out.append(
            Finding(
                "estimate-nonfinite" if failed else "estimate-nonfinite-recovered",
                "warning" if failed else "info",
                f"the forward is not finite (or raised) at {label} {side}; {what} estimated "
                f"with {text}" + ("; inconclusive there" if failed else ""),
            )
        )
    return out


class _Checker:
    """The estimation and comparison of one :func:`check_layer` call; each method is one step.

    The calls into the layer and their contracts are ``self.calls``
    (:class:`~gradcheck.contracts.LayerCalls`); what those established (``x``, ``dy``, the
    parameters, the findings) is read through the properties below.
    """

    def __init__(
        self,
        layer: Any,
        x: Array,
        options: CheckOptions,
        *,
        dy: Optional[Array],
        target: Optional[Array],
        seed: int,
    ) -> None:
        self.calls = LayerCalls(layer, x, options, dy=dy, target=target, seed=seed)
        self.options = options
        budget = options.budget
        self.budget = default_budget(x.size) if budget is None else int(budget)
        # Arrays spanning an extreme range of magnitudes: a perturbation may move some outputs
        # below their ulp and others not, so every estimate probes for changes lost that way.
        self.probe_all = bool(
            dynamic_range(x) > EXTREME_RANGE
            or any(dynamic_range(p) > EXTREME_RANGE for p in layer_params(layer).values())
        )
        self.probe_unmoved = self.probe_all
        # Per argument: the escalation stages full mode goes through (see plan_full).
        self.full_stages: Dict[str, List[str]] = {}
        self.rtol = self.calls.rtol
        self.atol = options.atol
        self.mode = options.mode
        self.method = options.method
        self.n_directions = options.directions
        self.chunk = options.chunk if options.chunk else default_chunk(x.size)
        self.n_worst = options.n_worst
        self.escalate = options.escalate
        self.dtype = self.calls.dtype

    # -- what the contract checks established --------------------------------------------------

    @property
    def layer(self) -> Any:
        return self.calls.layer

    @property
    def x(self) -> Array:
        return self.calls.x

    @property
    def target(self) -> Optional[Array]:
        return self.calls.target

    @property
    def seed(self) -> int:
        return self.calls.seed

    @property
    def findings(self) -> List[Finding]:
        return self.calls.findings

    @property
    def backward_noise(self) -> Dict[str, Array]:
        return self.calls.backward_noise

    @property
    def spectrum(self) -> Optional[Dict[str, float]]:
        return self.calls.spectrum

    @property
    def y(self) -> Array:
        return self.calls.y

    @property
    def dy(self) -> Array:
        return self.calls.dy

    @property
    def params(self) -> Dict[str, Array]:
        return self.calls.params

    @property
    def param_keys(self) -> List[str]:
        return self.calls.param_keys

    def run_analytic(self) -> Dict[str, Array]:
        """Forward, backward, and the contract checks that need nothing numeric."""
        return self.calls.run_analytic()

    # -- the estimate ----------------------------------------------------------------------------

    def estimate(
        self,
        key: str,
        analytic: Array,
        mode: str,
        method: Optional[str] = None,
        directions: Optional[int] = None,
    ) -> ArgumentResult:
        """Numerical estimate for one argument in ``mode`` ("full" or "directional"), compared."""
        base, outputs, kind = self.argument(key)
        method = self.method_for(key, base, outputs) if method is None else method
        if mode == "full":
            extra = 0
            if method == "central" and self.escalate:
                method, self.full_stages[key], extra = self.plan_full(key, analytic, base, outputs)
            est = partial_derivatives(
                outputs,
                base,
                self.dy,
                method=method,
                chunk=self.chunk,
                probe=self.probe_all,
                unmoved=self.probe_unmoved,
            )
            est = dataclasses.replace(est, evaluations=est.evaluations + extra)
            self.last_full = est
            self.note_nonfinite(key, est, base.shape, "full")
            est = dataclasses.replace(est, error=est.error + self.analytic_rounding(key))
            cmp = self.compare_full(key, analytic, est.value, est.error)
            if self.is_final(method):
                est, cmp = self.confirm_full(key, analytic, est, cmp)
            est, cmp = self.coarsen_full(key, analytic, est, cmp)
            return self.full_result(key, kind, method, cmp, est.evaluations, analytic, est)
        return self.directional(key, kind, base, outputs, analytic, method, directions)

    def plan_full(
        self, key: str, analytic: Array, base: Array, outputs: Callable[[Array], Array]
    ) -> Tuple[str, List[str], int]:
        """The stencils a full check of ``key`` goes through, chosen from a trial: (the first
        method, the escalation stages after it, the forward evaluations the trial cost).

        Full mode escalates every entry central differences leave unresolved, through
        five-point (6 evaluations an entry) to richardson (20 and more). ``FULL_TRIAL`` entries
        are estimated first: if central leaves more than ``FULL_TRIAL_SWITCH`` of them
        unresolved, five-point is tried on those; where it resolves most, every entry starts
        with five-point (6 an entry instead of 4 + 6), and where it resolves few (a function
        that turns on the scale of five-point's longer step), the five-point stage is skipped.
        The sample is drawn by a generator seeded with the size, not the harness's streams: the
        plan is a function of the input alone; the backward's measured rounding is added to the
        trial's errors as in the full estimate.
        """
        default = ["five-point", "richardson"]
        size = analytic.size
        if size < 4 * FULL_TRIAL:
            return "central", default, 0
        # Spread over the array (evenly spaced indices would fall on a few columns).
        sample = np.sort(np.random.default_rng(size).choice(size, FULL_TRIAL, replace=False))
        rtol = default_rtol() if self.rtol is None else self.rtol
        # The floor the whole argument's comparison will use (the largest entry's), not the
        # sample's.
        floor = default_resolve_atol(analytic, analytic, rtol) if self.atol is None else self.atol
        rounding = np.ravel(self.analytic_rounding(key))

        def unresolved(method: str, idx: Array) -> Tuple[Array, int]:
            trial = partial_derivatives(
                outputs, base, self.dy, method=method, indices=idx, chunk=self.chunk
            )
            with np.errstate(invalid="ignore"):
                ok = trial.error + rounding[idx] <= floor + rtol * np.abs(trial.value)
            return idx[~ok], trial.evaluations

        left, spent = unresolved("central", sample)
        if left.size <= FULL_TRIAL_SWITCH * FULL_TRIAL:
            return "central", default, spent
        still, more = unresolved("five-point", left)
        spent += more
        if still.size * 2 > left.size:
            return "central", ["richardson"], spent
        self.findings.append(
            Finding(
                "five-point-for-full",
                "info",
                f"{key}: central differences could not resolve {left.size} of {FULL_TRIAL} "
                "trial entries and five-point could, so full mode estimated every entry with "
                "five-point stencils (escalating to richardson only where those cannot)",
            )
        )
        return "five-point", ["richardson"], spent

    def is_final(self, method: str) -> bool:
        """Whether an estimate with ``method`` is the last word: central and five-point
        estimates that do not pass are repeated with richardson when ``escalate`` is on."""
        return not (self.escalate and method in ("central", "five-point"))

    def refuted(
        self,
        key: str,
        candidates: Array,
        directions: Callable[[Array], Array],
        est: Estimate,
        badness: Array,
        label: Callable[[int], str],
    ) -> Tuple[Array, int]:
        """Which of the claimed failures ``candidates`` (flat indices into ``est``) cannot stand,
        and the forward evaluations that cost.

        Each is estimated again at smaller steps (:func:`steady_under_refinement`): an estimate
        that moves there was not converged, so its disagreement is no proof (the entry is
        inconclusive). At most ``REFINEMENT_CAP`` are re-estimated, the worst (``badness``)
        first; if any of those moves, the unchecked ones cannot stand either.
        """
        base, outputs, _ = self.argument(key)
        order = candidates[np.argsort(-badness[candidates], kind="stable")]
        checked, unchecked = order[:REFINEMENT_CAP], order[REFINEMENT_CAP:]
        value, error, step = (np.ravel(a) for a in (est.value, est.error, est.step))
        ref = steady_under_refinement(
            outputs,
            base,
            self.dy,
            lambda j: directions(checked[j]),
            checked.size,
            step[checked],
            value[checked],
            error[checked],
            chunk=self.chunk,
        )
        moved = checked[~ref.steady]
        if not moved.size:
            return moved, ref.evaluations
        first = int(np.flatnonzero(~ref.steady)[0])
        self.findings.append(
            Finding(
                "estimate-not-converged",
                "warning",
                f"{key}: {moved.size} of {checked.size} claimed disagreements moved at smaller "
                f"steps, e.g. {label(int(checked[first]))}: {value[checked[first]]:.6e} at step "
                f"{step[checked[first]]:.1e}, {ref.moved_value[first]:.6e} at step "
                f"{ref.moved_step[first]:.1e}; the function bends on a scale below the step, so "
                "those estimates confirm nothing (inconclusive there)",
            )
        )
        return np.concatenate([moved, unchecked]), ref.evaluations

    def add_hidden_share(
        self,
        key: str,
        analytic: Array,
        value: Array,
        error: Array,
        cmp: Comparison,
        directions: Callable[[Array], Array],
        step: Array,
        atol: Optional[Array] = None,
        small_floor: Optional[Array] = None,
    ) -> Tuple[Array, int]:
        """``error`` (flat) with, for every claimed failure that only the test for entries
        below the floor makes (:mod:`gradcheck.compare`), and for every one where the outputs
        span an extreme range (``probe_all``), the share of the derivative outputs unmoved at
        the probe step can hide added (:func:`hidden_by_unmoved`); and the forward evaluations
        that cost. Such a failure is confirmed by the estimate's error, which counts only
        outputs seen moving: beside outputs of 1 whose change is under their ulp (a saturated
        softmax), a right entry of 1e-21 disagreed by 1e-19 with an error of 1e-27. At most
        ``REFINEMENT_CAP`` are bounded, the worst first; the others are left unresolved
        (error inf)."""
        error = np.array(error, dtype=np.float64).ravel()
        flat_a, flat_n = np.ravel(analytic), np.ravel(value)
        claimed = failing_entries(flat_a, flat_n, error, cmp, atol, small_floor)
        plain = failing_entries(flat_a, flat_n, error, cmp, atol, np.inf)
        below = np.flatnonzero(claimed & (~plain | self.probe_all) & np.isfinite(flat_a))
        if not below.size:
            return error, 0
        with np.errstate(invalid="ignore", divide="ignore"):
            badness = np.abs(flat_a - flat_n) / np.maximum(error, 1e-300)
        order = below[np.argsort(-badness[below], kind="stable")]
        checked, unchecked = order[:REFINEMENT_CAP], order[REFINEMENT_CAP:]
        base, outputs, _ = self.argument(key)
        bound, spent = hidden_by_unmoved(
            outputs,
            base,
            self.dy,
            directions(checked),
            PROBE_FACTOR * np.ravel(step)[checked],
            # The textbook scale, as the probe steps' own: for an input of 1e-10, an output
            # of 5e6 + 1e-6 x moves only from steps of 5e-4, far past 16x the input's scale.
            max(1.0, typical_scale(base)),
        )
        error[checked] += bound
        error[unchecked] = np.inf
        return error, spent

    def confirm_full(
        self, key: str, analytic: Array, est: Estimate, cmp: Comparison
    ) -> Tuple[Estimate, Comparison]:
        """``est`` and its comparison, with every failed entry whose estimate does not hold at
        smaller steps made inconclusive (error inf); see :meth:`refuted`. A failure that only
        the test for entries below the floor claims, or any beside outputs of an extreme range,
        must also exceed what unmoved outputs can hide (:meth:`add_hidden_share`)."""
        flat_a = np.ravel(analytic)
        error, spent = self.add_hidden_share(
            key,
            analytic,
            est.value,
            est.error,
            cmp,
            unit_directions(np.shape(analytic), np.arange(flat_a.size)),
            est.step,
        )
        if spent:
            est = dataclasses.replace(
                est, error=error.reshape(np.shape(analytic)), evaluations=est.evaluations + spent
            )
            cmp = self.compare_full(key, analytic, est.value, est.error)
        claimed = np.ravel(failing_entries(analytic, est.value, est.error, cmp))
        candidates = np.flatnonzero(claimed & np.isfinite(flat_a))
        if not candidates.size:
            return est, cmp
        shape = np.shape(analytic)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            badness = np.abs(flat_a - np.ravel(est.value)) / np.maximum(np.ravel(est.error), 1e-300)
        refuted, spent = self.refuted(
            key,
            candidates,
            unit_directions(shape, np.arange(flat_a.size)),
            est,
            badness,
            lambda i: _entry_label(key, tuple(int(k) for k in np.unravel_index(i, shape))),
        )
        error = est.error.copy()
        error.flat[refuted] = np.inf
        est = dataclasses.replace(est, error=error, evaluations=est.evaluations + spent)
        if refuted.size:
            cmp = self.compare_full(key, analytic, est.value, est.error)
        return est, cmp

    def coarsen_full(
        self, key: str, analytic: Array, est: Estimate, cmp: Comparison
    ) -> Tuple[Estimate, Comparison]:
        """``est`` with the entries a passing comparison resolved only at the gradient-wide
        floor estimated again at larger steps, and the comparison of the result.

        Without a user ``atol``, an entry passes when its estimate's error is within
        ``rtol`` times the *largest* entry (:func:`gradcheck.compare.default_resolve_atol`): an
        entry that is zero in truth beside large ones cannot be resolved better than the
        rounding of the outputs it moves. But that floor would also pass a small entry that is
        wrong (``y = 1e6 sin(x0) + 1e-6 (x1 + x2 + x3)`` with ``dx1..dx3`` doubled: the error
        of their estimates, ``eps 1e6 / h``, covers the 1e-6 that is wrong). Such entries (error
        above ``COARSE_TRIGGER`` times their own tolerance ``atol + rtol |n_i|``, at most
        ``REFINEMENT_CAP``, the largest errors first) are estimated with richardson at each
        step of ``COARSENING`` times the base one, where rounding matters less; a level's
        estimate replaces the one before it where its error is smaller and the two agree
        (:func:`gradcheck.finite_diff.apart`: one that does not has met the function's
        curvature), and an entry stops at the first level
        that resolves it (or whose estimate it rejects).
        A failure this shows is confirmed at smaller steps like any other (:meth:`confirm_full`);
        entries still resolved only at the floor are named in a finding. Of an inconclusive
        richardson comparison (the last stage), the entries whose error exceeds what they had
        to resolve are estimated so at ``RESTEPPING`` times the base step instead (an
        ill-conditioned whitening's estimate, inflated at its own step, resolves at a quarter
        of it), where at most ``RESTEP_CAP`` are, and taken only where that makes the
        comparison pass; its other causes are left as they are.
        """
        if self.atol is not None or cmp.status not in ("pass", "inconclusive"):
            return est, cmp
        base, outputs, _ = self.argument(key)
        value, error, step = (
            np.array(a, dtype=np.float64).ravel() for a in (est.value, est.error, est.step)
        )
        unresolved_only = cmp.status == "inconclusive"
        if unresolved_only and est.method != "richardson":
            # Shorter stencils escalate to richardson, or were asked for by the user.
            return est, cmp

        def beyond_own(idx: Array) -> Array:
            """Which of the flat entries ``idx`` have an error over ``COARSE_TRIGGER`` times
            their own tolerance, or over what they had to resolve (never one whose error is
            not finite); of an inconclusive comparison, only the latter."""
            with np.errstate(invalid="ignore"):
                rel = cmp.rtol * np.abs(value[idx])
                unresolved = error[idx] > cmp.resolve_atol + rel
                if not unresolved_only:
                    unresolved |= error[idx] > COARSE_TRIGGER * (cmp.atol + rel)
                return np.isfinite(error[idx]) & unresolved

        everything = np.arange(value.size)
        pending = everything[beyond_own(everything)]
        if not pending.size or (unresolved_only and pending.size > RESTEP_CAP):
            # Many unresolved entries are an ill-conditioned layer, not a marginal estimate.
            return est, cmp
        order = pending[np.argsort(-error[pending], kind="stable")]
        pending = np.sort(order[:REFINEMENT_CAP])
        rounding = np.ravel(self.analytic_rounding(key))
        evaluations = est.evaluations
        for factor in RESTEPPING if unresolved_only else COARSENING:
            if not pending.size:
                break
            level = partial_derivatives(
                outputs,
                base,
                self.dy,
                method="richardson",
                indices=pending,
                chunk=self.chunk,
                probe=self.probe_all,
                unmoved=self.probe_unmoved,
                step_factor=factor,
                others_move=True,
            )
            evaluations += level.evaluations
            new_error = level.error + rounding[pending]
            take = (
                np.isfinite(level.value)
                & (new_error < error[pending])
                & ~apart(level.value, new_error, value[pending], error[pending])
            )
            value[pending[take]] = level.value[take]
            error[pending[take]] = new_error[take]
            step[pending[take]] = level.step[take]
            # An entry whose estimate met the function's curvature goes no further either.
            pending = pending[take & beyond_own(pending)]
        shape = np.shape(analytic)
        before = est, cmp
        est = dataclasses.replace(
            est,
            value=value.reshape(shape),
            error=error.reshape(shape),
            step=step.reshape(shape),
            evaluations=evaluations,
        )
        cmp = self.compare_full(key, analytic, est.value, est.error)
        if unresolved_only and cmp.status != "pass":
            # Finer steps may settle an inflated error bar, never overturn it: where the
            # estimate was unresolved at its own step (a whitening of degenerate eigenvalues),
            # a finer one that disagrees is no evidence of a wrong backward.
            return dataclasses.replace(before[0], evaluations=evaluations), before[1]
        if cmp.status == "fail":
            est, cmp = self.confirm_full(key, analytic, est, cmp)
        if cmp.status == "pass" and not unresolved_only:
            left = everything[beyond_own(everything)]
            if left.size:
                worst = int(left[np.argmax(error[left])])
                where = _entry_label(key, tuple(int(i) for i in np.unravel_index(worst, shape)))
                self.findings.append(
                    Finding(
                        "resolved-at-gradient-floor",
                        "info",
                        f"{key}: {left.size} of {value.size} entries are verified only to rtol "
                        f"times the largest entry ({cmp.resolve_atol:.2e}), not to their own "
                        f"tolerance: their estimates' error (up to {error[worst]:.2e}, at "
                        f"{where}) is the rounding of the outputs they move, and larger steps "
                        "did not resolve them; pass atol= to hold them to a stated floor",
                    )
                )
        return est, cmp

    def compare_full(self, key: str, analytic: Array, value: Array, error: Array) -> Comparison:
        """The entry-by-entry comparison of argument ``key`` in full mode, at the check's
        tolerances, with the backward's own rounding (part of ``error``) held to them."""
        return compare(
            analytic,
            value,
            error,
            rtol=self.rtol,
            atol=self.atol,
            n_worst=self.n_worst,
            rounding=self.analytic_rounding(key),
        )

    def analytic_rounding(self, key: str) -> Array:
        """What the backward's own rounding can be, per entry of argument ``key``: measured by
        the linearity check (``backward_noise``), 0 where it was not measured (a loss layer).

        It is added to the estimate's error: an analytic gradient cannot be verified more
        tightly than it was computed (an ill-conditioned whitening's backward divides by
        eigenvalues and their gaps), so where it exceeds the tolerance the check is
        inconclusive, never a pass, and a disagreement of that size is not a fail.
        """
        noise = self.backward_noise.get(key)
        base = self.x if key == "x" else self.params[key]
        return np.zeros(np.shape(base)) if noise is None else noise

    def note_rounding(self, key: str, result: ArgumentResult) -> None:
        """Say so where argument ``key`` is inconclusive because the backward's own rounding
        exceeds the tolerance (not the estimate: its reason would otherwise blame that)."""
        cmp = result.comparison
        if result.status != "inconclusive" or result.numeric is None:
            return
        rounding = np.ravel(self.analytic_rounding(key))
        if result.mode == "full":
            with np.errstate(invalid="ignore", over="ignore"):
                tol = cmp.atol + cmp.rtol * np.abs(np.ravel(result.numeric))
                over = rounding > tol
            what, count, worst = "entries", int(np.sum(over)), float(np.max(rounding, initial=0))
        else:
            worst = scaled_norm(rounding)
            what, count = "random directions", cmp.n_entries if worst > cmp.atol else 0
        if not count:
            return
        self.findings.append(
            Finding(
                "backward-rounding",
                "warning",
                f"{key}: the backward's own rounding (up to {worst:.2e}) exceeds the tolerance "
                f"on {count}/{cmp.n_entries} {what}, so they cannot be verified: measured by "
                "the linearity check (backward(dy1 + 2 dy2) against backward(dy1) + 2 "
                "backward(dy2)) and pooled over entries of about one size, it is the error "
                "bar of every entry of that size, and an error as large would pass unseen (a "
                "backward that loses digits to cancellation, or an ill-conditioned layer)",
            )
        )

    def note_nonfinite(self, key: str, est: Estimate, shape: Tuple[int, ...], mode: str) -> None:
        for finding in _nonfinite_finding(key, est, shape, mode):
            if finding not in self.findings:
                self.findings.append(finding)

    def full_result(
        self,
        key: str,
        kind: str,
        method: str,
        cmp: Comparison,
        evaluations: int,
        analytic: Array,
        est: Estimate,
    ) -> ArgumentResult:
        """A full-mode result, with what it resolves: every entry is compared, so a single
        entry wrong by more than its own threshold fails for certain."""
        typical = cmp.atol / cmp.rtol if cmp.rtol > 0 else 0.0
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            thresholds = cmp.atol + cmp.rtol * np.abs(est.value) + FAIL_MARGIN * est.error
            scale = max(typical, TINY_SCALE)
            entry = float(np.max(thresholds / np.maximum(np.abs(est.value), scale), initial=0.0))
            norm = max(scaled_norm(analytic), scaled_norm(np.nan_to_num(est.value)))
            whole = scaled_norm(thresholds) / norm if norm > 0 else float("inf")
        return ArgumentResult(
            key,
            kind,
            "full",
            method,
            cmp,
            evaluations,
            analytic=analytic,
            numeric=est.value,
            error_estimate=est.error,
            resolves_entry=entry if np.isfinite(entry) else float("inf"),
            resolves_gradient=whole if np.isfinite(whole) else float("inf"),
        )

    def argument(self, key: str) -> Tuple[Array, Callable[[Array], Array], str]:
        """(value, outputs function, kind) of the input ``"x"`` or of a parameter."""
        if key == "x":
            return np.asarray(self.x, dtype=np.float64), self.objective.outputs_x, "input"
        base = np.asarray(self.params[key], dtype=np.float64)
        return base, self.objective.outputs_param(key), "param"

    def refine_full(self, key: str, analytic: Array, coarse: ArgumentResult) -> ArgumentResult:
        """Re-estimate, with longer stencils, only the entries ``coarse`` did not pass.

        In full mode most entries usually pass at once; repeating the whole argument with a
        longer stencil would spend most of its time where nothing is in doubt. The cheapest
        stencil that can resolve an entry goes first: after central differences, five-point
        (6 evaluations an entry), and richardson (20) only for the entries five-point leaves
        unresolved or in disagreement. Failed entries are re-estimated at every stage, and
        their verdict is richardson's alone: two or three steps allow only a weak test of
        convergence, so a difference far outside the function's length scale can be wrong by
        more than its error estimate, and "fail" is only given once richardson, which tests
        convergence, agrees (and the disagreement holds at smaller steps, see
        :meth:`confirm_full`). Where richardson does not converge either (error inf), the
        entry is inconclusive, whatever the shorter stencils said.
        """
        base, outputs, kind = self.argument(key)
        est = self.last_full
        value, error, step = est.value.copy(), est.error.copy(), est.step.copy()
        evaluations = est.evaluations
        cmp = coarse.comparison
        stages = self.full_stages.get(
            key, ["five-point", "richardson"] if coarse.method == "central" else ["richardson"]
        )
        used = [coarse.method]
        for stage in stages:
            with np.errstate(invalid="ignore"):
                tol = cmp.atol + cmp.rtol * np.abs(value)
                disagrees = np.abs(analytic - value) > tol + FAIL_MARGIN * error
                resolved = error <= max(cmp.resolve_atol, cmp.atol) + cmp.rtol * np.abs(value)
            unresolved = np.flatnonzero(~(resolved & ~disagrees))
            if not unresolved.size:
                break
            fine = partial_derivatives(
                outputs,
                base,
                self.dy,
                method=stage,
                indices=unresolved,
                chunk=self.chunk,
                probe=self.probe_all,
                unmoved=self.probe_unmoved,
            )
            used.append(stage)
            evaluations += fine.evaluations
            self.note_nonfinite(key, _scatter(fine, unresolved, base.shape), base.shape, "full")
            # A longer stencil takes longer steps, past features a shorter one saw (a wiggle of
            # width 1e-4 under noise that leaves central differences unresolved): where the two
            # disagree beyond their errors, the gap between them is added to the error, so that
            # the smoother function's derivative is not taken for the layer's.
            before = value.flat[unresolved]
            smoothed = (
                np.isfinite(before)
                & np.isfinite(fine.error)
                & apart(fine.value, fine.error, before, error.flat[unresolved])
            )
            with np.errstate(invalid="ignore", over="ignore"):
                gap = np.abs(fine.value - before)
            fine_error = np.where(smoothed, fine.error + gap, fine.error)
            take = (fine_error < error.flat[unresolved]) | disagrees.flat[unresolved]
            value.flat[unresolved[take]] = fine.value[take]
            error.flat[unresolved[take]] = (
                fine_error[take] + self.analytic_rounding(key).flat[unresolved[take]]
            )
            step.flat[unresolved[take]] = fine.step[take]
            cmp = self.compare_full(key, analytic, value, error)
        merged = Estimate(value, error, used[-1], step, evaluations)
        merged, cmp = self.confirm_full(key, analytic, merged, cmp)
        merged, cmp = self.coarsen_full(key, analytic, merged, cmp)
        method = "+".join(used)
        return self.full_result(key, kind, method, cmp, merged.evaluations, analytic, merged)

    def directional(
        self,
        key: str,
        kind: str,
        base: Array,
        outputs: Callable[[Array], Array],
        analytic: Array,
        method: str,
        directions: Optional[int] = None,
    ) -> ArgumentResult:
        """Compare along Gaussian directions, band by band of the gradient's magnitude.

        Entries of the analytic gradient far above its median (a column scaled by 1e8) are
        screened apart from the rest, in bands a factor ``BAND_RATIO`` wide, each by directions
        supported on that band alone: a direction that moved them would make the projection,
        its tolerance and its rounding all of their size, and hide every relative error of the
        others. A band of at most ``SMALL_BAND`` entries is estimated entry by entry. For a
        gradient of one scale this is a single band, the usual screen. Per band, a fixed
        number of directions, or batches until a single entry wrong by ``TARGET_ENTRY_ERROR``
        of that band's typical entry is resolved (or the budget is spent).
        """
        purpose = PURPOSE_DIRECTIONS + (0 if key == "x" else 1 + self.param_keys.index(key))
        rng = harness_rng(self.seed, purpose)
        fixed = directions if directions is not None else self.n_directions
        typical = typical_scale(base)
        flat_a = analytic.ravel()
        n = flat_a.size
        values: List[Array] = []
        errors: List[Array] = []
        projected: List[Array] = []
        atols: List[Array] = []
        resolves: List[Array] = []
        roundings: List[Array] = []
        # The directions, (k, *base.shape) per batch, kept only where a claimed failure will be
        # re-estimated along them (a final estimate): for a large input they are its size each.
        final = self.is_final(method)
        drawn: List[Array] = []
        steps: List[Array] = []
        evaluations = 0
        spent_budget = 0
        worst_entry, worst_gradient = 0.0, 0.0
        bands = magnitude_bands(flat_a)
        sub_floor: List[Array] = []
        rounding_floor = default_small_floor(flat_a, flat_a, self.rtol)
        if self.atol is None:
            # Entries whose whole value is under the median band's fail floor: screened apart
            # (below), since with the rest an error of any size in them would pass.
            sub_floor = sub_floor_bands(
                flat_a, self.rtol * typical_gradient(flat_a, flat_a), rounding_floor
            )
            if sub_floor and sum(b.size for b in sub_floor) < n:
                bands[0] = np.setdiff1d(bands[0], np.concatenate(sub_floor), assume_unique=True)
            else:
                sub_floor = []
        median_norm = scaled_norm(flat_a[bands[0]])
        small_floors: List[Array] = []
        for support in sub_floor + bands:
            below = len(small_floors) < len(sub_floor)
            band_norm = scaled_norm(flat_a[support])
            atol, resolve_atol = self.atol, self.atol
            small_floor = np.inf
            if atol is None:
                # A directional derivative is of the size ||g|| for a Gaussian direction: that
                # is the floor the estimate must resolve, and a fraction of it the floor of
                # the fail test. A band under the median band's floor keeps that band's floors
                # and fails beyond its own relative tolerance where that is resolved and
                # beyond rounding (compare's small-entry test; a residue of that size in every
                # entry has the norm below along a Gaussian direction).
                norm = median_norm if below else band_norm
                atol = self.rtol * DIRECTIONAL_FLOOR * norm
                resolve_atol = self.rtol * norm
                if below:
                    small_floor = rounding_floor * np.sqrt(support.size)
            unit = (
                support.size <= (SUB_FLOOR_DIRECTIONS if below else SMALL_BAND) and support.size < n
            )
            # The projection's share of the backward's rounding: ||r|| for a Gaussian v.
            band_rounding = scaled_norm(self.analytic_rounding(key).ravel()[support])
            if unit:
                batches = [support.size]
            elif below:
                batches = [SUB_FLOOR_DIRECTIONS]
            elif fixed is not None:
                batches = [fixed]
            else:
                batches = list(DIRECTION_BATCHES)
            band_values: List[Array] = []
            band_errors: List[Array] = []
            band_proj: List[Array] = []
            thresholds = np.zeros(0)
            for i, k in enumerate(batches):
                if i > 0 and spent_budget + (points_per_direction(method) + 2) * k > self.budget:
                    break
                v = np.zeros((k, n))
                if unit:
                    v[np.arange(k), support] = 1.0
                else:
                    v[:, support] = rng.standard_normal((k, support.size))
                v = v.reshape((k, *base.shape))
                vmax = np.max(np.abs(v.reshape(k, -1)), axis=1)
                step = base_step(method, np.zeros(k), typical=typical) / vmax
                textbook = base_step(method, np.zeros(k), typical=max(1.0, typical)) / vmax
                if self.probe_all:
                    textbook = np.maximum(textbook, PROBE_FACTOR * step)
                est: Estimate = directional_derivatives(
                    outputs,
                    base,
                    self.dy,
                    functools.partial(_rows, v),
                    k,
                    step,
                    method=method,
                    chunk=self.chunk,
                    fallback_step=None if method == "complex-step" else textbook,
                    unmoved=self.probe_unmoved,
                )
                self.note_nonfinite(key, est, base.shape, "directional")
                if final:
                    drawn.append(v)
                    steps.append(est.step)
                evaluations += est.evaluations
                if i > 0:
                    spent_budget += est.evaluations
                band_values.append(est.value)
                band_errors.append(est.error + band_rounding)
                band_proj.append(_project(v, analytic))
                value, error, proj = (
                    np.concatenate(c) for c in (band_values, band_errors, band_proj)
                )
                cmp = compare(
                    proj,
                    value,
                    error,
                    rtol=self.rtol,
                    atol=atol,
                    resolve_atol=resolve_atol,
                    rounding=band_rounding,
                    small_floor=small_floor,
                )
                with np.errstate(invalid="ignore", over="ignore"):
                    thresholds = cmp.atol + cmp.rtol * np.abs(value) + FAIL_MARGIN * error
                if cmp.status != "pass" or fixed is not None or unit or below:
                    break
                if resolved_error(thresholds, band_norm / np.sqrt(support.size)) <= (
                    TARGET_ENTRY_ERROR
                ):
                    break
            band_value, band_error, band_projection = (
                np.concatenate(c) for c in (band_values, band_errors, band_proj)
            )
            values.append(band_value)
            errors.append(band_error)
            projected.append(band_projection)
            atols.append(np.full(band_value.size, atol))
            resolves.append(np.full(band_value.size, max(float(resolve_atol or 0.0), float(atol))))
            roundings.append(np.full(band_value.size, band_rounding))
            small_floors.append(np.full(band_value.size, small_floor))
            if below:
                # Screened for errors beyond their own relative tolerance, not resolved to a
                # fraction of a typical entry: they state no resolution.
                continue
            if unit:
                # Entry by entry: nothing slips through by chance.
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = thresholds / np.maximum(np.abs(band_value), 1e-300)
                entry = float(np.max(np.where(np.isfinite(rel), rel, np.inf), initial=0.0))
                worst_entry = max(worst_entry, entry)
                worst_gradient = max(worst_gradient, entry)
            else:
                worst_entry = max(
                    worst_entry, resolved_error(thresholds, band_norm / np.sqrt(support.size))
                )
                worst_gradient = max(worst_gradient, resolved_error(thresholds, band_norm))
        value, error, proj, atol_all, resolve_all, rounding_all, small_all = (
            np.concatenate(c)
            for c in (values, errors, projected, atols, resolves, roundings, small_floors)
        )

        def judged(error: Array) -> Comparison:
            """The comparison of every direction, with ``error`` as the estimates' errors."""
            return compare(
                proj,
                value,
                error,
                rtol=self.rtol,
                atol=atol_all,
                n_worst=self.n_worst,
                resolve_atol=resolve_all,
                rounding=rounding_all,
                small_floor=small_all,
            )

        cmp = judged(error)
        if final:
            all_v = np.concatenate(drawn) if drawn else np.zeros((0, *base.shape))
            error, spent = self.add_hidden_share(
                key,
                proj,
                value,
                error,
                cmp,
                lambda j: all_v[j],
                np.concatenate(steps) if steps else np.zeros(0),
                atol_all,
                small_all,
            )
            if spent:
                evaluations += spent
                cmp = judged(error)
            claimed = failing_entries(
                proj, value, error, cmp, atol=atol_all, small_floor=small_all
            ) & np.isfinite(proj)
            if claimed.any():
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    badness = np.abs(proj - value) / np.maximum(error, 1e-300)
                refuted, spent = self.refuted(
                    key,
                    np.flatnonzero(claimed),
                    lambda j: all_v[j],
                    Estimate(value, error, method, np.concatenate(steps), evaluations),
                    badness,
                    lambda i: f"random direction {i}",
                )
                evaluations += spent
                if refuted.size:
                    error = error.copy()
                    error[refuted] = np.inf
                    cmp = judged(error)
        with np.errstate(invalid="ignore", over="ignore"):
            thresholds = atol_all + cmp.rtol * np.abs(value) + FAIL_MARGIN * error
        gnorm = scaled_norm(flat_a)
        p_miss = miss_probability(thresholds, max(gnorm, 1e-300), REFERENCE_RELATIVE_ERROR)
        return ArgumentResult(
            key,
            kind,
            "directional",
            method,
            cmp,
            evaluations,
            cmp.n_entries,
            p_miss,
            resolves_entry=worst_entry,
            resolves_gradient=worst_gradient,
        )

    def method_for(self, key: str, base: Array, outputs: Callable[[Array], Array]) -> str:
        """The requested method, or richardson when the complex step does not apply here."""
        if self.method != "complex-step":
            return self.method
        # The trial runs for a layer declaring supports_complex too: a declaration alone let a
        # forward with an |x| term pass the backward that left that term out.
        if self.complex_step_agrees(base, outputs):
            return self.method
        declared = (
            " although the layer declares supports_complex"
            if getattr(self.layer, "supports_complex", False)
            else ""
        )
        finding = Finding(
            "complex-step-unavailable",
            "warning",
            f"the forward is not holomorphic in {key!r}{declared} (a complex-step trial "
            "disagreed with real differences); used richardson instead",
        )
        if finding not in self.findings:
            self.findings.append(finding)
        return "richardson"

    def complex_step_agrees(self, base: Array, outputs: Callable[[Array], Array]) -> bool:
        """Whether the complex step holds here: output by output along one Gaussian direction
        (:func:`gradcheck.finite_diff.complex_step_holds`), so that one non-holomorphic output
        among many (an ``abs`` at one entry) is not lost in a projection."""
        v = harness_rng(self.seed, PURPOSE_COMPLEX_TRIAL).standard_normal(base.shape)
        try:
            return complex_step_holds(outputs, base, v)
        except Exception:
            return False

    def estimate_argument(
        self, key: str, analytic: Array, screen: List[ArgumentResult]
    ) -> ArgumentResult:
        """The comparison for one argument in the requested mode.

        In ``auto`` mode: a directional screen, and if it does not pass, full mode to localize
        the problem -- or, when full mode would cost more forward evaluations than the budget,
        localization by bisection within the budget (a failed screen is a fail either way). In
        every mode, when ``escalate`` is on and a central or five-point estimate cannot resolve
        the tolerance (an ill-conditioned layer) or disagrees with the analytic gradient, the
        comparison is repeated with richardson (in full mode, for those entries only) before
        anything is declared; the superseded comparison is kept in ``screen``.
        """
        if self.mode != "auto":
            return self.escalated(key, analytic, self.mode, screen)
        first = self.escalated(key, analytic, "directional", screen)
        screen.append(first)
        if first.status == "pass":
            return first
        full_cost = 4 * analytic.size + 1
        if full_cost > self.budget:
            if first.status == "fail":
                return self.localize(key, analytic, first)
            self.findings.append(
                Finding(
                    "budget-exceeded",
                    "info",
                    f"{key}: the screen is inconclusive and full mode over {analytic.size} "
                    f"entries would cost {full_cost} forward evaluations, over the budget of "
                    f"{self.budget}; pass budget= (--budget) to estimate every entry",
                )
            )
            return first
        # Full mode makes its own plan (central first, by default) rather than starting with
        # the stencil the screen ended with: each longer stencil is then held to the shorter
        # one's estimate (see refine_full), which a start with richardson would skip.
        return self.escalated(key, analytic, "full", screen)

    def escalated(
        self,
        key: str,
        analytic: Array,
        mode: str,
        superseded: List[ArgumentResult],
        method: Optional[str] = None,
    ) -> ArgumentResult:
        result = self.estimate(key, analytic, mode, method=method)
        if (
            self.escalate
            and result.status in ("inconclusive", "fail")
            and result.method in ("central", "five-point")
        ):
            superseded.append(result)
            if mode == "full":
                return self.refine_full(key, analytic, result)
            if result.method == "central" and result.status == "inconclusive":
                cmp = result.comparison
                floor = max(cmp.resolve_atol, cmp.atol)
                if 0.0 < cmp.max_error_estimate <= FIVE_POINT_REACH * floor:
                    five = self.estimate(
                        key, analytic, mode, method="five-point", directions=result.directions
                    )
                    if five.status == "pass":
                        return five
                    superseded.append(five)
            result = self.estimate(
                key, analytic, mode, method="richardson", directions=result.directions
            )
        return result

    def localize(self, key: str, analytic: Array, screen: ArgumentResult) -> ArgumentResult:
        """Find wrong entries by bisection within the budget, after a failed screen.

        One Gaussian direction ``v`` over every entry; a block of entries is tested by the
        directional derivative along ``v`` restricted to it (along the unit vector for a single
        entry), compared with the analytic projection. The derivatives of a block's two halves
        add up to the block's, so one half is estimated and the other's follows by subtraction,
        with both errors; where that leaves it unresolved, or names a single entry, it is
        estimated too. A block that disagrees is split, the smallest block first (the worst
        among equals): the search reaches single entries before it widens, so ``k`` wrong
        entries among ``n`` cost about ``k log2(n / k)`` tests, and an error spread over every
        entry about one test per entry named. An entry is named only from its own estimate.
        The screen's failure stands whatever the budget allows.
        """
        base, outputs, kind = self.argument(key)
        purpose = PURPOSE_LOCALIZE + (0 if key == "x" else 1 + self.param_keys.index(key))
        rng = harness_rng(self.seed, purpose)
        method = screen.method if screen.method in ("central", "five-point") else "central"
        typical = typical_scale(base)
        flat_a = analytic.ravel()
        v_all = rng.standard_normal(flat_a.size)
        atol_scale = self.rtol * DIRECTIONAL_FLOOR
        unit_step = base_step(method, np.zeros(1), typical=typical)
        cost = 1 + points_per_direction(method)
        spent = 0
        found: List[Entry] = []
        smallest_bad = analytic.size

        def weights(block: Array) -> Array:
            return v_all[block] if block.size > 1 else np.ones(1)

        def along_v(block: Array) -> float:
            """What the derivative along ``weights(block)`` is multiplied by to be along ``v``."""
            return 1.0 if block.size > 1 else float(v_all[block[0]])

        def measured(block: Array) -> Tuple[float, float]:
            """The derivative along ``weights(block)`` on ``block``, and its error."""
            nonlocal spent
            v_flat = np.zeros(flat_a.size)
            v_flat[block] = weights(block)
            v = v_flat.reshape((1, *base.shape))
            step = unit_step / np.max(np.abs(v_flat))
            est = directional_derivatives(
                outputs, base, self.dy, lambda idx: v, 1, step, method=method, chunk=self.chunk
            )
            spent += est.evaluations
            return float(est.value[0]), float(est.error[0])

        def judged(block: Array, value: float, error: float) -> Tuple[str, float, Optional[Entry]]:
            """The comparison's status for ``block``, its badness (> 1: it disagrees) and, for
            a single entry that disagrees, the entry."""
            proj = float(np.dot(flat_a[block], weights(block)))
            atol = self.atol if self.atol is not None else atol_scale * scaled_norm(flat_a[block])
            cmp = compare(
                np.array([proj]), np.array([value]), np.array([error]), rtol=self.rtol, atol=atol
            )
            w = cmp.worst[0]
            badness = w.abs_error / max(w.tolerance + FAIL_MARGIN * w.error_estimate, 1e-300)
            if cmp.status != "fail":
                badness = min(badness, 1.0)
            entry = None
            if block.size == 1 and cmp.status == "fail":
                index = tuple(int(i) for i in np.unravel_index(int(block[0]), analytic.shape))
                entry = Entry(index, proj, w.numeric, w.error_estimate, w.tolerance)
            return cmp.status, badness, entry

        # (size, -badness, order, block, derivative along its weights, its error): the
        # smallest block that disagrees is split first.
        heap: List[Tuple[int, float, int, Array, float, float]] = []
        counter = 0
        everything = np.arange(flat_a.size)
        if flat_a.size > 1 and spent + cost <= self.budget:
            # The whole is split whatever its own test says: the screen failed, and a
            # cancellation along this one direction would not mean that its halves agree.
            value, error = measured(everything)
            heap.append((everything.size, -1.0, counter, everything, value, error))
        while heap and spent + cost <= self.budget:
            _, _, _, block, value, error = heapq.heappop(heap)
            first, second = np.array_split(block, 2)
            v_first, e_first = measured(first)
            status, badness, entry = judged(first, v_first, e_first)
            halves = [(first, v_first, e_first, badness, entry)]
            # The second half's derivative along its own weights, by subtraction.
            s_first, s_second = along_v(first), along_v(second)
            v_second = (value - s_first * v_first) / s_second
            e_second = (error + abs(s_first) * e_first) / abs(s_second)
            status, badness, entry = judged(second, v_second, e_second)
            # An inferred single entry that disagrees is estimated itself before it is named.
            if status == "inconclusive" or entry is not None:
                if spent + cost <= self.budget:
                    v_second, e_second = measured(second)
                    status, badness, entry = judged(second, v_second, e_second)
                else:
                    badness, entry = 0.0, None
            halves.append((second, v_second, e_second, badness, entry))
            for half, v_half, e_half, bad, isolated in halves:
                if isolated is not None:
                    found.append(isolated)
                elif half.size > 1 and bad > 1.0:
                    smallest_bad = min(smallest_bad, half.size)
                    counter += 1
                    heapq.heappush(heap, (half.size, -bad, counter, half, v_half, e_half))
        found.sort(key=lambda e: -e.abs_error / max(e.tolerance + e.error_estimate, 1e-300))
        c = screen.comparison
        cmp = Comparison(
            status="fail",
            max_abs_error=max((e.abs_error for e in found), default=c.max_abs_error),
            rel_error=c.rel_error,
            rtol=c.rtol,
            atol=c.atol,
            n_entries=analytic.size,
            n_failed=len(found),
            n_inconclusive=0,
            max_error_estimate=max((e.error_estimate for e in found), default=0.0),
            worst=found[: self.n_worst],
        )
        plural = "y" if len(found) == 1 else "ies"
        if found:
            named = f"isolated {len(found)} wrong entr{plural}"
        else:
            named = f"the smallest block shown wrong has {smallest_bad} entries"
        self.findings.append(
            Finding(
                "localized-by-bisection",
                "info",
                f"{key}: full mode over {analytic.size} entries would cost "
                f"{4 * analytic.size + 1} forward evaluations, over the budget of {self.budget}; "
                f"the screen's failure stands; bisection over blocks of entries with "
                f"directional estimates {named}, in {spent} evaluations (other wrong entries "
                "may exist; pass budget= (--budget) for more)",
            )
        )
        return ArgumentResult(
            key,
            kind,
            "localized",
            f"{method} (bisection)",
            cmp,
            spent,
            resolves_entry=screen.resolves_entry,
            resolves_gradient=screen.resolves_gradient,
        )

    def run(self) -> Tuple[List[ArgumentResult], List[ArgumentResult]]:
        # Every forward and backward of the check, not only the estimation: with another
        # process on the machine, a two-thread BLAS stalls on these small problems.
        with blas_single_thread(self.x.size >= _THREAD_LIMIT_SIZE):
            return self._run()

    def _run(self) -> Tuple[List[ArgumentResult], List[ArgumentResult]]:
        grads = self.run_analytic()
        # Outputs spanning an extreme range (a softmax's p of 1e-14 beside p of 1): moving an
        # input changes the large outputs below their ulp while the small ones show it, so the
        # lost share of the derivative must be probed for as for extreme inputs.
        # Extreme inputs or parameters: an output unmoved even at the probe step may depend
        # on a direction too. Extreme outputs alone: their large entries are independent of
        # most directions (a scaled sine's column of 1e6), so only outputs seen moving count.
        self.probe_unmoved = self.probe_all
        self.probe_all = self.probe_all or dynamic_range(self.y) > EXTREME_RANGE
        self.objective = LayerObjective(
            self.layer, self.x, self.target, self.dtype, output_shape=self.y.shape
        )
        screen: List[ArgumentResult] = []
        results: List[ArgumentResult] = []
        try:
            self.calls.check_batch_support(self.objective)
            self.calls.check_perturbable(self.objective, grads)
            for key in ["x", *self.param_keys]:
                result = self.estimate_argument(key, self.calls.analytic_of(key, grads), screen)
                unjudged = self.calls.unreachable | self.calls.overlapping | self.calls.swallowed
                if key in unjudged and result.status != "inconclusive":
                    # Its numerical gradient is zero whatever the truth (param-unreachable,
                    # param-change-swallowed), or mixes two parameters (params-overlap).
                    result = dataclasses.replace(
                        result,
                        comparison=dataclasses.replace(result.comparison, status="inconclusive"),
                    )
                self.note_rounding(key, result)
                results.append(result)
            if self.objective.batch_mismatch is not None:
                self.findings.append(
                    Finding(
                        "batch-support-broken",
                        "warning",
                        "the layer declares supports_batch, but "
                        f"{self.objective.batch_mismatch}; evaluated one input at a time from "
                        "then on",
                    )
                )
        except SystemExit as exc:
            # The objective turns a layer's exceptions at perturbed points into NaN rows, but a
            # layer calling sys.exit() there ends the check (not the caller's process).
            raise Abort(
                Finding(
                    "forward-raised",
                    "error",
                    f"forward raised SystemExit: {exc} (at a perturbed point of the estimate)",
                )
            ) from exc
        finally:
            # Leave the layer as the caller gave it: parameters bitwise, cache for x.
            self.calls.restore_params()
            try:
                self.calls.forward(call="forward (restoring the layer's cache for x)")
            except Abort:
                pass
        return results, screen


def default_budget(size: int) -> int:
    """Forward evaluations auto mode may spend beyond its first screen, for ``size`` entries.

    ``BUDGET_ENTRIES / size`` (at least ``MIN_BUDGET``): the same amount of forward work for
    every input size, so a 5000x200 input is screened and localized in seconds, not hours,
    while full mode over every entry stays within budget for inputs up to about 8,000 entries.
    """
    return max(MIN_BUDGET, BUDGET_ENTRIES // max(1, size))


def default_chunk(size: int) -> int:
    """Perturbed points per stacked forward call for an input of ``size`` entries.

    About 2^16 floats (512 KiB) of input per call: large enough that a layer's per-call
    overhead is paid rarely, small enough to stay in cache (2^22 floats per call ran 1.2x
    slower on ZCA 64x16 in docs/performance.md's benchmark).
    """
    return max(1, min(4096, 2**16 // max(1, size)))


def _draw_target(layer: Any, x: Array, seed: int) -> Array:
    """Integer labels ``(N,)`` in ``[0, C)`` from the harness's stream.

    ``C`` is the layer's ``n_classes`` when it declares one (a network ending in a loss takes
    features, not logits), else the last axis of ``x`` (logits ``(N, C)``), and 2 for a single
    logit column ``(N, 1)``: a binary loss, whose labels drawn from ``[0, 1)`` would all be 0 and
    hide every error in the term of label 1.
    """
    n_classes = int(getattr(layer, "n_classes", None) or max(2, x.shape[-1]))
    return harness_rng(seed, PURPOSE_DEFAULT_LABELS).integers(0, n_classes, size=x.shape[:-1])


def _reason(
    results: List[ArgumentResult],
    findings: List[Finding],
    status: str,
    spectrum: Optional[Dict[str, float]],
) -> Optional[str]:
    if status == "pass":
        return None
    for severity in ("error", "fail"):
        for f in findings:
            if f.severity == severity:
                return f"{f.code}: {f.message}"
    for a in results:
        c = a.comparison
        if a.status == "fail":
            confirmed = f", confirmed by {a.method.split('+')[-1]}" if "+" in a.method else ""
            if a.mode == "directional":
                w = c.worst[0]
                return (
                    f"{a.name}: {c.n_failed}/{c.n_entries} random directions beyond tolerance"
                    f"{confirmed}; worst along direction {w.index[0]}: analytic projection "
                    f"{w.analytic:.6e}, numeric {w.numeric:.6e} "
                    f"(estimate error {w.error_estimate:.1e})"
                )
            if not c.worst:
                return (
                    f"{a.name}: the directional screen failed; no single wrong entry was "
                    "isolated within the budget"
                )
            w = c.worst[0]
            counted = (
                f"{c.n_failed} wrong entries named by {a.method} within the budget"
                if a.mode == "localized"
                else f"{c.n_failed}/{c.n_entries} entries beyond tolerance{confirmed}"
            )
            return (
                f"{a.name}: {counted}; "
                f"worst at {a.name}[{', '.join(str(i) for i in w.index)}]: "
                f"analytic {w.analytic:.6e}, numeric {w.numeric:.6e} "
                f"(estimate error {w.error_estimate:.1e})"
            )
    for a in results:
        c = a.comparison
        if a.status == "inconclusive":
            extra = ""
            if spectrum:
                extra = (
                    f"; covariance condition number {spectrum['condition_number']:.2e}, "
                    f"smallest eigenvalue gap {spectrum['min_gap']:.2e}"
                )
            for f in findings:
                if f.code == "backward-rounding" and f.message.startswith(f"{a.name}: "):
                    return f.message + extra
            if c.n_inconclusive == 0:
                # Judged inconclusive as a whole (param-change-swallowed, param-unreachable,
                # params-overlap): the finding that says why, not the entries' count of 0.
                for f in findings:
                    if f.severity == "warning" and repr(a.name) in f.message:
                        return f"{a.name}: {f.code}: {f.message}"
            unit = "random directions" if a.mode == "directional" else "entries"
            return (
                f"{a.name}: the numerical estimate cannot resolve the tolerance on "
                f"{c.n_inconclusive}/{c.n_entries} {unit} (its error estimate reaches "
                f"{c.max_error_estimate:.2e}){extra}"
            )
    return None


def check_layer(
    layer: Any,
    x: Any,
    *,
    dy: Optional[Array] = None,
    target: Optional[Array] = None,
    seed: int = 0,
    rtol: Optional[float] = DEFAULTS.rtol,
    atol: Optional[float] = DEFAULTS.atol,
    mode: str = DEFAULTS.mode,
    method: str = DEFAULTS.method,
    directions: Optional[int] = DEFAULTS.directions,
    check_params: bool = DEFAULTS.check_params,
    allow_float32: bool = DEFAULTS.allow_float32,
    chunk: Optional[int] = DEFAULTS.chunk,
    n_worst: int = DEFAULTS.n_worst,
    escalate: bool = DEFAULTS.escalate,
    budget: Optional[int] = DEFAULTS.budget,
) -> CheckResult:
    """Check ``layer.backward`` against a numerical gradient at input ``x``.

    Parameters
    ----------
    layer
        Any object with ``forward(x) -> y`` and ``backward(dy) -> dx`` (rows of ``x`` are
        examples); parameters, if any, in a dict ``layer.params`` with gradients written by
        backward into ``layer.grads``. A loss layer (``is_loss = True``) has
        ``forward(x, target) -> float`` and ``backward() -> dL/dx``.
    x
        The input, float64 (float32 only with ``allow_float32``, then with ``rtol = sqrt(eps32)``).
    dy
        Upstream gradient, shape of ``forward(x)``. Default: standard normal from the harness's
        stream for ``seed`` (never equal to ``default_rng(seed)`` draws, see ``harness_rng``).
    target
        Labels for a loss layer; default: uniform integers in ``[0, C)`` drawn from ``seed``,
        with ``C = layer.n_classes`` if the layer declares it, else ``x.shape[-1]``.
    rtol, atol
        Tolerances; defaults derived in :mod:`gradcheck.compare` (``rtol = sqrt(eps)``).
    mode
        ``"full"`` (every entry), ``"directional"`` (Gaussian directions) or ``"auto"``:
        directional screen, then full mode for any argument that does not pass, so that a
        failure always names its entries (by bisection within ``budget`` when full mode
        would cost more).
    method
        ``"central"``, ``"five-point"``, ``"richardson"`` or ``"complex-step"``.
    directions
        Gaussian directions per argument. Default: batches of 8, 8, 16, 32 until the screen
        resolves a single entry wrong by a relative 1e-6 (miss probability at most 1e-6), the
        budget is spent, or 64 are used; every result states what it resolves
        (``resolves_entry``, ``resolves_gradient``).
    escalate
        When a central or five-point estimate cannot resolve the tolerance, repeat that
        comparison with richardson before declaring it inconclusive (default on).
    budget
        Forward evaluations that auto mode may spend beyond its first batch of directions
        (extra directions, full-mode localization). Default ``max(256, 2^28 / x.size)``. When
        full mode would cost more, a failed screen stays a fail and bisection names wrong
        entries within the budget.

    Returns a :class:`CheckResult`; its ``status`` is ``"pass"``, ``"inconclusive"``, ``"fail"``
    or ``"error"``. Invalid options (unknown mode or method) raise ``ValueError``.

    The options (every keyword but ``dy``, ``target`` and ``seed``) and their defaults are those
    of :class:`gradcheck.options.CheckOptions`.
    """
    options = CheckOptions(
        mode=mode,
        method=method,
        rtol=rtol,
        atol=atol,
        directions=directions,
        budget=budget,
        escalate=escalate,
        allow_float32=allow_float32,
        check_params=check_params,
        chunk=chunk,
        n_worst=n_worst,
    )
    options.validate("check_layer")
    start = time.perf_counter()
    name = layer_name(layer)
    try:
        arr = np.asarray(x)
        ragged = None
    except (ValueError, TypeError) as exc:
        # Several inputs of different shapes (a tuple (q, k)): one array is what is checked.
        arr, ragged = np.zeros(0), exc
    result = CheckResult(
        layer=name, shape=tuple(arr.shape), seed=seed, mode=mode, method=method, status="error"
    )

    def finish(
        status: str,
        results: List[ArgumentResult],
        screen: List[ArgumentResult],
        findings: List[Finding],
        spectrum: Optional[Dict[str, float]],
    ) -> CheckResult:
        result.status = status
        result.arguments = results
        result.screen = screen
        result.findings = findings
        result.spectrum = spectrum
        result.reason = _reason(results, findings, status, spectrum)
        result.elapsed = time.perf_counter() - start
        return result

    def refuse(code: str, message: str) -> CheckResult:
        return finish("error", [], [], [Finding(code, "error", f"{name}: {message}")], None)

    if ragged is not None:
        shapes = (
            ", ".join(str(np.shape(part)) for part in x)
            if isinstance(x, (list, tuple))
            else type(x).__name__
        )
        return refuse(
            "x-shape",
            f"x must be one array; got a {type(x).__name__} of parts with shapes {shapes}, "
            "which NumPy cannot stack; for a layer of several inputs, check it as a function pair "
            "(gradcheck.check_functions) or pack its inputs into one array",
        )
    if not np.issubdtype(arr.dtype, np.floating):
        return refuse("x-dtype", f"x must be a floating-point array, got dtype {arr.dtype}")
    if arr.dtype != np.float64 and not (allow_float32 and arr.dtype == np.float32):
        return refuse(
            "x-dtype",
            f"x has dtype {arr.dtype}; gradient checks run in float64 (finite differences in lower "
            "precision lose most digits). Convert with x.astype(np.float64), or pass "
            "allow_float32=True to check float32 with rtol = sqrt(eps32) = 3.5e-4",
        )
    if arr.ndim == 0 or arr.size == 0:
        return refuse("x-shape", f"x must be a non-empty array, got shape {arr.shape}")
    if (idx := nonfinite_index(arr)) is not None:
        return refuse("x-nonfinite", f"x contains {arr[idx]} at index {idx}")
    x64 = np.array(arr, copy=True)
    if is_loss_layer(layer) and target is None:
        target = _draw_target(layer, x64, seed)

    options = dataclasses.replace(options, dtype=arr.dtype.name)
    checker = _Checker(layer, x64, options, dy=dy, target=target, seed=seed)
    state = LayerState.capture(layer)
    try:
        results, screen = checker.run()
    except Abort as abort:
        checker.findings.append(abort.finding)
        return finish("error", [], [], checker.findings, checker.spectrum)
    finally:
        state.restore()
    if arr.dtype == np.float32:
        checker.findings.append(
            Finding(
                "float32", "info", f"float32 input allowed; rtol = sqrt(eps32) = {checker.rtol:.2e}"
            )
        )
    statuses = [a.status for a in results] + [
        f.severity for f in checker.findings if f.severity in ("fail", "error")
    ]
    results = diagnose_results(
        results, layer=layer, x_shape=x64.shape, dy=checker.dy, rtol=checker.rtol, atol=checker.atol
    )
    return finish(worst_status(statuses), results, screen, checker.findings, checker.spectrum)

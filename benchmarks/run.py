"""Time gradient checks (ZCA whitening, tanh) against PyTorch, SciPy and numdifftools.

Usage::

    python benchmarks/run.py [--sizes 16x4,32x8,64x16,128x32,256x64] [--repeats R]
                             [--output docs/performance.md] [--quick] [--no-suite]

Every timed method runs in this one process, on the same inputs, in one run; the memory cases
and the project's commands (``gradcheck report``, ``gradcheck paper``, the test suite) run in
fresh processes after it. The Markdown report is printed to stdout (progress goes to stderr)
and, with ``--output``, written to that file; its first table is the issue's targets, each met
or not with its measured cause. The peers are optional extras (``pip install -e .[bench]``); a
missing one is noted in the tables.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):
    # Run as a script: make the repository root importable (gradcheck, layers, benchmarks).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks import detection, machine, memory, ours, peers, targets, tools
from benchmarks.peers import Outcome, Unavailable
from benchmarks.problem import DEFAULT_SIZES, EPS, Problem, make_problem, parse_sizes
from benchmarks.render import (
    Cell,
    Ratio,
    fmt_error,
    fmt_ratio,
    fmt_time,
    ratio_cell,
    ratio_value,
    table,
    time_cell,
)
from benchmarks.tanh import TANH_SHAPE, TanhProblem, make_tanh_problem
from benchmarks.targets import DetectionRun, Measured, MiB, TanhRun
from benchmarks.timing import Series, Timing, interleave, measure
from gradcheck import check_layer, relative_error
from gradcheck.check import default_budget

Runner = Callable[[], Outcome]


@dataclass(frozen=True)
class Method:
    """One row of the times table: how to build its call for a problem."""

    key: str
    label: str
    build: Callable[[Problem], Runner]
    repeats: Optional[int] = None  # a lower cap on repeats, for slow rows that set no target
    max_entries: Optional[int] = None  # not run on larger inputs (to keep the run short)
    cap: Optional[float] = None  # this row's own cap on one call, when above the run's


# Full modes and torch's slow gradcheck at 256x64 take minutes per call: their cap is raised
# (the per-cell budget then stops them after one call) so that the size is measured at all.
LONG_CAP = 1800.0
# Rows without a target at 256x64 stop at 128x32.
SMALL = 128 * 32
# torch's slow mode with its own thread count stops at 64x16: on a shared machine its OpenMP
# threads wait for a core on every small operation, and one call at 128x32 takes minutes.
DEFAULT_THREADS_SLOW = 64 * 16

METHODS: Tuple[Method, ...] = (
    Method("ours-auto", "ours: `check_layer` default (auto: adaptive screen)", ours.check),
    Method(
        "ours-directional",
        "ours: `check_layer` mode='directional' (adaptive directions)",
        lambda p: ours.check(p, mode="directional"),
    ),
    Method(
        "ours-dir3",
        "ours: `check_layer` mode='directional', directions=3",
        lambda p: ours.check(p, mode="directional", directions=3),
    ),
    Method(
        "ours-full-central",
        "ours: `check_layer` mode='full' (central)",
        lambda p: ours.check(p, mode="full", method="central"),
        cap=LONG_CAP,
    ),
    Method(
        "ours-full-five-point",
        "ours: `check_layer` mode='full', method='five-point'",
        lambda p: ours.check(p, mode="full", method="five-point"),
        max_entries=SMALL,
    ),
    Method(
        "ours-full-richardson",
        "ours: `check_layer` mode='full', method='richardson'",
        lambda p: ours.check(p, mode="full", method="richardson"),
        max_entries=SMALL,
    ),
    Method(
        "est-central",
        "ours: estimator only, central",
        lambda p: ours.estimator(p, "central"),
        max_entries=SMALL,
    ),
    Method(
        "est-five-point",
        "ours: estimator only, five-point",
        lambda p: ours.estimator(p, "five-point"),
        max_entries=SMALL,
    ),
    Method(
        "est-richardson",
        "ours: estimator only, richardson",
        lambda p: ours.estimator(p, "richardson"),
        max_entries=SMALL,
    ),
    Method(
        "torch-fast",
        "torch `gradcheck(fast_mode=True)`, 1 thread",
        lambda p: peers.torch_gradcheck(p, fast_mode=True),
    ),
    Method(
        "torch-slow",
        "torch `gradcheck` (its default: slow mode), 1 thread",
        lambda p: peers.torch_gradcheck(p, fast_mode=False),
        cap=LONG_CAP,
    ),
    Method(
        "torch-fast-dt",
        "torch `gradcheck(fast_mode=True)`, torch's default threads",
        lambda p: peers.torch_gradcheck(p, fast_mode=True, default_threads=True),
    ),
    Method(
        "torch-slow-dt",
        "torch `gradcheck` (slow mode), torch's default threads",
        lambda p: peers.torch_gradcheck(p, fast_mode=False, default_threads=True),
        max_entries=DEFAULT_THREADS_SLOW,
    ),
    Method(
        "torch-numjac",
        "torch numerical Jacobian only, then `J^T dY`",
        peers.torch_numerical_gradient,
        repeats=3,
        max_entries=SMALL,
    ),
    Method("scipy", "SciPy `approx_derivative` 3-point", peers.scipy_gradient, max_entries=SMALL),
    Method(
        "numdifftools",
        "numdifftools `Gradient` (defaults)",
        peers.numdifftools_gradient,
        max_entries=SMALL,
    ),
)

# The accuracy table: methods whose outcome carries a gradient estimate.
ACCURACY_ROWS: Tuple[Tuple[str, str], ...] = (
    ("est-central", "ours: central (h = eps^(1/3) max(1,|x_i|))"),
    ("est-five-point", "ours: five-point (h = eps^(1/5) max(1,|x_i|))"),
    ("est-richardson", "ours: richardson (h0 = 8 eps^(1/9) max(1,|x_i|), 4 levels)"),
    ("scipy", "SciPy approx_derivative 3-point"),
    ("numdifftools", "numdifftools Gradient (defaults)"),
    ("torch-numjac", "torch numerical Jacobian (eps = 1e-6) times dY"),
)

EVERY_SIZE = {f"{n}x{d}": 1.5 for n, d in DEFAULT_SIZES}
RATIOS: Tuple[Ratio, ...] = (
    Ratio(
        "torch slow gradcheck / ours default check",
        "torch-slow",
        "ours-auto",
        {"64x16": 10.0, "128x32": 10.0},
    ),
    Ratio("torch fast gradcheck / ours default check", "torch-fast", "ours-auto", {}),
    Ratio(
        "torch slow gradcheck / ours full (central)",
        "torch-slow",
        "ours-full-central",
        {"64x16": 10.0, "128x32": 10.0, "256x64": 4.0},
    ),
    Ratio(
        "torch fast gradcheck / ours directional (adaptive)",
        "torch-fast",
        "ours-directional",
        EVERY_SIZE,
    ),
    Ratio(
        "torch fast gradcheck / ours directional, directions=3",
        "torch-fast",
        "ours-dir3",
        EVERY_SIZE,
    ),
    Ratio(
        "torch slow gradcheck / ours full (five-point)", "torch-slow", "ours-full-five-point", {}
    ),
    Ratio(
        "torch slow gradcheck / ours full (richardson)", "torch-slow", "ours-full-richardson", {}
    ),
    Ratio(
        "numdifftools / ours full (richardson) (issue 3: >= 5x at 64x16)",
        "numdifftools",
        "ours-full-richardson",
        {"64x16": 5.0},
    ),
    Ratio("numdifftools / ours richardson estimator", "numdifftools", "est-richardson", {}),
    Ratio("SciPy 3-point / ours full (central)", "scipy", "ours-full-central", {}),
    Ratio("ours full (central) / its estimator alone", "ours-full-central", "est-central", {}),
    Ratio(
        "torch slow, its default threads / torch slow, 1 thread", "torch-slow-dt", "torch-slow", {}
    ),
    Ratio(
        "torch fast, its default threads / torch fast, 1 thread", "torch-fast-dt", "torch-fast", {}
    ),
)

# Tanh: the default check right and wrong, directions=3, and torch's fast mode on each.
TANH_METHODS: Tuple[Tuple[str, str, Optional[str], Callable[[TanhProblem], Runner]], ...] = (
    ("ours-auto", "ours: default check, right backward", None, ours.check),
    (
        "ours-auto-scale",
        "ours: default check, every entry 1% wrong",
        "scale",
        ours.check,
    ),
    (
        "ours-auto-sparse",
        "ours: default check, 1% of entries 1% wrong",
        "sparse",
        ours.check,
    ),
    (
        "ours-dir3",
        "ours: mode='directional', directions=3, right backward",
        None,
        lambda p: ours.check(p, mode="directional", directions=3),
    ),
    (
        "torch-fast",
        "torch `gradcheck(fast_mode=True)`, right backward",
        None,
        lambda p: peers.torch_gradcheck(p, fast_mode=True),
    ),
    (
        "torch-fast-scale",
        "torch `gradcheck(fast_mode=True)`, every entry 1% wrong",
        "scale",
        lambda p: peers.torch_gradcheck(p, fast_mode=True),
    ),
    (
        "torch-fast-sparse",
        "torch `gradcheck(fast_mode=True)`, 1% of entries 1% wrong",
        "sparse",
        lambda p: peers.torch_gradcheck(p, fast_mode=True),
    ),
)

# Call counts: (key, label, check_layer options).
COUNT_CONFIGS: Tuple[Tuple[str, str, Dict[str, Any]], ...] = (
    ("auto", "default check", {}),
    ("directional", "mode='directional'", {"mode": "directional"}),
    ("dir3", "mode='directional', directions=3", {"mode": "directional", "directions": 3}),
)

DETECTION_SEEDS = 8
DETECTION_TORCH_SEEDS = 2
MEMORY_CASES = ("zca-128x32", "zca-256x64", "tanh-5000x200", "tanh-5000x200-scale")


# -- running ---------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(method: Method, problem: Problem) -> Tuple[Optional[Runner], Optional[str]]:
    try:
        return method.build(problem), None
    except Unavailable as exc:
        return None, str(exc)


def warm_up(methods: Sequence[Method]) -> None:
    """One untimed call of every method on the smallest problem: imports and first-call costs."""
    problem = make_problem(*DEFAULT_SIZES[0])
    for method in methods:
        run, _ = build(method, problem)
        if run is not None:
            try:
                run()
            except Exception as exc:  # measured (and reported) again in the timed cells
                log(f"warm-up of {method.key} raised {type(exc).__name__}: {exc}")


def run_benchmark(
    sizes: Sequence[Tuple[int, int]],
    *,
    repeats: int,
    budget: float,
    cap: float,
) -> Tuple[List[Problem], Dict[Cell, Timing], Dict[str, float]]:
    """Time every method on every size; return the problems, the timings and cross-checks.

    Sizes run one after the other; within a size, the methods' calls are interleaved round by
    round (see :func:`benchmarks.timing.interleave`).
    """
    problems = [make_problem(n, d) for n, d in sizes]
    times: Dict[Cell, Timing] = {}
    capped_at: Dict[str, str] = {}
    cross_check: Dict[str, float] = {}
    for problem in problems:
        size = problem.label
        try:
            cross_check[size] = relative_error(problem.grad, peers.torch_autograd_gradient(problem))
        except Unavailable:
            pass
        series: Dict[str, Series] = {}
        for method in METHODS:
            if method.key in capped_at:
                times[method.key, size] = Timing(
                    capped=cap, note=f"not run: over the cap at {capped_at[method.key]}"
                )
                continue
            if method.max_entries is not None and problem.x.size > method.max_entries:
                times[method.key, size] = Timing(note="not run at this size (run time)")
                continue
            run, missing = build(method, problem)
            if run is None:
                times[method.key, size] = Timing(note=missing)
                continue
            series[method.key] = Series(
                run,
                repeats=min(repeats, method.repeats or repeats),
                budget=budget,
                cap=max(cap, method.cap or cap),
            )
        interleave(list(series.values()))
        for key, s in series.items():
            times[key, size] = s.timing
            if s.timing.capped is not None:
                capped_at[key] = size
            log(f"{size:>7}  {key:<22} {time_cell(s.timing)}")
    return problems, times, cross_check


def run_counts(problems: Sequence[Problem]) -> Dict[Cell, ours.Counts]:
    """Forward and backward calls of one check per configuration and size (not timed)."""
    counts: Dict[Cell, ours.Counts] = {}
    for problem in problems:
        for key, _, options in COUNT_CONFIGS:
            counts[key, problem.label] = ours.call_counts(problem, **options)
    return counts


def run_tanh(repeats: int, budget: float, cap: float) -> TanhRun:
    """The tanh section: interleaved timings, the forward's own time, call counts."""
    base = make_tanh_problem(*TANH_SHAPE)
    series: Dict[str, Series] = {}
    times: Dict[str, Timing] = {}
    for key, _, wrong, make in TANH_METHODS:
        try:
            run = make(base.with_wrong(wrong))
        except Unavailable as exc:
            times[key] = Timing(note=str(exc))
            continue
        series[key] = Series(run, repeats=repeats, budget=budget, cap=cap)
    interleave(list(series.values()))
    for key, s in series.items():
        times[key] = s.timing
        log(f"{base.label:>9}  tanh {key:<18} {time_cell(s.timing)}")
    layer = base.layer()
    forward = measure(lambda: layer.forward(base.x), repeats=5, budget=5.0, cap=cap)
    counts = {
        "right": ours.call_counts(base),
        "scale": ours.call_counts(base.with_wrong("scale")),
        "sparse": ours.call_counts(base.with_wrong("sparse")),
    }
    return TanhRun(
        base.label, base.x.size, times, forward.median, counts, default_budget(base.x.size)
    )


def run_detection(seeds: int, torch_seeds: int) -> DetectionRun:
    trials = detection.run_ours(seeds)
    missed = [
        f"seed {t.planted.seed}: {t.wrong.status} ({t.wrong.detail or 'one screen'}), the "
        f"right twin's screen resolves {t.right.resolves_entry or float('nan'):.1e}"
        for t in trials
        if not t.caught
    ]
    torch_rows: List[Tuple[str, float]] = []
    try:
        for _, out, seconds in detection.run_torch(
            torch_seeds, peers.torch_zca_wrong_entry, peers.torch_gradcheck
        ):
            torch_rows.append((out.status or "?", seconds))
    except Unavailable:
        pass
    return DetectionRun(
        label=f"{detection.DETECTION_SIZE[0]}x{detection.DETECTION_SIZE[1]}",
        seeds=seeds,
        caught=sum(t.caught for t in trials),
        named=sum(t.named_it for t in trials),
        twin_passed=sum(t.right.status == "pass" for t in trials),
        resolves=[t.right.resolves_entry or float("nan") for t in trials],
        wrong_seconds=[t.wrong_seconds for t in trials],
        right_seconds=[t.right_seconds for t in trials],
        torch=torch_rows,
        missed=missed,
    )


def run_memory(cases: Sequence[str]) -> List[dict]:
    out = []
    for case in cases:
        try:
            out.append(memory.run_case(case))
        except (RuntimeError, OSError, ValueError) as exc:
            out.append({"case": case, "error": str(exc)})
        log(f"memory {case}: {out[-1]}")
    return out


def run_tools(suite: bool) -> Dict[str, tools.CommandTiming]:
    found = {
        "imports": tools.time_command(*tools.IMPORTS, repeats=3),
        "report": tools.time_command(*tools.REPORT, repeats=3),
        "report-one": tools.time_command(*tools.REPORT_ONE, repeats=3),
        "paper": tools.time_command(*tools.PAPER),
        "paper-one": tools.time_command(*tools.PAPER_ONE),
    }
    if suite:
        found["suite"] = tools.time_command(*tools.SUITE)
    for key, t in found.items():
        log(f"command {key}: {t.seconds} {t.last_line}")
    return found


# -- the report ------------------------------------------------------------------------------


def accuracy_section(problems: Sequence[Problem], times: Dict[Cell, Timing]) -> List[str]:
    sizes = [p.label for p in problems]
    rows = []
    for key, label in ACCURACY_ROWS:
        row = [label]
        for problem in problems:
            timing = times.get((key, problem.label))
            grad = getattr(timing.outcome, "gradient", None) if timing else None
            if timing is None or grad is None:
                row.append(time_cell(timing) if timing and not timing.ok else "-")
                continue
            row.append(
                f"{fmt_error(relative_error(problem.grad, grad))} ({fmt_time(timing.median)})"
            )
        rows.append(row)
    bound_rows = []
    for key, label in ACCURACY_ROWS[:3]:
        row = [label.split(" (")[0]]
        for problem in problems:
            timing = times.get((key, problem.label))
            outcome = timing.outcome if timing else None
            if outcome is None or outcome.error is None:
                row.append("-")
                continue
            actual = np.abs(outcome.gradient - problem.grad)
            worst = float(np.max(actual / np.maximum(outcome.error, 1e-300)))
            row.append(f"{worst:.2g}")
        bound_rows.append(row)
    return [
        "Relative error `||g_num - g|| / max(||g||, ||g_num||)` (2-norm) of each numeric gradient "
        "against the analytic one, `ZCAWhitening.backward(dY)`; the median time of the estimate "
        "in parentheses.",
        "",
        *table(["estimate", *sizes], rows),
        "",
        "Our estimators return an error estimate beside every entry. Largest ratio of the actual "
        "error to the estimated one over all entries (at most 1 means the estimate bounded the "
        "error of every entry):",
        "",
        *table(["estimator", *sizes], bound_rows),
    ]


PEERS_TEXT = """\
All methods answer the same question, "is the backward of `ZCAWhitening` right at this `X`?",
each the way a user of that tool would ask it:

- **ours, `check_layer`** computes the numeric gradient of the scalar `L(X) = <f(X), dY>` (a
  vector-Jacobian product, `N*D` numbers) and compares it with `backward(dY)`, after hygiene
  checks (arguments not mutated, backward repeatable and linear in `dY`, stacked evaluation
  consistent). *Full* mode estimates every entry (central: 4 forward evaluations per entry, the
  second step giving the error estimate; five-point and richardson: more, see
  `docs/estimators.md`). *Directional* mode estimates `<grad L, v>` for Gaussian directions `v`:
  by default in batches of 8, 8, 16, 32 until the screen resolves a single entry wrong by a
  relative 1e-6 (or its budget is spent), each band of the gradient's magnitude apart;
  `directions=3` fixes three. The *default* (`mode="auto"`) is that adaptive screen, then, for an
  argument that does not pass, full mode, or bisection within a budget of forward evaluations
  (`budget=`, default `max(256, 2^28 / N*D)`) when full mode would cost more. A central estimate
  that cannot resolve the tolerance is repeated with richardson before a verdict (escalation;
  the bracketed trails in the tables). Perturbed inputs are evaluated as stacks in one forward
  call (the layer declares `supports_batch`).
- **ours, estimator only**: `gradcheck.finite_diff.partial_derivatives` on the same batched
  objective, with `check_layer`'s chunk size and BLAS thread limit: estimation without the
  harness around it.
- **torch `gradcheck`** (its default, slow mode) on `X -> f(X)` written in PyTorch (float64,
  `torch.linalg.eigh`), `eps=1e-6, atol=1e-5, rtol=1e-3`: the full numerical Jacobian
  (`N*D x N*D`, two forwards per input entry) against the full analytical Jacobian (one backward
  per output entry). It answers a larger question (every VJP at once) than the one a backward
  test needs; it is what a PyTorch user who does not choose runs.
- **torch `gradcheck(fast_mode=True)`**: one scalar `v^T J u` for random `u, v`, numerically
  (central differences along `u`) against analytically (a backward with `v`).
- **torch's default threads**: the rows so marked run each call with PyTorch's own intra-op
  thread count (as it chose at import), the issue's "torch with its defaults"; the `1 thread`
  rows run under the benchmark's limit, like everything else, and are the ones the targets
  use (see the note under the targets table).
- **torch numerical Jacobian**: `torch.autograd.gradcheck._get_numerical_jacobian` (the routine
  of slow mode, same `eps`) contracted with `dY`, to give torch's numeric estimate of the same
  gradient for the accuracy table.
- **SciPy** `scipy.optimize._numdiff.approx_derivative(L, x, method="3-point")`, on the scalar
  `L` of the flattened input: 2 calls of `L` per entry, step `eps^(1/3) max(1, |x_i|)`, no
  error estimate. (A private SciPy module; `scipy.optimize.approx_fprime` is its public 2-point
  relative.)
- **numdifftools** `nd.Gradient(L)(x)` with its defaults: central differences at 15 steps from
  a `MaxStepGenerator` (base step 2, ratio 2), Richardson extrapolation: 30 calls of `L` per
  entry.

PyTorch's `f` is a transcription of `layers.whitening.zca_forward`; its autograd gradient agrees
with `ZCAWhitening.backward` to the relative difference shown under "Cross-check" above, so the
analytic reference is confirmed independently."""


def discipline_text(args: argparse.Namespace) -> str:
    sentences = [
        "Timing discipline: every method is first called once, untimed, on the 16x4 problem "
        "(imports and first-call costs).",
        "In each cell the first call is a warm-up, discarded when it takes under 1 s; then up to "
        f"{args.repeats} timed calls follow, fewer once the cell has used {args.budget:g} s "
        "(so a call of a minute is timed once: `n 1`).",
        "The calls of one size are interleaved, one call of every method per round, so that a "
        "change in the machine's load is shared by all methods.",
        "The table gives the median, the minimum and the number of timed calls `n`; the "
        "garbage collector is off during each call.",
        f"A call still running after {args.cap:g} s ({LONG_CAP:g} s for the full modes and "
        "torch's slow mode, which take minutes at 256x64) is interrupted and the cell reads "
        "`> cap`; larger sizes of that method are then not run.",
        f"Rows that set no target stop at {SMALL} entries (128x32) to keep the run short.",
        "Ratios are ratios of medians, all measured in this one process and run.",
        f"Threads for the whole run: {args.thread_note}. One thread is the default because "
        "these problems are small (one `eigh` of a `D x D` matrix per forward) and threaded code "
        "stalls whenever another process holds a core; `--threads none` leaves each library "
        'its own setting. The rows marked "torch\'s default threads" lift the limit for '
        f"PyTorch during each call ({peers.torch_default_threads()} intra-op threads).",
        f"`check_layer` itself limits BLAS to one thread for inputs of at least "
        f"{ours.thread_limit_size()} entries while it checks.",
        "Cells marked **inconclusive** or **fail** carry that check's verdict; a bracketed trail "
        "lists the comparisons a check made when it made more than one (for example a central "
        "screen that could not resolve the tolerance, repeated with richardson: the time "
        "includes both).",
    ]
    return " ".join(sentences)


def openblas_note(facts: Sequence[Tuple[str, str]]) -> str:
    """What the machine's OpenBLAS variables mean for these figures (the environment's advice)."""
    core = os.environ.get("OPENBLAS_CORETYPE")
    kernels = sorted({v.split("kernel ")[-1] for k, v in facts if "kernel " in v})
    chosen = ", ".join(kernels) if kernels else "unknown (threadpoolctl not installed)"
    if not core:
        return (
            "`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` are not set in this run: NumPy's "
            f"OpenBLAS chose its kernel itself ({chosen}). On some processors this environment "
            "sets both, because older OpenBLAS builds compute wrong results or crash there; they "
            "slow a current NumPy, so a benchmark may unset both in its own command alone "
            "(`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py ...`) and "
            "check the kernel above. Tests and CI keep them as they are."
        )
    return (
        f"`OPENBLAS_CORETYPE={core}` is set on this machine (older OpenBLAS builds compute wrong "
        f"results or crash on this processor otherwise); NumPy's OpenBLAS ran kernel {chosen}. "
        "It slows a current NumPy's LAPACK calls (the `eigh` that dominates the ZCA forward) and "
        "was left as it is; to measure without it, unset it and `OPENBLAS_L2_SIZE` in the "
        "benchmark's own command alone (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...`), "
        "never in tests or CI. PyTorch uses its own MKL and is not affected."
    )


def torch_threads_note(times: Dict[Cell, Timing], sizes: Sequence[str]) -> str:
    """Why the targets compare with torch on one thread, from this run's own figures."""
    parts = []
    for key, one, what in (
        ("torch-slow-dt", "torch-slow", "slow mode"),
        ("torch-fast-dt", "torch-fast", "`fast_mode`"),
    ):
        ratios = [
            f"{s}: {fmt_ratio(v)}"
            for s in sizes
            for v in [ratio_value(times, Ratio("", key, one, {}), s)[0]]
            if v is not None
        ]
        if ratios:
            parts.append(f"{what} {', '.join(ratios)}")
    measured = (
        " In this run torch with its own thread count took, as a multiple of its one-thread "
        "time: " + "; ".join(parts) + "."
        if parts
        else ""
    )
    return (
        "Ratios against torch use torch on one thread, like ours; torch with its own thread "
        f'count ({peers.torch_default_threads()}, the issue\'s "torch with its defaults") is '
        f"timed beside it, in slow mode up to {DEFAULT_THREADS_SLOW} entries only (its threads "
        "wait for a core whenever another process holds one, which makes its time at larger "
        "sizes a measure of the machine's other load). Where both are measured, a target is "
        "judged against the faster of the two." + measured
    )


def workers_note(has_workers: bool) -> str:
    if has_workers:
        return (
            "`check_layer` has a `workers` option; this benchmark still runs it with its "
            "default only."
        )
    return (
        "**Workers.** `gradcheck report`, `gradcheck paper` and `gradcheck mutants` run their "
        "checks side by side in forked workers (`--workers`, default every core; the commands "
        "are timed below with both). `check_layer` has no `workers` option at this commit (its "
        "signature is read at run time), so every per-check figure of ours is one process, "
        "with BLAS limited as stated."
    )


def counts_section(sizes: Sequence[str], counts: Dict[Cell, ours.Counts]) -> List[str]:
    rows = []
    for key, label, _ in COUNT_CONFIGS:
        row = [label]
        for size in sizes:
            c = counts.get((key, size))
            row.append("-" if c is None else f"{c.forward} / {c.points} / {c.backward}")
        rows.append(row)
    return [
        "Calls into the layer by one check, counted by a subclass of the layer (not timed): "
        "forward calls / points they evaluated (a stacked call of `k` inputs counts `k`) / "
        "backward calls. The contract checks (mutation, repeatability, linearity in `dy`, "
        "stale caches, stacked evaluation) are included.",
        "",
        *table(["check", *sizes], rows),
    ]


def tanh_section(t: Optional[TanhRun]) -> List[str]:
    if t is None:
        return ["Not run (`--no-tanh`)."]
    rows = []
    for key, label, _, _ in TANH_METHODS:
        timing = t.times.get(key)
        o = timing.outcome if timing is not None else None
        named = "-"
        if o is not None and o.named is not None:
            named = f"{o.named} (worst at {o.worst})"
        evaluations = f"{o.evaluations:,}" if o is not None and o.evaluations is not None else "-"
        resolves = (
            f"{o.resolves_entry:.1e}" if o is not None and o.resolves_entry is not None else "-"
        )
        status = o.status if o is not None and o.status else "-"
        rows.append([label, time_cell(timing), status, named, evaluations, resolves])
    missed = [
        label
        for key, label, wrong, _ in TANH_METHODS
        if wrong is not None
        and key.startswith("torch")
        and getattr(t.times.get(key), "outcome", None) is not None
        and t.times[key].outcome.status == "pass"
    ]
    torch_note: List[str] = []
    if missed:
        torch_note = [
            f"torch's `fast_mode` passed {len(missed)} wrong twin(s) above. It compares the "
            "scalar `v^T J u` with an absolute tolerance scaled by `sum(u) * sum(v)` (its "
            "`_adjusted_atol` in `torch/autograd/gradcheck.py`), `u` and `v` being non-negative "
            f"unit vectors drawn uniform: about `0.75 N*D` = {0.75 * t.size:.0e} times its "
            "`atol=1e-5` here, far above a 1% error of `v^T J u` for a diagonal Jacobian.",
            "",
        ]
    count_rows = [
        [
            kind,
            f"{c.forward}",
            f"{c.points}",
            f"{c.backward}",
            fmt_time(c.points * t.forward_seconds),
        ]
        for kind, c in t.counts.items()
    ]
    return [
        f"`y = tanh(X)` on a `{t.label}` standard-normal `X` ({t.size:,} entries), "
        "`L = <tanh(X), dY>`: a layer whose forward is cheap (one forward "
        f"{fmt_time(t.forward_seconds)}), so the check's own cost shows. The layer is "
        "`benchmarks/tanh.py`'s `TanhLayer`; its wrong twins multiply every entry of `dx` by 1.01 "
        "(*every entry 1% wrong*) or 1% of the entries, a fixed random mask, by 1.01 (*1% of "
        "entries 1% wrong*). torch runs `torch.tanh`, or for a wrong twin a "
        "`torch.autograd.Function` with the same wrong backward. torch's default (slow) "
        f"gradcheck is not run: its dense Jacobians would have {t.size**2:.0e} entries each "
        f"({t.size**2 * 8 / 1e12:.0f} TB in float64). The default budget at this size is "
        f"{t.budget} forward evaluations beyond the first batch of directions.",
        "",
        *table(
            ["check", "time", "verdict", "entries named", "evaluations", "resolves_entry"], rows
        ),
        "",
        *torch_note,
        "Calls into the layer by one default check, and what those forwards cost at the time of "
        "one forward (the rest of a check's time is the harness's own array work):",
        "",
        *table(
            ["backward", "forward calls", "points", "backward calls", "forward time"], count_rows
        ),
    ]


def detection_section(d: Optional[DetectionRun]) -> List[str]:
    if d is None:
        return ["Not run (`--no-detection`)."]
    torch_text = "torch's default (slow) gradcheck was not run (PyTorch not installed)."
    if d.torch:
        passes = sum(status == "pass" for status, _ in d.torch)
        torch_text = (
            f"torch's default (slow) gradcheck, on the first {len(d.torch)} of these wrong "
            f"backwards (a `torch.autograd.Function` whose backward scales the same entry): "
            f"caught {len(d.torch) - passes}/{len(d.torch)}, median "
            f"{fmt_time(float(np.median([sec for _, sec in d.torch])))} per call (its `atol=1e-5, "
            "rtol=1e-3` on Jacobian entries are far above a 1e-6 relative error of one entry)."
        )
    finite = [r for r in d.resolves if np.isfinite(r)]
    resolves = f"{max(finite):.1e}" if finite else "-"
    return [
        f"The default check on ZCA {d.label} with one entry of the backward wrong by 1e-6 of a "
        "typical entry (the gradient's root mean square), as `benchmarks/detection.py` states: "
        f"{d.seeds} seeds, each its own `X`, `dY`, wrong entry and harness seed.",
        "",
        *table(
            ["", "result", "median time"],
            [
                [
                    "wrong backward: `fail`",
                    f"{d.caught}/{d.seeds} (the worst entry named is the planted one on "
                    f"{d.named}/{d.seeds})",
                    fmt_time(float(np.median(d.wrong_seconds))),
                ],
                [
                    "right twin: `pass`",
                    f"{d.twin_passed}/{d.seeds} (its screen resolves a single entry wrong by "
                    f"{resolves} at worst)",
                    fmt_time(float(np.median(d.right_seconds))),
                ],
            ],
        ),
        "",
        torch_text,
        *([""] + [f"Missed: {line}." for line in d.missed] if d.missed else []),
    ]


def memory_section(results: Sequence[dict]) -> List[str]:
    if not results:
        return ["Not run (`--no-memory`)."]
    rows = []
    for r in results:
        label = memory.CASES[r["case"]][0] if r.get("case") in memory.CASES else str(r.get("case"))
        if "error" in r:
            rows.append([label, r["error"], "", "", "", "", "", ""])
            continue
        held = r.get("held_after_contracts")
        rows.append(
            [
                label,
                r["status"],
                f"{r['chunk']} x {r['size']:,} = {r['chunk_bytes'] / MiB:.2f} MiB",
                f"{r['layer_single'] / MiB:.2f} / {r['layer_stack'] / MiB:.2f} MiB",
                f"{r['traced_peak'] / MiB:.1f} MiB",
                f"{r['rss_growth'] / MiB:.1f} MiB" + ("" if r["rss_reset"] else " (<=)"),
                "-" if held is None else f"{held / MiB:.1f} MiB",
                f"{r['directions']} (batch {r['largest_batch']})",
            ]
        )
    return [
        "Each case in a fresh process (`python -m benchmarks.memory CASE`): the stacked chunk "
        "bound is one stacked input of `chunk` points (`default_chunk`); the layer's own use is "
        "the peak traced during one forward and backward at `X` / one forward of a `chunk` "
        "stack; the check's peak is traced by `tracemalloc` (NumPy reports its buffers to it) "
        "and, in a separate untraced run, read as the growth of the peak resident set "
        "(`VmHWM`, reset before the check) over the resident set before it; *held* is what is "
        "still traced when the check's forward, backward and contract checks return; "
        "*directions* are those the screen used, and the largest batch of them it held at once.",
        "",
        *table(
            [
                "case",
                "verdict",
                "chunk bound",
                "layer's own use",
                "check peak (traced)",
                "peak RSS growth",
                "held",
                "directions",
            ],
            rows,
        ),
    ]


def tools_section(found: Dict[str, tools.CommandTiming]) -> List[str]:
    rows = []
    for key, (label, args) in (
        ("imports", tools.IMPORTS),
        ("report", tools.REPORT),
        ("report-one", tools.REPORT_ONE),
        ("paper", tools.PAPER),
        ("paper-one", tools.PAPER_ONE),
        ("suite", tools.SUITE),
    ):
        t = found.get(key)
        if t is None:
            rows.append([f"`{label}`", "not run", "", ""])
            continue
        if t.median is None:
            rows.append([f"`{label}`", t.note or "-", "", ""])
            continue
        rows.append(
            [
                f"`python {' '.join(args)}`",
                f"{fmt_time(t.median)} (n {len(t.seconds)})",
                ", ".join(str(c) for c in sorted(set(t.returncodes))),
                t.last_line.replace("|", "/"),
            ]
        )
    return [
        "Each command in a fresh process, in the repository root, with this checkout first on "
        "`PYTHONPATH` (so interpreter start and imports are included), after the timings above.",
        "",
        *table(["command", "wall time", "exit", "its last line"], rows),
    ]


def render(
    args: argparse.Namespace,
    problems: Sequence[Problem],
    times: Dict[Cell, Timing],
    cross_check: Dict[str, float],
    elapsed: float,
    cpu_start: Optional[machine.CpuSample],
    cpu_end: Optional[machine.CpuSample],
    facts: Sequence[Tuple[str, str]],
    measured: Measured,
) -> str:
    sizes = [p.label for p in problems]
    time_rows = [[m.label] + [time_cell(times.get((m.key, s))) for s in sizes] for m in METHODS]
    ratio_rows = [[r.label] + [ratio_cell(times, r, s) for s in sizes] for r in RATIOS]
    cross = [fmt_error(cross_check.get(s)) for s in sizes]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    target_rows = targets.table_rows(targets.all_targets(measured))
    lines = [
        "# Performance: gradient checks at scale, against PyTorch, SciPy, numdifftools",
        "",
        "Reproduce (the peers are the optional extras `bench`: `pip install -e .[bench]`):",
        "",
        "```",
        args.command,
        "```",
        "",
        f"This file is written by that command; the run of {now} took {elapsed:.0f} s in all.",
        "",
        "## Targets (issue 16)",
        "",
        "Each target of the issue, the figure this run measured, and for a target not met its "
        "measured cause. Ratios are of medians (peer over ours: above 1, ours is faster).",
        "",
        *table(["target", "measured", "", "cause (measured)"], target_rows),
        "",
        torch_threads_note(times, sizes),
        "",
        workers_note(measured.workers_option),
        "",
        "## Machine",
        "",
        *table(["", ""], facts),
        "",
        machine.contention_text(cpu_start, cpu_end),
        "",
        openblas_note(facts),
        "",
        "## ZCA whitening: times",
        "",
        f"`f(X)` is ZCA whitening of an `N x D` batch, `ZCAWhitening(eps={EPS:g})` (centred, "
        "covariance over features, `D x D`), and the objective is `L(X) = <f(X), dY>` for a fixed "
        "standard-normal `dY`; `X` is standard normal. Every method below differentiates this "
        "same function at the same `X` and `dY`. Median wall-clock time per call (minimum and "
        "number of calls in parentheses).",
        "",
        *table(["method", *sizes], time_rows),
        "",
        discipline_text(args),
        "",
        "## ZCA whitening: ratios",
        "",
        "Median time of the peer over median time of ours (above 1: ours is faster), with the "
        "issue's targets where it sets one.",
        "",
        *table(["ratio", *sizes], ratio_rows),
        "",
        "## Calls per check",
        "",
        *counts_section(sizes, measured.counts),
        "",
        "## A cheap row-wise layer: tanh at 5000x200",
        "",
        *tanh_section(measured.tanh),
        "",
        "## Detection: one entry wrong by 1e-6",
        "",
        *detection_section(measured.detection),
        "",
        "## Memory",
        "",
        *memory_section(measured.memory),
        "",
        "## The project's commands",
        "",
        *tools_section(measured.tools),
        "",
        "## Accuracy",
        "",
        *accuracy_section(problems, times),
        "",
        "Cross-check of the analytic reference: relative difference between "
        "`ZCAWhitening.backward(dY)` and PyTorch autograd's gradient of `L`:",
        "",
        *table(["", *sizes], [["backward vs torch autograd", *cross]]),
        "",
        "`ZCAWhitening` does not declare `supports_complex` (its `eigh` is not holomorphic), so "
        "the complex-step estimator does not apply and is not listed.",
        "",
        "## What each method computes",
        "",
        PEERS_TEXT,
        "",
    ]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------

DEFAULT_SIZE_TEXT = ",".join(f"{n}x{d}" for n, d in DEFAULT_SIZES)
QUICK_SIZE_TEXT = "16x4,32x8,64x16"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Time gradient checks against PyTorch, SciPy, numdifftools (ZCA, tanh).",
    )
    parser.add_argument(
        "--sizes", help=f"comma-separated NxD ZCA sizes (default: {DEFAULT_SIZE_TEXT})"
    )
    parser.add_argument("--repeats", type=int, help="timed calls per cell (default 5; quick 3)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: ZCA sizes up to 64x16, 3 repeats, 3 s per cell, 20 s cap, no test "
        "suite, fewer detection seeds",
    )
    parser.add_argument(
        "--threads",
        default="1",
        help="threads for BLAS, OpenMP and PyTorch during the run (default 1); 'none' leaves "
        "each library's own setting",
    )
    parser.add_argument("--budget", type=float, help="seconds per cell before repeats stop")
    parser.add_argument("--cap", type=float, help="seconds after which one call is interrupted")
    parser.add_argument("--no-suite", action="store_true", help="do not time the test suite")
    parser.add_argument("--no-tanh", action="store_true", help="skip the tanh section")
    parser.add_argument("--no-detection", action="store_true", help="skip the detection section")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory section")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "sizes": QUICK_SIZE_TEXT if quick else DEFAULT_SIZE_TEXT,
        "repeats": 3 if quick else 5,
        "budget": 3.0 if quick else 15.0,
        "cap": 20.0 if quick else 60.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads.lower() == "none":
        args.threads = None
    else:
        try:
            args.threads = int(args.threads)
        except ValueError:
            parser.error(f"--threads must be a positive integer or 'none', got {args.threads!r}")
        if args.threads < 1:
            parser.error("--threads must be at least 1")
    try:
        args.size_list = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    args.suite = not (args.no_suite or quick)
    args.detection_seeds = 2 if quick else DETECTION_SEEDS
    args.detection_torch_seeds = 1 if quick else DETECTION_TORCH_SEEDS
    shown = ["python", "benchmarks/run.py"]
    if quick:
        shown.append("--quick")
    if args.sizes != defaults["sizes"]:
        shown += ["--sizes", args.sizes]
    for flag in ("repeats", "budget", "cap"):
        if getattr(args, flag) != defaults[flag]:
            shown += [f"--{flag}", f"{getattr(args, flag):g}"]
    if args.threads != 1:
        shown += ["--threads", "none" if args.threads is None else str(args.threads)]
    for flag in ("no_suite", "no_tanh", "no_detection", "no_memory"):
        if getattr(args, flag):
            shown.append("--" + flag.replace("_", "-"))
    if args.output is not None:
        shown += ["--output", str(args.output)]
    args.command = " ".join(shown)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start, cpu_start = time.perf_counter(), machine.cpu_sample()
    with machine.thread_limit(args.threads) as args.thread_note:
        warm_up(METHODS)
        facts = machine.facts()  # inside the limit: the thread counts the methods ran with
        problems, times, cross_check = run_benchmark(
            args.size_list, repeats=args.repeats, budget=args.budget, cap=args.cap
        )
        counts = run_counts(problems)
        tanh_run = None
        if not args.no_tanh:
            tanh_run = run_tanh(min(args.repeats, 3), args.budget, args.cap)
        detection_run = None
        if not args.no_detection:
            detection_run = run_detection(args.detection_seeds, args.detection_torch_seeds)
    # Fresh processes, outside the limit: each sets up as a user's would.
    memory_results = [] if args.no_memory else run_memory(MEMORY_CASES)
    tool_results = run_tools(args.suite)
    elapsed, cpu_end = time.perf_counter() - start, machine.cpu_sample()
    measured = Measured(
        sizes=[p.label for p in problems],
        entries={p.label: int(p.x.size) for p in problems},
        times=times,
        counts=counts,
        tanh=tanh_run,
        detection=detection_run,
        memory=memory_results,
        tools=tool_results,
        workers_option="workers" in inspect.signature(check_layer).parameters,
        thread_scaling=machine.eigh_thread_scaling(),
    )
    text = render(args, problems, times, cross_check, elapsed, cpu_start, cpu_end, facts, measured)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        log(f"wrote {args.output}")
    log(f"total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

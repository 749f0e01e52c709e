"""Time gradient checks of ZCA whitening: the harness against PyTorch, SciPy and numdifftools.

Usage::

    python benchmarks/run.py [--sizes 16x4,32x8,64x16,128x32] [--repeats R]
                             [--output docs/performance.md] [--quick]

Every method runs in this one process, on the same inputs, in one run. The Markdown report is
printed to stdout (progress goes to stderr) and, with ``--output``, written to that file. The
peers are optional extras (``pip install -e .[bench]``); a missing one is noted in the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):
    # Run as a script: make the repository root importable (gradcheck, layers, benchmarks).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks import machine, ours, peers
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
from benchmarks.timing import Series, Timing, interleave
from gradcheck import relative_error

Runner = Callable[[], Outcome]


@dataclass(frozen=True)
class Method:
    """One row of the times table: how to build its call for a problem."""

    key: str
    label: str
    build: Callable[[Problem], Runner]
    repeats: Optional[int] = None  # a lower cap on repeats, for slow rows that set no target


METHODS: Tuple[Method, ...] = (
    Method("ours-auto", "ours: `check_layer` default (directional screen)", ours.check),
    Method(
        "ours-directional",
        "ours: `check_layer` mode='directional'",
        lambda p: ours.check(p, mode="directional"),
    ),
    Method(
        "ours-full-central",
        "ours: `check_layer` mode='full' (central)",
        lambda p: ours.check(p, mode="full", method="central"),
    ),
    Method(
        "ours-full-richardson",
        "ours: `check_layer` mode='full', method='richardson'",
        lambda p: ours.check(p, mode="full", method="richardson"),
    ),
    Method(
        "est-central",
        "ours: estimator only, central",
        lambda p: ours.estimator(p, "central"),
    ),
    Method(
        "est-five-point",
        "ours: estimator only, five-point",
        lambda p: ours.estimator(p, "five-point"),
    ),
    Method(
        "est-richardson",
        "ours: estimator only, richardson",
        lambda p: ours.estimator(p, "richardson"),
    ),
    Method(
        "torch-fast",
        "torch `gradcheck(fast_mode=True)`",
        lambda p: peers.torch_gradcheck(p, fast_mode=True),
    ),
    Method(
        "torch-slow",
        "torch `gradcheck` (slow mode)",
        lambda p: peers.torch_gradcheck(p, fast_mode=False),
    ),
    Method(
        "torch-numjac",
        "torch numerical Jacobian only, then `J^T dY`",
        peers.torch_numerical_gradient,
        repeats=3,
    ),
    Method("scipy", "SciPy `approx_derivative` 3-point", peers.scipy_gradient),
    Method("numdifftools", "numdifftools `Gradient` (defaults)", peers.numdifftools_gradient),
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

RATIOS: Tuple[Ratio, ...] = (
    Ratio(
        "torch slow gradcheck / ours full (central)",
        "torch-slow",
        "ours-full-central",
        {"16x4": 50.0, "64x16": 10.0},
    ),
    Ratio(
        "torch fast gradcheck / ours default check",
        "torch-fast",
        "ours-auto",
        {"64x16": 1.0, "128x32": 1.0},
    ),
    Ratio("torch fast gradcheck / ours directional", "torch-fast", "ours-directional", {}),
    Ratio(
        "numdifftools / ours full (richardson)",
        "numdifftools",
        "ours-full-richardson",
        {"64x16": 5.0},
    ),
    Ratio("numdifftools / ours richardson estimator", "numdifftools", "est-richardson", {}),
    Ratio(
        "torch slow gradcheck / ours full (richardson)", "torch-slow", "ours-full-richardson", {}
    ),
    Ratio("SciPy 3-point / ours full (central)", "scipy", "ours-full-central", {}),
    Ratio("ours full (central) / its estimator alone", "ours-full-central", "est-central", {}),
)


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
            run, missing = build(method, problem)
            if run is None:
                times[method.key, size] = Timing(note=missing)
                continue
            series[method.key] = Series(
                run, repeats=min(repeats, method.repeats or repeats), budget=budget, cap=cap
            )
        interleave(list(series.values()))
        for key, s in series.items():
            times[key, size] = s.timing
            if s.timing.capped is not None:
                capped_at[key] = size
            log(f"{size:>7}  {key:<22} {time_cell(s.timing)}")
    return problems, times, cross_check


# -- the report ------------------------------------------------------------------------------


def accuracy_section(problems: Sequence[Problem], times: Dict[Cell, Timing]) -> List[str]:
    sizes = [p.label for p in problems]
    rows = []
    for key, label in ACCURACY_ROWS:
        row = [label]
        for problem in problems:
            timing = times.get((key, problem.label))
            grad = getattr(timing.outcome, "gradient", None) if timing else None
            if grad is None:
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


def error_of(times: Dict[Cell, Timing], problems: Sequence[Problem], key: str, size: str) -> float:
    timing = times.get((key, size))
    grad = getattr(timing.outcome, "gradient", None) if timing else None
    problem = next(p for p in problems if p.label == size)
    return relative_error(problem.grad, grad) if grad is not None else float("nan")


def _ratio_of(times: Dict[Cell, Timing], num: str, den: str, size: str) -> Optional[str]:
    """``"12.3x"`` for ``median(num) / median(den)`` at ``size``, or ``None`` if not measured."""
    value, bound = ratio_value(times, Ratio("", num, den, {}), size)
    if value is None:
        return None
    return ("> " if bound else "") + fmt_ratio(value)


def _minima_ratio(times: Dict[Cell, Timing], num: str, den: str, size: str) -> Optional[str]:
    a, b = times.get((num, size)), times.get((den, size))
    if a is None or b is None or not a.ok or not b.ok:
        return None
    return fmt_ratio(a.minimum / b.minimum)


def target_lines(problems: Sequence[Problem], times: Dict[Cell, Timing]) -> List[str]:
    """The issue's targets, each stated as met or not with the figures of this run."""
    sizes = {p.label for p in problems}
    lines: List[str] = []

    def verdict(ratio: Ratio, size: str) -> str:
        if size not in sizes:
            return f"{size}: not measured in this run"
        value, bound = ratio_value(times, ratio, size)
        if value is None:
            return f"{size}: not measured (a method was unavailable)"
        num = times[ratio.numerator, size]
        den = times[ratio.denominator, size]
        num_text = f"> {num.capped:.0f} s" if num.capped is not None else fmt_time(num.median)
        met = "met" if value >= ratio.targets[size] else "**not met**"
        text = (
            f"{size}: {num_text} / {fmt_time(den.median)} = {'> ' if bound else ''}"
            f"{fmt_ratio(value)}, target >= {ratio.targets[size]:g}x: {met}"
        )
        minima = _minima_ratio(times, ratio.numerator, ratio.denominator, size)
        return text + (f" (ratio of the minima: {minima})" if minima else "")

    def trail_of(key: str, size: str) -> Optional[str]:
        timing = times.get((key, size))
        return getattr(timing.outcome, "detail", None) if timing else None

    full, fast, richardson = RATIOS[0], RATIOS[1], RATIOS[3]
    text = (
        "1. **Full mode at least 10x faster than `torch.autograd.gradcheck` (slow mode) at 64x16 "
        "and at least 50x faster at 16x4.** "
        + "; ".join(verdict(full, s) for s in ("16x4", "64x16"))
        + "."
    )
    for size in ("16x4", "64x16"):
        bare = _ratio_of(times, "torch-slow", "est-central", size)
        if bare is not None:
            text += (
                f" At {size} the central estimator alone, without the checks around it, is "
                f"{bare} faster than slow gradcheck."
            )
        detail = trail_of("ours-full-central", size)
        if detail:
            text += f" At {size} full mode escalated ({detail}), and its time includes both."
    lines.append(text)
    lines.append(
        "2. **The default check no slower than `gradcheck(fast_mode=True)` at 64x16 and "
        "128x32.** "
        + "; ".join(verdict(fast, s) for s in ("64x16", "128x32"))
        + ". Both take a few milliseconds, where a difference of a few percent is within the "
        "run-to-run spread (compare the medians with the minima). (The second half of this "
        "target, catching every mutant of the mutation self-test, is not measured here: it "
        "belongs to the mutation catalogue.)"
    )
    if "64x16" in sizes:
        rich = error_of(times, problems, "est-richardson", "64x16")
        central = error_of(times, problems, "est-central", "64x16")
        acc = "met" if rich <= 1e-11 else "**not met**"
        bare = _ratio_of(times, "numdifftools", "est-richardson", "64x16")
        lines.append(
            "3. **Richardson's relative error at most 1e-11 at 64x16, in at most a fifth of "
            f"numdifftools' time.** Accuracy: {fmt_error(rich)} (central: {fmt_error(central)}), "
            f"target <= 1e-11: {acc}. Time: {verdict(richardson, '64x16')}."
            + (f" The richardson estimator alone is {bare} faster than numdifftools." * bool(bare))
        )
    else:
        lines.append("3. **Richardson at 64x16:** not measured in this run.")
    return lines


PEERS_TEXT = """\
All methods answer the same question, "is the backward of `ZCAWhitening` right at this `X`?",
each the way a user of that tool would ask it:

- **ours, `check_layer`** computes the numeric gradient of the scalar `L(X) = <f(X), dY>` (a
  vector-Jacobian product, `N*D` numbers) and compares it with `backward(dY)` entry by entry,
  after hygiene checks (arguments not mutated, backward repeatable and linear in `dY`, stacked
  evaluation consistent). *Full* mode estimates every entry (central: 4 forward evaluations
  per entry, the second step giving the error estimate; richardson: more, see
  `docs/estimators.md`); *directional* mode estimates `<grad L, v>` for 3 random Gaussian
  directions; the *default* is that directional screen, followed by full mode only where it
  does not pass. A central estimate that cannot resolve the tolerance is repeated with
  richardson on the entries in doubt before a verdict (escalation). Perturbed inputs are
  evaluated as stacks in one forward call (the layer declares `supports_batch`).
- **ours, estimator only**: `gradcheck.finite_diff.partial_derivatives` on the same batched
  objective, with `check_layer`'s chunk size and BLAS thread limit: estimation without the
  harness around it.
- **torch `gradcheck` (slow)** on `X -> f(X)` written in PyTorch (float64, `torch.linalg.eigh`),
  `eps=1e-6, atol=1e-5, rtol=1e-3`: the full numerical Jacobian (`N*D x N*D`, two forwards per
  input entry) against the full analytical Jacobian (one backward per output entry). It answers
  a larger question (every VJP at once) than the one a backward test needs; it is what a PyTorch
  user runs.
- **torch `gradcheck(fast_mode=True)`**: one scalar `v^T J u` for random `u, v`, numerically
  (central differences along `u`) against analytically (a backward with `v`).
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
        f"{args.repeats} timed calls follow, fewer once the cell has used {args.budget:g} s.",
        "The calls of one size are interleaved, one call of every method per round, so that a "
        "change in the machine's load is shared by all methods.",
        "The table gives the median, the minimum and the number of timed calls `n`; the "
        "garbage collector is off during each call.",
        f"A call still running after {args.cap:g} s is interrupted and the cell reads "
        f"`> {args.cap:g} s`; larger sizes of that method are then not run.",
        "Ratios are ratios of medians, all measured in this one process and run.",
        f"Threads for the whole run: {args.thread_note}. One thread is the default because "
        "these problems are small (one `eigh` of a `D x D` matrix per forward) and threaded code "
        "stalls whenever another process holds a core; `--threads none` leaves each library "
        "its own setting.",
        f"`check_layer` itself limits BLAS to one thread for inputs of at least "
        f"{ours.thread_limit_size()} entries while it estimates.",
        "Cells marked **inconclusive** or **fail** carry that check's verdict; a bracketed trail "
        "lists the comparisons a check made when it made more than one (for example a central "
        "estimate that could not resolve the tolerance, repeated with richardson: the time "
        "includes both).",
    ]
    return " ".join(sentences)


def openblas_note() -> str:
    core = os.environ.get("OPENBLAS_CORETYPE")
    if not core:
        return ""
    return (
        f"`OPENBLAS_CORETYPE={core}` is set on this machine (as in CI: older OpenBLAS builds "
        "misbehave on this processor otherwise). It makes NumPy's OpenBLAS use that kernel "
        "family instead of the one it would pick for this CPU, which slows NumPy's LAPACK calls "
        "(the `eigh` that dominates the layer's forward); it was left as it is. PyTorch uses its "
        "own MKL and is not affected."
    )


def render(
    args: argparse.Namespace,
    problems: Sequence[Problem],
    times: Dict[Cell, Timing],
    cross_check: Dict[str, float],
    elapsed: float,
    cpu_start: Optional[machine.CpuSample],
    cpu_end: Optional[machine.CpuSample],
    facts: Sequence[Tuple[str, str]],
) -> str:
    sizes = [p.label for p in problems]
    time_rows = [[m.label] + [time_cell(times.get((m.key, s))) for s in sizes] for m in METHODS]
    ratio_rows = [[r.label] + [ratio_cell(times, r, s) for s in sizes] for r in RATIOS]
    cross = [fmt_error(cross_check.get(s)) for s in sizes]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance: checking the ZCA whitening backward, against PyTorch, SciPy, numdifftools",
        "",
        "Reproduce (the peers are the optional extras `bench`: `pip install -e .[bench]`):",
        "",
        "```",
        args.command,
        "```",
        "",
        f"This file is written by that command; the run of {now} took {elapsed:.0f} s in all.",
        "",
        "## The problem",
        "",
        f"`f(X)` is ZCA whitening of an `N x D` batch, `ZCAWhitening(eps={EPS:g})` (centred, "
        "covariance over features, `D x D`), and the objective is `L(X) = <f(X), dY>` for a fixed "
        "standard-normal `dY`; `X` is standard normal. Every method below differentiates this "
        "same function at the same `X` and `dY`.",
        "",
        "## Machine",
        "",
        *table(["", ""], facts),
        "",
        machine.contention_text(cpu_start, cpu_end),
        "",
    ]
    note = openblas_note()
    if note:
        lines += [note, ""]
    lines += [
        "## Times",
        "",
        "Median wall-clock time per call (minimum and number of calls in parentheses).",
        "",
        *table(["method", *sizes], time_rows),
        "",
        discipline_text(args),
        "",
        "## Ratios",
        "",
        "Median time of the peer over median time of ours (above 1: ours is faster), with the "
        "issue's targets where it sets one.",
        "",
        *table(["ratio", *sizes], ratio_rows),
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
        "## Targets (issue 3)",
        "",
        *target_lines(problems, times),
        "",
        "## What each method computes",
        "",
        PEERS_TEXT,
        "",
    ]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Time gradient checks of ZCA whitening against PyTorch, SciPy, numdifftools.",
    )
    parser.add_argument(
        "--sizes", help="comma-separated NxD sizes (default: 16x4,32x8,64x16,128x32)"
    )
    parser.add_argument("--repeats", type=int, help="timed calls per cell (default 7; quick 3)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: sizes up to 64x16, 3 repeats, 3 s per cell, 20 s cap (under 2 minutes)",
    )
    parser.add_argument(
        "--threads",
        default="1",
        help="threads for BLAS, OpenMP and PyTorch during the run (default 1); 'none' leaves "
        "each library's own setting",
    )
    parser.add_argument("--budget", type=float, help="seconds per cell before repeats stop")
    parser.add_argument("--cap", type=float, help="seconds after which one call is interrupted")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.sizes is None:
        args.sizes = "16x4,32x8,64x16" if quick else ",".join(f"{n}x{d}" for n, d in DEFAULT_SIZES)
    if args.repeats is None:
        args.repeats = 3 if quick else 7
    if args.budget is None:
        args.budget = 3.0 if quick else 15.0
    if args.cap is None:
        args.cap = 20.0 if quick else 60.0
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
    shown = ["python", "benchmarks/run.py"]
    if quick:
        shown.append("--quick")
    for flag, value, default in (
        ("--sizes", args.sizes, None),
        ("--repeats", args.repeats, 3 if quick else 7),
        ("--budget", args.budget, 3.0 if quick else 15.0),
        ("--cap", args.cap, 20.0 if quick else 60.0),
    ):
        if default is None:
            if (quick and value != "16x4,32x8,64x16") or (
                not quick and value != ",".join(f"{n}x{d}" for n, d in DEFAULT_SIZES)
            ):
                shown += [flag, str(value)]
        elif value != default:
            shown += [flag, f"{value:g}"]
    if args.threads != 1:
        shown += ["--threads", "none" if args.threads is None else str(args.threads)]
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
    elapsed, cpu_end = time.perf_counter() - start, machine.cpu_sample()
    text = render(args, problems, times, cross_check, elapsed, cpu_start, cpu_end, facts)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        log(f"wrote {args.output}")
    log(f"total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

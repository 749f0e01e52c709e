"""Running many checks: one job per (variant, shape, seed), each isolated from the others.

A job whose layer raises (even ``SystemExit``), returns garbage or runs past its time limit
becomes one ``"error"`` result; the remaining jobs still run.

Two ways to run them. ``run_jobs(..., isolate=True)`` (what the CLI does) runs every job in a
forked worker process (:mod:`gradcheck.isolation`) watched from this process: a layer that ends
or crashes the process (``os._exit``, a segfault, the out-of-memory killer) or ignores every
signal costs its own row only, and a timeout is a ``SIGKILL`` that nothing inside the layer can
block. ``isolate=False`` (the default, and the fallback where there is no ``fork``) runs the
jobs in this process, where the time limit is a ``SIGALRM`` timer: it needs POSIX and the main
thread, and it interrupts Python code and sleeps but not a single long-running C call (a huge
``eigh``), nor code that catches every exception. Both give the same verdicts and numbers.

Ctrl-C (``KeyboardInterrupt``) stops either way with :class:`RunInterrupted`, which carries the
results of the jobs that finished.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import options as check_options
from .check import check_layer
from .functions import check_adapted
from .isolation import Crash, can_fork, run_concurrently
from .literals import format_shape
from .registry import LayerSpec
from .result import CheckResult, Finding
from .tracebacks import describe, located


@dataclass(frozen=True)
class Job:
    """One check to run: a variant, an input shape (any rank, the batch first) and a seed.

    ``reseed_global_rng``: reseed NumPy's global RNG with this value before every forward
    (``--reseed-global-rng`` sets it to the job's seed), so that a layer drawing dropout masks
    from ``np.random`` is a fixed function.
    """

    spec: LayerSpec
    shape: Tuple[int, ...]
    seed: int
    reproduce: str = ""
    reseed_global_rng: Optional[int] = None

    @property
    def label(self) -> str:
        return f"{self.spec.name} {format_shape(self.shape)} seed {self.seed}"


#: The command line's ``--timeout``, in seconds; a reproduce command names any other.
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class RunOptions(check_options.CheckOptions):
    """The options of every job: the check's (:class:`gradcheck.options.CheckOptions`, passed
    to :func:`gradcheck.check_layer`; ``rtol`` and ``atol`` default to the variant's own), the
    keyword arguments every layer is built with (``layer_options``, ``{"eps": 1e-3}``) and the
    time limit of one job in seconds (``timeout``, ``None`` for none)."""

    layer_options: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None


def glob_escape(name: str) -> str:
    """``name`` as a shell pattern that matches only itself (for ``--only``)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def reproduce_command(
    spec: LayerSpec,
    shape: Sequence[int],
    seed: int,
    options: RunOptions,
    *,
    reseed_global_rng: bool = False,
    function_words: Sequence[str] = (),
) -> str:
    """One ``gradcheck report`` command line that reruns exactly this check: the same layer,
    shape, seed and options.

    The layer is named as the report takes it: by ``function_words`` for a function pair or a
    value-and-gradient function (``--pair MODULE:NAME --input x=4x5 ...``, which fix its shapes
    too), else by ``--layer REF`` (with its ``--target``) for a reference and ``--only NAME`` for
    a registered variant. Options at their defaults are left out, and so is a ``timeout`` of
    ``None`` or :data:`DEFAULT_TIMEOUT`; ``eps`` comes from ``options.layer_options``.
    """
    words = ["gradcheck", "report"]
    if function_words:
        words += [*function_words, "--seed", str(seed)]
    else:
        if spec.is_reference:
            words += ["--layer", spec.name]
            if spec.target is not None:
                words += ["--target", spec.target.text]
        else:
            words += ["--only", glob_escape(spec.name)]
        words += ["--shape", format_shape(shape), "--seed", str(seed)]
    if reseed_global_rng:
        words.append("--reseed-global-rng")
    words += ["--mode", options.mode, "--method", options.method]
    if options.mode != "full" and options.directions is not None:
        words += ["--directions", str(options.directions)]
    if options.mode == "auto" and options.budget is not None:
        words += ["--budget", str(options.budget)]
    eps = options.layer_options.get("eps")
    for flag, value in (("rtol", options.rtol), ("atol", options.atol), ("eps", eps)):
        if value is not None:
            words += [f"--{flag}", repr(value)]
    if options.dtype != "float64":
        words += ["--dtype", options.dtype, "--allow-float32"]
    if not options.escalate:
        words.append("--no-escalate")
    if options.timeout is not None and options.timeout != DEFAULT_TIMEOUT:
        words += ["--timeout", f"{options.timeout:g}"]
    return " ".join(shlex.quote(w) for w in words)


class LayerTimeout(BaseException):
    """Raised by the alarm; a BaseException so that a check's ``except Exception`` around the
    layer's own calls cannot swallow it."""


@contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raise ``LayerTimeout`` in the main thread after ``seconds`` (POSIX; a no-op elsewhere)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or seconds <= 0 or not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise LayerTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # The alarm repeats: cleanup code on the way out of a stopped check (a ``finally`` that
    # runs the layer's forward once more) may hang too, and must be interrupted again.
    signal.setitimer(signal.ITIMER_REAL, seconds, min(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _error_result(
    job: Job,
    options: RunOptions,
    code: str,
    message: str,
    elapsed: float,
    exc: Optional[BaseException] = None,
) -> CheckResult:
    # With the exception: the layer's file and line in the message, the last frames in the JSON.
    finding = (
        Finding(code, "error", message) if exc is None else located(code, "error", message, exc)
    )
    return CheckResult(
        layer=job.spec.name,
        shape=job.shape,
        seed=job.seed,
        mode=options.mode,
        method=options.method,
        status="error",
        findings=[finding],
        reason=f"{code}: {finding.message}",
        elapsed=elapsed,
        reproduce=job.reproduce or None,
    )


def _input_kind(job: Job, layer: Any) -> str:
    """The input kind to draw (see :meth:`gradcheck.registry.LayerSpec.input_kind`)."""
    return job.spec.input_kind(layer)


def _shape_hint(job: Job) -> Optional[Finding]:
    """Name the cause when a ``--shape`` does not fit a layer registered for one width only
    (``dense`` maps 5 features to 3, a convolution takes 3 channels): the layer's own error
    message may not say so."""
    spec = job.spec
    shape = tuple(job.shape)
    widths = {tuple(s[1:]) for s in spec.shapes}
    if shape in spec.shapes or len(widths) != 1 or shape[1:] in widths:
        return None
    (width,) = widths
    shapes = ", ".join(format_shape(s) for s in spec.shapes)
    if len(width) == 1:
        takes = f"D = {width[0]} features"
    else:
        takes = f"inputs of shape N x {' x '.join(str(d) for d in width)}"
    return Finding(
        "shape-unsupported",
        "info",
        f"{spec.name} takes {takes} (its registered shapes: {shapes}); this check asked for "
        f"{format_shape(shape)}. Pass --shape {format_shape(('N', *width))}, or --skip it",
    )


def run_job(job: Job, options: RunOptions) -> CheckResult:
    """Build the layer, draw its input, check it; never raises for a misbehaving layer."""
    start = time.perf_counter()
    if job.shape[0] < job.spec.min_n:
        return _error_result(
            job,
            options,
            "shape-unsupported",
            f"{job.spec.name} needs at least N = {job.spec.min_n} examples, got shape "
            f"{format_shape(job.shape)}",
            0.0,
        )
    try:
        with time_limit(options.timeout):
            try:
                layer = job.spec.build(**options.layer_options)
            except Exception as exc:
                return _error_result(
                    job,
                    options,
                    "build-raised",
                    f"building {job.spec.name} raised {describe(exc)}",
                    time.perf_counter() - start,
                    exc,
                )
            x, target = job.spec.draw(layer, job.shape, job.seed)
            check = replace(
                options,
                rtol=job.spec.rtol if options.rtol is None else options.rtol,
                atol=job.spec.atol if options.atol is None else options.atol,
            )
            result = check_adapted(
                layer,
                x.astype(np.dtype(options.dtype)),
                target=target,
                reseed_global_rng=job.reseed_global_rng,
                seed=job.seed,
                **check.check_keywords(),
            )
    except LayerTimeout:
        return _error_result(
            job,
            options,
            "timeout",
            f"the check ran past --timeout {options.timeout:g} s and was stopped",
            time.perf_counter() - start,
        )
    except (Exception, SystemExit) as exc:
        # check_layer turns the layer's own exceptions into findings; whatever still escapes
        # (a layer calling sys.exit, an object that breaks the harness's assumptions) must
        # cost this row only, not the run and its report.
        return _error_result(
            job,
            options,
            "check-raised",
            f"the check of {job.spec.name} raised {describe(exc)}",
            time.perf_counter() - start,
            exc,
        )
    result.layer = job.spec.name
    result.reproduce = job.reproduce or None
    if result.status == "error" and (hint := _shape_hint(job)) is not None:
        result.findings.append(hint)
    return result


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_jobs`; ``results`` holds the jobs that finished, in order, out
    of ``total``. A ``KeyboardInterrupt``, so that a caller that does not look for it still
    stops."""

    def __init__(self, results: List[CheckResult], total: int) -> None:
        super().__init__(f"interrupted after {len(results)} of {total} checks")
        self.results = results
        self.total = total


def run_jobs(
    jobs: Sequence[Job],
    options: RunOptions,
    progress: Optional[Callable[[int, int, Job], None]] = None,
    isolate: bool = False,
    workers: int = 1,
) -> List[CheckResult]:
    """Run ``jobs``; the results in the order of ``jobs``. ``progress(done, total, job)`` is
    called as each job starts (``done``: the jobs finished by then).

    ``isolate``: each job in a forked worker process killed at ``options.timeout`` (ignored
    where there is no ``fork``); a crashed worker is one error row (``worker-exited``,
    ``worker-killed``) and is replaced for the next job. ``workers``: with ``isolate``, up to
    this many jobs run at once, each in its own worker; a job's result is the same for any
    number (only ``elapsed`` differs). Without ``isolate`` jobs run one at a time. Raises
    :class:`RunInterrupted` on Ctrl-C, after stopping the workers, with the results of the
    jobs that finished, in the order of ``jobs``.
    """
    results: List[CheckResult] = []
    try:
        if isolate and can_fork():
            _run_isolated(jobs, options, progress, results, workers)
        else:
            for i, job in enumerate(jobs):
                if progress is not None:
                    progress(i, len(jobs), job)
                results.append(run_job(job, options))
    except KeyboardInterrupt as exc:
        raise RunInterrupted(results, len(jobs)) from exc
    if progress is not None and jobs:
        progress(len(jobs), len(jobs), jobs[-1])
    return results


class _WarmUp:
    """``y = x * w``: a layer of the harness's own, checked once in this process before the
    first worker is forked."""

    def __init__(self) -> None:
        self.params = {"w": np.array([1.5, -0.5])}
        self.grads: Dict[str, Any] = {}

    def forward(self, x: Any) -> Any:
        self.x = x
        return x * self.params["w"]

    def backward(self, dy: Any) -> Any:
        self.grads = {"w": np.sum(dy * self.x, axis=0)}
        return dy * self.params["w"]


_warm = False


def _warm_up() -> None:
    """Pay the check's first-use costs (lazy imports, BLAS thread-pool discovery) here, once, so
    that every forked worker starts with them paid: otherwise the first check in each fresh
    worker pays them again, within its --timeout."""
    global _warm
    if _warm:
        return
    _warm = True
    try:
        check_layer(_WarmUp(), np.linspace(-1.0, 1.0, 6).reshape(3, 2), seed=0)
    except Exception:  # only a speed-up: a failure here changes no result
        pass


def _run_isolated(
    jobs: Sequence[Job],
    options: RunOptions,
    progress: Optional[Callable[[int, int, Job], None]],
    results: List[CheckResult],
    workers: int,
) -> None:
    """:func:`run_jobs` with worker processes; fills ``results`` in the order of ``jobs``."""
    timeout = options.timeout if options.timeout is not None and options.timeout > 0 else None
    # The worker's own alarm would only race the parent's kill at the same deadline.
    inner = replace(options, timeout=None)
    _warm_up()
    finished: Dict[int, CheckResult] = {}

    def started(index: int) -> None:
        if progress is not None:
            progress(len(finished), len(jobs), jobs[index])

    try:
        for index, outcome, seconds in run_concurrently(
            lambda i: run_job(jobs[i], inner), len(jobs), workers, timeout, started
        ):
            job = jobs[index]
            if isinstance(outcome, Crash):
                finished[index] = _error_result(
                    job, options, outcome.code, outcome.message, seconds
                )
            else:
                finished[index] = outcome[1]
    finally:
        # In the order of ``jobs`` whatever order they finished in; on Ctrl-C, every job that
        # finished (each row names its job, so a gap reads as what it is).
        results.extend(finished[index] for index in sorted(finished))

"""Running many checks: one job per (variant, shape, seed), each isolated from the others.

A job that raises, returns garbage or runs past its time limit becomes one ``"error"`` result;
the remaining jobs still run.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .check import check_layer
from .registry import LayerSpec, make_input
from .result import CheckResult, Finding


@dataclass(frozen=True)
class Job:
    """One check to run: a variant, an input shape and a seed."""

    spec: LayerSpec
    shape: Tuple[int, int]
    seed: int
    reproduce: str = ""

    @property
    def label(self) -> str:
        return f"{self.spec.name} {self.shape[0]}x{self.shape[1]} seed {self.seed}"


@dataclass
class CheckOptions:
    """Options passed through to :func:`gradcheck.check_layer` for every job."""

    mode: str = "auto"
    method: str = "central"
    rtol: Optional[float] = None
    atol: Optional[float] = None
    directions: int = 3
    allow_float32: bool = False
    dtype: str = "float64"
    layer_options: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None
    escalate: bool = True


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that a check's ``except Exception`` around the
    layer's own calls cannot swallow it."""


@contextmanager
def _time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raise ``_Timeout`` in the main thread after ``seconds`` (POSIX; a no-op elsewhere)."""
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _error_result(
    job: Job, options: CheckOptions, code: str, message: str, elapsed: float
) -> CheckResult:
    result = CheckResult(
        layer=job.spec.name,
        shape=job.shape,
        seed=job.seed,
        mode=options.mode,
        method=options.method,
        status="error",
        findings=[Finding(code, "error", message)],
        reason=f"{code}: {message}",
        elapsed=elapsed,
    )
    return result


def run_job(job: Job, options: CheckOptions) -> CheckResult:
    """Build the layer, draw its input, check it; never raises for a misbehaving layer."""
    import numpy as np

    start = time.perf_counter()
    try:
        with _time_limit(options.timeout):
            try:
                layer = job.spec.build(**options.layer_options)
            except Exception as exc:
                return _error_result(
                    job,
                    options,
                    "build-raised",
                    f"building {job.spec.name} raised {type(exc).__name__}: {exc}",
                    time.perf_counter() - start,
                )
            x = make_input(job.spec.input, job.shape, job.seed).astype(np.dtype(options.dtype))
            result = check_layer(
                layer,
                x,
                seed=job.seed,
                rtol=job.spec.rtol if options.rtol is None else options.rtol,
                atol=job.spec.atol if options.atol is None else options.atol,
                mode=options.mode,
                method=options.method,
                directions=options.directions,
                allow_float32=options.allow_float32,
                escalate=options.escalate,
            )
    except _Timeout:
        return _error_result(
            job,
            options,
            "timeout",
            f"the check ran past --timeout {options.timeout:g} s and was stopped",
            time.perf_counter() - start,
        )
    result.layer = job.spec.name
    result.reproduce = job.reproduce or None
    return result


def run_jobs(
    jobs: Sequence[Job],
    options: CheckOptions,
    progress: Optional[Callable[[int, int, Job], None]] = None,
) -> List[CheckResult]:
    """Run ``jobs`` in order; ``progress(done, total, job)`` is called before each one."""
    results = []
    for i, job in enumerate(jobs):
        if progress is not None:
            progress(i, len(jobs), job)
        results.append(run_job(job, options))
    if progress is not None and jobs:
        progress(len(jobs), len(jobs), jobs[-1])
    return results

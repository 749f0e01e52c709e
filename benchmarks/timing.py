"""Wall-clock measurement with warm-up, repeats, a per-cell budget and a hard cap.

A cell (one method on one size) is measured as ``timeit`` does it: the garbage collector is off
during each timed call and ``time.perf_counter`` brackets the call alone. The first call is a
warm-up and is discarded when it is short (under ``warmup_below`` seconds); a long first call is
kept as a sample, since every method has already been warmed up once on the smallest problem.
Further calls follow until ``repeats`` samples are taken or the cell has used ``budget`` seconds.
The cells of one problem size are interleaved: each round makes one call of every method.
A call that runs past ``cap`` seconds is interrupted (``SIGALRM``, POSIX main thread only) and
the cell is reported as ``> cap``.
"""

from __future__ import annotations

import gc
import signal
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple


class CapExceeded(Exception):
    """Raised inside a timed call that ran past the cap."""


@dataclass
class Timing:
    """The samples of one cell, and why there are none if there are none."""

    samples: List[float] = field(default_factory=list)
    capped: Optional[float] = None  # the cap in seconds, when a call exceeded it
    note: Optional[str] = None  # why the cell was not measured (not installed, skipped, raised)
    outcome: Any = None  # what the last timed call returned

    @property
    def ok(self) -> bool:
        return bool(self.samples) and self.capped is None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)


def _can_interrupt() -> bool:
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raise :class:`CapExceeded` in the enclosed code once ``seconds`` have passed.

    Python code is interrupted between bytecodes, so a long loop of small NumPy or PyTorch calls
    (every finite-difference method here) stops promptly. Without ``SIGALRM`` (Windows) or off the
    main thread there is no cap.
    """
    if not seconds or not _can_interrupt():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CapExceeded

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def timed_call(run: Callable[[], Any], cap: Optional[float]) -> Tuple[float, Any]:
    """``(seconds, result)`` of one call with the garbage collector off; may raise CapExceeded."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with time_limit(cap):
            start = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed, result


class Series:
    """The calls of one cell, made one at a time so that cells can be interleaved.

    Interleaving (one call of every method per round) spreads any change in the machine's load
    over all methods alike, instead of charging it to whichever method ran at that moment.
    """

    def __init__(
        self,
        run: Callable[[], Any],
        *,
        repeats: int,
        budget: float,
        cap: Optional[float],
        warmup_below: float = 1.0,
    ) -> None:
        self.run = run
        self.repeats = repeats
        self.budget = budget
        self.cap = cap
        self.warmup_below = warmup_below
        self.timing = Timing()
        self.spent = 0.0
        self.calls = 0

    @property
    def done(self) -> bool:
        t = self.timing
        if t.capped is not None or t.note is not None:
            return True
        return len(t.samples) >= self.repeats or (bool(t.samples) and self.spent >= self.budget)

    def step(self) -> None:
        """Make one call: the warm-up (kept as a sample only when slow) or one more sample."""
        if self.done:
            return
        try:
            elapsed, self.timing.outcome = timed_call(self.run, self.cap)
        except CapExceeded:
            self.timing.capped = self.cap
            return
        except Exception as exc:
            self.timing.note = f"raised {type(exc).__name__}: {exc}"
            return
        self.spent += elapsed
        self.calls += 1
        if self.calls > 1 or elapsed >= self.warmup_below:
            self.timing.samples.append(elapsed)


def measure(
    run: Callable[[], Any],
    *,
    repeats: int,
    budget: float,
    cap: Optional[float],
    warmup_below: float = 1.0,
) -> Timing:
    """Time ``run`` alone (see the module docstring); never raises for ``run``."""
    gc.collect()
    series = Series(run, repeats=repeats, budget=budget, cap=cap, warmup_below=warmup_below)
    while not series.done:
        series.step()
    return series.timing


def interleave(series: Sequence[Series]) -> None:
    """Step every unfinished series once per round until all are done."""
    gc.collect()
    while True:
        pending = [s for s in series if not s.done]
        if not pending:
            return
        for s in pending:
            s.step()

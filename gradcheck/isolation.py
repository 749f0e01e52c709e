"""Running tasks in a forked worker process that a watchdog in this process can kill.

A check calls into code nobody has reviewed: a layer may end the process (``os._exit``), crash
it (a segfault in a C extension), exhaust memory, or loop in ``while True: try: ... except:
pass``, which swallows any exception a signal handler could raise. None of that can be stopped
from inside the process, so :class:`Worker` runs each task in a child made with ``fork`` and
waits for its answer with a deadline; past the deadline the child gets ``SIGKILL``, which
nothing can catch. The child serves tasks one after another until it dies or is killed, and is
then replaced by a fresh fork, so the common case pays one fork per run, not one per task.

``fork`` (rather than ``spawn``) lets the task be any callable, closures and lambdas included:
only the task's *index* goes to the child and only its *result* comes back, pickled. POSIX only;
:func:`can_fork` says whether this platform has it.

A task's outcome is ``(True, value)`` or a :class:`Crash` saying how the child ended.
"""

from __future__ import annotations

import ctypes
import io
import os
import pickle
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from multiprocessing.connection import wait as connection_wait
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

# How often a wait wakes up to ask whether the child still exists: its death normally shows as
# an end-of-file on the pipe, but not when a grandchild it forked still holds the pipe open.
_POLL_SLICE = 0.5
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Crash:
    """A task that returned no result: ``code`` is ``"timeout"``, ``"worker-exited"``,
    ``"worker-killed"`` or ``"worker-raised"``; ``message`` is a sentence for a report row."""

    code: str
    message: str


Outcome = Union[Tuple[bool, Any], Crash]


def can_fork() -> bool:
    """Whether tasks can run in a forked worker here (POSIX: Linux, macOS, the BSDs)."""
    return hasattr(os, "fork") and hasattr(os, "waitpid")


def signal_label(number: int) -> str:
    """``"signal 11 (SIGSEGV, Segmentation fault)"``; just the number for an unknown signal."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    description = signal.strsignal(number) if hasattr(signal, "strsignal") else None
    # strsignal often repeats the number ("Unknown signal 99") or is missing: then the name only.
    if description and str(number) not in description:
        return f"signal {number} ({name}, {description})"
    return f"signal {number} ({name})"


def describe_status(status: int, killed_by_us: bool = False) -> Crash:
    """The :class:`Crash` for a child that ended with the raw ``waitpid`` ``status``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        message = (
            f"the worker process running the check was killed by {signal_label(number)} "
            "before it returned a result"
        )
        if number == signal.SIGKILL and not killed_by_us:
            message += (
                "; gradcheck did not send it: the kernel's out-of-memory killer sends SIGKILL "
                "to a process that exhausts memory"
            )
        return Crash("worker-killed", message)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return Crash(
        "worker-exited",
        f"the worker process running the check exited with status {code} before it returned "
        f"a result (the layer, or C code it calls, ended the process: os._exit({code}), exit())",
    )


class Worker:
    """One child at a time running ``task(index)``; replaced after it crashes or is killed.

    Use it as a context manager (or call :meth:`close`) so that the child never outlives the
    caller, not even when the caller is interrupted.
    """

    def __init__(self, task: Callable[[int], Any]) -> None:
        self.task = task
        self.pid: Optional[int] = None
        self.conn: Optional[Connection] = None
        self.forks = 0
        self.timeout: Optional[float] = None
        self.deadline: Optional[float] = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, index: int, timeout: Optional[float] = None) -> Outcome:
        """Run ``task(index)`` in the child; its result, or how the child ended.

        ``timeout`` (seconds) starts when the task is handed over; past it the child is killed
        and the outcome is a ``"timeout"`` crash. ``KeyboardInterrupt`` in this process kills
        the child before it propagates.
        """
        try:
            self.start(index, timeout)
            while True:
                outcome = self.step(_POLL_SLICE)
                if outcome is not None:
                    return outcome
        except BaseException:
            self._kill()
            raise

    def start(self, index: int, timeout: Optional[float] = None) -> None:
        """Hand ``task(index)`` to the child (forking one if there is none) and return at once;
        :meth:`step` then says when it has ended. ``timeout`` as in :meth:`run`."""
        self._send(index)
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def step(self, wait: float) -> Optional[Outcome]:
        """Wait up to ``wait`` seconds for the task :meth:`start` handed over: its outcome, or
        ``None`` while it is still running (past its deadline the child is killed)."""
        assert self.conn is not None and self.pid is not None
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._kill()
                # The same words as the in-process alarm's row: where it was stopped does not
                # change what the user learns.
                return Crash(
                    "timeout", f"the check ran past --timeout {self.timeout:g} s and was stopped"
                )
            wait = min(wait, left)
        if self.conn.poll(wait):
            try:
                payload = self.conn.recv_bytes()
            except (EOFError, OSError):
                return self._reap()
            try:
                ok, value = pickle.loads(payload)
            except Exception as exc:
                return Crash(
                    "worker-raised",
                    f"the worker's answer could not be read: {type(exc).__name__}: {exc}",
                )
            if ok:
                return (True, value)
            return Crash("worker-raised", value)
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid:
            self.pid = None
            self._drop_conn()
            return describe_status(status)
        return None

    def close(self) -> None:
        """Stop the child (it is idle between tasks, so nothing of value is lost)."""
        self._kill()

    # -- the parent's side ------------------------------------------------------------------

    def _send(self, index: int) -> None:
        message = str(index).encode()
        if self.conn is not None:
            try:
                self.conn.send_bytes(message)
                return
            except OSError:
                # The idle child is gone (killed from outside between tasks): start another.
                self._kill()
        self._spawn()
        assert self.conn is not None
        self.conn.send_bytes(message)

    def _reap(self) -> Crash:
        """The child closed the pipe without an answer: wait for it and say how it ended."""
        assert self.pid is not None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        self._drop_conn()
        return describe_status(status)

    def _kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = None
        self._drop_conn()

    def _drop_conn(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _spawn(self) -> None:
        parent_end, child_end = Pipe(duplex=True)
        parent_pid = os.getpid()
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock the child on
            # a lock another thread held. The child never touches this process's stream
            # objects (it makes its own, below) and the interpreter resets its own locks.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns from here
            try:
                parent_end.close()
                _serve(child_end, self.task, parent_pid)
            finally:
                # Whatever escapes must not return into the parent's code in a second process.
                os._exit(70)
        child_end.close()
        self.pid, self.conn = pid, parent_end
        self.forks += 1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says, else the
    machine's count): the default number of workers."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def run_concurrently(
    task: Callable[[int], Any],
    count: int,
    workers: int,
    timeout: Optional[float] = None,
    started: Optional[Callable[[int], None]] = None,
) -> Iterator[Tuple[int, Outcome, float]]:
    """Run ``task(0) .. task(count - 1)`` on up to ``workers`` :class:`Worker` children at once,
    yielding ``(index, outcome, seconds)`` as each task ends (in the order they end; tasks are
    handed out in index order). ``timeout`` is per task, as in :meth:`Worker.run`;
    ``started(index)`` is called as each task is handed out. Every child is stopped when the
    iteration ends, however it ends (Ctrl-C included).

    Each task runs alone in its child, so its result does not depend on ``workers``: only
    the order in which results arrive does.
    """
    pool = [Worker(task) for _ in range(max(1, min(int(workers), count)))]
    busy: Dict[int, Tuple[int, float]] = {}  # pool position -> (task index, start time)
    handed = 0
    try:
        while handed < count or busy:
            for position, worker in enumerate(pool):
                if position not in busy and handed < count:
                    if started is not None:
                        started(handed)
                    busy[position] = (handed, time.perf_counter())
                    worker.start(handed, timeout)
                    handed += 1
            wait = _POLL_SLICE
            for position in busy:
                deadline = pool[position].deadline
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
            wait_for_any([pool[p].conn for p in busy], wait)
            for position in list(busy):
                outcome = pool[position].step(0.0)
                if outcome is not None:
                    index, began = busy.pop(position)
                    yield index, outcome, time.perf_counter() - began
    finally:
        for worker in pool:
            worker.close()


class WorkerFailed(RuntimeError):
    """A task of :func:`map_concurrently` ended its worker without a result (the harness's own
    work, where a crash is a bug rather than a row of a report)."""


def map_concurrently(
    task: Callable[[int], Any],
    count: int,
    workers: int,
    done: Optional[Callable[[int], None]] = None,
) -> List[Any]:
    """``[task(0), ..., task(count - 1)]``, run by :func:`run_concurrently` on up to ``workers``
    children when there are more than one (and ``fork``), else in this process, one after
    another. ``done(index)`` is called as each task ends. Raises :class:`WorkerFailed` when a
    child returns no result.
    """
    if workers <= 1 or count <= 1 or not can_fork():
        results = []
        for index in range(count):
            results.append(task(index))
            if done is not None:
                done(index)
        return results
    finished: Dict[int, Any] = {}
    for index, outcome, _ in run_concurrently(task, count, workers):
        if isinstance(outcome, Crash):
            raise WorkerFailed(f"a worker process failed: {outcome.message}")
        finished[index] = outcome[1]
        if done is not None:
            done(index)
    return [finished[i] for i in range(count)]


def wait_for_any(conns: List[Optional[Connection]], timeout: float) -> None:
    """Return when one of ``conns`` has something to read (an answer, or the end of a child
    that died), or after ``timeout`` seconds."""
    live = [c for c in conns if c is not None]
    if live:
        connection_wait(live, timeout)
    else:
        time.sleep(timeout)


# -- the child's side -----------------------------------------------------------------------

# The parent's stream objects, kept alive in the child: collecting one would flush its copy of
# the parent's unwritten output a second time.
_INHERITED: List[Any] = []


def _own_streams() -> None:
    """Give the child stdout/stderr objects of its own on the same file descriptors.

    The inherited objects may hold the buffer lock of a thread that does not exist in the child
    (the CLI's progress counter draws from a thread) and may hold the parent's unwritten output.
    A stream without a descriptor (an ``io.StringIO``) stays as it is.
    """
    replaced: Dict[int, Any] = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if id(stream) in replaced:
            setattr(sys, name, replaced[id(stream)])
            continue
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            continue
        _INHERITED.append(stream)
        fresh = open(  # lives as long as the child: never closed
            fd,
            "w",
            encoding=getattr(stream, "encoding", None) or "utf-8",
            errors=getattr(stream, "errors", None) or "strict",
            closefd=False,
            buffering=1,
        )
        replaced[id(stream)] = fresh
        setattr(sys, name, fresh)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill the child when the parent dies (a killed CLI leaves no worker behind
    looping forever); elsewhere the child ends at its next read from the closed pipe."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


def _serve(conn: Connection, task: Callable[[int], Any], parent_pid: int) -> None:
    """The child's loop: read an index, run the task, send back the pickled outcome. Never
    returns; the child ends with ``os._exit`` so that none of the parent's cleanup runs twice."""
    # Ctrl-C at a terminal reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    _own_streams()
    while True:
        try:
            index = int(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)
        try:
            payload = pickle.dumps((True, task(index)), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # the task itself, or a result that does not pickle
            payload = pickle.dumps(
                (False, f"the worker process failed: {type(exc).__name__}: {exc}"),
                pickle.HIGHEST_PROTOCOL,
            )
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.send_bytes(payload)
        except OSError:
            os._exit(0)

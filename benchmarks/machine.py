"""What the benchmark ran on, and how busy the machine was meanwhile.

Timings of multi-threaded code (PyTorch's OpenMP pool, multi-threaded BLAS) collapse when other
processes compete for the cores: a parallel region waits for its slowest thread. So the report
states how much CPU time other processes took during the run, from ``/proc/stat`` (Linux) less
this process's own CPU time.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import scipy

from . import peers


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description() -> List[str]:
    """One line per BLAS / OpenMP library loaded in this process (from threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed: BLAS thread configuration unknown"]
    lines = []
    for info in threadpool_info():
        lib = Path(str(info.get("filepath", ""))).name
        arch = info.get("architecture")
        version = info.get("version")
        lines.append(
            f"{info.get('internal_api')}{' ' + str(version) if version else ''} ({lib}): "
            f"{info.get('num_threads')} thread(s)" + (f", kernel {arch}" if arch else "")
        )
    return lines


def code_version() -> str:
    """The commit of the working tree, and whether the harness's files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "gradcheck", "layers"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    if changed:
        return f"git {commit}, with uncommitted changes in gradcheck/ or layers/"
    return f"git {commit}"


def facts() -> List[Tuple[str, str]]:
    """(name, value) rows for the report; call after the peers were imported."""
    affinity = getattr(os, "sched_getaffinity", None)
    usable = len(affinity(0)) if affinity else os.cpu_count()
    found = peers.versions()
    rows = [
        ("code", code_version()),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("NumPy", np.__version__),
        ("SciPy", scipy.__version__),
        ("PyTorch", found["torch"]),
        ("numdifftools", found["numdifftools"]),
        ("threadpoolctl", found["threadpoolctl"]),
    ]
    rows += [("BLAS / OpenMP", line) for line in blas_description()]
    torch_threads = peers.torch_threads()
    if torch_threads is not None:
        rows.append(("PyTorch intra-op threads", f"{torch_threads} (its MKL is linked into torch)"))
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        rows.append((var, os.environ.get(var, "not set")))
    return rows


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds: all CPUs busy, all CPUs idle, stolen by the hypervisor, ours."""

    busy: float
    idle: float
    steal: float
    own: float
    load: Optional[float]  # 1-minute load average


def cpu_sample() -> Optional[CpuSample]:
    """The machine's and this process's cumulative CPU time, or ``None`` off Linux."""
    try:
        import resource

        with open("/proc/stat", encoding="ascii") as handle:
            fields = [float(v) for v in handle.readline().split()[1:]]
    except (ImportError, OSError, ValueError):
        return None
    hz = float(os.sysconf("SC_CLK_TCK"))
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return CpuSample(
        busy=(user + nice + system + irq + softirq) / hz,
        idle=(idle + iowait) / hz,
        steal=steal / hz,
        own=own,
        load=load,
    )


def contention(
    start: Optional[CpuSample], end: Optional[CpuSample]
) -> Optional[Tuple[float, float, float]]:
    """(others' share of the CPU time, steal share, our share) between two samples."""
    if start is None or end is None:
        return None
    total = (end.busy - start.busy) + (end.idle - start.idle) + (end.steal - start.steal)
    if total <= 0:
        return None
    own = end.own - start.own
    others = max(0.0, (end.busy - start.busy) - own)
    return others / total, (end.steal - start.steal) / total, own / total


def contention_text(start: Optional[CpuSample], end: Optional[CpuSample]) -> str:
    shares = contention(start, end)
    if shares is None or start is None or end is None:
        return "CPU use by other processes during the run: not measurable on this platform."
    others, steal, own = shares
    loads = ""
    if start.load is not None and end.load is not None:
        loads = f" 1-minute load average {start.load:.2f} at the start, {end.load:.2f} at the end."
    text = (
        f"During the run this process used {own:.0%} of the machine's CPU time, other processes "
        f"{others:.0%}, the hypervisor stole {steal:.0%}.{loads}"
    )
    if others > 0.1:
        text += (
            " **The machine was shared during this run.** Threaded code stalls when another "
            "process holds a core, which is why the default run limits every library to one "
            "thread: then a competing process slows every method alike, and the interleaved "
            "calls share that slowdown. Re-run on an idle machine to confirm close ratios."
        )
    return text


@contextmanager
def thread_limit(threads: Optional[int]) -> Iterator[str]:
    """Limit BLAS, OpenMP and PyTorch to ``threads`` threads inside; yield what was done.

    ``None`` leaves every library as it configured itself. PyTorch is imported first (when it
    is installed) so that its OpenMP runtime is loaded, and limited, too.
    """
    if threads is None:
        yield "left as each library set itself (no limit)"
        return
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        torch = None
    done = []
    previous = None
    if torch is not None:
        peers.torch_default_threads()  # remember PyTorch's own choice before limiting it
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        done.append(f"torch.set_num_threads({threads})")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter = None
        done.append("BLAS not limited: threadpoolctl is not installed")
    else:
        limiter = threadpool_limits(limits=threads)
        done.append(f"threadpoolctl.threadpool_limits({threads}) for BLAS and OpenMP")
    try:
        yield ", ".join(done)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)


def eigh_thread_scaling(
    sizes: Tuple[int, ...] = (16, 32, 64), batch: int = 256, repeats: int = 5
) -> List[Tuple[int, float, float]]:
    """What Python threads give a stacked evaluation here: ``(D, one thread, two threads)``,
    the median seconds of a batched ``eigh`` plus reconstruction of ``batch`` D x D matrices,
    run as two halves one after the other and then on two threads at once (BLAS limited to one
    thread each). Threads help only as far as NumPy's LAPACK calls release the GIL."""
    def work(a: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(a)
        return (v * w[..., None, :]) @ np.swapaxes(v, -1, -2)

    rng = np.random.default_rng(0)
    out = []
    with thread_limit(1), ThreadPoolExecutor(2) as pool:
        for d in sizes:
            a = rng.standard_normal((batch, d, d))
            a = a @ np.swapaxes(a, -1, -2)
            halves = [a[: batch // 2], a[batch // 2 :]]
            serial, threaded = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                for h in halves:
                    work(h)
                serial.append(time.perf_counter() - t)
                t = time.perf_counter()
                list(pool.map(work, halves))
                threaded.append(time.perf_counter() - t)
            out.append((d, float(np.median(serial)), float(np.median(threaded))))
    return out

"""Peak memory of one default check, each case in a fresh Python process.

Run as ``python -m benchmarks.memory CASE`` (the benchmark does this for every case in
:data:`CASES`); it prints one JSON object. In the child, after the problem is built:

* ``layer_single``: peak bytes traced by ``tracemalloc`` during one forward and backward of a
  fresh layer at ``X`` (the layer's own use for one input);
* ``layer_stack``: the same for one forward of a stack of ``chunk`` inputs, ``chunk`` being the
  number of points ``check_layer`` hands the layer per call (``default_chunk``): what the layer
  itself needs for the largest call a check makes;
* ``chunk_bytes``: the stacked chunk bound, ``chunk * X.size * 8`` bytes (one stacked input);
* ``rss_growth``: the process's peak resident set during the check (``VmHWM`` of
  ``/proc/self/status``, reset just before the check by writing 5 to ``/proc/self/clear_refs``)
  less its resident set just before it, with ``tracemalloc`` off; ``rss_reset`` says whether the
  reset worked (else the peak may be the setup's, and the growth is an upper bound).
  ``getrusage``'s ``ru_maxrss`` is not used: Linux carries a parent's peak into a child
  across ``fork`` and ``exec``;
* ``traced_peak``: peak bytes traced by ``tracemalloc`` during a second, identical check (NumPy
  reports its array buffers to ``tracemalloc``), with the ``directions`` its screen used;
* ``held_after_contracts``: bytes still traced when the check's first step (forward, backward
  and the contract checks on them, ``_Checker.run_analytic``) returns, i.e. what the check keeps
  alive through its estimates; ``None`` if the harness has no such step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.problem import Checkable, make_problem
from benchmarks.tanh import make_tanh_problem
from gradcheck import check as check_module
from gradcheck import check_layer
from gradcheck.check import default_chunk

ROOT = Path(__file__).resolve().parent.parent

# name -> (what it is, how to build it)
CASES: Dict[str, Tuple[str, Callable[[], Checkable]]] = {
    "zca-128x32": ("ZCA 128x32, right", lambda: make_problem(128, 32)),
    "zca-256x64": ("ZCA 256x64, right", lambda: make_problem(256, 64)),
    "tanh-5000x200": ("tanh 5000x200, right", lambda: make_tanh_problem(5000, 200)),
    "tanh-5000x200-scale": (
        "tanh 5000x200, every entry 1% wrong",
        lambda: make_tanh_problem(5000, 200).with_wrong("scale"),
    ),
}


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux 4.0 and later)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _traced(call: Callable[[], Any]) -> Tuple[int, Any]:
    tracemalloc.start()
    try:
        out = call()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def measure(case: str) -> Dict[str, Any]:
    """Run in the child: the figures of the module docstring for ``case``."""
    problem = CASES[case][1]()
    x, dy = problem.x, problem.dy

    def single() -> None:
        layer = problem.layer()
        layer.forward(x)
        layer.backward(dy)

    chunk = default_chunk(x.size)

    def stacked() -> int:
        stack = np.broadcast_to(x, (chunk, *x.shape)).copy()
        layer = problem.layer()
        # The stacked input itself is the check's, not the layer's.
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        layer.forward(stack)
        return tracemalloc.get_traced_memory()[1] - base

    layer_single, _ = _traced(single)
    _, layer_stack = _traced(stacked)
    reset = _reset_peak_rss()
    before_rss = _status_kib("VmRSS")
    start = time.perf_counter()
    result = check_layer(problem.layer(), x, dy=dy)
    elapsed = time.perf_counter() - start
    after_peak = _status_kib("VmHWM")
    held: Dict[str, int] = {}
    step = getattr(check_module, "_Checker", None)
    original = getattr(step, "run_analytic", None)
    if step is not None and original is not None:

        def run_analytic(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = original(self, *args, **kwargs)
            held["bytes"] = tracemalloc.get_traced_memory()[0]
            return out

        step.run_analytic = run_analytic
    try:
        traced_peak, again = _traced(lambda: check_layer(problem.layer(), x, dy=dy))
    finally:
        if step is not None and original is not None:
            step.run_analytic = original
    directions = max((a.directions or 0 for a in again.screen + again.arguments), default=0)
    # The screen draws its directions in batches and holds one batch at a time.
    batch, used = 0, 0
    for size in getattr(check_module, "DIRECTION_BATCHES", ()):
        if used + size > directions:
            break
        batch, used = size, used + size
    return {
        "case": case,
        "status": result.status,
        "seconds": elapsed,
        "size": int(x.size),
        "chunk": int(chunk),
        "chunk_bytes": int(chunk * x.size * 8),
        "layer_single": int(layer_single),
        "layer_stack": int(layer_stack),
        "rss_growth": int(after_peak - before_rss),
        "rss_reset": reset,
        "traced_peak": int(traced_peak),
        "directions": int(directions),
        "largest_batch": int(batch if used == directions else directions),
        "held_after_contracts": held.get("bytes"),
    }


def run_case(case: str, timeout: float = 600.0) -> Dict[str, Any]:
    """``measure(case)`` in a fresh interpreter (so that peaks are the check's); raises on error."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", case],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory case {case} failed: {proc.stderr.strip()[-500:]}")
    return dict(json.loads(proc.stdout))


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in CASES:
        print(f"usage: python -m benchmarks.memory {{{','.join(CASES)}}}", file=sys.stderr)
        return 2
    print(json.dumps(measure(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

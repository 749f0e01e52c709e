"""The harness's own rows: ``check_layer`` in each mode, and the bare estimators beneath it.

``check_layer`` is timed as a user calls it (validation, the hygiene checks on forward and
backward, estimation, comparison). The bare estimators (``partial_derivatives`` on the layer's
batched objective) are timed with the same chunk size and BLAS thread limit that ``check_layer``
uses, so that the difference between the two rows is the harness's overhead around estimation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np

from gradcheck import CheckResult, check_layer, partial_derivatives
from gradcheck.objective import LayerObjective, blas_single_thread

from .peers import Outcome
from .problem import Checkable, Problem

# check_layer evaluates stacks of at most _STACK_ELEMENTS input elements (and _MAX_CHUNK inputs)
# at once, and limits BLAS to one thread for inputs of at least _THREAD_LIMIT_SIZE entries. These
# mirror gradcheck/check.py, which has no public function for them.
_STACK_ELEMENTS = 2**22
_MAX_CHUNK = 4096
_THREAD_LIMIT_SIZE = 256


def harness_chunk(size: int) -> int:
    """The number of perturbed inputs ``check_layer`` evaluates per stacked forward call."""
    from gradcheck import check as check_module

    rule = getattr(check_module, "default_chunk", None)
    if callable(rule):
        return int(rule(size))
    return max(1, min(_MAX_CHUNK, _STACK_ELEMENTS // max(1, size)))


def thread_limit_size() -> int:
    """Input size from which ``check_layer`` runs its estimates with single-threaded BLAS."""
    from gradcheck import check as check_module

    return int(getattr(check_module, "_THREAD_LIMIT_SIZE", _THREAD_LIMIT_SIZE))


def check(problem: Checkable, **options: Any) -> Callable[[], Outcome]:
    """``check_layer(problem.layer(), X, dy=dY, **options)``; the outcome is its verdict."""
    layer = problem.layer()

    def run() -> Outcome:
        return outcome(check_layer(layer, problem.x, dy=problem.dy, **options))

    return run


def outcome(result: CheckResult) -> Outcome:
    """A check's verdict, how it got there, and for a fail the entries it named."""
    named = worst = None
    if result.status == "fail":
        entries = [a for a in result.arguments if a.mode != "directional" and a.status == "fail"]
        named = sum(a.comparison.n_failed for a in entries)
        if entries and entries[0].comparison.worst:
            worst = tuple(entries[0].comparison.worst[0].index)
    resolves = [a.resolves_entry for a in result.screen + result.arguments if a.resolves_entry]
    localized = [f.message for f in result.findings if f.code == "localized-by-bisection"]
    return Outcome(
        status=result.status,
        detail=trail(result),
        named=named,
        worst=worst,
        evaluations=sum(a.evaluations for a in result.screen + result.arguments),
        resolves_entry=resolves[-1] if resolves else None,
        localization=localized[0] if localized else None,
    )


@dataclass
class Counts:
    """Calls into a layer during one check: forwards, the points they evaluated, backwards."""

    forward: int = 0
    points: int = 0
    backward: int = 0


def counted(layer: Any) -> Tuple[Any, Counts]:
    """A copy of ``layer`` whose class counts its forward and backward calls (not its state).

    The counter lives outside the instance, so that the harness's state checks see the same
    attributes as on the original layer. A stacked forward ``(k, N, D)`` counts ``k`` points.
    """
    counts = Counts()
    base = type(layer)

    def forward(self: Any, x: Any, *rest: Any) -> Any:
        shape = np.shape(x)
        counts.forward += 1
        counts.points += int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        return base.forward(self, x, *rest)

    def backward(self: Any, *args: Any) -> Any:
        counts.backward += 1
        return base.backward(self, *args)

    cls: Any = type(base.__name__, (base,), {"forward": forward, "backward": backward})
    copy = object.__new__(cls)
    copy.__dict__.update(layer.__dict__)
    return copy, counts


def call_counts(problem: Checkable, **options: Any) -> Counts:
    """What one ``check_layer`` call (default options unless given) asks of the layer."""
    layer, counts = counted(problem.layer())
    check_layer(layer, problem.x, dy=problem.dy, **options)
    return counts


def trail(result: CheckResult) -> Optional[str]:
    """The comparisons a check made, in order, when there was more than the final one.

    An escalation (a central estimate that could not resolve the tolerance, repeated with
    richardson) or a directional screen followed by full mode changes what a row's time means.
    """
    final = list(result.arguments)
    steps = [a for a in result.screen if all(a is not b for b in final)] + final
    if len(steps) <= 1:
        return None
    return " -> ".join(f"{a.mode} {a.method} {a.status}" for a in steps)


def estimator(problem: Problem, method: str) -> Callable[[], Outcome]:
    """``partial_derivatives`` of ``L`` by ``method`` on the batched objective, as check_layer."""
    objective = LayerObjective(problem.layer(), problem.x, None, np.dtype(np.float64))
    chunk = harness_chunk(problem.x.size)
    single = problem.x.size >= thread_limit_size()

    def run() -> Outcome:
        with blas_single_thread(single):
            est = partial_derivatives(
                objective.outputs_x, problem.x, problem.dy, method=method, chunk=chunk
            )
        return Outcome(gradient=est.value, error=est.error)

    return run

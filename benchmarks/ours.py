"""The harness's own rows: ``check_layer`` in each mode, and the bare estimators beneath it.

``check_layer`` is timed as a user calls it (validation, the hygiene checks on forward and
backward, estimation, comparison). The bare estimators (``partial_derivatives`` on the layer's
batched objective) are timed with the same chunk size and BLAS thread limit that ``check_layer``
uses, so that the difference between the two rows is the harness's overhead around estimation.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from gradcheck import CheckResult, check_layer, partial_derivatives
from gradcheck.objective import LayerObjective, blas_single_thread

from .peers import Outcome
from .problem import Problem

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


def check(problem: Problem, **options: Any) -> Callable[[], Outcome]:
    """``check_layer(ZCAWhitening(eps), X, dy=dY, **options)``; the outcome is its verdict."""
    layer = problem.layer()

    def run() -> Outcome:
        result = check_layer(layer, problem.x, dy=problem.dy, **options)
        return Outcome(status=result.status, detail=trail(result))

    return run


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

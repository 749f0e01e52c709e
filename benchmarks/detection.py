"""What the default check must catch: one entry of the ZCA gradient wrong by a relative 1e-6.

For each seed ``s``: the reference problem at ``N x D`` drawn from ``DETECTION_SEED + s``, one
entry ``i`` of the gradient chosen from the same seed, and a backward that multiplies ``dX[i]``
by ``1 + r`` with ``r = 1e-6 * rms(g) / |g_i|``: entry ``i`` is wrong by ``1e-6`` of a typical
entry (the root mean square of the gradient), the measure in which the harness states what it
resolves (``resolves_entry``). The factor is fixed once per seed, so the wrong backward is still
linear in ``dy`` and repeatable: only the numbers can give it away. ``check_layer`` runs with its
defaults and ``seed=s``; the right twin (the plain layer) runs on the same problem and seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from gradcheck import check_layer
from layers.whitening import ZCAWhitening

from .ours import outcome
from .peers import Outcome
from .problem import Problem, make_problem

Array = np.ndarray

DETECTION_SEED = 7000
DETECTION_SIZE: Tuple[int, int] = (64, 32)
ENTRY_ERROR = 1e-6  # relative to a typical entry (the gradient's root mean square)


class WrongEntryZCA(ZCAWhitening):
    """ZCA whitening whose backward multiplies one entry of ``dX`` by a fixed ``factor``."""

    def __init__(self, eps: float, index: Tuple[int, int], factor: float) -> None:
        super().__init__(eps=eps)
        self.wrong_index = index
        self.wrong_factor = factor

    def backward(self, dy: Array) -> Array:
        dx = np.array(super().backward(dy), dtype=np.float64, copy=True)
        dx[(..., *self.wrong_index)] *= self.wrong_factor
        return dx


@dataclass(frozen=True)
class Planted:
    """One seed's problem and its wrong entry."""

    seed: int
    problem: Problem
    index: Tuple[int, int]
    factor: float


def plant(seed: int, size: Tuple[int, int] = DETECTION_SIZE) -> Planted:
    """The problem for ``seed`` and the entry made wrong by ``ENTRY_ERROR`` of a typical entry."""
    problem = make_problem(*size, seed=DETECTION_SEED + seed)
    g = problem.grad
    rng = np.random.default_rng([DETECTION_SEED, seed])
    flat = int(rng.integers(g.size))
    index = tuple(int(i) for i in np.unravel_index(flat, g.shape))
    rms = float(np.sqrt(np.mean(g * g)))
    factor = 1.0 + ENTRY_ERROR * rms / max(abs(float(g[index])), 1e-300)
    return Planted(seed, problem, (index[0], index[1]), factor)


@dataclass(frozen=True)
class Trial:
    """The default check on one seed: the wrong layer's outcome and the right twin's."""

    planted: Planted
    wrong: Outcome
    right: Outcome
    wrong_seconds: float
    right_seconds: float

    @property
    def caught(self) -> bool:
        return self.wrong.status == "fail"

    @property
    def named_it(self) -> bool:
        """The check's worst entry is the planted one."""
        return self.wrong.worst is not None and tuple(self.wrong.worst) == self.planted.index


def run_ours(seeds: int, size: Tuple[int, int] = DETECTION_SIZE) -> List[Trial]:
    trials = []
    for s in range(seeds):
        p = plant(s, size)
        layer = WrongEntryZCA(p.problem.eps, p.index, p.factor)
        start = time.perf_counter()
        wrong = outcome(check_layer(layer, p.problem.x, dy=p.problem.dy, seed=s))
        middle = time.perf_counter()
        right = outcome(check_layer(p.problem.layer(), p.problem.x, dy=p.problem.dy, seed=s))
        end = time.perf_counter()
        trials.append(Trial(p, wrong, right, middle - start, end - middle))
    return trials


def run_torch(
    seeds: int,
    wrong_forward: Callable[[float, Tuple[int, int], float], Any],
    gradcheck: Callable[..., Callable[[], Outcome]],
    size: Tuple[int, int] = DETECTION_SIZE,
) -> List[Tuple[Planted, Outcome, float]]:
    """torch's default (slow) gradcheck on the first ``seeds`` planted problems."""
    out = []
    for s in range(seeds):
        p = plant(s, size)
        run = gradcheck(p.problem, False, forward=wrong_forward(p.problem.eps, p.index, p.factor))
        start = time.perf_counter()
        result = run()
        out.append((p, result, time.perf_counter() - start))
    return out


def median(values: List[float]) -> Optional[float]:
    return float(np.median(values)) if values else None

"""The cheap row-wise problem: ``tanh`` of a ``5000 x 200`` batch, right and 1% wrong.

A layer whose forward costs a few milliseconds at a million entries, so that what a check costs
beyond the forward (the harness's own array work, its memory, its budget) shows. The layer is
written here, not taken from :mod:`layers`, so that its wrong twins stay beside it:

* :class:`TanhLayer` -- ``y = tanh(x)``, ``dx = dy (1 - y^2)``; stacks ``(..., N, D)`` welcome;
* ``wrong="scale"`` -- every entry of ``dx`` 1% too large (``1.01 dy (1 - y^2)``);
* ``wrong="sparse"`` -- 1% of the entries (a fixed random mask of the ``N x D`` shape) 1% too
  large, the rest right.

Both wrong twins stay linear in ``dy`` and repeatable, so a check can only catch them by the
numbers, never by a broken contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

Array = np.ndarray

TANH_SHAPE: Tuple[int, int] = (5000, 200)
TANH_SEED = 2025
WRONG_FACTOR = 1.01  # "1% wrong"
WRONG_SHARE = 0.01  # the sparse twin: this share of the entries is wrong
WRONG_KINDS: Tuple[str, ...] = ("scale", "sparse")


class TanhLayer:
    """``y = tanh(x)`` entry by entry; ``backward(dy) = dy * (1 - y^2)`` for the last forward.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)`` (``supports_batch``); ``dy`` has the
    shape of the last forward's output. ``wrong`` is ``None`` (right), ``"scale"`` or
    ``"sparse"`` (see the module docstring).
    """

    supports_batch = True

    def __init__(self, wrong: Optional[str] = None, seed: int = TANH_SEED) -> None:
        if wrong is not None and wrong not in WRONG_KINDS:
            raise ValueError(
                f"TanhLayer: wrong must be None or one of {', '.join(WRONG_KINDS)}, got {wrong!r}"
            )
        self.wrong = wrong
        self.seed = seed
        self.params: Dict[str, Array] = {}
        self.grads: Dict[str, Array] = {}
        self.y: Optional[Array] = None
        self._masks: Dict[Tuple[int, ...], Array] = {}

    def forward(self, x: Array) -> Array:
        self.y = np.tanh(np.asarray(x, dtype=np.float64))
        return self.y

    def backward(self, dy: Array) -> Array:
        if self.y is None:
            raise RuntimeError("TanhLayer.backward called before forward")
        dy = np.asarray(dy, dtype=np.float64)
        if dy.shape != self.y.shape:
            raise ValueError(
                f"TanhLayer.backward: dy has shape {dy.shape}, expected {self.y.shape}"
            )
        self.grads = {}
        dx = dy * (1.0 - self.y * self.y)
        if self.wrong == "scale":
            dx = WRONG_FACTOR * dx
        elif self.wrong == "sparse":
            dx = np.where(self.mask(dx.shape[-2:]), WRONG_FACTOR * dx, dx)
        return dx

    def mask(self, shape: Tuple[int, ...]) -> Array:
        """The sparse twin's wrong entries: ``WRONG_SHARE`` of ``shape``, fixed by ``seed``."""
        shape = tuple(shape)
        if shape not in self._masks:
            count = max(1, round(WRONG_SHARE * int(np.prod(shape))))
            flat = np.zeros(int(np.prod(shape)), dtype=bool)
            rng = np.random.default_rng([self.seed, *shape])
            flat[rng.choice(flat.size, size=count, replace=False)] = True
            self._masks[shape] = flat.reshape(shape)
        return self._masks[shape]

    def __repr__(self) -> str:
        return f"TanhLayer(wrong={self.wrong!r})"


@dataclass(frozen=True)
class TanhProblem:
    """``L(X) = <tanh(X), dY>`` at a standard-normal ``X`` and ``dY`` of ``n x d``."""

    n: int
    d: int
    x: Array  # (N, D)
    dy: Array  # (N, D)
    grad: Array  # (N, D) the right dL/dX
    wrong: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.n}x{self.d}"

    def layer(self) -> TanhLayer:
        return TanhLayer(self.wrong)

    def with_wrong(self, wrong: Optional[str]) -> TanhProblem:
        return TanhProblem(self.n, self.d, self.x, self.dy, self.grad, wrong)


def make_tanh_problem(n: int, d: int, seed: int = TANH_SEED) -> TanhProblem:
    """Standard-normal ``X`` and ``dY`` from independent streams of ``seed``; the exact gradient."""
    streams = np.random.SeedSequence([seed, n, d]).spawn(2)
    x = np.random.default_rng(streams[0]).standard_normal((n, d))
    dy = np.random.default_rng(streams[1]).standard_normal((n, d))
    grad = dy * (1.0 - np.tanh(x) ** 2)
    return TanhProblem(n, d, x, dy, grad)

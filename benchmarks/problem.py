"""The reference problem every method is timed on: ZCA whitening of an ``N x D`` batch.

``f(X)`` is :class:`layers.whitening.ZCAWhitening` with ``eps = 1e-5`` (centred, whitened over
features), and the scalar objective is ``L(X) = <f(X), dY>`` for a fixed random ``dY``. Its
gradient, ``ZCAWhitening.backward(dY)``, is the analytic reference for every numeric estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Protocol, Tuple

import numpy as np

from layers.whitening import ZCAWhitening

Array = np.ndarray

EPS = 1e-5
DEFAULT_SIZES: Tuple[Tuple[int, int], ...] = ((16, 4), (32, 8), (64, 16), (128, 32), (256, 64))
SEED = 2024


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """``"16x4,64x16"`` -> ``[(16, 4), (64, 16)]``; raises ``ValueError`` on a malformed size."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            n_text, d_text = part.split("x")
            n, d = int(n_text), int(d_text)
        except ValueError:
            raise ValueError(f"size {part!r} is not of the form NxD (for example 64x16)") from None
        if n < 2 or d < 1:
            raise ValueError(f"size {part!r}: need N >= 2 and D >= 1")
        sizes.append((n, d))
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


class Checkable(Protocol):
    """What a check of a problem needs: a fresh layer, the input and the upstream gradient."""

    @property
    def x(self) -> Array: ...

    @property
    def dy(self) -> Array: ...

    @property
    def label(self) -> str: ...

    def layer(self) -> Any: ...


@dataclass(frozen=True)
class Problem:
    """One instance of the reference problem: the input, the upstream gradient and the answer."""

    n: int
    d: int
    eps: float
    x: Array  # (N, D) input batch
    dy: Array  # (N, D) fixed upstream gradient
    grad: Array  # (N, D) analytic dL/dX = ZCAWhitening.backward(dy)

    @property
    def label(self) -> str:
        return f"{self.n}x{self.d}"

    def layer(self) -> ZCAWhitening:
        """A fresh layer, so that no method sees another method's cache."""
        return ZCAWhitening(eps=self.eps)

    def objective(self) -> Callable[[Array], float]:
        """``L`` as a function of the flattened input, for peers that differentiate a scalar."""
        layer = self.layer()
        shape, dy = (self.n, self.d), self.dy

        def loss(flat: Array) -> float:
            return float(np.vdot(layer.forward(np.reshape(flat, shape)), dy))

        return loss


def make_problem(n: int, d: int, seed: int = SEED, eps: float = EPS) -> Problem:
    """Standard-normal ``X`` and ``dY`` (independent streams of ``seed``) and the exact gradient."""
    streams = np.random.SeedSequence([seed, n, d]).spawn(2)
    x = np.random.default_rng(streams[0]).standard_normal((n, d))
    dy = np.random.default_rng(streams[1]).standard_normal((n, d))
    layer = ZCAWhitening(eps=eps)
    layer.forward(x)
    grad = np.asarray(layer.backward(dy), dtype=np.float64)
    return Problem(n, d, eps, x, dy, grad)

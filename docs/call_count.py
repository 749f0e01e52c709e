"""How many calls a default check makes into a layer: forward calls, stacked points, backward calls.

Prints the Markdown table of ``docs/estimators.md`` ("What a default check costs"): the calls
``check_layer(layer, x)`` makes for a layer that evaluates one input per forward (a plain
``tanh``) and for one that declares ``supports_batch`` (``ZCAWhitening``), split into the
estimate's points and the contract checks'. Run: ``python docs/call_count.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from gradcheck import check_layer
from layers.whitening import ZCAWhitening

#: Kept outside the layer: a check restores the layer's own attributes to what they were.
COUNTS: Dict[str, int] = {}


class Counted:
    """Wraps a layer's forward and backward with counters; ``supports_batch`` passes through."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        if getattr(layer, "supports_batch", False):
            self.supports_batch = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        COUNTS["forward"] += 1
        COUNTS["points"] += x.shape[0] if x.ndim == 3 else 1
        return self.layer.forward(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        COUNTS["backward"] += 1
        return self.layer.backward(dy)


class Tanh:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return (1.0 - self.y**2) * dy


CASES: Tuple[Tuple[str, Any, Tuple[int, int]], ...] = (
    ("tanh (one input per forward)", Tanh, (8, 3)),
    ("tanh (one input per forward)", Tanh, (64, 32)),
    ("ZCAWhitening (supports_batch)", lambda: ZCAWhitening(eps=1e-5), (16, 4)),
    ("ZCAWhitening (supports_batch)", lambda: ZCAWhitening(eps=1e-5), (64, 16)),
)


def count(make: Any, shape: Tuple[int, int]) -> Dict[str, Any]:
    COUNTS.update(forward=0, points=0, backward=0)
    x = np.random.default_rng(0).standard_normal(shape)
    result = check_layer(Counted(make()), x, seed=0)
    # Superseded comparisons (the screen) and final ones, each once.
    distinct = {id(a): a for a in result.arguments + result.screen}
    estimate = sum(a.evaluations for a in distinct.values())
    return {**COUNTS, "estimate": estimate, "status": result.status}


def main() -> None:
    print(
        "| layer | input | forward calls | points evaluated | of them, the estimate's "
        "| backward calls | verdict |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, make, shape in CASES:
        c = count(make, shape)
        print(
            f"| {name} | {shape[0]}x{shape[1]} | {c['forward']} | {c['points']} | "
            f"{c['estimate']} | {c['backward']} | {c['status']} |"
        )


if __name__ == "__main__":
    main()

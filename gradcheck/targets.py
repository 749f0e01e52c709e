"""Targets of loss layers and loss functions: what they are and how the harness draws them.

A target is never differentiated. Three kinds, written as the command line's ``--target`` takes
them:

``labels:C``
    integer class labels ``(N,)`` in ``[0, C)`` (classification: softmax, SVM);
``onehot:C``
    the same labels one-hot encoded, float64 ``(N, C)``;
``normal:SHAPE``
    float64 standard-normal values (regression), ``SHAPE`` as ``AxB...``. The letter ``N``
    stands for the batch size, so ``normal:N`` is ``(N,)`` and ``normal:Nx1`` is ``(N, 1)``;
    plain ``normal`` takes the shape of the input.

``N`` is the first dimension of the input (``x``, or the first differentiated argument of a
function). Targets are drawn from the harness's stream ``harness_rng(seed, PURPOSE_TARGET)``
(:data:`gradcheck.streams.PURPOSE_TARGET`), so they are a function of the seed alone and never
equal to the user's stream ``default_rng(seed)`` from which inputs are drawn. Several targets of
one function are drawn one after another from that stream, in the signature's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .literals import parse_shape
from .streams import PURPOSE_TARGET, harness_rng

TARGET_KINDS: Tuple[str, ...] = ("labels", "onehot", "normal")
TARGET_FORMS = "labels:C, onehot:C, normal:SHAPE (N for the batch size, e.g. normal:Nx1) or normal"

Dim = Union[int, str]


@dataclass(frozen=True)
class TargetSpec:
    """One target: ``kind`` and either ``classes`` (labels, onehot) or a ``shape`` template
    (normal; ``"N"`` entries are the batch size, ``None`` means the input's shape)."""

    kind: str
    classes: Optional[int] = None
    shape: Optional[Tuple[Dim, ...]] = None

    @property
    def text(self) -> str:
        """The spec as the command line writes it (``labels:10``, ``normal:Nx1``)."""
        if self.kind in ("labels", "onehot"):
            return f"{self.kind}:{self.classes}"
        if self.shape is None:
            return "normal"
        return "normal:" + "x".join(str(d) for d in self.shape)

    def resolve_shape(self, x_shape: Sequence[int]) -> Tuple[int, ...]:
        """The target's shape for an input of ``x_shape``."""
        n = int(x_shape[0]) if len(x_shape) else 1
        if self.kind == "labels":
            return (n,)
        if self.kind == "onehot":
            return (n, int(self.classes or 0))
        if self.shape is None:
            return tuple(int(d) for d in x_shape)
        return tuple(n if d == "N" else int(d) for d in self.shape)


def parse_target(text: str) -> TargetSpec:
    """``labels:C``, ``onehot:C``, ``normal:SHAPE`` or ``normal`` to a :class:`TargetSpec`."""
    kind, sep, arg = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in TARGET_KINDS:
        raise ValueError(f"a target is one of {TARGET_FORMS}; got {text!r}")
    if kind in ("labels", "onehot"):
        try:
            classes = int(arg)
        except ValueError:
            raise ValueError(
                f"{kind}:C needs the number of classes C, a positive integer, got {text!r}"
            ) from None
        if classes < 1:
            raise ValueError(f"{kind}:C needs at least one class, got {text!r}")
        return TargetSpec(kind, classes=classes)
    if not sep:
        return TargetSpec("normal")
    dims: List[Dim] = []
    for part in arg.strip().split("x"):
        if part.strip().upper() == "N":
            dims.append("N")
        else:
            try:
                (d,) = parse_shape(part)
            except ValueError:
                raise ValueError(
                    f"normal:SHAPE needs a shape such as N, Nx1 or 8x1, got {text!r}"
                ) from None
            dims.append(d)
    return TargetSpec("normal", shape=tuple(dims))


def draw_targets(
    specs: Sequence[TargetSpec], x_shape: Sequence[int], seed: int
) -> Tuple[np.ndarray, ...]:
    """The targets for one check, in order, from the harness's target stream for ``seed``."""
    rng = harness_rng(seed, PURPOSE_TARGET)
    out: List[np.ndarray] = []
    for spec in specs:
        shape = spec.resolve_shape(x_shape)
        if spec.kind == "labels":
            out.append(rng.integers(0, int(spec.classes or 1), size=shape))
        elif spec.kind == "onehot":
            labels = rng.integers(0, int(spec.classes or 1), size=shape[0])
            out.append(np.eye(int(spec.classes or 1))[labels])
        else:
            out.append(rng.standard_normal(shape))
    return tuple(out)


def draw_target(spec: TargetSpec, x_shape: Sequence[int], seed: int) -> np.ndarray:
    """One target (a loss layer's) for an input of ``x_shape``; see :func:`draw_targets`."""
    (target,) = draw_targets([spec], x_shape, seed)
    return target

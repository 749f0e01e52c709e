"""Softmax followed by cross-entropy against integer class labels."""

from __future__ import annotations

from typing import Any, ClassVar, Union

import numpy as np

from .base import Array, LossLayer, as_float64, check_choice, check_matrix

REDUCTIONS = ("mean", "sum")


def _shifted(x: Array, axis: int) -> Array:
    # Subtracting the row maximum keeps exp() from overflowing for logits of any magnitude; the
    # shift uses the real part so that complex (complex-step) logits get a real constant
    # shift, to which softmax and log-sum-exp are exactly invariant.
    return x - np.max(x.real, axis=axis, keepdims=True)


def softmax(x: Array, axis: int = -1) -> Array:
    """Numerically stable softmax of ``x`` along ``axis`` (any shape; rows sum to one)."""
    e = np.exp(_shifted(as_float64(x), axis))
    return e / e.sum(axis=axis, keepdims=True)


class SoftmaxCrossEntropy(LossLayer):
    """Mean (or summed) cross-entropy of ``softmax(logits)`` against integer labels.

    ``forward(logits, labels)``: ``logits`` is ``(N, C)`` floating point, ``labels`` is ``(N,)``
    of an integer dtype with values in ``[0, C)``. The loss is
    ``L = (1/N) sum_n (logsumexp(z_n) - z_{n, y_n})`` for ``reduction="mean"`` (no ``1/N`` for
    ``"sum"``), computed with the max-shifted log-sum-exp so that logits of magnitude 1e3 or
    more give a finite loss. A single ``(N, C)`` input returns a Python float.

    A stack ``(..., N, C)`` of logits shares the ``(N,)`` labels and returns an array of losses
    of shape ``(...)``, one per slice; ``backward()`` then returns the gradient of each slice's
    own loss, stacked (the VJP with an upstream gradient of ones).

    ``backward()`` returns ``dL/dlogits = (softmax(z) - onehot(labels)) / N`` (without ``/N``
    for ``"sum"``), shape of ``logits``. ``probabilities`` is ``softmax(z)`` of the last forward.

    Log-sum-exp is holomorphic, and the stabilising shift uses only the real part (to which the
    loss is exactly invariant), so complex logits are accepted for the complex-step estimator.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = True

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_choice("SoftmaxCrossEntropy", "reduction", reduction, REDUCTIONS)
        self.reduction = reduction

    def _check_labels(self, labels: Any, n: int, c: int) -> Array:
        arr = np.asarray(labels)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"{self.name}: argument 'labels' must be an integer array of class indices, "
                f"got dtype {arr.dtype}"
            )
        if arr.shape != (n,):
            raise ValueError(
                f"{self.name}: argument 'labels' must have shape (N,) = ({n},) to match logits, "
                f"got shape {arr.shape}"
            )
        if arr.min() < 0 or arr.max() >= c:
            raise ValueError(
                f"{self.name}: argument 'labels' must lie in [0, C) = [0, {c}), "
                f"got values from {arr.min()} to {arr.max()}"
            )
        return arr

    def forward(self, logits: Array, labels: Array) -> Union[float, complex, Array]:  # type: ignore[override]
        """Return the loss: a Python scalar for ``(N, C)`` logits, a ``(...)`` array for a stack."""
        z = as_float64(check_matrix(self.name, "logits", logits))
        n, c = z.shape[-2:]
        labels = self._check_labels(labels, n, c)
        zs = _shifted(z, -1)
        e = np.exp(zs)
        sum_e = e.sum(axis=-1, keepdims=True)
        idx = np.broadcast_to(labels[:, None], (*z.shape[:-1], 1))
        e_label = np.take_along_axis(e, idx, axis=-1)
        # The other classes' share, summed directly: when the label dominates, sum_e = 1 + r
        # with a tiny r, and log(sum_e) or p_label - 1 would keep only the rounding of 1 + r.
        rest = (e * (np.arange(c) != idx)).sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            ratio = rest / e_label
            direct = np.log(sum_e) - np.take_along_axis(zs, idx, axis=-1)
            nll = np.where(np.abs(ratio) < 1.0, np.log1p(ratio), direct)[..., 0]
        loss = nll.mean(axis=-1) if self.reduction == "mean" else nll.sum(axis=-1)
        self.cache = {"p": e / sum_e, "labels": labels, "rest": rest / sum_e}
        return loss.item() if z.ndim == 2 else loss

    @property
    def probabilities(self) -> Array:
        """``softmax(logits)`` of the last forward, shape of the logits."""
        return self._require_cache()["p"]

    def backward(self) -> Array:  # type: ignore[override]
        """Return ``dL/dlogits`` for the last forward, shape of the logits."""
        cache = self._require_cache()
        p, labels = cache["p"], cache["labels"]
        onehot = np.arange(p.shape[-1]) == labels[:, None]
        self.grads = {}
        # p_label - 1 = -(sum of the other probabilities), without the cancellation.
        grad = np.where(onehot, -cache["rest"], p)
        return grad / p.shape[-2] if self.reduction == "mean" else grad

    def __repr__(self) -> str:
        return f"SoftmaxCrossEntropy(reduction={self.reduction!r})"


__all__ = ["SoftmaxCrossEntropy", "softmax"]

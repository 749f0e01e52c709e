"""Layers written as from-scratch NumPy libraries write them: classes whose constructors take
arguments, parameters created on the first forward, dropout drawing from NumPy's global RNG,
4-D inputs, a regression loss. Each correct layer has a *Buggy* twin with a classic mistake,
which ``gradcheck`` must catch.

    gradcheck report --layer 'scratch_layers:BatchNorm(4)' --shape 8x4
    gradcheck report --layer 'scratch_layers:Conv2D(3, 2, k=3, pad=1)' --shape 2x3x5x5
    gradcheck report --layer 'scratch_layers:Dense(3)' --shape 6x4
    gradcheck report --layer 'scratch_layers:Dropout(0.5)' --shape 6x4 --reseed-global-rng
    gradcheck report --layer scratch_layers:MSELoss --shape 8x1 --target normal:Nx1

(run from the ``examples`` folder, or with it on ``PYTHONPATH``). Layers: ``forward(x)`` and
``backward(dy) -> dx``, parameters in ``self.params``, their gradients written (not added) into
``self.grads``; a loss has ``forward(pred, target) -> float`` and ``backward() -> dpred``.
Rows are examples; images are ``(N, C, H, W)``.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

Array = np.ndarray


class BatchNorm:
    """Batch normalization over the examples of ``x (N, D)``, ``D = num_features``, in training
    mode; running statistics are kept (and not used) in training."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9) -> None:
        rng = np.random.default_rng(0)
        self.params: Dict[str, Array] = {
            "gamma": rng.uniform(0.5, 1.5, num_features),
            "beta": rng.standard_normal(num_features),
        }
        self.grads: Dict[str, Array] = {}
        self.eps, self.momentum = eps, momentum
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)

    def forward(self, x: Array) -> Array:
        mu, var = x.mean(axis=0), x.var(axis=0)
        self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
        self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        self.std = np.sqrt(var + self.eps)
        self.xhat = (x - mu) / self.std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        self.grads = {"gamma": (dy * self.xhat).sum(axis=0), "beta": dy.sum(axis=0)}
        dxhat = dy * self.params["gamma"]
        return (
            dxhat - dxhat.mean(axis=0) - self.xhat * (dxhat * self.xhat).mean(axis=0)
        ) / self.std


class BatchNormBuggy(BatchNorm):
    """Bug: gradients are added into ``grads`` across calls instead of written."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        new = self.grads
        self.grads = getattr(self, "_sum", {k: np.zeros_like(v) for k, v in new.items()})
        for k, v in new.items():
            self.grads[k] += v
        self._sum = self.grads
        return dx


class Conv2D:
    """Convolution (cross-correlation) of ``x (N, C, H, W)`` with ``out_channels`` filters of
    ``k x k``, zero padding ``pad`` and stride 1; output ``(N, F, H', W')``."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 3, pad: int = 0) -> None:
        rng = np.random.default_rng(1)
        self.params = {
            "W": rng.standard_normal((out_channels, in_channels, k, k)) / k,
            "b": rng.standard_normal(out_channels),
        }
        self.grads: Dict[str, Array] = {}
        self.k, self.pad = k, pad

    def _windows(self, xp: Array) -> Array:
        """``(N, C, H', W', k, k)``: every k x k window of the padded input."""
        k = self.k
        n, c, h, w = xp.shape
        shape = (n, c, h - k + 1, w - k + 1, k, k)
        s = xp.strides
        return np.lib.stride_tricks.as_strided(xp, shape, (*s, s[2], s[3]), writeable=False)

    def forward(self, x: Array) -> Array:
        p = self.pad
        self.xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = self._windows(self.xp)
        return (
            np.einsum("nchwij,fcij->nfhw", windows, self.params["W"])
            + self.params["b"][None, :, None, None]
        )

    def backward(self, dy: Array) -> Array:
        windows = self._windows(self.xp)
        self.grads = {
            "W": np.einsum("nfhw,nchwij->fcij", dy, windows),
            "b": dy.sum(axis=(0, 2, 3)),
        }
        return self._input_grad(dy, self.params["W"])

    def _input_grad(self, dy: Array, w: Array) -> Array:
        k, p = self.k, self.pad
        dxp = np.zeros_like(self.xp)
        _, _, ho, wo = dy.shape
        for i in range(k):
            for j in range(k):
                dxp[:, :, i : i + ho, j : j + wo] += np.einsum("nfhw,fc->nchw", dy, w[:, :, i, j])
        h, w_ = dxp.shape[2] - 2 * p, dxp.shape[3] - 2 * p
        return dxp[:, :, p : p + h, p : p + w_]


class Conv2DBuggy(Conv2D):
    """Bug: the input gradient uses the filters flipped (a true convolution's rule applied to
    a cross-correlation)."""

    def _input_grad(self, dy: Array, w: Array) -> Array:
        return super()._input_grad(dy, w[:, :, ::-1, ::-1])


class Dense:
    """``y = x @ W + b`` with ``units`` outputs; ``W`` and ``b`` are created on the first
    forward, when the number of input features is known."""

    def __init__(self, units: int) -> None:
        self.units = units
        self.params: Dict[str, Array] = {}
        self.grads: Dict[str, Array] = {}

    def forward(self, x: Array) -> Array:
        if not self.params:
            rng = np.random.default_rng(2)
            self.params = {
                "W": rng.standard_normal((x.shape[1], self.units)) / np.sqrt(x.shape[1]),
                "b": np.zeros(self.units),
            }
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy: Array) -> Array:
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(axis=0)}
        return dy @ self.params["W"].T


class DenseBuggy(Dense):
    """Bug: the weight gradient is transposed the wrong way round (shape fits a square W)."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        self.grads["W"] = (self.x.T @ dy).T.reshape(self.params["W"].shape)
        return dx


class Dropout:
    """Inverted dropout: keeps each entry with probability ``1 - p`` and scales by
    ``1 / (1 - p)``; the mask comes from NumPy's global RNG (``np.random.rand``)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p
        self.mask: Optional[Array] = None

    def forward(self, x: Array) -> Array:
        keep = 1.0 - self.p
        self.mask = (np.random.rand(*x.shape) < keep) / keep  # noqa: NPY002
        return x * self.mask

    def backward(self, dy: Array) -> Array:
        return dy * self.mask


class DropoutBuggy(Dropout):
    """Bug: the backward draws a fresh mask instead of using the forward's."""

    def backward(self, dy: Array) -> Array:
        keep = 1.0 - self.p
        return dy * (np.random.rand(*dy.shape) < keep) / keep  # noqa: NPY002


class MSELoss:
    """Half the mean squared error over the batch: ``sum((pred - target)**2) / (2 N)``;
    ``pred`` and ``target`` are ``(N, 1)`` (or any equal shapes)."""

    is_loss = True

    def forward(self, pred: Array, target: Array) -> float:
        self.diff = pred - target
        return float(np.sum(self.diff**2) / (2 * pred.shape[0]))

    def backward(self) -> Array:
        return self.diff / self.diff.shape[0]


class MSELossBuggy(MSELoss):
    """Bug: the gradient forgets the 1/2 of the loss (twice too large)."""

    def backward(self) -> Array:
        return 2 * self.diff / self.diff.shape[0]

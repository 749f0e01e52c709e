"""Hand-written optimizers: SGD with momentum, and Adam with its bias correction.

An optimizer updates the arrays of a ``params`` dict in place from the arrays of a ``grads``
dict with the same keys (a layer's, or a whole :class:`~layers.sequential.Sequential`'s)::

    opt = Adam(lr=1e-3, lr_decay=0.99)
    for epoch in range(epochs):
        for xb, yb in batches:
            model.forward(xb, yb)
            model.backward()
            opt.step(model.params, model.grads)
        opt.end_epoch()  # lr <- lr * lr_decay

Updating in place keeps every reference to a parameter (a layer's cache, a network's view)
pointing at the current values. The per-parameter state (velocities, moments) is keyed by the
parameter's name and created on its first step.
"""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from .base import Array


class Optimizer:
    """Common part: the learning rate, its per-epoch decay, and validation of ``step``'s input.

    ``lr`` is the current rate; ``end_epoch()`` multiplies it by ``lr_decay`` (1.0: constant),
    so after ``k`` epochs it is ``initial_lr * lr_decay**k``. ``steps`` counts calls of
    :meth:`step`. Subclasses implement ``_update(key, param, grad)``.
    """

    def __init__(self, lr: float, lr_decay: float = 1.0) -> None:
        name = type(self).__name__
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"{name}: argument 'lr' must be a positive number, got {lr!r}")
        if not (np.isfinite(lr_decay) and 0 < lr_decay <= 1):
            raise ValueError(f"{name}: argument 'lr_decay' must be in (0, 1], got {lr_decay!r}")
        self.lr = float(lr)
        self.initial_lr = float(lr)
        self.lr_decay = float(lr_decay)
        self.epochs = 0
        self.steps = 0

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """Update every array of ``params`` in place from ``grads[key]`` of the same shape.

        Raises ``KeyError`` when a parameter has no gradient and ``ValueError`` for a shape
        mismatch or a non-finite gradient, before anything is updated, so a bad step leaves the
        model as it was.
        """
        name = type(self).__name__
        missing = [k for k in params if k not in grads]
        if missing:
            raise KeyError(
                f"{name}.step: no gradient for parameter(s) {', '.join(missing)}; "
                f"was backward called after the last forward?"
            )
        for key, p in params.items():
            g = np.asarray(grads[key])
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"{name}.step: parameter {key!r} must be a floating ndarray")
            if g.shape != p.shape:
                raise ValueError(
                    f"{name}.step: gradient {key!r} has shape {g.shape}, parameter {p.shape}"
                )
            if not np.all(np.isfinite(g)):
                raise ValueError(f"{name}.step: gradient {key!r} is not finite (NaN or inf)")
        self.steps += 1
        for key, p in params.items():
            self._update(key, p, np.asarray(grads[key], dtype=p.dtype))

    def end_epoch(self) -> None:
        """Apply the learning-rate decay: ``lr <- lr * lr_decay``."""
        self.epochs += 1
        self.lr *= self.lr_decay

    def _update(self, key: str, param: Array, grad: Array) -> None:  # pragma: no cover
        raise NotImplementedError

    def _state(self, store: Dict[str, Array], key: str, param: Array) -> Array:
        if key not in store:
            store[key] = np.zeros_like(param)
        elif store[key].shape != param.shape:
            raise ValueError(
                f"{type(self).__name__}: parameter {key!r} changed shape from "
                f"{store[key].shape} to {param.shape} between steps"
            )
        return store[key]


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum.

    Per parameter ``p`` with gradient ``g`` and velocity ``v`` (zeros at first)::

        v <- momentum * v + g
        p <- p - lr * v

    the form PyTorch uses, in which changing ``lr`` does not rescale the stored velocity.
    ``momentum = 0`` is plain SGD; ``nesterov`` uses ``g + momentum * v`` as the step direction.
    """

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.9, lr_decay: float = 1.0, nesterov: bool = False
    ) -> None:
        super().__init__(lr, lr_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: argument 'momentum' must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocity: Dict[str, Array] = {}

    def _update(self, key: str, param: Array, grad: Array) -> None:
        v = self._state(self.velocity, key, param)
        v *= self.momentum
        v += grad
        direction = grad + self.momentum * v if self.nesterov else v
        param -= self.lr * direction

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr!r}, momentum={self.momentum!r}, lr_decay={self.lr_decay!r}, "
            f"nesterov={self.nesterov})"
        )


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with the standard bias correction.

    Per parameter, at its step ``t = 1, 2, ...`` (``m``, ``v`` zeros at first)::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        p <- p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    so the first step is ``lr * g / (|g| + eps)``, about ``lr`` per entry whatever the scale
    of the gradient.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        lr_decay: float = 1.0,
    ) -> None:
        super().__init__(lr, lr_decay)
        for arg, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= value < 1:
                raise ValueError(f"Adam: argument {arg!r} must be in [0, 1), got {value!r}")
        if not eps > 0:
            raise ValueError(f"Adam: argument 'eps' must be > 0, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m: Dict[str, Array] = {}
        self.v: Dict[str, Array] = {}
        self.t: Dict[str, int] = {}

    def _update(self, key: str, param: Array, grad: Array) -> None:
        m = self._state(self.m, key, param)
        v = self._state(self.v, key, param)
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        # A count per parameter, not the global one: a parameter that appears later (created
        # lazily on a first forward) must get the full first-step bias correction too.
        t = self.t[key] = self.t.get(key, 0) + 1
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def __repr__(self) -> str:
        return (
            f"Adam(lr={self.lr!r}, beta1={self.beta1!r}, beta2={self.beta2!r}, eps={self.eps!r}, "
            f"lr_decay={self.lr_decay!r})"
        )


__all__ = ["SGD", "Adam", "Optimizer"]

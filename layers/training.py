"""The training loop: minibatches, one epoch, evaluation, and :func:`fit` over epochs.

:func:`fit` trains a :class:`~layers.sequential.NetworkWithLoss` with an optimizer from
:mod:`layers.optim` using nothing but the layers' hand-written backward passes. Rows are
examples: ``x`` is ``(N, D)``, labels ``(N,)`` class indices.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np

from .base import Array
from .sequential import NetworkWithLoss
from .softmax_ce import SoftmaxCrossEntropy

EpochRecord = Dict[str, float]
BatchCallback = Callable[[int, int, float], None]
EpochCallback = Callable[[EpochRecord], None]


def batch_indices(
    n: int, batch_size: int, rng: Optional[np.random.Generator] = None
) -> List[Array]:
    """Split ``range(n)`` (shuffled by ``rng`` when given) into ``max(1, n // batch_size)`` batches.

    The batches differ in size by at most one, so every example is used and none is smaller
    than ``batch_size`` (for ``n >= batch_size``): a small leftover batch would give whitening
    a covariance estimated from a handful of examples.
    """
    if batch_size < 1:
        raise ValueError(f"batch_indices: batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return np.array_split(order, max(1, n // batch_size))


def _hits(model: NetworkWithLoss, labels: Array) -> int:
    """How many examples of the last forward have the label as their most probable class.

    The loss must keep the last forward's class probabilities (``(N, C)``), as
    :class:`~layers.softmax_ce.SoftmaxCrossEntropy` does.
    """
    probabilities = cast(SoftmaxCrossEntropy, model.loss).probabilities
    return int(np.sum(np.argmax(probabilities, axis=-1) == labels))


def evaluate(model: NetworkWithLoss, x: Array, y: Array, batch_size: int) -> Tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``x`` ``(N, D)``, labels ``y`` ``(N,)``, in eval mode.

    Batches are taken in order (:func:`batch_indices` without shuffling). Layers with running
    statistics use them; the others (whitening over examples) normalize each batch by itself.
    The network's previous mode is restored afterwards.
    """
    was_training = model.network.training
    model.network.eval()
    try:
        total_loss, correct = 0.0, 0
        for idx in batch_indices(len(x), batch_size):
            total_loss += float(model.forward(x[idx], y[idx])) * len(idx)
            correct += _hits(model, y[idx])
    finally:
        model.network.train(was_training)
    return total_loss / len(x), correct / len(x)


def train_epoch(
    model: NetworkWithLoss,
    optimizer: Any,
    x: Array,
    y: Array,
    batch_size: int,
    rng: np.random.Generator,
    on_batch: Optional[BatchCallback] = None,
) -> Tuple[float, float]:
    """One pass over ``x`` ``(N, D)``, ``y`` ``(N,)`` in shuffled minibatches, in train mode.

    Each step is ``forward``, ``backward`` (the hand-written passes), ``optimizer.step(params,
    grads)``. Returns the mean minibatch loss and accuracy as seen during training (with the
    batch statistics, and with weights that changed along the way). ``on_batch(i, n, loss)``
    is called after each step.
    """
    model.network.train()
    batches = batch_indices(len(x), batch_size, rng)
    total_loss, correct = 0.0, 0
    for i, idx in enumerate(batches):
        loss = float(model.forward(x[idx], y[idx]))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"train_epoch: the loss became {loss} at step {i + 1}; lower the learning rate"
            )
        correct += _hits(model, y[idx])
        model.backward()
        optimizer.step(model.params, model.grads)
        total_loss += loss * len(idx)
        if on_batch is not None:
            on_batch(i + 1, len(batches), loss)
    return total_loss / len(x), correct / len(x)


def fit(
    model: NetworkWithLoss,
    optimizer: Any,
    train: Tuple[Array, Array],
    test: Optional[Tuple[Array, Array]] = None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: Optional[EpochCallback] = None,
    on_batch: Optional[BatchCallback] = None,
) -> List[EpochRecord]:
    """Train for ``epochs`` epochs; after each, measure train and test loss and accuracy.

    ``train`` and ``test`` are ``(x (N, D), labels (N,))`` pairs. Minibatches are shuffled by
    ``np.random.default_rng(seed)``. After every epoch the model is evaluated in eval mode on
    the training and the test set (:func:`evaluate`, batches of ``batch_size``) and the
    optimizer's ``end_epoch()`` applies its learning-rate decay. Each epoch's record has
    ``epoch``, ``lr`` (the rate used in that epoch), ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` (when ``test`` is given), ``batch_loss`` and
    ``batch_accuracy`` (averaged over the epoch's training steps) and ``seconds`` (training
    only, without evaluation).
    """
    if epochs < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
    rng = np.random.default_rng(seed)
    x_train, y_train = train
    history: List[EpochRecord] = []
    for epoch in range(1, epochs + 1):
        lr = float(optimizer.lr)
        start = time.perf_counter()
        batch_loss, batch_acc = train_epoch(
            model, optimizer, x_train, y_train, batch_size, rng, on_batch
        )
        seconds = time.perf_counter() - start
        train_loss, train_acc = evaluate(model, x_train, y_train, batch_size)
        record: EpochRecord = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
        }
        if test is not None:
            record["test_loss"], record["test_accuracy"] = evaluate(
                model, test[0], test[1], batch_size
            )
        record.update(batch_loss=batch_loss, batch_accuracy=batch_acc, seconds=seconds)
        optimizer.end_epoch()
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


__all__ = ["batch_indices", "evaluate", "fit", "train_epoch"]

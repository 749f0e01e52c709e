"""layers.training: minibatch indices (evaluate and fit are exercised in test_train_mlp.py)."""

from __future__ import annotations

import numpy as np

from layers.training import batch_indices

SEED = 20240607


def test_batch_indices_cover_everything_in_near_equal_batches():
    rng = np.random.default_rng(SEED)
    batches = batch_indices(1347, 100, rng)
    sizes = [len(b) for b in batches]
    assert len(batches) == 13 and min(sizes) >= 100 and max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1347))
    ordered = batch_indices(10, 4)
    np.testing.assert_array_equal(np.concatenate(ordered), np.arange(10))
    assert [len(b) for b in batch_indices(3, 100)] == [3]

"""layers.batchnorm: running statistics, eval mode, and the gradient in both modes."""

from __future__ import annotations

import numpy as np

from gradcheck import check_layer
from layers.batchnorm import BatchNorm

SEED = 20240607


def test_batchnorm_running_statistics_and_eval_output():
    rng = np.random.default_rng(SEED)
    bn = BatchNorm(3, eps=1e-5, affine=True, momentum=1.0)
    x = rng.standard_normal((50, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -3.0]
    bn.params["gamma"][...] = [1.0, 2.0, 3.0]
    y_train = bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=0))
    np.testing.assert_allclose(bn.running_var, x.var(axis=0))
    bn.train = False
    # With momentum 1 the running statistics are this batch's, so eval reproduces train mode.
    np.testing.assert_allclose(bn.forward(x), y_train, rtol=1e-12, atol=1e-12)
    bn2 = BatchNorm(3, momentum=0.1)
    for _ in range(200):
        bn2.forward(rng.standard_normal((64, 3)) * 2.0 + 5.0)
    np.testing.assert_allclose(bn2.running_mean, 5.0, atol=0.3)
    np.testing.assert_allclose(bn2.running_var, 4.0, rtol=0.2)


def test_batchnorm_gradients_both_modes():
    bn = BatchNorm(3, affine=True)
    x = np.random.default_rng(SEED).standard_normal((10, 3))
    bn.params["gamma"][...] = [0.5, 1.5, -2.0]
    assert check_layer(bn, x, mode="full").status == "pass"
    bn.train = False
    assert check_layer(bn, x, mode="full").status == "pass"

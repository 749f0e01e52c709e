"""Layers written as course assignments write them: a forward returning ``(out, cache)`` and a
backward taking ``(dout, cache)``, plus a loss returning ``(loss, dx)``. Each correct function has
a *buggy* twin with a classic mistake, which ``gradcheck`` must catch.

    gradcheck report --pair course_layers:affine --input x=4x5 --input w=5x3 --input b=3
    gradcheck report --pair course_layers:conv --input x=2x3x5x5 --input w=2x3x3x3 --input b=2 \\
        --kwarg 'conv_param={"stride": 1, "pad": 1}'
    gradcheck report --value-and-grad course_layers:softmax_loss --input x=6x4 --target y=labels:4

(run from the ``examples`` folder, or with it on ``PYTHONPATH``). Shapes: rows are examples;
images are ``(N, C, H, W)``; convolution weights ``(F, C, HH, WW)``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

Array = np.ndarray


# -- affine -------------------------------------------------------------------------------------


def affine_forward(x: Array, w: Array, b: Array) -> Tuple[Array, Any]:
    """``out = x.reshape(N, D) @ w + b`` for ``x (N, d1, ..., dk)``, ``D = d1 * ... * dk``."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    x, w, _ = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


affine_buggy_forward = affine_forward


def affine_buggy_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    """Bug: the bias gradient averages over the batch instead of summing."""
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)


# -- relu ---------------------------------------------------------------------------------------


def relu_forward(x: Array) -> Tuple[Array, Any]:
    return np.maximum(x, 0.0), x


def relu_backward(dout: Array, cache: Any) -> Array:
    return dout * (cache > 0)


relu_buggy_forward = relu_forward


def relu_buggy_backward(dout: Array, cache: Any) -> Array:
    """Bug: zeroes the upstream gradient in place, so the caller's ``dout`` changes."""
    dx = dout
    dx[cache <= 0] = 0.0
    return dx


# -- convolution (naive) ------------------------------------------------------------------------


def conv_forward(x: Array, w: Array, b: Array, conv_param: Dict[str, int]) -> Tuple[Array, Any]:
    """Cross-correlation of ``x (N, C, H, W)`` with ``w (F, C, HH, WW)`` plus ``b (F,)``;
    ``conv_param`` holds ``stride`` and the zero padding ``pad``. Output ``(N, F, H', W')``."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def _conv_padded_grads(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    """The gradients of the padded input, of ``w`` and of ``b``."""
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    hh, ww = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows = slice(i * stride, i * stride + hh)
            cols = slice(j * stride, j * stride + ww)
            g = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))
    return dxp, dw, dout.sum(axis=(0, 2, 3))


def conv_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    x, pad = cache[0], cache[3]["pad"]
    dxp, dw, db = _conv_padded_grads(dout, cache)
    h, wd = x.shape[2:]
    return dxp[:, :, pad : pad + h, pad : pad + wd], dw, db


conv_buggy_forward = conv_forward


def conv_buggy_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    """Bug: crops the padded input's gradient at the corner instead of removing the padding."""
    x = cache[0]
    dxp, dw, db = _conv_padded_grads(dout, cache)
    h, wd = x.shape[2:]
    return dxp[:, :, :h, :wd], dw, db


# -- max pooling --------------------------------------------------------------------------------


def max_pool_forward(x: Array, pool_param: Dict[str, int]) -> Tuple[Array, Any]:
    """Max over ``pool_height x pool_width`` windows of ``x (N, C, H, W)`` every ``stride``."""
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, h, w = x.shape
    ho, wo = 1 + (h - ph) // s, 1 + (w - pw) // s
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * s : i * s + ph, j * s : j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward(dout: Array, cache: Any) -> Array:
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s : i * s + ph, j * s : j * s + pw]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s : i * s + ph, j * s : j * s + pw] += mask * dout[:, :, i, j, None, None]
    return dx


max_pool_buggy_forward = max_pool_forward


def max_pool_buggy_backward(dout: Array, cache: Any) -> Array:
    """Bug: spreads each window's gradient evenly (average pooling's backward)."""
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s : i * s + ph, j * s : j * s + pw] += dout[:, :, i, j, None, None] / (
                ph * pw
            )
    return dx


# -- batch normalization ------------------------------------------------------------------------


def batchnorm_forward(
    x: Array, gamma: Array, beta: Array, bn_param: Dict[str, Any]
) -> Tuple[Array, Any]:
    """Batch norm of ``x (N, D)``; ``bn_param``: ``mode`` ("train" or "test"), optional
    ``eps``, ``momentum``, ``running_mean``, ``running_var`` (updated in place in training)."""
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    d = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(d))
    running_var = bn_param.get("running_var", np.ones(d))
    if mode == "train":
        mu = x.mean(axis=0)
        std = np.sqrt(x.var(axis=0) + eps)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * std**2
    elif mode == "test":
        mu, std = running_mean, np.sqrt(running_var + eps)
    else:
        raise ValueError(
            f"batchnorm_forward: bn_param['mode'] must be 'train' or 'test', got {mode!r}"
        )
    xhat = (x - mu) / std
    return gamma * xhat + beta, (xhat, gamma, std, mode)


def batchnorm_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    xhat, gamma, std, mode = cache
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dxhat = dout * gamma
    if mode == "test":
        return dxhat / std, dgamma, dbeta
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, dgamma, dbeta


batchnorm_buggy_forward = batchnorm_forward


def batchnorm_buggy_backward(dout: Array, cache: Any) -> Tuple[Array, Array, Array]:
    """Bug: forgets that the batch variance depends on ``x`` (drops the ``xhat`` term)."""
    xhat, gamma, std, _ = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


# -- softmax loss (value and gradient) ----------------------------------------------------------


def softmax_loss(x: Array, y: Array) -> Tuple[float, Array]:
    """Mean cross-entropy of the softmax of scores ``x (N, C)`` against labels ``y (N,)``, and
    its gradient with respect to ``x``."""
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -log_probs[np.arange(n), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1.0
    return float(loss), dx / n


def softmax_loss_buggy(x: Array, y: Array) -> Tuple[float, Array]:
    """Bug: the gradient forgets to divide by the batch size."""
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]

"""The built-in layer variants, registered with the harness through its entry point group.

``pyproject.toml`` declares ``builtin = "layers.catalogue:register"`` in the ``gradcheck.layers``
group, so the built-ins reach the catalogue exactly as a third-party package's variants would.
Shapes cover N > D, N < D (whitening then relies on eps) and, where the layer allows it, N = 1.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from gradcheck.registry import register_layer

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .centering import Center
from .dense import Dense
from .paper import register_paper_variants
from .softmax_ce import SoftmaxCrossEntropy
from .standardize import Standardize
from .variants import register_variants
from .whitening import DecorrelatedBatchNorm, ZCAWhitening


def _eval_dbn(eps: float = 1e-5) -> DecorrelatedBatchNorm:
    """A DBN in inference mode, after a few training batches gave it running statistics."""
    layer = DecorrelatedBatchNorm(eps=eps)
    rng = np.random.default_rng(1234)
    for _ in range(3):
        layer.forward(rng.standard_normal((32, 5)) @ rng.standard_normal((5, 5)))
    layer.train = False
    return layer


def _with_eps(cls: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    def factory(eps: float = 1e-5) -> Any:
        return cls(eps=eps, **fixed)

    factory.__name__ = f"{getattr(cls, '__name__', 'layer')}_factory"
    factory.__module__ = __name__
    return factory


def register() -> None:
    """Register every built-in variant (idempotent: re-registering replaces)."""
    reg = partial(register_layer, replace=True)
    reg(
        "center",
        Center,
        shapes=[(8, 3), (1, 4), (16, 5)],
        tags=["centering"],
        description="subtract the mean over examples (axis=0)",
    )
    reg(
        "center-features",
        partial(Center, axis=1),
        shapes=[(8, 3), (5, 1), (16, 5)],
        tags=["centering"],
        description="subtract the mean over features (axis=1)",
    )
    reg(
        "standardize",
        _with_eps(Standardize),
        shapes=[(8, 3), (1, 4), (16, 5)],
        options=["eps"],
        tags=["normalization"],
        description="batch-norm standardization over examples",
    )
    reg(
        "standardize-affine",
        _with_eps(Standardize, affine=True),
        shapes=[(8, 3), (16, 5)],
        options=["eps"],
        tags=["normalization"],
        description="standardization with gamma, beta",
    )
    reg(
        "zca-eigh",
        _with_eps(ZCAWhitening, method="eigh"),
        shapes=[(16, 4), (4, 6), (32, 8)],
        options=["eps"],
        tags=["whitening"],
        description="ZCA whitening over features via eigh",
    )
    reg(
        "zca-svd",
        _with_eps(ZCAWhitening, method="svd"),
        shapes=[(16, 4), (4, 6), (32, 8)],
        options=["eps"],
        tags=["whitening"],
        description="ZCA whitening over features via SVD",
    )
    reg(
        "zca-uncentered",
        _with_eps(ZCAWhitening, center=False),
        shapes=[(16, 4), (4, 6)],
        options=["eps"],
        tags=["whitening"],
        description="ZCA whitening without centering",
    )
    reg(
        "zca-examples",
        _with_eps(ZCAWhitening, axis="examples"),
        shapes=[(4, 16), (6, 4)],
        options=["eps"],
        tags=["whitening"],
        description="whitening across the examples of a batch (N x N covariance), as in the blog",
    )
    reg(
        "dbn",
        _with_eps(DecorrelatedBatchNorm),
        shapes=[(16, 4), (4, 6), (32, 8)],
        options=["eps"],
        tags=["whitening", "normalization"],
        description="decorrelated batch norm, training mode",
    )
    reg(
        "dbn-eval",
        _eval_dbn,
        shapes=[(16, 5), (3, 5)],
        options=["eps"],
        tags=["whitening", "normalization"],
        description="decorrelated batch norm, inference mode with running statistics",
    )
    reg(
        "softmax-ce",
        SoftmaxCrossEntropy,
        input="logits",
        shapes=[(8, 3), (1, 5), (16, 10)],
        tags=["loss"],
        description="softmax + cross-entropy, mean over examples",
    )
    reg(
        "softmax-ce-sum",
        partial(SoftmaxCrossEntropy, reduction="sum"),
        input="logits",
        shapes=[(8, 3), (16, 10)],
        tags=["loss"],
        description="softmax + cross-entropy, summed",
    )
    reg(
        "dense",
        partial(Dense, 5, 3),
        shapes=[(8, 5), (1, 5)],
        tags=["dense"],
        description="affine map x @ W + b (5 -> 3)",
    )
    reg("relu", ReLU, tags=["activation"], description="max(x, 0)")
    reg("leaky-relu", LeakyReLU, tags=["activation"], description="leaky ReLU, slope 0.01")
    reg("tanh", Tanh, tags=["activation"], description="tanh")
    reg("sigmoid", Sigmoid, tags=["activation"], description="logistic sigmoid")
    register_variants()
    register_paper_variants()

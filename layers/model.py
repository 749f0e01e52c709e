"""The blog's network: the normalization layer after the first hidden layer, and the whole MLP.

:func:`build_mlp` builds ``Dense -> Tanh -> [norm] -> Dense -> LeakyReLU -> ... -> Dense`` as a
:class:`~layers.sequential.Sequential`; :func:`make_norm` picks the normalization layer
(:data:`NORMS`, whitening over :data:`WHITEN_OVER`) and :func:`default_eps` its ``eps``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .activations import LeakyReLU, Tanh
from .base import Layer, check_choice
from .batchnorm import BatchNorm
from .dense import Dense
from .sequential import Sequential
from .whitening import DecorrelatedBatchNorm, ZCAWhitening

NORMS: Tuple[str, ...] = ("none", "standardize", "zca", "dbn")
WHITEN_OVER: Tuple[str, ...] = ("features", "examples")

# The blog's whitening layer added this to the eigenvalues of its 250 x 250 covariance.
BLOG_EXAMPLES_EPS = 0.06


def default_eps(norm: str, whiten_over: str = "features") -> float:
    """The ``eps`` :func:`make_norm` uses for ``norm`` when none is given.

    ``"standardize"`` (and ``"none"``, which has no use for it): the layers' 1e-5. Whitening
    over examples: the blog's 0.06. Whitening over features (``"zca"``, ``"dbn"``): 1e-3 rather
    than 1e-5, because the batch covariance of D hidden units is rank-deficient whenever the
    batch has fewer than D + 1 examples, and ``eps`` then sets how strongly the empty
    directions are amplified (``eps^(-1/2)``) at inference, where the running statistics meet
    test data that does have components there (on the digits, 1e-5 cost 3 to 6 points of test
    accuracy).
    """
    check_choice("default_eps", "norm", norm, NORMS)
    check_choice("default_eps", "whiten_over", whiten_over, WHITEN_OVER)
    if norm in ("none", "standardize"):
        return 1e-5
    return BLOG_EXAMPLES_EPS if whiten_over == "examples" else 1e-3


def make_norm(
    norm: str,
    num_features: int,
    *,
    whiten_over: str = "features",
    eps: Optional[float] = None,
    momentum: float = 0.1,
) -> Optional[Layer]:
    """The normalization layer :func:`build_mlp` puts after the first hidden layer.

    ``"none"``: no layer (``None``). ``"standardize"``: :class:`BatchNorm` (Standardize with
    running mean and variance, no affine). ``"zca"`` over features:
    ``DecorrelatedBatchNorm(affine=False)``, which in train mode is ZCAWhitening over features
    (centred) and adds running statistics for inference. ``"zca"`` over examples: the blog's
    layer, ``ZCAWhitening(axis="examples", center=False)``, which has no running statistics.
    ``"dbn"``: ``DecorrelatedBatchNorm(affine=True)``. Only ``"zca"`` whitens over examples.
    """
    check_choice("make_norm", "norm", norm, NORMS)
    check_choice("make_norm", "whiten_over", whiten_over, WHITEN_OVER)
    if whiten_over == "examples" and norm != "zca":
        raise ValueError(
            f"make_norm: whitening over examples is offered for norm='zca' only, got {norm!r}"
        )
    eps = default_eps(norm, whiten_over) if eps is None else float(eps)
    if norm == "none":
        return None
    if norm == "standardize":
        return BatchNorm(num_features, eps=eps, affine=False, momentum=momentum)
    if norm == "dbn":
        return DecorrelatedBatchNorm(
            eps=eps, affine=True, momentum=momentum, num_features=num_features
        )
    if whiten_over == "examples":
        return ZCAWhitening(eps=eps, center=False, axis="examples")
    return DecorrelatedBatchNorm(
        eps=eps, affine=False, momentum=momentum, num_features=num_features
    )


def build_mlp(
    n_in: int,
    hidden: Sequence[int] = (676, 256),
    n_out: int = 10,
    *,
    norm: str = "zca",
    whiten_over: str = "features",
    eps: Optional[float] = None,
    momentum: float = 0.1,
    slope: float = 0.01,
    seed: int = 0,
) -> Sequential:
    """The blog's network: ``Dense -> Tanh -> [norm] -> Dense -> LeakyReLU -> ... -> Dense``.

    With ``hidden = (h1, h2)``: ``n_in -> h1 (tanh) -> norm -> h2 (leaky ReLU) -> n_out``; more
    sizes add ``Dense -> LeakyReLU`` blocks, one size gives ``n_in -> h1 (tanh) -> norm -> n_out``.
    The output is ``(N, n_out)`` logits for a softmax cross-entropy. The normalization layer is
    :func:`make_norm`'s. Each Dense draws its weights from its own child of
    ``np.random.SeedSequence(seed)``, so a seed fixes the initialization.
    """
    sizes = [int(n_in), *(int(h) for h in hidden), int(n_out)]
    if len(sizes) < 3 or min(sizes) < 1:
        raise ValueError(
            f"build_mlp: need n_in, at least one hidden size and n_out, all >= 1; got {sizes}"
        )
    children = np.random.SeedSequence(seed).spawn(len(sizes) - 1)
    seeds = [int(c.generate_state(1)[0]) for c in children]
    layers: List[Layer] = [Dense(sizes[0], sizes[1], seed=seeds[0]), Tanh()]
    norm_layer = make_norm(norm, sizes[1], whiten_over=whiten_over, eps=eps, momentum=momentum)
    if norm_layer is not None:
        layers.append(norm_layer)
    for i in range(1, len(sizes) - 1):
        layers.append(Dense(sizes[i], sizes[i + 1], seed=seeds[i]))
        if i < len(sizes) - 2:
            layers.append(LeakyReLU(slope))
    return Sequential(layers)


__all__ = ["BLOG_EXAMPLES_EPS", "NORMS", "WHITEN_OVER", "build_mlp", "default_eps", "make_norm"]

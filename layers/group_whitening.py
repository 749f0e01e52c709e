"""Group-wise whitening: split the features into contiguous groups and whiten each on its own.

With ``G`` groups of ``d = D / G`` features, group ``g`` is ``X[:, g d:(g + 1) d]``; each is
whitened with its own ``d x d`` covariance (ZCA by default, as the group-wise DBN of Huang et
al., CVPR 2018, does), and the outputs are concatenated in the same order. The covariance is
block-diagonal by construction, so only correlations inside a group are removed: cheaper
(``G`` decompositions of ``d x d`` instead of one ``D x D``) and better conditioned for small
batches (``N`` need only exceed ``d``, not ``D``).

A ``(..., N, D)`` input is reshaped to ``(..., G, N, d)`` so that one batched call whitens every
group of every slice; the backward is the inner layer's backward on the same view, reshaped
back. The derivation is in ``docs/derivations/group-whitening.md``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, Tuple

import numpy as np

from .base import (
    Array,
    Layer,
    as_float64,
    check_choice,
    check_eps,
    check_finite,
    check_matrix,
    check_real,
    check_upstream,
)
from .cholesky_whitening import cholesky_whitening_backward, cholesky_whitening_forward
from .pca_whitening import pca_backward, pca_forward
from .whitening import METHODS, zca_backward, zca_forward

INNER = ("zca", "pca", "cholesky")

_BACKWARDS: Dict[str, Callable[[Array, Dict[str, Any]], Array]] = {
    "zca": zca_backward,
    "pca": pca_backward,
    "cholesky": cholesky_whitening_backward,
}


def split_groups(a: Array, groups: int) -> Array:
    """``(..., N, D)`` to ``(..., G, N, D / G)``: group ``g`` holds features ``g d .. g d + d - 1``.

    A view where NumPy allows it. The feature axis is split into ``(G, d)`` (contiguous
    groups), then the group axis is moved in front of ``N``, so the last two axes of every
    group are an ordinary ``(N, d)`` batch.
    """
    d = a.shape[-1]
    return np.moveaxis(a.reshape(*a.shape[:-1], groups, d // groups), -2, -3)


def merge_groups(a: Array) -> Array:
    """Inverse of :func:`split_groups`: ``(..., G, N, d)`` to ``(..., N, G d)``."""
    g, n, d = a.shape[-3:]
    return np.moveaxis(a, -3, -2).reshape(*a.shape[:-3], n, g * d)


class GroupWhitening(Layer):
    """Whiten ``groups`` contiguous groups of features separately; concatenate the outputs.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``, with ``D`` divisible by ``groups``;
    ``y`` and ``dx`` have the shape of ``x``. Rows are examples.

    Each group ``X_g`` (``(N, D / G)``) is whitened by the ``inner`` method over its own
    features: ``"zca"`` (default; :func:`layers.whitening.zca_forward` with ``method`` eigh or
    svd), ``"pca"`` (:class:`layers.pca_whitening.PCAWhitening`'s map; refuses eigenvalue ties)
    or ``"cholesky"`` (:class:`layers.cholesky_whitening.CholeskyWhitening`'s map). ``eps`` and
    ``center`` are passed to every group; ``method`` only matters for ``"zca"``.
    ``groups=1`` is the inner whitening of all features; ``groups=D`` is standardization.

    Output covariance: block-diagonal, each diagonal block the inner method's (the identity up
    to eps); the blocks between groups are whatever correlation the input had.

    ``cache`` after a forward: ``inner`` (the inner method's cache, on the ``(..., G, N, d)``
    view), ``kind`` (the inner method), ``groups``, ``shape``. :meth:`spectrum` returns each
    group's covariance eigenvalues ascending, shape ``(..., G, D / G)``.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(
        self,
        groups: int = 2,
        eps: float = 1e-5,
        method: str = "eigh",
        inner: str = "zca",
        center: bool = True,
    ) -> None:
        super().__init__()
        name = "GroupWhitening"
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
            raise TypeError(f"{name}: argument 'groups' must be an int, got {groups!r}")
        if groups < 1:
            raise ValueError(f"{name}: argument 'groups' must be >= 1, got {groups!r}")
        check_choice(name, "method", method, METHODS)
        check_choice(name, "inner", inner, INNER)
        self.groups = int(groups)
        self.eps = check_eps(name, eps)
        self.method = method
        self.inner = inner
        self.center = bool(center)

    def _inner_forward(self, xg: Array) -> Tuple[Array, Dict[str, Any]]:
        if self.inner == "zca":
            return zca_forward(xg, self.eps, self.method, self.center)
        if self.inner == "pca":
            return pca_forward(xg, self.eps, self.center)
        return cholesky_whitening_forward(xg, self.eps, self.center)

    def forward(self, x: Array) -> Array:
        """Whiten each group of features of each ``(N, D)`` slice of ``x``."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        check_finite(self.name, "x", x)
        d = x.shape[-1]
        if d % self.groups:
            raise ValueError(
                f"{self.name}: argument 'groups' = {self.groups} must divide the number of "
                f"features D = {d} of 'x' (shape {x.shape})"
            )
        try:
            yg, inner = self._inner_forward(split_groups(x, self.groups))
        except np.linalg.LinAlgError as err:
            raise np.linalg.LinAlgError(
                f"{self.name}: cannot whiten a group of {d // self.groups} features with "
                f"inner={self.inner!r} (eps={self.eps!r}): {err}; a larger eps or fewer "
                f"features per group helps"
            ) from err
        self.cache = {"inner": inner, "kind": self.inner, "groups": self.groups, "shape": x.shape}
        return merge_groups(yg)

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` for the last forward (shape of ``x``); this layer has no params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        self.grads = {}
        # The cache, not the attributes, says how the last forward split and whitened, so a
        # changed attribute cannot pair this backward with a different forward.
        dxg = _BACKWARDS[cache["kind"]](split_groups(dy, cache["groups"]), cache["inner"])
        return merge_groups(dxg)

    def spectrum(self) -> Array:
        """Each group's covariance eigenvalues (with ``eps``), ascending, ``(..., G, D / G)``."""
        self._require_cache("spectrum")
        inner, kind = self.cache["inner"], self.cache["kind"]
        if kind == "zca":
            return inner["eigvals"].copy()
        if kind == "pca":
            return inner["eigvals"][..., ::-1].copy()
        return np.linalg.eigvalsh(inner["sigma"])

    def __repr__(self) -> str:
        return (
            f"GroupWhitening(groups={self.groups}, eps={self.eps!r}, method={self.method!r}, "
            f"inner={self.inner!r}, center={self.center})"
        )


__all__ = ["INNER", "GroupWhitening", "merge_groups", "split_groups"]

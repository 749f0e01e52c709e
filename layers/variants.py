"""Registration of the whitening variants of issue 7: PCA, Cholesky, IterNorm, group-wise ZCA.

They reach the catalogue through :func:`gradcheck.registry.register_layer`, exactly as a
third-party package's variants would; :func:`layers.catalogue.register` calls
:func:`register_variants` last. Shapes cover ``N > D`` and, where the layer allows it,
``N <= D`` (then ``eps`` is what makes the covariance positive definite). PCA whitening has no
``N < D`` shape: there ``eps`` is a repeated eigenvalue and the layer refuses the batch.
"""

from __future__ import annotations

from typing import Any, Callable

from gradcheck.registry import register_layer

from .cholesky_whitening import CholeskyWhitening
from .group_whitening import GroupWhitening
from .iternorm import IterNorm
from .pca_whitening import PCAWhitening


def _factory(cls: Callable[..., Any], label: str, **fixed: Any) -> Callable[..., Any]:
    """A catalogue factory ``(eps=1e-5) -> cls(eps=eps, **fixed)`` with a readable name."""

    def factory(eps: float = 1e-5) -> Any:
        return cls(eps=eps, **fixed)

    # The registry records a factory's module as the variant's source; name it after this
    # module and the variant so that `gradcheck list` and reprs say where it came from.
    factory.__name__ = factory.__qualname__ = f"{label}_factory"
    factory.__module__ = __name__
    return factory


def register_variants() -> None:
    """Register the four whitening variants (idempotent: re-registering replaces)."""
    register_layer(
        "pca-whitening",
        _factory(PCAWhitening, "pca_whitening"),
        shapes=[(16, 4), (32, 8), (8, 8)],
        options=["eps"],
        tags=["whitening", "pca"],
        # Tied eigenvalues (N < D makes eps a repeated one) are refused by the layer, so the
        # property battery draws batches with well-separated covariance eigenvalues.
        input="distinct-spectrum",
        description="PCA whitening y = Xc Q Lambda^-1/2, eigenvalues descending, signs fixed; "
        "refuses N < D (eps is a repeated eigenvalue)",
        replace=True,
    )
    register_layer(
        "cholesky-whitening",
        _factory(CholeskyWhitening, "cholesky_whitening"),
        shapes=[(16, 4), (4, 6), (32, 8)],
        options=["eps"],
        tags=["whitening", "cholesky"],
        description="Cholesky whitening y = Xc L^-T with Sigma = L L^T",
        replace=True,
    )
    for iterations in (1, 5):
        register_layer(
            f"iternorm-{iterations}",
            _factory(IterNorm, f"iternorm_{iterations}", iterations=iterations),
            shapes=[(16, 4), (4, 6), (32, 8)],
            options=["eps"],
            tags=["whitening", "iternorm"],
            description=f"IterNorm, {iterations} Newton step{'s' if iterations > 1 else ''} "
            "toward Sigma^-1/2 (Huang et al., CVPR 2019)",
            replace=True,
        )
    register_layer(
        "group-zca-2",
        _factory(GroupWhitening, "group_zca_2", groups=2, inner="zca"),
        shapes=[(16, 4), (3, 8), (32, 8)],
        options=["eps"],
        tags=["whitening", "group"],
        description="2 contiguous groups of features, each ZCA-whitened (group-wise DBN)",
        replace=True,
    )


__all__ = ["register_variants"]

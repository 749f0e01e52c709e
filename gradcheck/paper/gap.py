"""The gap study: the backward routes as two eigenvalues of ``Sigma`` approach each other.

At gaps ``1e-1 ... 1e-12, 0`` between two eigenvalues, the relative error against a
Richardson-extrapolated numerical gradient of (a) the corrected chain with
``K_ij = 1/(l_i - l_j)``, (b) the authors' SVD code, (c) the project's ``ZCAWhitening``
(Daleckii-Krein divided differences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from layers.paper import AuthorsSVDWhitening, PaperDBNWhitening
from layers.whitening import ZCAWhitening

from ..compare import relative_error
from ..finite_diff import partial_derivatives
from ..spectra import exact_spectrum_batch
from ..streams import PURPOSE_DY, harness_rng
from .cases import EPS, sigma_spectrum

Array = np.ndarray

#: Gaps between the two close eigenvalues in the gap study (the others are 4 and 16).
DEFAULT_GAPS: Tuple[float, ...] = tuple([10.0**-k for k in range(1, 13)] + [0.0])
GAP_ROUTES: Tuple[Tuple[str, str], ...] = (
    ("paper-K", "(a) corrected chain, K_ij = 1/(l_i - l_j), eig"),
    ("authors-svd", "(b) authors' Lua code: SVD, eps on singular values, K guarded by 1e-45"),
    ("zca-dk", "(c) project ZCAWhitening, Daleckii-Krein"),
)


@dataclass
class GapRow:
    """Relative errors at one eigenvalue gap; ``None`` where a backward returned non-finite values.

    ``errors`` maps each route of :data:`GAP_ROUTES` to its worst relative error over the batches.
    """

    gap: float
    errors: Dict[str, Optional[float]]
    numeric_uncertainty: float  # relative size of the numerical reference's own error estimate
    computed_gap: float  # smallest gap between the computed eigenvalues of Sigma


def gap_batch(gap: float, seed: int, n: int = 16) -> Array:
    """A centered ``(n, 4)`` batch whose covariance has the eigenvalues ``1, 1 + gap, 4, 16``."""
    rng = np.random.default_rng([seed, 7])
    return exact_spectrum_batch(n, np.array([1.0, 1.0 + gap, 4.0, 16.0]), rng, center=True)


def _gap_layers(eps: float) -> Dict[str, Any]:
    return {
        "paper-K": PaperDBNWhitening(True, True, eps=eps, route="eig"),
        "authors-svd": AuthorsSVDWhitening(eps=eps),
        "zca-dk": ZCAWhitening(eps=eps),
    }


def gap_study(
    seed: int = 0,
    gaps: Sequence[float] = DEFAULT_GAPS,
    repeats: int = 3,
    eps: float = EPS,
    on_step: Optional[Callable[[str], None]] = None,
) -> List[GapRow]:
    """Relative error of the three backward routes against a Richardson numerical gradient.

    For each gap, ``repeats`` batches from :func:`gap_batch` (seeds ``seed .. seed+repeats-1``)
    with the harness stream's upstream gradient for that seed; the worst error over them is kept.
    The numerical reference differentiates ``ZCAWhitening``'s forward, which all three routes
    share as a function (``Sigma^{-1/2}`` is smooth at ties, so the reference is accurate there).
    ``on_step(label)``, when given, is called before each gap (for a progress display).
    """
    rows = []
    for gap in gaps:
        if on_step is not None:
            on_step(f"gap study: gap {gap:g}")
        errors: Dict[str, Optional[float]] = {name: 0.0 for name, _ in GAP_ROUTES}
        uncertainty, computed_gap = 0.0, math.inf
        for r in range(repeats):
            x = gap_batch(gap, seed + r)
            # check_layer's dy stream: the dy a check with this seed would use.
            dy = harness_rng(seed + r, PURPOSE_DY).standard_normal(x.shape)
            reference = ZCAWhitening(eps=eps)
            est = partial_derivatives(reference.forward, x, dy, method="richardson")
            uncertainty = max(
                uncertainty, float(np.linalg.norm(est.error) / np.linalg.norm(est.value))
            )
            computed_gap = min(
                computed_gap, float(np.min(np.diff(np.sort(sigma_spectrum(x, True, eps)))))
            )
            for name, layer in _gap_layers(eps).items():
                layer.forward(x)
                with np.errstate(all="ignore"):
                    dx = np.asarray(layer.backward(dy))
                prev = errors[name]
                if prev is None or not np.all(np.isfinite(dx)):
                    errors[name] = None
                else:
                    errors[name] = max(prev, relative_error(dx, est.value))
        rows.append(GapRow(gap, errors, uncertainty, computed_gap))
    return rows


__all__ = ["DEFAULT_GAPS", "GAP_ROUTES", "GapRow", "gap_batch", "gap_study"]

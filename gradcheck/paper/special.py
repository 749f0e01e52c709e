"""Special inputs: where a wrong variant still passes, and why.

Each input makes one or both of a variant's switches invisible (``D = 1``, ``dy`` all ones, a
diagonal ``Sigma``, ...). None of them is evidence for a variant; a suite that only used them
would certify the printed formula. They are here so that the tests can show exactly which
variants pass on each, as the explanation predicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from layers.paper import PaperDBNWhitening

from ..check import check_layer
from ..result import CheckResult, worst_status
from ..spectra import exact_spectrum_batch
from .cases import EPS, missing_switches

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class SpecialInput:
    """An input on which some switch makes no difference, so a wrong variant can pass there.

    ``x`` is ``(N, D)`` (rows layout); ``dy`` is the upstream gradient, or ``None`` for the
    layer's own output (``G = X^``). ``hides`` names the switches that cannot show; a variant
    passes exactly when every fix it lacks is hidden (:func:`missing_switches`). ``why`` says
    why, in one sentence.
    """

    name: str
    x: Array
    dy: Optional[Array]
    hides: frozenset
    why: str
    center: bool = True
    route: str = "eig"
    eps: float = EPS

    def passes(self, variant: str) -> bool:
        """What the explanation predicts for ``variant`` on this input."""
        return missing_switches(variant) <= self.hides

    def check(self, variant: str, mode: str = "full") -> CheckResult:
        """The whole check of ``variant`` at this input. Its fresh-cache probe runs the backward
        at ``x''`` (the rows rolled, every entry moved by 1e-3), which is not special: there a
        wrong variant can fail although the estimate at ``x`` passes."""
        layer = PaperDBNWhitening.variant(
            variant, center=self.center, eps=self.eps, route=self.route
        )
        dy = layer.forward(self.x) if self.dy is None else self.dy
        return check_layer(layer, self.x, dy=dy, seed=0, mode=mode)

    def estimate_status(self, variant: str, mode: str = "full") -> str:
        """What the estimate at this input certifies: the worst status of the arguments of
        :meth:`check` (the findings of the contract checks left out)."""
        return worst_status([a.status for a in self.check(variant, mode).arguments])


def _orthogonal_columns(n: int, variances: Sequence[float], seed: int) -> Array:
    """Centered batch with orthogonal columns: ``Sigma = diag(variances)`` in that order."""
    rng = np.random.default_rng(seed)
    eye = np.eye(len(variances))
    return exact_spectrum_batch(n, np.asarray(variances), rng, center=True, eigenvectors=eye)


def special_inputs(seed: int = 0) -> List[SpecialInput]:
    """The inputs of ``shared/paper/dbn-equations.md`` (and one more) that hide a switch."""
    rng = np.random.default_rng([seed, 99])
    x4 = exact_spectrum_batch(9, np.array([0.3, 1.0, 2.5, 6.0]), rng, center=True)
    x2 = exact_spectrum_batch(7, np.array([0.5, 2.0]), rng, center=True)
    both = frozenset({"transpose", "symmetrize"})
    transpose, symmetrize = frozenset({"transpose"}), frozenset({"symmetrize"})
    return [
        SpecialInput(
            "D = 1",
            3.0 * rng.standard_normal((7, 1)) + 1.0,
            rng.standard_normal((7, 1)),
            both,
            "D = [+-1] is its own transpose and the 1 x 1 dL/dSigma is symmetric",
        ),
        SpecialInput(
            "dy = all ones, centered",
            x4,
            np.ones_like(x4),
            both,
            "sum(X^) is identically 0 (every feature of X_C sums to 0 over the examples), so the "
            "true gradient is 0, "
            "and every term of every variant is multiplied by X_C 1 = 0 or removed by the mean "
            "term",
        ),
        SpecialInput(
            "Sigma diagonal, ascending variances (eig)",
            _orthogonal_columns(9, [0.5, 1.0, 2.0, 4.0], seed),
            rng.standard_normal((9, 4)),
            transpose,
            "eigh sorts ascending, so D = I and D G = D^T G; the symmetrization still matters",
        ),
        SpecialInput(
            "Sigma diagonal, descending variances (svd)",
            _orthogonal_columns(9, [4.0, 2.0, 1.0, 0.5], seed),
            rng.standard_normal((9, 4)),
            transpose,
            "the SVD sorts descending, so D = I for the authors' route",
            route="svd",
        ),
        SpecialInput(
            "D = 2",
            x2,
            rng.standard_normal((7, 2)),
            transpose,
            "LAPACK returns a 2 x 2 eigenvector matrix that is a reflection, hence symmetric",
        ),
        SpecialInput(
            "dy = output (G = X^), eps = 0.1",
            x4,
            None,
            symmetrize,
            "D^T dL/dD = 2m (Lambda - eps I) Lambda^-1 is diagonal, so K^T o (D^T dL/dD) vanishes "
            "and dL/dSigma is symmetric already",
            eps=0.1,
        ),
        SpecialInput(
            "D = 2 and dy = output, eps = 0.1",
            x2,
            None,
            both,
            "both of the above: the printed chain passes",
            eps=0.1,
        ),
    ]


__all__ = ["SpecialInput", "special_inputs"]

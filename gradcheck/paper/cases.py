"""The inputs of the paper study: a case (a batch and how to check it), and the random draws.

Inputs (the *domain* of the verdict). Random batches built with an exact covariance spectrum
(:func:`gradcheck.spectra.exact_spectrum_batch`): ``N x D`` with ``2 <= D <= 5`` and
``D + 2 <= N <= 16``, condition number at most :data:`DRAW_COND_MAX`, distinct eigenvalues at
least :data:`DRAW_MIN_GAP` apart relative to the largest, a Haar-random eigenbasis; centered and
uncentered, in both layouts (``(N, D)`` converted at the layer's edges, and the paper's ``d x m``
handed over as is), by the eig and the SVD route. The upstream gradient of each check is
``check_layer``'s own draw from the harness stream for the case's seed. Near-equal eigenvalues
are kept out of this domain on purpose: there the paper's ``K_ij = 1/(l_i - l_j)`` fails
*numerically* even for a correct formula, which is a different question, answered by the gap
study (:mod:`gradcheck.paper.gap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from layers.paper import LAYOUTS, ROUTES, VARIANTS, PaperDBNWhitening

from ..check import check_layer
from ..result import CheckResult
from ..spectra import covariance, exact_spectrum_batch, spectrum_within

Array = np.ndarray

VARIANT_NAMES: Tuple[str, ...] = tuple(VARIANTS)

#: The switches of each variant: (B1) uses D^T, (B5) symmetrizes dL/dSigma.
SWITCHES: Dict[str, Tuple[bool, bool]] = VARIANTS

EPS = 1e-5

# Domain of the random verdict draws. A condition number of 100 keeps the central-difference
# estimate able to resolve rtol = sqrt(eps) (at a few thousand it becomes inconclusive for the
# project's own ZCA layer too); a 2% gap keeps K = 1/(l_i - l_j) harmless.
DRAW_COND_MAX = 100.0
DRAW_MIN_GAP = 0.02
DRAW_MAX_D = 5
DRAW_MAX_N = 16


@dataclass(frozen=True, eq=False)
class PaperCase:
    """One input of the suite: a batch ``x`` (``(N, D)``, rows are examples) and how to check it.

    ``layout`` says how the layer receives it: ``"rows"`` gives ``x`` itself, ``"paper"`` gives
    ``x^T`` (``d x m``, columns are examples). ``center`` and ``route`` configure the layer;
    ``seed`` is the ``check_layer`` seed (it fixes the upstream gradient, drawn from the harness
    stream). ``origin`` says where the case came from, for messages.
    """

    x: Array
    center: bool = True
    layout: str = "rows"
    route: str = "eig"
    seed: int = 0
    origin: str = ""

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])

    def layer_input(self) -> Array:
        """What the layer's forward receives: ``x`` (rows) or ``x^T`` (paper layout)."""
        return np.array(self.x if self.layout == "rows" else self.x.T, dtype=np.float64)

    def build(self, variant: str, eps: float = EPS) -> PaperDBNWhitening:
        """A fresh :class:`~layers.paper.PaperDBNWhitening` of ``variant`` for this case."""
        return PaperDBNWhitening.variant(
            variant, center=self.center, eps=eps, route=self.route, layout=self.layout
        )

    def describe(self) -> str:
        kind = "centered" if self.center else "uncentered"
        return f"{self.n}x{self.d} {self.layout} {kind} {self.route}, dy seed {self.seed}"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "shape": [self.n, self.d],
            "layout": self.layout,
            "center": self.center,
            "route": self.route,
            "seed": self.seed,
            "origin": self.origin,
            "x": self.x.tolist(),
        }


def sigma_spectrum(x: Array, center: bool, eps: float = EPS) -> Array:
    """Ascending eigenvalues of the ``D x D`` matrix the layer decomposes, eps included."""
    sigma = covariance(x, center)
    return np.linalg.eigvalsh(0.5 * (sigma + sigma.T)) + eps


def _draw_spectrum(rng: np.random.Generator, d: int) -> Array:
    """``d`` eigenvalues, log-uniform within :data:`DRAW_COND_MAX`, gaps >= DRAW_MIN_GAP."""
    while True:
        lam = np.sort(10.0 ** rng.uniform(0.0, math.log10(DRAW_COND_MAX), d))
        if spectrum_within(lam, DRAW_COND_MAX, DRAW_MIN_GAP):
            return lam * 10.0 ** rng.uniform(-1.0, 1.0)


def draw_cases(seed: int, examples: int) -> List[PaperCase]:
    """``examples`` random cases for ``seed``, cycling through layout x centering x route.

    Case ``k`` is drawn from ``default_rng([seed, k])``: ``D`` in ``[2, 5]``, ``N`` in
    ``[D + 2, 16]``, a spectrum with condition number <= 100 and relative gaps >= 0.02 (see the
    module docstring), and its own ``check_layer`` seed.
    """
    cases = []
    for k in range(examples):
        rng = np.random.default_rng([seed, k])
        layout = LAYOUTS[k % 2]
        center = (k // 2) % 2 == 0
        route = ROUTES[(k // 4) % 2]
        d = int(rng.integers(2, DRAW_MAX_D + 1))
        n = int(rng.integers(d + 2, DRAW_MAX_N + 1))
        x = exact_spectrum_batch(n, _draw_spectrum(rng, d), rng, center)
        check_seed = int(rng.integers(0, 2**31 - 1))
        origin = f"draw {k} of seed {seed}"
        cases.append(PaperCase(x, center, layout, route, check_seed, origin))
    return cases


def run_case(
    variant: str, case: PaperCase, eps: float = EPS, method: str = "central"
) -> CheckResult:
    """``check_layer`` in full mode on ``case`` for ``variant``; dy from the harness stream."""
    return check_layer(
        case.build(variant, eps), case.layer_input(), seed=case.seed, mode="full", method=method
    )


def missing_switches(variant: str) -> frozenset:
    """The fixes ``variant`` lacks: a subset of ``{"transpose", "symmetrize"}``."""
    transpose_fix, symmetrize = SWITCHES[variant]
    return frozenset(
        name for name, on in (("transpose", transpose_fix), ("symmetrize", symmetrize)) if not on
    )


__all__ = [
    "DRAW_COND_MAX",
    "DRAW_MAX_D",
    "DRAW_MAX_N",
    "DRAW_MIN_GAP",
    "EPS",
    "LAYOUTS",
    "ROUTES",
    "SWITCHES",
    "VARIANT_NAMES",
    "PaperCase",
    "draw_cases",
    "missing_switches",
    "run_case",
    "sigma_spectrum",
]

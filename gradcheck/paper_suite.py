"""The paper suite: which of the DBN paper's four backward variants is the true gradient.

The four variants of the chain (B1)-(B7) (``layers/paper.py``; the equations are quoted from the
reconstruction in ``shared/paper/dbn-equations.md``) are checked with :func:`check_layer` in full
mode against the numerical gradient. Nothing here presumes an answer: a variant's *verdict* is
``"correct"`` when every check passes and ``"wrong"`` when any fails; the derivation's prediction
(:data:`EXPECTED`) is only compared with it afterwards, for the exit code.

Inputs (the *domain* of the verdict). Random batches built with an exact covariance spectrum:
``N x D`` with ``2 <= D <= 5`` and ``D + 2 <= N <= 16``, condition number at most
:data:`DRAW_COND_MAX`, distinct eigenvalues at least :data:`DRAW_MIN_GAP` apart relative to the
largest, a Haar-random eigenbasis; centered and uncentered, in both layouts (``(N, D)`` converted
at the layer's edges, and the paper's ``d x m`` handed over as is), by the eig and the SVD route.
The upstream gradient of each check is ``check_layer``'s own draw from the harness stream for the
case's seed. Near-equal eigenvalues are kept out of this domain on purpose: there the paper's
``K_ij = 1/(l_i - l_j)`` fails *numerically* even for a correct formula, which is a different
question, answered by the gap study (:func:`gap_study`).

The smallest counterexample is searched for by Hypothesis (:func:`find_counterexample`) over
integer-valued batches (:func:`paper_cases`), shrinking ``N``, then ``D``, then the entries; a
case counts only where the covariance is well conditioned (:data:`SEARCH_COND_MAX`,
:data:`SEARCH_MIN_GAP`) so that a failure can only come from the formula.

The gap study: as two eigenvalues of ``Sigma`` approach each other (gaps ``1e-1 ... 1e-12, 0``),
the relative error against a Richardson-extrapolated numerical gradient of (a) the corrected
chain with ``K``, (b) the authors' SVD code, (c) the project's ``ZCAWhitening`` (Daleckii-Krein).

``add_paper_command`` adds ``gradcheck paper`` to an ``argparse`` subparsers object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .check import check_layer
from .compare import default_rtol, relative_error
from .finite_diff import harness_rng, partial_derivatives
from .result import CheckResult

if TYPE_CHECKING:  # pragma: no cover
    from hypothesis.strategies import SearchStrategy

Array = np.ndarray

VARIANT_NAMES: Tuple[str, ...] = ("printed", "transpose-only", "symmetrize-only", "corrected")

#: What the derivation in docs/paper-errata.md predicts; compared with the measured verdicts.
EXPECTED: Dict[str, str] = {
    "printed": "wrong",
    "transpose-only": "wrong",
    "symmetrize-only": "wrong",
    "corrected": "correct",
}

#: The switches of each variant: (B1) uses D^T, (B5) symmetrizes dL/dSigma.
SWITCHES: Dict[str, Tuple[bool, bool]] = {
    "printed": (False, False),
    "transpose-only": (True, False),
    "symmetrize-only": (False, True),
    "corrected": (True, True),
}

LAYOUTS: Tuple[str, ...] = ("rows", "paper")
ROUTES: Tuple[str, ...] = ("eig", "svd")
EPS = 1e-5

# Domain of the random verdict draws. A condition number of 100 keeps the central-difference
# estimate able to resolve rtol = sqrt(eps) (at a few thousand it becomes inconclusive for the
# project's own ZCA layer too); a 2% gap keeps K = 1/(l_i - l_j) harmless.
DRAW_COND_MAX = 100.0
DRAW_MIN_GAP = 0.02
DRAW_MAX_D = 5
DRAW_MAX_N = 16

# Domain of the Hypothesis search: integer entries make the covariance exact in floating point
# up to rounding, so looser bounds than for the draws still leave the estimate resolvable.
SEARCH_COND_MAX = 1e3
SEARCH_MIN_GAP = 1e-2
SEARCH_MAX_N = 8
SEARCH_MAX_D = 4
SEARCH_ENTRY_BOUND = 4
SEARCH_EXAMPLES = 300

#: Gaps between the two close eigenvalues in the gap study (the others are 4 and 16).
DEFAULT_GAPS: Tuple[float, ...] = tuple([10.0**-k for k in range(1, 13)] + [0.0])
GAP_ROUTES: Tuple[Tuple[str, str], ...] = (
    ("paper-K", "(a) corrected chain, K_ij = 1/(l_i - l_j), eig"),
    ("authors-svd", "(b) authors' Lua code: SVD, eps on singular values, K guarded by 1e-45"),
    ("zca-dk", "(c) project ZCAWhitening, Daleckii-Krein"),
)

# check_layer draws its upstream gradient from harness_rng(seed, 1); the gap study uses the same
# stream so that its dy is the one a check with that seed would use.
_PURPOSE_DY = 1

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Cases


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

    def build(self, variant: str, eps: float = EPS) -> Any:
        """A fresh :class:`~layers.paper.PaperDBNWhitening` of ``variant`` for this case."""
        from layers.paper import PaperDBNWhitening

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
    xc = x - x.mean(axis=0) if center else x
    sigma = xc.T @ xc / x.shape[0]
    return np.linalg.eigvalsh(0.5 * (sigma + sigma.T)) + eps


def spectrum_ok(lam: Array, cond_max: float, min_gap: float) -> bool:
    """Condition number ``<= cond_max`` and every gap ``>= min_gap * max(lam)``."""
    top, low = float(lam[-1]), float(lam[0])
    if not (low > 0 and top / low <= cond_max):
        return False
    return bool(lam.size < 2 or np.min(np.diff(lam)) >= min_gap * top)


def exact_spectrum_batch(n: int, lam: Array, rng: np.random.Generator, center: bool) -> Array:
    """An ``(n, d)`` batch whose (centered, if ``center``) covariance is ``Q diag(lam) Q^T``.

    ``x = sqrt(n) Z diag(sqrt(lam)) Q^T`` with ``Q`` Haar-random and ``Z`` (``n x d``) with
    orthonormal columns, orthogonal to the all-ones vector when ``center`` (then a random mean
    is added, which the centering removes). Needs ``n > d`` (``n >= d`` without centering).
    """
    d = len(lam)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    g = rng.standard_normal((n, d))
    if center:
        g -= g.mean(axis=0)
    z, _ = np.linalg.qr(g)
    if center:
        z -= z.mean(axis=0)  # rounding-level means; orthonormality is unaffected
    x = (math.sqrt(n) * z * np.sqrt(np.asarray(lam, dtype=np.float64))) @ q.T
    return x + rng.standard_normal(d) if center else x


def _draw_spectrum(rng: np.random.Generator, d: int) -> Array:
    """``d`` eigenvalues, log-uniform within :data:`DRAW_COND_MAX`, gaps >= DRAW_MIN_GAP."""
    while True:
        lam = np.sort(10.0 ** rng.uniform(0.0, math.log10(DRAW_COND_MAX), d))
        if spectrum_ok(lam, DRAW_COND_MAX, DRAW_MIN_GAP):
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


# ---------------------------------------------------------------------------------------------
# Hypothesis: the strategy and the counterexample search


def paper_cases(
    max_n: int = SEARCH_MAX_N,
    max_d: int = SEARCH_MAX_D,
    bound: int = SEARCH_ENTRY_BOUND,
    routes: Sequence[str] = ROUTES,
) -> SearchStrategy[PaperCase]:
    """Hypothesis strategy of :class:`PaperCase` with integer-valued entries in ``[-bound, bound]``.

    Draw order, and so shrink order: ``N`` (``2 .. max_n``), ``D`` (``1 .. min(N - 1, max_d)``),
    the entries (toward 0), centering (toward centered), layout (toward rows), route (toward
    eig), the ``check_layer`` seed (toward 0). Cases are not filtered here; callers keep the
    ones inside their domain (:func:`in_search_domain`).
    """
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    @st.composite
    def cases(draw: Callable[..., Any]) -> PaperCase:
        n = draw(st.integers(2, max_n))
        d = draw(st.integers(1, min(n - 1, max_d)))
        entries = st.integers(-bound, bound).map(float)
        x = draw(hnp.arrays(np.float64, (n, d), elements=entries))
        center = draw(st.sampled_from([True, False]))
        layout = draw(st.sampled_from(LAYOUTS))
        route = draw(st.sampled_from(tuple(routes)))
        seed = draw(st.integers(0, 2**32 - 1))
        return PaperCase(x, center, layout, route, seed, "hypothesis")

    return cases()


def in_search_domain(case: PaperCase) -> bool:
    """Whether ``case``'s covariance is conditioned well enough to blame a failure on the formula.

    Judged on the covariance *without* eps: a batch whose covariance is (nearly) singular is
    whitened on the scale ``sqrt(eps)``, far below any finite-difference step, and there the
    numerical estimate, not the formula, is what fails.
    """
    return spectrum_ok(sigma_spectrum(case.x, case.center, 0.0), SEARCH_COND_MAX, SEARCH_MIN_GAP)


@dataclass
class Counterexample:
    """The smallest failing case Hypothesis found for a variant, with the check's evidence."""

    variant: str
    case: PaperCase
    rel_error: float
    reason: str
    examples_tried: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.variant,
            **self.case.to_dict(),
            "rel_error": self.rel_error,
            "reason": self.reason,
            "examples_tried": self.examples_tried,
        }

    def short(self) -> str:
        return f"{self.case.describe()}: rel. error {self.rel_error:.2e}"


def find_counterexample(
    variant: str, seed: int = 0, max_examples: int = SEARCH_EXAMPLES, eps: float = EPS
) -> Tuple[Optional[Counterexample], int]:
    """Search with ``hypothesis.find`` for the smallest case on which ``variant`` fails.

    A case counts when it is in the search domain and ``check_layer`` (full mode) says
    ``"fail"``. The search is seeded by ``seed`` (``random.Random(seed)``) and uses no example
    database, so it is reproducible and leaves no files. Returns ``(counterexample or None,
    number of cases evaluated)``.
    """
    import random

    from hypothesis import find, settings
    from hypothesis.errors import NoSuchExample

    calls = [0]

    def fails(case: PaperCase) -> bool:
        calls[0] += 1
        if not in_search_domain(case):
            return False
        return run_case(variant, case, eps).status == "fail"

    budget = settings(max_examples=max_examples, database=None, deadline=None, derandomize=False)
    try:
        case = find(paper_cases(), fails, settings=budget, random=random.Random(seed))
    except NoSuchExample:
        return None, calls[0]
    result = run_case(variant, case, eps)
    return Counterexample(variant, case, result.rel_error, result.reason or "", calls[0]), calls[0]


# ---------------------------------------------------------------------------------------------
# Special inputs: where a wrong variant still passes


def missing_switches(variant: str) -> frozenset:
    """The fixes ``variant`` lacks: a subset of ``{"transpose", "symmetrize"}``."""
    transpose_fix, symmetrize = SWITCHES[variant]
    return frozenset(
        name for name, on in (("transpose", transpose_fix), ("symmetrize", symmetrize)) if not on
    )


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
        from layers.paper import PaperDBNWhitening

        layer = PaperDBNWhitening.variant(
            variant, center=self.center, eps=self.eps, route=self.route
        )
        dy = layer.forward(self.x) if self.dy is None else self.dy
        return check_layer(layer, self.x, dy=dy, seed=0, mode=mode)


def _orthogonal_columns(n: int, variances: Sequence[float], seed: int) -> Array:
    """Centered batch with orthogonal columns: ``Sigma = diag(variances)`` in that order."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, len(variances)))
    z, _ = np.linalg.qr(g - g.mean(axis=0))
    z -= z.mean(axis=0)
    return math.sqrt(n) * z * np.sqrt(np.asarray(variances)) + rng.standard_normal(len(variances))


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


# ---------------------------------------------------------------------------------------------
# Verdicts


@dataclass
class VariantVerdict:
    """The measured verdict of one variant over the drawn cases, and its counterexample search."""

    variant: str
    transpose_fix: bool
    symmetrize: bool
    statuses: Dict[str, int]
    worst_rel_error: float
    worst_case: str
    verdict: str
    expected: str
    counterexample: Optional[Counterexample]
    search_examples: int
    failures: List[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.verdict == self.expected

    @property
    def n_checks(self) -> int:
        return sum(self.statuses.values())

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.variant,
            "b1": "D^T G" if self.transpose_fix else "D G",
            "symmetrize": self.symmetrize,
            "checks": self.n_checks,
            "statuses": dict(self.statuses),
            "worst_rel_error": self.worst_rel_error,
            "worst_case": self.worst_case,
            "verdict": self.verdict,
            "expected": self.expected,
            "matches_expected": self.matches,
            "counterexample": None
            if self.counterexample is None
            else self.counterexample.to_dict(),
            "search_examples": self.search_examples,
            "failures": self.failures[:5],
        }


def verdict_of(statuses: Dict[str, int]) -> str:
    """``"correct"`` if every check passed, ``"wrong"`` if any failed, else what stopped it."""
    if statuses.get("fail", 0):
        return "wrong"
    if statuses.get("error", 0):
        return "error"
    if statuses.get("inconclusive", 0):
        return "inconclusive"
    return "correct"


def measure_variant(
    variant: str,
    cases: Sequence[PaperCase],
    *,
    seed: int = 0,
    search: bool = True,
    search_examples: int = SEARCH_EXAMPLES,
    eps: float = EPS,
) -> VariantVerdict:
    """Check ``variant`` on every case; then, if ``search``, find its smallest counterexample."""
    statuses: Dict[str, int] = {}
    worst, worst_case = 0.0, ""
    failures: List[str] = []
    for case in cases:
        result = run_case(variant, case, eps)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        rel = result.rel_error
        if not math.isnan(rel) and rel >= worst:
            worst, worst_case = rel, case.describe()
        if result.status != "pass":
            failures.append(f"{case.describe()} ({case.origin}): {result.summary()}")
    counter, tried = (None, 0)
    if search:
        counter, tried = find_counterexample(variant, seed, search_examples, eps)
    transpose_fix, symmetrize = SWITCHES[variant]
    return VariantVerdict(
        variant,
        transpose_fix,
        symmetrize,
        statuses,
        worst,
        worst_case,
        verdict_of(statuses),
        EXPECTED[variant],
        counter,
        tried,
        failures,
    )


# ---------------------------------------------------------------------------------------------
# The gap study


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
    from layers.paper import AuthorsSVDWhitening, PaperDBNWhitening
    from layers.whitening import ZCAWhitening

    return {
        "paper-K": PaperDBNWhitening(True, True, eps=eps, route="eig"),
        "authors-svd": AuthorsSVDWhitening(eps=eps),
        "zca-dk": ZCAWhitening(eps=eps),
    }


def gap_study(
    seed: int = 0, gaps: Sequence[float] = DEFAULT_GAPS, repeats: int = 3, eps: float = EPS
) -> List[GapRow]:
    """Relative error of the three backward routes against a Richardson numerical gradient.

    For each gap, ``repeats`` batches from :func:`gap_batch` (seeds ``seed .. seed+repeats-1``)
    with the harness stream's upstream gradient for that seed; the worst error over them is kept.
    The numerical reference differentiates ``ZCAWhitening``'s forward, which all three routes
    share as a function (``Sigma^{-1/2}`` is smooth at ties, so the reference is accurate there).
    """
    from layers.whitening import ZCAWhitening

    rows = []
    for gap in gaps:
        errors: Dict[str, Optional[float]] = {name: 0.0 for name, _ in GAP_ROUTES}
        uncertainty, computed_gap = 0.0, math.inf
        for r in range(repeats):
            x = gap_batch(gap, seed + r)
            dy = harness_rng(seed + r, _PURPOSE_DY).standard_normal(x.shape)
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


# ---------------------------------------------------------------------------------------------
# The report and its renderers


@dataclass
class PaperReport:
    """Everything ``gradcheck paper`` prints."""

    verdicts: List[VariantVerdict]
    seed: int
    examples: int
    gap_rows: Optional[List[GapRow]] = None
    elapsed: float = 0.0
    config: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every measured verdict is what the derivation predicts."""
        return all(v.matches for v in self.verdicts)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "seed": self.seed,
            "examples": self.examples,
            "config": self.config,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "matches_expected": self.ok,
            "elapsed": self.elapsed,
        }
        if self.gap_rows is not None:
            out["gap_study"] = {
                "eigenvalues": "1, 1 + gap, 4, 16 (plus eps)",
                "routes": {name: label for name, label in GAP_ROUTES},
                "rows": [
                    {
                        "gap": r.gap,
                        "rel_error": r.errors,
                        "numeric_uncertainty": r.numeric_uncertainty,
                        "computed_gap": r.computed_gap,
                    }
                    for r in self.gap_rows
                ],
            }
        return out


def _config(examples: int, eps: float) -> Dict[str, Any]:
    return {
        "eps": eps,
        "check": "check_layer(mode='full', method='central'), default tolerances",
        "rtol": default_rtol(),
        "draws": f"{examples} batches per variant: D in [2, {DRAW_MAX_D}], "
        f"N in [D + 2, {DRAW_MAX_N}], "
        f"exact spectrum with condition number <= {DRAW_COND_MAX:g} and relative gaps >= "
        f"{DRAW_MIN_GAP:g}; cycling layout (rows, paper) x centering (yes, no) x route (eig, svd); "
        "upstream gradient from the harness stream",
        "search": f"hypothesis.find over integer batches in [-{SEARCH_ENTRY_BOUND}, "
        f"{SEARCH_ENTRY_BOUND}], N <= {SEARCH_MAX_N}, D <= {SEARCH_MAX_D}, condition number <= "
        f"{SEARCH_COND_MAX:g}, relative gaps >= {SEARCH_MIN_GAP:g}; shrinks N, D, then entries",
    }


def run_paper_suite(
    seed: int = 0,
    examples: int = 32,
    *,
    gap: bool = False,
    search: bool = True,
    search_examples: int = SEARCH_EXAMPLES,
    variants: Sequence[str] = VARIANT_NAMES,
    eps: float = EPS,
) -> PaperReport:
    """Measure every variant (and optionally the gap study); see the module docstring."""
    start = time.perf_counter()
    cases = draw_cases(seed, examples)
    verdicts = [
        measure_variant(
            v, cases, seed=seed, search=search, search_examples=search_examples, eps=eps
        )
        for v in variants
    ]
    rows = gap_study(seed, eps=eps) if gap else None
    return PaperReport(
        verdicts, seed, examples, rows, time.perf_counter() - start, _config(examples, eps)
    )


def _fmt_err(value: Optional[float]) -> str:
    if value is None:
        return "non-finite"
    return f"{value:.2e}"


def _fmt_gap(gap: float) -> str:
    return "0 (tie)" if gap == 0 else f"{gap:.0e}"


def _b1(v: VariantVerdict) -> str:
    return "D^T G" if v.transpose_fix else "D G (printed)"


def _sym(v: VariantVerdict) -> str:
    return "symmetrized" if v.symmetrize else "as is (printed)"


def _counter_cell(v: VariantVerdict) -> str:
    if v.counterexample is not None:
        return v.counterexample.short()
    return f"none in {v.search_examples} cases" if v.search_examples else "not searched"


def _matrix_text(x: Array) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{val:g}" for val in row) + "]" for row in x) + "]"


def render_text(report: PaperReport) -> str:
    """Plain-text tables: the verdicts, the counterexamples and (if run) the gap study."""
    lines = [
        "DBN paper backward chain (B1)-(B7): four variants against the numerical gradient",
        f"seed {report.seed}; {report.config.get('draws', '')}",
        f"check: {report.config.get('check', '')}, rtol = {report.config.get('rtol', 0):.2e}",
        "",
    ]
    header = (
        "variant",
        "(B1)",
        "dL/dSigma",
        "passed",
        "worst rel. error",
        "verdict",
        "expected",
        "smallest counterexample",
    )
    rows = [
        (
            v.variant,
            _b1(v),
            _sym(v),
            f"{v.statuses.get('pass', 0)}/{v.n_checks}",
            f"{v.worst_rel_error:.2e}",
            v.verdict,
            v.expected,
            _counter_cell(v),
        )
        for v in report.verdicts
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for v in report.verdicts:
        c = v.counterexample
        if c is None:
            continue
        lines += [
            "",
            f"counterexample for {v.variant} ({c.examples_tried} cases evaluated by the search):",
            f"  {c.case.describe()}; x (N x D, rows are examples) = {_matrix_text(c.case.x)}",
            f"  {c.reason}",
        ]
    if report.gap_rows is not None:
        lines += ["", render_gap_text(report.gap_rows)]
    verdict = "match" if report.ok else "DO NOT match"
    lines += [
        "",
        f"measured verdicts {verdict} the derivation's prediction ({report.elapsed:.1f} s)",
    ]
    return "\n".join(lines) + "\n"


def render_gap_text(rows: Sequence[GapRow]) -> str:
    """The gap study as a plain-text table."""
    lines = [
        "gap study: eigenvalues 1, 1 + gap, 4, 16 of Sigma (eps = 1e-5 added), N = 16, "
        "worst of 3 batches; relative error vs Richardson"
    ]
    for name, label in GAP_ROUTES:
        lines.append(f"  {name}: {label}")
    header = ("gap", "computed gap", *[name for name, _ in GAP_ROUTES], "numeric uncertainty")
    body = [
        (
            _fmt_gap(r.gap),
            f"{r.computed_gap:.1e}",
            *[_fmt_err(r.errors[n]) for n, _ in GAP_ROUTES],
            f"{r.numeric_uncertainty:.1e}",
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def render_markdown(report: PaperReport) -> str:
    """Markdown tables, as pasted into docs/paper-errata.md."""
    out = [
        "| Variant | (B1) | dL/dSigma | Checks passed | Worst relative error | Verdict | "
        "Smallest counterexample (Hypothesis) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report.verdicts:
        out.append(
            f"| {v.variant} | `{'D^T G' if v.transpose_fix else 'D G'}` | "
            f"{'symmetrized' if v.symmetrize else 'as is'} | "
            f"{v.statuses.get('pass', 0)}/{v.n_checks} "
            f"| {v.worst_rel_error:.2e} | **{v.verdict}** | {_counter_cell(v)} |"
        )
    out += [
        "",
        f"Seed {report.seed}. Draws: {report.config.get('draws', '')}. "
        f"Search: {report.config.get('search', '')}.",
    ]
    for v in report.verdicts:
        c = v.counterexample
        if c is None:
            continue
        out += [
            "",
            f"**{v.variant}**: {c.case.describe()} (found after {c.examples_tried} cases), "
            f"relative error {c.rel_error:.2e}",
            "",
            "```",
            f"x = {_matrix_text(c.case.x)}",
            c.reason,
            "```",
        ]
    if report.gap_rows is not None:
        out += ["", render_gap_markdown(report.gap_rows)]
    return "\n".join(out) + "\n"


def render_gap_markdown(rows: Sequence[GapRow]) -> str:
    """The gap study as a Markdown table."""
    head = (
        "| gap | computed gap | "
        + " | ".join(label for _, label in GAP_ROUTES)
        + " | numeric uncertainty |"
    )
    sep = "|" + "---|" * (len(GAP_ROUTES) + 3)
    body = [
        f"| {_fmt_gap(r.gap)} | {r.computed_gap:.1e} | "
        + " | ".join(_fmt_err(r.errors[n]) for n, _ in GAP_ROUTES)
        + f" | {r.numeric_uncertainty:.1e} |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])


def render_json(report: PaperReport) -> str:
    def safe(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: safe(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [safe(v) for v in obj]
        return obj

    return json.dumps(safe(report.to_dict()), indent=2) + "\n"


RENDERERS: Dict[str, Callable[[PaperReport], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}


def plot_gap_study(rows: Sequence[GapRow], path: str) -> None:
    """Write the gap study as a log-log PNG to ``path`` (needs matplotlib; imported here only).

    The exact tie (gap 0) is drawn at the left edge, one decade below the smallest positive gap,
    and labelled ``0``; a non-finite error is drawn at the top edge and marked ``x``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = [r.gap for r in rows if r.gap > 0]
    zero_at = min(positive) / 10.0 if positive else 1e-13
    xs = [r.gap if r.gap > 0 else zero_at for r in rows]
    finite = [e for r in rows for e in r.errors.values() if e is not None and e > 0]
    top = max(finite) * 10.0 if finite else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (name, label), marker in zip(GAP_ROUTES, ("o", "s", "^")):
        ys = [r.errors[name] for r in rows]
        ax.plot(
            [x for x, y in zip(xs, ys) if y is not None],
            [max(y, 1e-18) for y in ys if y is not None],
            marker=marker,
            label=label,
        )
        bad = [x for x, y in zip(xs, ys) if y is None]
        if bad:
            ax.plot(bad, [top] * len(bad), linestyle="none", marker="x", color="black")
    ax.plot(
        xs,
        [r.numeric_uncertainty for r in rows],
        linestyle=":",
        color="grey",
        label="numerical reference's own error estimate",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ticks = sorted(set(xs))
    ax.set_xticks(ticks)
    ax.set_xticklabels(
        ["0" if t == zero_at else f"1e{round(math.log10(t))}" for t in ticks], rotation=45
    )
    ax.set_xlabel("gap between two eigenvalues of Sigma (1 and 1 + gap; others 4, 16)")
    ax.set_ylabel("relative error of dL/dX vs Richardson")
    ax.set_title("DBN backward near equal eigenvalues (x: non-finite)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The command line


PAPER_EXAMPLES = """\
examples:
  gradcheck paper                               verdict table for the four variants
  gradcheck paper --format markdown --output verdicts.md
  gradcheck paper --gap-study --plot gap.png    stability near equal eigenvalues, with a plot
"""




def add_paper_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``paper`` subcommand to an ``argparse`` subparsers object; returns its parser.

    The handler (``args.handler``) returns 0 when the measured verdicts match the derivation
    (printed variant wrong, corrected right, the two single fixes wrong), 1 when they do not,
    2 on a usage problem (``--plot`` without matplotlib).
    """
    # The CLI's own argument type: cli.py is loaded by then (it is what calls this function).
    from .cli import _positive_int

    p = subparsers.add_parser(
        "paper",
        help="check the DBN paper's backward formula: four variants, verdicts, gap study",
        description="Compare the four variants of the Decorrelated Batch Normalization paper's "
        "dL/dX (D or D^T in (B1); dL/dSigma symmetrized or not) with the numerical gradient, and "
        "search for each one's smallest counterexample with Hypothesis. Exit 0 when the measured "
        "verdicts match the derivation, 1 when they do not, 2 on a usage error.",
        epilog=PAPER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format", choices=tuple(RENDERERS), default="text", help="output format (default text)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the random draws and of the Hypothesis search (default 0)",
    )
    p.add_argument(
        "--examples",
        type=_positive_int,
        default=32,
        metavar="K",
        help="random batches per variant (default 32)",
    )
    p.add_argument(
        "--gap-study",
        action="store_true",
        help="also run the stability study near equal eigenvalues; writes a PNG "
        "(paper-gap-study.png, or --plot FILE) when matplotlib is installed",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        help="write the gap study's plot to FILE (PNG; implies --gap-study; needs matplotlib)",
    )
    p.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.set_defaults(handler=cmd_paper)
    return p


def _have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


MATPLOTLIB_HINT = (
    "the plot needs matplotlib: pip install matplotlib (or install this package's 'plot' "
    "extra: pip install 'gradcheck-dbn[plot]')"
)


def cmd_paper(args: argparse.Namespace) -> int:
    """Run the suite as ``args`` say; print or write the report; return the exit code."""
    gap = bool(args.gap_study or args.plot)
    plot_path: Optional[str] = args.plot
    if plot_path and not _have_matplotlib():
        print(f"gradcheck paper: error: {MATPLOTLIB_HINT}", file=sys.stderr)
        return EXIT_USAGE
    report = run_paper_suite(args.seed, args.examples, gap=gap)
    text = RENDERERS[args.format](report)
    if args.output:
        from .report import write_atomic

        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    if gap and report.gap_rows is not None:
        if plot_path is None and _have_matplotlib():
            plot_path = "paper-gap-study.png"
        if plot_path is not None:
            plot_gap_study(report.gap_rows, plot_path)
            print(f"gradcheck paper: wrote the gap-study plot to {plot_path}", file=sys.stderr)
        else:
            print(f"gradcheck paper: no plot written; {MATPLOTLIB_HINT}", file=sys.stderr)
    if not report.ok:
        for v in report.verdicts:
            if not v.matches:
                print(
                    f"gradcheck paper: {v.variant}: measured {v.verdict}, expected {v.expected} "
                    f"(seed {args.seed})",
                    file=sys.stderr,
                )
                for line in v.failures[:3]:
                    print(f"  {line}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_MISMATCH


__all__ = [
    "DEFAULT_GAPS",
    "EXPECTED",
    "VARIANT_NAMES",
    "Counterexample",
    "GapRow",
    "PaperCase",
    "PaperReport",
    "SpecialInput",
    "VariantVerdict",
    "add_paper_command",
    "cmd_paper",
    "draw_cases",
    "exact_spectrum_batch",
    "find_counterexample",
    "gap_study",
    "in_search_domain",
    "measure_variant",
    "missing_switches",
    "paper_cases",
    "plot_gap_study",
    "render_json",
    "render_markdown",
    "render_text",
    "run_case",
    "run_paper_suite",
    "sigma_spectrum",
    "special_inputs",
]

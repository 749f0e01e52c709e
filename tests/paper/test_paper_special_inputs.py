"""Inputs on which a wrong variant still passes, tested as such, with the reason for each.

None of these is evidence for a variant: each makes one or both switches invisible. A suite that
only used them would certify the printed formula (see the last test). The verdicts rest on the
random draws and the Hypothesis search in test_paper_verdicts.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _paper_common import lapack_2x2_eigenvectors_symmetric

from gradcheck import check_layer
from gradcheck.paper.cases import VARIANT_NAMES, missing_switches
from gradcheck.paper.special import special_inputs
from layers.paper import PaperDBNWhitening

SPECIAL = {s.name: s for s in special_inputs()}


def backward(variant: str, x: np.ndarray, dy, **options) -> np.ndarray:
    layer = PaperDBNWhitening.variant(variant, **options)
    y = layer.forward(x)
    return layer.backward(y if dy is None else dy)


def test_missing_switches():
    assert missing_switches("printed") == {"transpose", "symmetrize"}
    assert missing_switches("transpose-only") == {"symmetrize"}
    assert missing_switches("symmetrize-only") == {"transpose"}
    assert missing_switches("corrected") == frozenset()


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_d_equal_1_hides_both_switches(variant):
    """D = [+-1] = D^T, and the 1 x 1 dL/dSigma is symmetric: all four variants coincide."""
    s = SPECIAL["D = 1"]
    result = s.check(variant)
    assert result.status == "pass", result.explain()
    for center in (True, False):
        ref = backward("corrected", s.x, s.dy, center=center)
        np.testing.assert_allclose(backward(variant, s.x, s.dy, center=center), ref, rtol=1e-14)


def test_all_ones_upstream_gradient_with_centering_has_a_zero_true_gradient():
    """sum(X^) = 1^T W X_C 1 = 0 for every x: L is constant and its gradient is 0.

    Every variant returns 0 (to rounding): (B2) is D G X_C^T with G X_C^T = 1 1^T X_C^T = 0,
    G X~^T = 0 likewise, so P = 0; and U^T dL/dX~ has equal columns, removed by the mean term.
    A wrong (B1) or an unsymmetrized P is multiplied by zero. The estimate does not call it a
    pass: with a zero gradient the comparison is rounding against rounding, and it says
    "inconclusive". The whole check fails the wrong variants all the same: for a dy with
    repeated values it compares backward(dy2) too, for the linearity check's dy2
    (wrong-for-other-dy). Without centering the same dy exposes every wrong variant.
    """
    s = SPECIAL["dy = all ones, centered"]
    generic = np.random.default_rng(0).standard_normal(s.x.shape)
    scale = np.linalg.norm(backward("corrected", s.x, generic))
    for variant in VARIANT_NAMES:
        dx = backward(variant, s.x, s.dy)
        assert np.linalg.norm(dx) < 1e-12 * scale, variant
        assert s.estimate_status(variant) in ("pass", "inconclusive"), variant
        whole = s.check(variant)
        if variant == "corrected":
            assert whole.status == "inconclusive", whole.explain()
        else:
            assert whole.status == "fail", whole.explain()
            assert "wrong-for-other-dy" in {f.code for f in whole.findings}, variant
    for variant in VARIANT_NAMES:
        layer = PaperDBNWhitening.variant(variant, center=False)
        status = check_layer(layer, s.x, dy=s.dy, mode="full").status
        assert status == ("pass" if variant == "corrected" else "fail"), variant


DIAGONAL = [
    "Sigma diagonal, ascending variances (eig)",
    "Sigma diagonal, descending variances (svd)",
]


@pytest.mark.parametrize("name", DIAGONAL)
def test_diagonal_sigma_in_the_solvers_order_hides_the_transpose(name):
    """The solver returns D = I (up to signs) when the variances are already in its order.

    eigh sorts ascending, the SVD descending. Then D G = D^T G and only the symmetrization
    is tested: symmetrize-only passes, printed and transpose-only do not.
    """
    s = SPECIAL[name]
    layer = PaperDBNWhitening.variant("corrected", route=s.route)
    layer.forward(s.x)
    d = layer.cache["D"]
    np.testing.assert_allclose(np.abs(d), np.eye(d.shape[0]), atol=1e-12)
    for variant in VARIANT_NAMES:
        status = s.estimate_status(variant)
        assert status == ("pass" if s.passes(variant) else "fail"), (variant, status)
    assert s.passes("symmetrize-only") and not s.passes("transpose-only")


def test_d_equal_2_hides_the_transpose_exactly_when_the_eigenvectors_are_symmetric():
    """For 2 x 2 input this LAPACK returns a reflection [[c, s], [s, -c]], which is symmetric.

    So no D = 2 batch can show the (B1) error; the Hypothesis search has to go to D = 3 for the
    symmetrize-only variant. Were the solver to return a rotation, D = 2 would expose it.
    """
    s = SPECIAL["D = 2"]
    layer = PaperDBNWhitening.variant("corrected")
    layer.forward(s.x)
    d = layer.cache["D"]
    symmetric = bool(np.allclose(d, d.T, atol=1e-14))
    assert symmetric == lapack_2x2_eigenvectors_symmetric()
    status = s.estimate_status("symmetrize-only")
    assert status == ("pass" if symmetric else "fail")
    for variant in ("printed", "transpose-only"):  # the symmetrization still shows
        assert s.check(variant).status == "fail", variant


def test_output_as_upstream_gradient_hides_the_symmetrization():
    """G = X^: D^T dL/dD = 2m (Lambda - eps I) Lambda^-1 is diagonal, so P is symmetric already.

    transpose-only passes; the (B1) error still shows. With a small eps this G also proves
    little for a second reason: L = |X^|^2 / 2 = (m/2) tr((Sigma - eps I) Sigma^-1) is nearly
    constant, its gradient O(eps), and the checks become inconclusive; hence eps = 0.1 here.
    """
    s = SPECIAL["dy = output (G = X^), eps = 0.1"]
    layer = PaperDBNWhitening.variant("transpose-only", eps=s.eps)
    y = layer.forward(s.x)
    cache = layer.cache
    m = s.x.shape[0]
    # D^T dL/dD for the fixed (B1), in the paper's layout (X_C is d x m).
    dvec, lam, xc, xt = cache["D"], cache["lam"], cache["xc"], cache["xt"]
    g = y.T
    d_u = (dvec.T @ g) @ xc.T
    inner = dvec.T @ (d_u.T * lam**-0.5 + g @ xt.T)
    np.testing.assert_allclose(inner, np.diag(2 * m * (lam - s.eps) / lam), atol=1e-10)
    for variant in VARIANT_NAMES:
        status = s.estimate_status(variant)
        assert status == ("pass" if s.passes(variant) else "fail"), (variant, status)
    small = PaperDBNWhitening.variant("corrected", eps=1e-5)
    y_small = small.forward(s.x)
    generic = np.random.default_rng(1).standard_normal(s.x.shape)
    ratio = np.linalg.norm(small.backward(y_small)) / np.linalg.norm(small.backward(generic))
    assert ratio < 1e-3  # the gradient of |X^|^2 / 2 is O(eps)


def test_special_inputs_alone_would_certify_the_printed_formula():
    """Each wrong variant passes somewhere; D = 2 with G = X^ passes all four, printed included.

    That is the estimate at the special input. The whole check no longer certifies the printed
    formula there: its fresh-cache probe runs the backward at x'' (rows rolled, entries moved),
    where the input is special no more, and the printed formula fails.
    """
    for variant in VARIANT_NAMES:
        assert any(s.passes(variant) for s in SPECIAL.values()), variant
    both = SPECIAL["D = 2 and dy = output, eps = 0.1"]
    if lapack_2x2_eigenvectors_symmetric():
        for variant in VARIANT_NAMES:
            assert both.estimate_status(variant) == "pass", variant
        printed = both.check("printed")
        assert printed.status == "fail", printed.explain()
        assert "wrong-away-from-x" in {f.code for f in printed.findings}
        assert both.check("corrected").status == "pass"

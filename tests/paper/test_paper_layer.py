"""layers/paper.py: forward, layouts, stacks, the authors' transcription, ties, registration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.paper.cases import SWITCHES
from gradcheck.registry import _REGISTRY, make_input, register_layer, unregister_layer
from gradcheck.spectra import exact_spectrum_batch
from layers import paper
from layers.paper import (
    CORRECT_VARIANTS,
    VARIANTS,
    AuthorsSVDWhitening,
    PaperDBNWhitening,
    k_matrix,
    register_paper_variants,
)
from layers.whitening import ZCAWhitening

ROUTES = ("eig", "svd")


def batch(n: int, lam, seed: int, center: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return exact_spectrum_batch(n, np.asarray(lam, dtype=float), rng, center)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("center", [True, False])
def test_forward_equals_zca_whitening_in_both_layouts(variant, route, center):
    x = batch(11, [0.3, 1.0, 2.5, 7.0], seed=1, center=center)
    expected = ZCAWhitening(center=center).forward(x)
    rows = PaperDBNWhitening.variant(variant, route=route, center=center).forward(x)
    cols = PaperDBNWhitening.variant(variant, route=route, center=center, layout="paper").forward(
        x.T.copy()
    )
    assert rows.shape == x.shape and cols.shape == x.T.shape
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cols.T, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_paper_layout_is_the_row_layout_transposed(variant):
    """The conversion at the edges is a transpose, forward and backward, and nothing else."""
    x = batch(9, [0.5, 1.0, 3.0], seed=2)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    rows = PaperDBNWhitening.variant(variant)
    cols = PaperDBNWhitening.variant(variant, layout="paper")
    rows.forward(x)
    cols.forward(x.T.copy())
    np.testing.assert_allclose(cols.backward(dy.T.copy()).T, rows.backward(dy), atol=1e-12)


@pytest.mark.parametrize("route", ROUTES)
def test_corrected_backward_equals_the_daleckii_krein_backward(route):
    """On well-separated spectra the corrected chain and the project's ZCA backward agree."""
    for seed in range(5):
        x = batch(10, [0.2, 0.9, 2.0, 5.0], seed=seed)
        dy = np.random.default_rng(100 + seed).standard_normal(x.shape)
        ours = PaperDBNWhitening.variant("corrected", route=route)
        ours.forward(x)
        zca = ZCAWhitening()
        zca.forward(x)
        assert rel(ours.backward(dy), zca.backward(dy)) < 1e-11, f"seed {seed}"


def test_stacked_input_matches_slice_by_slice():
    xs = np.stack([batch(8, [0.5, 1.5, 4.0], seed=s) for s in range(6)]).reshape(2, 3, 8, 3)
    dys = np.random.default_rng(0).standard_normal(xs.shape)
    for variant in VARIANTS:
        layer = PaperDBNWhitening.variant(variant)
        y = layer.forward(xs)
        dx = layer.backward(dys)
        for idx in np.ndindex(2, 3):
            one = PaperDBNWhitening.variant(variant)
            np.testing.assert_allclose(y[idx], one.forward(xs[idx]), atol=1e-12)
            np.testing.assert_allclose(dx[idx], one.backward(dys[idx]), atol=1e-11)


def test_layers_do_not_mutate_their_arguments():
    x = batch(7, [0.5, 2.0], seed=4)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    x0, dy0 = x.copy(), dy.copy()
    for layer in [PaperDBNWhitening.variant(v) for v in VARIANTS] + [AuthorsSVDWhitening()]:
        layer.forward(x)
        layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_named_constructors_and_switch_table_agree():
    assert paper.printed().variant_name == "printed"
    assert paper.transpose_only().variant_name == "transpose-only"
    assert paper.symmetrize_only().variant_name == "symmetrize-only"
    assert paper.corrected().variant_name == "corrected"
    assert SWITCHES == VARIANTS  # the suite's copy (it imports layers lazily) is the same table
    with pytest.raises(ValueError, match="name"):
        PaperDBNWhitening.variant("as-printed")
    with pytest.raises(ValueError, match="layout"):
        PaperDBNWhitening(True, True, layout="columns")


def test_singular_covariance_raises_with_the_layer_name():
    x = np.ones((4, 3))  # centered to zero; with eps = 0 Sigma is the zero matrix
    with pytest.raises(np.linalg.LinAlgError, match=r"PaperDBNWhitening.*eps"):
        PaperDBNWhitening(True, True, eps=0.0).forward(x)


# ---------------------------------------------------------------------------------------------
# The authors' Lua code


def test_authors_code_is_the_corrected_chain():
    """DecorelateBN_Advance.lua works in rows (N x d) and writes G D, the fixed (B1), and S + S^T.

    So its closed form is the corrected variant, and it passes the harness's check.
    """
    for seed in range(5):
        x = batch(10, [0.2, 0.9, 2.0, 5.0], seed=seed)
        dy = np.random.default_rng(200 + seed).standard_normal(x.shape)
        authors = AuthorsSVDWhitening()
        np.testing.assert_allclose(authors.forward(x), ZCAWhitening().forward(x), atol=1e-12)
        ours = PaperDBNWhitening.variant("corrected", route="svd")
        ours.forward(x)
        assert rel(authors.backward(dy), ours.backward(dy)) < 1e-11, f"seed {seed}"
    x = batch(12, [0.5, 1.0, 3.0, 6.0], seed=9)
    result = check_layer(AuthorsSVDWhitening(), x, mode="full")
    assert result.status == "pass", result.explain()


# ---------------------------------------------------------------------------------------------
# Exact ties: where K = 1/(l_i - l_j) is undefined


def exact_tie_batch() -> np.ndarray:
    """Centered columns that are orthogonal with equal norms: Sigma = I + eps I exactly."""
    return np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) + np.array([3.0, -2.0])


def test_k_matrix_is_infinite_at_an_exact_tie():
    k = k_matrix(np.array([1.0, 1.0, 2.0]))
    assert np.isinf(k[0, 1]) and np.isinf(k[1, 0])
    assert k[0, 2] == -1.0 and k[2, 0] == 1.0 and np.all(np.diag(k) == 0.0)


def test_an_exact_tie_breaks_the_paper_chain_and_the_authors_guard_but_not_zca():
    x = exact_tie_batch()
    for route in ROUTES:
        layer = PaperDBNWhitening.variant("corrected", route=route)
        layer.forward(x)
        assert layer.spectrum()[0] == layer.spectrum()[1]  # the computed eigenvalues tie exactly
        result = check_layer(layer, x, mode="full")
        assert result.status == "error" and "nonfinite" in result.reason, result.explain()
    # The Lua code's 1e-45 guard turns the NaN into a finite gradient of size ~1e45.
    authors = check_layer(AuthorsSVDWhitening(), x, mode="full")
    assert authors.status == "fail" and authors.max_abs_error > 1e40, authors.explain()
    zca = check_layer(ZCAWhitening(), x, mode="full")
    assert zca.status == "pass", zca.explain()


def test_identical_rows_give_nan_quietly():
    """X_C = 0: Sigma = eps I exactly, K = inf, and inf * 0 = NaN, without a RuntimeWarning."""
    layer = PaperDBNWhitening.variant("corrected")
    layer.forward(np.full((4, 3), 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx = layer.backward(np.random.default_rng(0).standard_normal((4, 3)))
    assert np.isnan(dx).all()


# ---------------------------------------------------------------------------------------------
# Registration


@pytest.fixture
def clean_paper_registry():
    """Register for the test and remove afterwards only what was not registered before."""
    before = set(_REGISTRY.specs)
    yield
    for name in set(_REGISTRY.specs) - before:
        unregister_layer(name)


def test_register_paper_variants_registers_only_the_correct_variant(clean_paper_registry):
    register_paper_variants()
    names = {n for n, s in _REGISTRY.specs.items() if "paper" in s.tags}
    forms = ("", "-svd", "-uncentered")
    expected = {f"paper-dbn-{v}{sfx}" for v in CORRECT_VARIANTS for sfx in forms}
    assert names == expected
    assert CORRECT_VARIANTS == ("corrected",)
    register_paper_variants()  # idempotent (replace=True)
    assert {n for n, s in _REGISTRY.specs.items() if "paper" in s.tags} == expected
    with pytest.raises(ValueError, match="already registered"):
        register_layer("paper-dbn-corrected", PaperDBNWhitening)


def test_registered_variants_pass_the_standard_checks(clean_paper_registry):
    register_paper_variants()
    for name, spec in list(_REGISTRY.specs.items()):
        if "paper" not in spec.tags:
            continue
        for shape in spec.shapes:
            for seed in (0, 1):
                x = make_input(spec.input, shape, seed)
                for mode in ("auto", "full"):
                    result = check_layer(spec.build(eps=1e-5), x, seed=seed, mode=mode)
                    where = f"{name} {shape} seed {seed} {mode}"
                    assert result.status == "pass", f"{where}: {result.explain()}"

"""The whitening variants of issue 7: PCA, Cholesky, IterNorm and group-wise whitening.

Each variant passes the harness's full-mode check (central and Richardson) at several shapes and
seeds, keeps its defining invariant, treats a stack like a loop, and has a deliberately wrong
backward that the harness reports as a failure. PCA's near-tie behaviour is pinned down as it is:
exact ties are refused, near ties are never reported as a pass, and a small-step difference
shows the backward is still right there.
"""

from __future__ import annotations

import numpy as np
import pytest
from _oracle import assert_no_mutation, assert_stack_matches_loop, rel_error

from gradcheck import check_layer
from gradcheck.registry import get_layer_spec
from gradcheck.runner import Job, RunOptions, run_job
from layers import Standardize, ZCAWhitening, zca_backward
from layers.cholesky_whitening import CholeskyWhitening
from layers.group_whitening import GroupWhitening, merge_groups, split_groups
from layers.iternorm import IterNorm, newton_schulz_residual
from layers.pca_whitening import PCAWhitening, fix_eigenvector_signs


def x_of(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def cov(y):
    """``Y^T Y / N`` of each ``(N, D)`` slice (the output is centred whenever the input was)."""
    return np.swapaxes(y, -1, -2) @ y / y.shape[-2]


def batch_with_spectrum(lams, n, eps, seed):
    """An ``(n, d)`` batch whose ``Xc^T Xc / n + eps I`` has eigenvalues ``lams`` (random basis)."""
    rng = np.random.default_rng(seed)
    d = len(lams)
    a = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sqrt(n * (np.asarray(lams) - eps))) @ r.T + rng.standard_normal(d)


# (id, factory, shape, seed): every one passes full mode with central and Richardson.
BATTERY = [
    ("pca", PCAWhitening, (16, 4), 0),
    ("pca", PCAWhitening, (32, 8), 1),
    ("pca", PCAWhitening, (5, 5), 2),
    ("pca-uncentered", lambda: PCAWhitening(center=False), (12, 4), 3),
    ("cholesky", CholeskyWhitening, (16, 4), 0),
    ("cholesky", CholeskyWhitening, (4, 6), 1),
    ("cholesky", CholeskyWhitening, (32, 8), 2),
    ("cholesky-uncentered", lambda: CholeskyWhitening(center=False), (4, 6), 3),
    ("iternorm-1", lambda: IterNorm(iterations=1), (16, 4), 0),
    ("iternorm-5", IterNorm, (4, 6), 1),
    ("iternorm-5", IterNorm, (32, 8), 2),
    ("iternorm-10-uncentered", lambda: IterNorm(iterations=10, center=False), (16, 4), 3),
    ("group-zca-2", GroupWhitening, (16, 4), 0),
    ("group-zca-2", GroupWhitening, (3, 8), 1),
    ("group-zca-3-svd", lambda: GroupWhitening(3, method="svd"), (12, 6), 2),
    ("group-pca-2", lambda: GroupWhitening(2, inner="pca"), (16, 4), 3),
    ("group-cholesky-4", lambda: GroupWhitening(4, inner="cholesky"), (3, 8), 4),
]


@pytest.mark.parametrize("method", ["central", "richardson"])
@pytest.mark.parametrize(
    ("factory", "shape", "seed"),
    [b[1:] for b in BATTERY],
    ids=[f"{b[0]}-{b[2][0]}x{b[2][1]}-seed{b[3]}" for b in BATTERY],
)
def test_variant_passes_full_check(factory, shape, seed, method):
    result = check_layer(factory(), x_of(shape, seed), seed=seed, mode="full", method=method)
    assert result.status == "pass", result.explain()
    # An ill-conditioned whitening's rounding can keep a few entries from their own tolerance
    # at every step: said as information, and nothing else may be said.
    assert not [f for f in result.findings if f.code != "resolved-at-gradient-floor"], (
        result.explain()
    )
    assert result.spectrum is not None  # the harness recorded the conditioning


@pytest.mark.parametrize(
    "name", ["pca-whitening", "cholesky-whitening", "iternorm-1", "iternorm-5", "group-zca-2"]
)
def test_registered_variant_passes_at_its_registered_shapes(name):
    spec = get_layer_spec(name)
    assert "whitening" in spec.tags and spec.options == ("eps",)
    assert spec.source == "layers.variants"
    for shape in spec.shapes:
        for seed in (0, 1):
            result = run_job(Job(spec, shape, seed), RunOptions())
            assert result.status == "pass", result.explain()


def test_registered_shapes_include_n_below_d_except_for_pca():
    for name in ["cholesky-whitening", "iternorm-1", "iternorm-5", "group-zca-2"]:
        assert any(n < d for n, d in get_layer_spec(name).shapes), name
    assert all(n >= d for n, d in get_layer_spec("pca-whitening").shapes)


# ----------------------------------------------------------------------------------------------
# Deliberately wrong backward passes: the harness must say "fail".


class FrozenEigenvectorsPCA(PCAWhitening):
    """Forgets that the eigenvectors move: only the eigenvalue path of Sigma is kept."""

    def backward(self, dy):
        c = self.cache
        xc, q, lam = c["xc"], c["eigvecs"], c["eigvals"]
        m = q.T @ xc.T @ dy
        sigma_bar = (q * (-0.5 * lam**-1.5 * np.diag(m))) @ q.T
        dxc = dy @ c["proj"].T + 2.0 / len(xc) * xc @ sigma_bar
        return dxc - dxc.mean(axis=0)


class LimitIterNorm(IterNorm):
    """Backpropagates through the limit Sigma^{-1/2} instead of the T steps actually taken."""

    def backward(self, dy):
        c = self.cache
        lam, q = np.linalg.eigh(c["sigma"])
        zca_cache = {"xc": c["xc"], "w": c["w"], "eigvals": lam, "eigvecs": q, "center": True}
        return zca_backward(dy, zca_cache)


class ReshapedGroupWhitening(GroupWhitening):
    """Splits dy into groups with a plain reshape instead of reshape-and-move-axis."""

    def backward(self, dy):
        c = self.cache
        n, d = dy.shape
        dyg = np.reshape(dy, (c["groups"], n, d // c["groups"]))
        return merge_groups(zca_backward(dyg, c["inner"]))


def test_wrong_pca_backward_fails():
    result = check_layer(FrozenEigenvectorsPCA(), x_of((16, 4)), seed=0)
    assert result.status == "fail", result.explain()


def test_wrong_cholesky_backward_fails(monkeypatch):
    import layers.cholesky_whitening as chol

    # The classic slip in Murray's formula: Phi without halving the diagonal.
    monkeypatch.setattr(chol, "phi", np.tril)
    result = check_layer(CholeskyWhitening(), x_of((16, 4)), seed=0)
    assert result.status == "fail", result.explain()


def test_wrong_iternorm_backward_fails():
    # A batch whose smallest eigenvalue is far from converged after 5 steps.
    x = batch_with_spectrum([0.05, 0.5, 1.0, 3.0], 16, 1e-5, seed=0)
    layer = LimitIterNorm()
    layer.forward(x)
    assert layer.whitening_error() > 0.1
    result = check_layer(layer, x, seed=0)
    assert result.status == "fail", result.explain()


def test_wrong_group_backward_fails():
    result = check_layer(ReshapedGroupWhitening(2), x_of((16, 4)), seed=0)
    assert result.status == "fail", result.explain()


# ----------------------------------------------------------------------------------------------
# Invariants


def test_pca_output_covariance_is_identity_up_to_eps_and_order_is_descending():
    eps = 1e-3
    for center in (True, False):
        layer = PCAWhitening(eps=eps, center=center)
        y = layer.forward(x_of((20, 5), 1) + 3.0)
        lam = layer.cache["eigvals"]
        assert np.all(np.diff(lam) < 0)
        # Y^T Y / N = Lambda^{-1/2} Q^T (Sigma - eps I) Q Lambda^{-1/2} = I - eps Lambda^{-1}.
        np.testing.assert_allclose(cov(y), np.diag(1.0 - eps / lam), atol=1e-12)
        np.testing.assert_array_equal(layer.spectrum(), lam[::-1])


def test_cholesky_output_covariance_and_triangular_dependence():
    eps = 1e-3
    layer = CholeskyWhitening(eps=eps)
    x = x_of((20, 5), 2)
    y = layer.forward(x)
    l = layer.cache["l"]
    linv = np.linalg.inv(l)
    np.testing.assert_allclose(cov(y), np.eye(5) - eps * linv @ linv.T, atol=1e-12)
    np.testing.assert_allclose(l @ l.T, layer.cache["sigma"], atol=1e-13)
    # Output feature j depends on input features 0..j only.
    x2 = x.copy()
    x2[:, -1] += np.arange(20.0)
    np.testing.assert_allclose(layer.forward(x2)[:, :-1], y[:, :-1], atol=1e-13)
    assert np.all(np.diff(layer.spectrum()) >= 0)


def test_group_whitening_is_zca_of_each_group():
    x = x_of((24, 6), 3)
    for groups in (1, 2, 3):
        y = GroupWhitening(groups, eps=1e-4).forward(x)
        k = 6 // groups
        for g in range(groups):
            block = slice(g * k, (g + 1) * k)
            np.testing.assert_allclose(
                y[:, block], ZCAWhitening(eps=1e-4).forward(x[:, block]), atol=1e-13
            )
            np.testing.assert_allclose(cov(y[:, block]), np.eye(k), atol=1e-3)
    # One feature per group: every group is standardized.
    np.testing.assert_allclose(
        GroupWhitening(6, eps=1e-4).forward(x), Standardize(eps=1e-4).forward(x), atol=1e-13
    )


def test_group_spectrum_is_per_group_and_ascending():
    layer = GroupWhitening(2)
    layer.forward(x_of((3, 2, 10, 4), 4))
    for inner in ("zca", "pca", "cholesky"):
        layer = GroupWhitening(2, inner=inner)
        x = x_of((3, 10, 4), 4)
        layer.forward(x)
        lam = layer.spectrum()
        assert lam.shape == (3, 2, 2) and np.all(np.diff(lam, axis=-1) > 0)
        xg = split_groups(x, 2)
        xc = xg - xg.mean(axis=-2, keepdims=True)
        np.testing.assert_allclose(lam, np.linalg.eigvalsh(cov(xc) + 1e-5 * np.eye(2)), rtol=1e-12)


def test_split_and_merge_groups_are_inverse_and_contiguous():
    a = np.arange(2 * 3 * 6.0).reshape(2, 3, 6)
    g = split_groups(a, 3)
    assert g.shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(g[1, 2], a[1, :, 4:6])
    np.testing.assert_array_equal(merge_groups(g), a)


@pytest.mark.parametrize("shape", [(16, 4), (32, 8)])
def test_iternorm_error_is_the_newton_schulz_bound_and_shrinks_with_iterations(shape):
    x = x_of(shape, 5)
    errors = []
    for t in range(1, 9):
        layer = IterNorm(iterations=t)
        layer.forward(x)
        lam = layer.spectrum()
        bound = newton_schulz_residual(lam[0] / lam.sum(), t)
        err = float(layer.whitening_error())
        assert abs(err - bound) <= 1e-9 * bound + 1e-12
        errors.append(err)
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-6


def test_iternorm_converges_to_zca_then_rounding_errors_grow():
    x = x_of((16, 4), 6)
    np.testing.assert_allclose(
        IterNorm(iterations=10).forward(x), ZCAWhitening().forward(x), atol=1e-12
    )
    # Past convergence the uncoupled Newton-Schulz step amplifies the rounding errors that do
    # not commute with Sigma by |1 - (r + r^2)/2| per step, r = sqrt(lambda_i / lambda_j):
    # about 3.3 for this batch (condition number 6.2), so 20 extra steps cost 10 digits.
    errors = {}
    for t in (10, 30):
        layer = IterNorm(iterations=t)
        layer.forward(x)
        errors[t] = float(layer.whitening_error())
    assert errors[10] < 1e-12 and errors[30] > 1e-6


def test_iternorm_refuses_to_return_a_diverged_iteration():
    # N < D: cond(Sigma) is about 1e5, so the iterates overflow well before 30 steps.
    x = x_of((4, 6), 0)
    assert np.all(np.isfinite(IterNorm(iterations=10).forward(x)))
    with pytest.raises(np.linalg.LinAlgError, match=r"IterNorm\(iterations=30.*diverged"):
        IterNorm(iterations=30).forward(x)


def test_newton_schulz_residual_recursion():
    np.testing.assert_allclose(newton_schulz_residual(1.0, 3), 0.0)
    e0 = 1 - 0.2
    e1 = e0**2 * (3 + e0) / 4
    np.testing.assert_allclose(newton_schulz_residual([0.2], 1), [e1])
    np.testing.assert_allclose(newton_schulz_residual(0.2, 2), e1**2 * (3 + e1) / 4)


# ----------------------------------------------------------------------------------------------
# Stacks, mutation, determinism


STACKABLE = [
    PCAWhitening,
    CholeskyWhitening,
    lambda: CholeskyWhitening(center=False),
    IterNorm,
    lambda: IterNorm(iterations=2, center=False),
    GroupWhitening,
    lambda: GroupWhitening(2, inner="pca"),
    lambda: GroupWhitening(4, inner="cholesky"),
]


@pytest.mark.parametrize("factory", STACKABLE)
def test_stack_matches_loop_and_nothing_is_mutated(factory):
    xs = x_of((2, 3, 12, 4), 7)
    dys = x_of((2, 3, 12, 4), 8)
    assert factory().supports_batch
    assert_stack_matches_loop(factory(), xs, dys, rtol=1e-10)
    assert_no_mutation(factory(), xs[0, 0], dys[0, 0])
    layer = factory()
    layer.forward(xs)
    assert layer.spectrum().shape[:2] == (2, 3)


def test_pca_sign_convention():
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.standard_normal((3, 5, 5)))
    fixed = fix_eigenvector_signs(q)
    flips = rng.choice([-1.0, 1.0], size=(3, 1, 5))
    np.testing.assert_array_equal(fix_eigenvector_signs(q * flips), fixed)
    pivot = np.take_along_axis(fixed, np.argmax(np.abs(fixed), axis=-2)[:, None, :], axis=-2)
    assert np.all(pivot > 0)


def test_pca_output_does_not_depend_on_the_signs_eigh_returns(monkeypatch):
    x = x_of((16, 5), 10)
    expected = PCAWhitening().forward(x)
    true_eigh = np.linalg.eigh

    def flipped_eigh(a):
        lam, q = true_eigh(a)
        return lam, q * np.where(np.arange(q.shape[-1]) % 2, -1.0, 1.0)

    monkeypatch.setattr(np.linalg, "eigh", flipped_eigh)
    np.testing.assert_array_equal(PCAWhitening().forward(x.copy()), expected)


def test_pca_scores_rotate_with_the_input_up_to_the_sign_convention():
    # X -> X R (R orthogonal): Sigma -> R^T Sigma R, eigenvectors -> +-R^T q, so every output
    # column is unchanged up to the sign the convention picks for R^T q.
    x = x_of((20, 4), 11)
    layer = PCAWhitening()
    y = layer.forward(x)
    q = layer.cache["eigvecs"]
    r, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((4, 4)))
    rq = r.T @ q
    signs = np.sign(rq[np.argmax(np.abs(rq), axis=0), np.arange(4)])
    np.testing.assert_allclose(layer.forward(x @ r), y * signs, atol=1e-12)
    # A permutation of the features keeps every dominant entry's sign: the scores are unchanged.
    perm = np.eye(4)[:, [2, 0, 3, 1]]
    np.testing.assert_allclose(layer.forward(x @ perm), y, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# PCA at and near eigenvalue ties


def test_pca_refuses_exact_ties():
    with pytest.raises(np.linalg.LinAlgError, match=r"PCAWhitening: .*tied.*repeated 3 times"):
        PCAWhitening().forward(x_of((3, 5)))
    x = batch_with_spectrum([1.0, 1.0, 0.3, 2.5], 12, 1e-5, seed=0)
    with pytest.raises(np.linalg.LinAlgError, match=r"eigenvalues 1 and 2 \(descending\) are tied"):
        PCAWhitening().forward(x)
    result = check_layer(PCAWhitening(), x, seed=0)
    assert result.status == "error"
    assert result.findings[-1].code == "forward-raised"
    # ZCA is a smooth function of Sigma there and checks fine.
    assert check_layer(ZCAWhitening(), x, seed=0, mode="full").status == "pass"


def test_pca_tie_tolerance_is_adjustable():
    x = batch_with_spectrum([1.0, 1.0 + 1e-4, 0.3, 2.5], 12, 1e-5, seed=0)
    PCAWhitening().forward(x)
    with pytest.raises(np.linalg.LinAlgError, match=r"tie_rtol=1.0e-03"):
        PCAWhitening(tie_rtol=1e-3).forward(x)


def directional(layer, x, dy, v, h):
    """Central difference of ``<layer(x), dy>`` along ``v`` with step ``h``."""
    plus, minus = layer.forward(x + h * v), layer.forward(x - h * v)
    return np.sum((plus - minus) * dy) / (2 * h)


@pytest.mark.parametrize("gap, expected", [(1e-2, "pass"), (1e-6, "inconclusive")])
def test_pca_near_ties_are_resolved_or_inconclusive_and_the_backward_is_right(gap, expected):
    x = batch_with_spectrum([1.0, 1.0 + gap, 0.3, 2.5], 12, 1e-5, seed=0)
    rng = np.random.default_rng(13)
    dy, v = rng.standard_normal((2, 12, 4))
    layer = PCAWhitening()
    layer.forward(x)
    dx = layer.backward(dy)
    # The true gradient grows like 1/gap. At a gap of 1e-2 Richardson's finest candidate still
    # resolves it; at 1e-6 every step the harness takes crosses an eigenvalue swap, and its
    # estimates say so (they do not converge), so the verdict is inconclusive, never a fail.
    for method in ("central", "richardson"):
        status = check_layer(PCAWhitening(), x, dy=dy, seed=0, mode="full", method=method).status
        assert status == expected
    if gap == 1e-2:
        unescalated = check_layer(
            PCAWhitening(), x, dy=dy, seed=0, mode="full", method="central", escalate=False
        )
        assert unescalated.status == "inconclusive"
    # A step far below the gap still confirms the analytic directional derivative.
    h = 1e-3 * gap
    numeric = directional(PCAWhitening(), x, dy, v, h)
    assert abs(numeric - np.sum(dx * v)) <= 1e-4 * abs(numeric)
    # ZCA on the same batch is unaffected.
    assert check_layer(ZCAWhitening(), x, dy=dy, seed=0, mode="full").status == "pass"


def test_pca_gradient_grows_like_one_over_the_gap():
    rng = np.random.default_rng(14)
    dy = rng.standard_normal((12, 4))
    norms = []
    for gap in (1e-3, 1e-5):
        layer = PCAWhitening()
        layer.forward(batch_with_spectrum([1.0, 1.0 + gap, 0.3, 2.5], 12, 1e-5, seed=1))
        norms.append(np.linalg.norm(layer.backward(dy)))
    assert 30 < norms[1] / norms[0] < 300


# ----------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("make", "exc", "pattern"),
    [
        (lambda: PCAWhitening(eps=-1), ValueError, r"PCAWhitening: argument 'eps' must be >= 0"),
        (lambda: PCAWhitening(tie_rtol=-1), ValueError, r"PCAWhitening: argument 'tie_rtol'"),
        (lambda: CholeskyWhitening(eps="a"), TypeError, r"CholeskyWhitening: argument 'eps'"),
        (lambda: IterNorm(iterations=0), ValueError, r"IterNorm: argument 'iterations' must be"),
        (lambda: IterNorm(iterations=2.5), TypeError, r"IterNorm: argument 'iterations' must be"),
        (lambda: IterNorm(iterations=True), TypeError, r"IterNorm: argument 'iterations'"),
        (lambda: GroupWhitening(0), ValueError, r"GroupWhitening: argument 'groups' must be"),
        (lambda: GroupWhitening(2.0), TypeError, r"GroupWhitening: argument 'groups' must be"),
        (lambda: GroupWhitening(inner="iternorm"), ValueError, r"GroupWhitening: .*'inner'"),
        (lambda: GroupWhitening(method="qr"), ValueError, r"GroupWhitening: .*'method'"),
    ],
)
def test_constructor_errors_name_the_layer_and_argument(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


@pytest.mark.parametrize(
    "factory", [PCAWhitening, CholeskyWhitening, IterNorm, GroupWhitening], ids=lambda f: f.__name__
)
def test_input_and_upstream_errors_name_the_layer(factory):
    layer = factory()
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=rf"{name}.backward called before forward"):
        layer.backward(np.zeros((8, 4)))
    with pytest.raises(RuntimeError, match=rf"{name}.spectrum called before forward"):
        layer.spectrum()
    with pytest.raises(TypeError, match=rf"{name}: argument 'x' is complex"):
        layer.forward(np.ones((8, 4), dtype=complex))
    with pytest.raises(TypeError, match=rf"{name}: argument 'x' must be a floating-point"):
        layer.forward(np.ones((8, 4), dtype=int))
    with pytest.raises(ValueError, match=rf"{name}: argument 'x' contains NaN or inf"):
        layer.forward(np.full((8, 4), np.nan))
    with pytest.raises(ValueError, match=rf"{name}: argument 'x' must have at least 2 axes"):
        layer.forward(np.ones(4))
    layer.forward(x_of((8, 4)))
    with pytest.raises(ValueError, match=rf"{name}: argument 'dy' must have shape \(8, 4\)"):
        layer.backward(np.zeros((8, 3)))


def test_group_count_must_divide_the_features():
    pattern = r"GroupWhitening: argument 'groups' = 3 must divide .*D = 4"
    with pytest.raises(ValueError, match=pattern):
        GroupWhitening(3).forward(x_of((8, 4)))


def test_singular_covariance_errors():
    x = x_of((3, 6))
    with pytest.raises(np.linalg.LinAlgError, match=r"CholeskyWhitening: .*not positive definite"):
        CholeskyWhitening(eps=0).forward(x)
    with pytest.raises(np.linalg.LinAlgError, match=r"GroupWhitening: cannot whiten a group of 3"):
        GroupWhitening(2, eps=0).forward(x)
    with pytest.raises(ValueError, match=r"IterNorm: cannot normalize by the trace"):
        IterNorm(eps=0).forward(x_of((1, 4)))
    # IterNorm needs no positive definiteness: a singular covariance is fine with eps = 0.
    assert np.all(np.isfinite(IterNorm(eps=0).forward(x)))


def test_reprs_show_constructor_args():
    assert repr(PCAWhitening()) == "PCAWhitening(eps=1e-05, center=True, tie_rtol=1e-10)"
    assert repr(CholeskyWhitening(eps=0.1)) == "CholeskyWhitening(eps=0.1, center=True)"
    assert repr(IterNorm(iterations=3)) == "IterNorm(eps=1e-05, iterations=3, center=True)"
    assert repr(GroupWhitening(4, inner="pca")) == (
        "GroupWhitening(groups=4, eps=1e-05, method='eigh', inner='pca', center=True)"
    )


def test_backward_overwrites_grads_and_is_repeatable():
    x, dy = x_of((10, 4), 15), x_of((10, 4), 16)
    for layer in (PCAWhitening(), CholeskyWhitening(), IterNorm(), GroupWhitening()):
        layer.forward(x)
        first = layer.backward(dy)
        layer.grads = {"stale": np.ones(1)}
        assert rel_error(layer.backward(dy), first) == 0.0
        assert layer.grads == {}

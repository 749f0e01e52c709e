"""The stability study: two eigenvalues of Sigma approach each other (gap 1e-1 ... 0)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.paper.cases import sigma_spectrum
from gradcheck.paper.gap import DEFAULT_GAPS, GAP_ROUTES, gap_batch, gap_study
from gradcheck.paper.gap_plot import plot_gap_study
from gradcheck.paper.render import render_gap_markdown, render_gap_text

GAPS = (1e-1, 1e-4, 1e-8, 1e-12, 0.0)


@pytest.fixture(scope="module")
def rows():
    return {r.gap: r for r in gap_study(seed=0, gaps=GAPS, repeats=2)}


def test_gap_batches_have_the_requested_spectrum():
    for gap in (1e-1, 1e-6):
        lam = sigma_spectrum(gap_batch(gap, seed=3), center=True, eps=0.0)
        np.testing.assert_allclose(lam, [1.0, 1.0 + gap, 4.0, 16.0], rtol=0, atol=1e-12)
    assert DEFAULT_GAPS[0] == 1e-1 and DEFAULT_GAPS[-2] == 1e-12 and DEFAULT_GAPS[-1] == 0.0


def test_the_numerical_reference_is_accurate_at_every_gap(rows):
    """Sigma^(-1/2) is smooth at ties; the Richardson estimate's own error stays tiny there."""
    for r in rows.values():
        assert r.numeric_uncertainty < 1e-8, r.gap


def test_the_daleckii_krein_backward_does_not_notice_the_gap(rows):
    for r in rows.values():
        err = r.errors["zca-dk"]
        assert err is not None and err < 1e-9, r.gap


def test_all_routes_agree_with_a_wide_gap(rows):
    for name, _ in GAP_ROUTES:
        assert rows[1e-1].errors[name] < 1e-9, name


@pytest.mark.parametrize("name", ["paper-K", "authors-svd"])
def test_routes_with_one_over_the_gap_lose_accuracy_as_it_closes(name):
    """Both divide by l_i - l_j; the error grows as the gap shrinks and is O(1) at a tie.

    (A computed tie is rarely exact, the eigenvalues differ by rounding, ~1e-16; at an exact
    tie the paper's chain returns NaN and the authors' 1e-45 guard returns ~1e45, see
    test_paper_layer.py.)
    """
    table = {r.gap: r.errors[name] for r in gap_study(seed=0, gaps=GAPS, repeats=2)}
    assert table[1e-12] > 1e3 * table[1e-1]
    assert table[1e-12] > 1e-6
    tie = table[0.0]
    assert tie is None or tie > 1e-3


def test_renderers_and_plot(rows, tmp_path):
    ordered = [rows[g] for g in GAPS]
    text = render_gap_text(ordered)
    md = render_gap_markdown(ordered)
    for out in (text, md):
        assert "0 (tie)" in out and "1e-12" in out
    assert md.count("\n") == len(GAPS) + 1
    pytest.importorskip("matplotlib")
    path = tmp_path / "gap.png"
    plot_gap_study(ordered, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The pytest plugin, through pytester: a throwaway package registers layers by entry point."""

from __future__ import annotations

import textwrap

import pytest

PACKAGE = textwrap.dedent(
    """
    import numpy as np
    from gradcheck import register_layer

    class Good:
        supports_batch = True
        def forward(self, x):
            self.y = np.tanh(x)
            return self.y
        def backward(self, dy):
            return dy * (1 - self.y ** 2)

    class Bad(Good):
        def backward(self, dy):
            return dy * (1 - self.y ** 2) * 1.01

    def register():
        register_layer("thirdparty-good", Good, shapes=[(4, 3)], replace=True)
        register_layer("thirdparty-bad", Bad, shapes=[(4, 3)], replace=True)
    """
)

ENTRY_POINTS = textwrap.dedent(
    """
    [gradcheck.layers]
    thirdparty = thirdparty_layers:register
    zbroken = thirdparty_layers:does_not_exist
    """
)


@pytest.fixture
def thirdparty(pytester, monkeypatch):
    """A package 'installed' on sys.path: its module plus a dist-info with entry points."""
    pytester.makepyfile(thirdparty_layers=PACKAGE)
    info = pytester.mkdir("thirdparty_layers-0.1.dist-info")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-layers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    return pytester


SELECT = ["-p", "no:cacheprovider", "-k", "thirdparty or entry"]


def test_registered_variants_get_the_battery_and_a_broken_entry_point_is_named(thirdparty):
    result = thirdparty.runpytest_subprocess("--gradcheck-registered", *SELECT, "-v")
    # Good: (auto, full) x 2 seeds + property = 5 passes; Bad: 4 fails + its property fails;
    # the broken entry point is one failure of its own and hides nothing.
    result.assert_outcomes(passed=5, failed=6)
    out = result.stdout.str()
    assert "gradcheck::thirdparty-good-4x3-seed0-auto PASSED" in out
    assert "gradcheck::thirdparty-bad-4x3-seed1-full FAILED" in out
    assert "entry point zbroken = thirdparty_layers:does_not_exist failed to load" in out
    # The failure shows where, side by side, and how to reproduce.
    assert "analytic" in out and "numeric" in out
    assert "reproduce: gradcheck report --only thirdparty-bad --shape 4x3" in out
    # The property's failure names the drawn input's shape and seed (Hypothesis's own
    # "Falsifying example" note is printed by some versions only).
    assert "thirdparty-bad-property" in out and "Bad [1x3, seed" in out


def test_one_layer_by_reference(thirdparty):
    result = thirdparty.runpytest_subprocess(
        "--gradcheck-layer", "thirdparty_layers:Good", "-p", "no:cacheprovider"
    )
    # (8x3, 16x5 default shapes) x 2 seeds x 2 modes + property
    result.assert_outcomes(passed=9)


def test_bad_reference_is_a_usage_error(thirdparty):
    result = thirdparty.runpytest_subprocess("--gradcheck-layer", "thirdparty_layers:Nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no attribute" in result.stderr.str()


def test_without_options_the_plugin_adds_nothing(thirdparty):
    thirdparty.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = thirdparty.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixture_and_assertion_helper_in_a_custom_test(thirdparty):
    thirdparty.makepyfile(
        test_custom=textwrap.dedent(
            """
            import numpy as np
            from thirdparty_layers import Bad, Good

            def test_good(gradcheck):
                x = np.random.default_rng(0).standard_normal((5, 3))
                assert gradcheck.assert_passes(Good(), x, seed=1).passed

            def test_bad(gradcheck):
                x = np.random.default_rng(0).standard_normal((5, 3))
                gradcheck.assert_passes(Bad(), x, seed=1, reproduce="python -m mytests")
            """
        )
    )
    result = thirdparty.runpytest_subprocess("-p", "no:cacheprovider", "test_custom.py")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "GradientCheckFailed" in out
    assert "entries beyond tolerance" in out and "reproduce: python -m mytests" in out


def test_profile_option_selects_the_hypothesis_profile(thirdparty):
    thirdparty.makepyfile(
        test_profile=textwrap.dedent(
            """
            from hypothesis import settings

            def test_profile():
                assert settings.default.max_examples == 2000
            """
        )
    )
    result = thirdparty.runpytest_subprocess(
        "-p", "no:cacheprovider", "--gradcheck-profile", "thorough", "test_profile.py"
    )
    result.assert_outcomes(passed=1)


def test_same_results_under_xdist(thirdparty):
    pytest.importorskip("xdist")
    serial = thirdparty.runpytest_subprocess("--gradcheck-registered", *SELECT)
    parallel = thirdparty.runpytest_subprocess("--gradcheck-registered", *SELECT, "-n", "2")
    counts = ("passed", "failed", "errors")
    outcomes = [{k: run.parseoutcomes().get(k, 0) for k in counts} for run in (serial, parallel)]
    assert outcomes[0] == outcomes[1] == {"passed": 5, "failed": 6, "errors": 0}

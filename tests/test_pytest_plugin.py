"""The pytest plugin, through pytester: a throwaway package registers layers by entry point."""

from __future__ import annotations

import os
import shlex
import subprocess
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
    # Without the wrong layer's property, whose Hypothesis shrinking (about 20 s) the test
    # above already waits for once.
    select = ["-p", "no:cacheprovider", "-k", "(thirdparty and not bad-property) or entry"]
    serial = thirdparty.runpytest_subprocess("--gradcheck-registered", *select)
    parallel = thirdparty.runpytest_subprocess("--gradcheck-registered", *select, "-n", "2")
    counts = ("passed", "failed", "errors")
    outcomes = [{k: run.parseoutcomes().get(k, 0) for k in counts} for run in (serial, parallel)]
    assert outcomes[0] == outcomes[1] == {"passed": 5, "failed": 5, "errors": 0}


USER_LAYERS = textwrap.dedent(
    """
    import numpy as np

    class Scale:
        # y = c * x * w with one w per feature; the constructor needs the width
        def __init__(self, d, c=2.0):
            self.params = {"w": np.linspace(0.5, 1.5, d)}
            self.grads = {}
            self.c = c
        def forward(self, x):
            self.x = x
            return self.c * x * self.params["w"]
        def backward(self, dy):
            self.grads = {"w": self.c * (dy * self.x).sum(axis=0)}
            return self.c * dy * self.params["w"]

    class Reversed(Scale):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["w"] = self.grads["w"][::-1].copy()
            return dx

    class HalfSquare:
        # a regression loss: sum((pred - target)**2) / 2
        is_loss = True
        def forward(self, pred, target):
            assert target.dtype.kind == "f", "regression targets are floats"
            self.d = pred - target
            return float((self.d ** 2).sum() / 2)
        def backward(self):
            return self.d

    def affine_forward(x, w):
        return x @ w, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout

    def affine_buggy_backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout / len(x)
    """
)

SCALE = ["--gradcheck-layer", "userlayers:Scale(4)", "--gradcheck-shape", "6x4"]
REVERSED = ["--gradcheck-layer", "userlayers:Reversed(4, c=1.5)", "--gradcheck-shape", "6x4"]


@pytest.fixture
def user(pytester, monkeypatch):
    """A project with a configuration file, its layers importable."""
    pytester.makepyfile(userlayers=USER_LAYERS)
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")])
    )
    return pytester


def test_constructor_arguments_and_shapes_for_a_referenced_layer(user):
    # A 4-feature layer at the default 8x3 would fail with a broadcast error; --gradcheck-shape
    # gives it its own shapes.
    result = user.runpytest_subprocess(*SCALE, *REVERSED, "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5, failed=5)
    out = result.stdout.str()
    assert "tox.ini::gradcheck::userlayers:Scale(4)-6x4-seed0-auto PASSED" in out
    # The reproduce line is a command that works: the reference, as the report takes it.
    assert (
        "reproduce: gradcheck report --layer 'userlayers:Reversed(4, c=1.5)' --shape 6x4 "
        "--seed 0 --mode auto --method central" in out
    )


def test_the_reproduce_line_runs(user):
    result = user.runpytest_subprocess(*REVERSED, "-p", "no:cacheprovider", "-k", "seed1-full")
    line = next(l for l in result.stdout.lines if "reproduce: gradcheck report" in l)
    words = shlex.split(line.split("reproduce: ", 1)[1])
    proc = subprocess.run(words, cwd=user.path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "userlayers:Reversed(4, c=1.5)" in proc.stdout
    assert "w: 4/4 entries beyond tolerance" in proc.stdout


def test_collect_only_counts_agree_with_the_run_and_ids_are_selectable(user):
    listed = user.runpytest_subprocess(*SCALE, "-p", "no:cacheprovider", "--collect-only", "-q")
    ids = [l for l in listed.stdout.lines if l.startswith("tox.ini::gradcheck::")]
    assert len(ids) == 5 and "5 tests collected" in listed.stdout.str()
    ran = user.runpytest_subprocess(*SCALE, "-p", "no:cacheprovider")
    ran.assert_outcomes(passed=len(ids))
    assert "collected 5 items" in ran.stdout.str()
    one = user.runpytest_subprocess(*SCALE, "-p", "no:cacheprovider", ids[1])
    one.assert_outcomes(passed=1)
    deselected = user.runpytest_subprocess(*SCALE, "-p", "no:cacheprovider", "-k", "not property")
    deselected.assert_outcomes(passed=4)
    assert "1 deselected" in deselected.stdout.str()


def test_harness_frames_are_hidden_from_the_traceback(user):
    user.makepyfile(
        test_pairs=textwrap.dedent(
            """
            import numpy as np
            from userlayers import affine_backward, affine_buggy_backward, affine_forward

            X = np.random.default_rng(0).standard_normal((5, 3))
            W = np.random.default_rng(1).standard_normal((3, 2))

            def test_pair(gradcheck):
                assert gradcheck.check_functions(affine_forward, affine_backward, X, W).passed
                gradcheck.assert_functions_pass(affine_forward, affine_backward, X, W)

            def test_buggy_pair(gradcheck):
                gradcheck.assert_functions_pass(affine_forward, affine_buggy_backward, X, W)
            """
        )
    )
    result = user.runpytest_subprocess("-p", "no:cacheprovider", "test_pairs.py")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "w: 6/6 entries beyond tolerance" in out and "param 'w'" in out
    # The failing line is the test's own; the harness's frames are not shown.
    assert "test_pairs.py:12: GradientCheckFailed" in out
    assert "gradcheck/testing.py" not in out and "gradcheck/pytest_plugin.py" not in out


def test_a_loss_layers_regression_target(user):
    args = ["--gradcheck-layer", "userlayers:HalfSquare", "--gradcheck-shape", "5x1"]
    args += ["--gradcheck-target", "normal:Nx1", "-p", "no:cacheprovider"]
    # Integer labels would fail the layer's assertion; the property's targets follow the spec too.
    user.runpytest_subprocess(*args).assert_outcomes(passed=5)

"""The Hypothesis profiles: ``ci`` by default, ``thorough`` scales every property's examples."""

from __future__ import annotations

import pytest
from hypothesis import settings

from gradcheck.profiles import CI_EXAMPLES, load_profile, scaled_examples


@pytest.fixture
def restore_profile():
    yield
    load_profile()  # the one the suite runs under ($HYPOTHESIS_PROFILE, else ci)


def test_ci_counts_as_written(restore_profile):
    load_profile("ci")
    assert settings.default.max_examples == CI_EXAMPLES
    assert scaled_examples(60) == 60
    assert scaled_examples(0) == 1


def test_thorough_scales_properties_that_set_their_own_count(restore_profile):
    load_profile("thorough")
    assert scaled_examples(60) == 1200
    assert scaled_examples(25) == 500


def test_an_unknown_profile_is_named(restore_profile):
    with pytest.raises(ValueError, match="unknown Hypothesis profile 'nightly'"):
        load_profile("nightly")


def test_a_hung_test_ends_its_process_with_a_traceback(pytestconfig):
    # The suite's guard against a hang inside C code holding CI (see pyproject.toml).
    assert 0 < float(pytestconfig.getini("faulthandler_timeout")) <= 1200
    major = int(pytest.__version__.split(".")[0])
    if major >= 9:
        assert pytestconfig.getini("faulthandler_exit_on_timeout") is True

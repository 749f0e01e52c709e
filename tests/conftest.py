"""Hypothesis profiles for the whole suite.

``ci`` (the default): derandomized, so a run is reproducible from the commit alone, with a few
hundred examples per property at most and the whole suite within a few minutes on 2 cores.
``thorough``: thousands of examples per property, randomized; a failure prints its reproduce
blob (``@reproduce_failure``) so it replays with one command.

Choose with ``HYPOTHESIS_PROFILE=thorough pytest`` or ``pytest --hypothesis-profile thorough``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

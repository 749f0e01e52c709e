"""Hypothesis profiles shared by the test suite and the pytest plugin.

``ci`` (the default): derandomized, so a run is reproducible from the commit alone, with at most
100 examples per property, keeping the whole suite within a few minutes on 2 cores.
``thorough``: 2000 examples per property, randomized. Both print the reproduce blob of a
failure (``@reproduce_failure``), so it replays with one command.
"""

from __future__ import annotations

import os
from typing import Optional

PROFILES = ("ci", "thorough")
ENV_VAR = "HYPOTHESIS_PROFILE"


def register_profiles() -> None:
    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow]
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=100,
        deadline=None,
        print_blob=True,
        suppress_health_check=slow,
    )
    # Explicitly random: registered after "ci" was loaded, it would otherwise inherit
    # derandomize=True from the settings in force.
    settings.register_profile(
        "thorough",
        derandomize=False,
        max_examples=2000,
        deadline=None,
        print_blob=True,
        suppress_health_check=slow,
    )


def load_profile(name: Optional[str] = None) -> str:
    """Register the profiles and load ``name`` (default: ``$HYPOTHESIS_PROFILE`` or ``ci``)."""
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    register_profiles()
    chosen = name or os.environ.get(ENV_VAR) or "ci"
    try:
        # Looked up before loading: a failed load_profile leaves Hypothesis pointing at the
        # unknown name, and every later load would fail with a KeyError.
        settings.get_profile(chosen)
    except InvalidArgument:
        raise ValueError(
            f"unknown Hypothesis profile {chosen!r}; expected one of {PROFILES}"
        ) from None
    settings.load_profile(chosen)
    return chosen


#: The ``ci`` profile's examples per property: the unit :func:`scaled_examples` counts in.
CI_EXAMPLES = 100


def scaled_examples(n: int) -> int:
    """``n`` examples under ``ci``, scaled as the profile in force scales its own count (20x under
    ``thorough``): for properties that set their own ``max_examples``, which would otherwise
    ignore the profile. Call it after :func:`load_profile`."""
    from hypothesis import settings

    # settings() inherits every value from the profile in force.
    return max(1, round(n * settings().max_examples / CI_EXAMPLES))

"""Hypothesis profiles for the whole suite (see gradcheck/profiles.py).

Choose with ``HYPOTHESIS_PROFILE=thorough pytest``, ``pytest --gradcheck-profile thorough`` or
Hypothesis's own ``--hypothesis-profile thorough``.
"""

from gradcheck.profiles import load_profile

load_profile()

pytest_plugins = ["pytester"]

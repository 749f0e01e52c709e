"""The harness's random streams: one id per purpose, fixed, and apart from the user's stream."""

import numpy as np

from gradcheck import finite_diff, streams
from gradcheck.streams import harness_rng

PURPOSES = {
    name: value
    for name, value in vars(streams).items()
    if name.startswith("PURPOSE_") and isinstance(value, int)
}


def test_purpose_ids_are_fixed():
    # Every report's numbers are drawn from these streams: changing an id changes them.
    assert PURPOSES == {
        "PURPOSE_DY": 1,
        "PURPOSE_DEFAULT_LABELS": 2,
        "PURPOSE_DY2": 3,
        "PURPOSE_COMPLEX_TRIAL": 4,
        "PURPOSE_STALE_CACHE": 5,
        "PURPOSE_BATCH_PROBE": 6,
        "PURPOSE_FRESH_CACHE": 7,
        "PURPOSE_PARAM_REACH": 8,
        "PURPOSE_DIRECTIONS": 10,
        "PURPOSE_LOCALIZE": 1000,
        "PURPOSE_TARGET": 1000,
    }


def test_purposes_are_distinct_but_the_documented_one():
    by_value = {}
    for name, value in PURPOSES.items():
        by_value.setdefault(value, []).append(name)
    shared = [sorted(names) for names in by_value.values() if len(names) > 1]
    assert shared == [["PURPOSE_LOCALIZE", "PURPOSE_TARGET"]]


def test_streams_differ_by_purpose_and_from_the_users_stream():
    draws = {p: harness_rng(3, p).standard_normal(5) for p in set(PURPOSES.values())}
    values = list(draws.values())
    assert all(not np.array_equal(a, b) for i, a in enumerate(values) for b in values[i + 1 :])
    user = np.random.default_rng(3).standard_normal(5)
    assert all(not np.array_equal(v, user) for v in values)


def test_finite_diff_reexports_the_streams():
    assert finite_diff.harness_rng is streams.harness_rng
    assert finite_diff.HARNESS_KEY == streams.HARNESS_KEY

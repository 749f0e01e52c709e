"""pytest plugin: tally the status of every ``check_layer`` call, per test, for the evidence run.

Used only to produce the evidence table in ``docs/properties.md``; the test suite does not need
it. Load it explicitly from the repository root::

    HYPOTHESIS_PROFILE=thorough python -m pytest -p docs.properties_tally -n 2 \\
        tests/test_properties.py tests/test_battery.py -k "property or Property"

Every module that imported :func:`gradcheck.check_layer` by name (the battery, the property
tests) gets a wrapper that counts each result's status under the running test's node id. Under
pytest-xdist each worker sends its counts to the controller, which prints one table at the end
(and writes it as JSON to ``$GRADCHECK_TALLY_JSON`` when that is set). The counts include the
calls made while Hypothesis shrinks a failure, so in a run with a failure they exceed the
number of examples; in a clean run they equal it (one check per example).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from typing import Any, Dict, Optional

import pytest

_STATUSES = ("pass", "inconclusive", "fail", "error")
_TALLY: Dict[str, Counter] = defaultdict(Counter)
_CURRENT: Dict[str, Optional[str]] = {"nodeid": None}
_KEY = "gradcheck_tally"


def _wrap(original: Any) -> Any:
    def counting_check_layer(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _TALLY[_CURRENT["nodeid"] or "<outside a test>"][result.status] += 1
        return result

    counting_check_layer.__wrapped__ = original  # type: ignore[attr-defined]
    return counting_check_layer


def pytest_collection_finish(session: pytest.Session) -> None:
    """Replace every module-level reference to the original ``check_layer`` once tests import."""
    from gradcheck import check as check_module

    original = check_module.check_layer
    wrapper = _wrap(original)
    for module in list(sys.modules.values()):
        if getattr(module, "check_layer", None) is original:
            module.check_layer = wrapper  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _CURRENT["nodeid"] = item.nodeid
    try:
        yield
    finally:
        _CURRENT["nodeid"] = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput[_KEY] = json.dumps({k: dict(v) for k, v in _TALLY.items()})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: merge a finished worker's counts."""
    payload = getattr(node, "workeroutput", {}).get(_KEY)
    if payload:
        for nodeid, counts in json.loads(payload).items():
            _TALLY[nodeid].update(counts)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if getattr(terminalreporter.config, "workeroutput", None) is not None or not _TALLY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("check_layer statuses per test")
    totals: Counter = Counter()
    for nodeid in sorted(_TALLY):
        counts = _TALLY[nodeid]
        totals.update(counts)
        cells = "  ".join(f"{s} {counts.get(s, 0)}" for s in _STATUSES)
        write(f"{nodeid}: checks {sum(counts.values())}  {cells}")
    cells = "  ".join(f"{s} {totals.get(s, 0)}" for s in _STATUSES)
    write(f"TOTAL: checks {sum(totals.values())}  {cells}")
    path = os.environ.get("GRADCHECK_TALLY_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({k: dict(v) for k, v in sorted(_TALLY.items())}, fh, indent=1)

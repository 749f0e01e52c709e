"""The standard battery on every registered layer variant: the suite's own use of the plugin.

Every variant in the catalogue (built-ins, the new whitening variants, the paper's corrected
chain, and any ``gradcheck.layers`` entry point installed here) gets the gradient check in full
and auto mode at each registered shape and two seeds, and a Hypothesis property over drawn
inputs. Registering a variant is all it takes to appear here. Third-party packages run the same
battery with ``pytest --gradcheck-registered`` (see gradcheck/pytest_plugin.py).
"""

from __future__ import annotations

import pytest

from gradcheck.battery import property_test, spec_items
from gradcheck.registry import entry_point_errors, registered_layers
from gradcheck.testing import GradientCheckFailed

SPECS = registered_layers()
ITEMS = [item for spec in SPECS for item in spec_items(spec)]


def test_every_entry_point_loads():
    assert entry_point_errors() == []


def test_catalogue_holds_every_builtin_kind():
    names = {s.name for s in SPECS}
    for expected in (
        "center",
        "standardize",
        "zca-eigh",
        "zca-svd",
        "dbn",
        "softmax-ce",
        "dense",
        "pca-whitening",
        "cholesky-whitening",
        "iternorm-5",
        "group-zca-2",
        "paper-dbn-corrected",
    ):
        assert expected in names


@pytest.mark.parametrize("item", ITEMS, ids=[i.id for i in ITEMS])
def test_gradient_battery(item):
    result = item.run()
    if result.status != "pass":
        raise GradientCheckFailed(result)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_gradient_property(spec):
    property_test(spec)()

"""The standard battery on every registered layer variant: the suite's own use of the plugin.

Every variant in the catalogue (built-ins, the new whitening variants, the paper's corrected
chain, and any ``gradcheck.layers`` entry point installed here) gets the gradient check in full
and auto mode at each registered shape and two seeds, and a Hypothesis property over drawn
inputs. Registering a variant is all it takes to appear here. Third-party packages run the same
battery with ``pytest --gradcheck-registered`` (see gradcheck/pytest_plugin.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import battery
from gradcheck.battery import property_test, spec_items
from gradcheck.registry import LayerSpec, entry_point_errors, registered_layers
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


class _Tanh:
    supports_batch = True

    def __init__(self, wrong: float = 0.0) -> None:
        self.wrong = wrong

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y**2) * (1.0 + self.wrong)


@pytest.mark.parametrize("wrong", [0.0, 0.01])
def test_a_wrong_layers_property_reports_after_shrinking_without_rerunning_to_explain(
    wrong, monkeypatch
):
    # Hypothesis's explain phase re-ran a failing property's check about 200 times (35 s for a
    # 6x4 layer) after shrinking; the property now stops at the shrunk example.
    calls = []
    real = battery.check_adapted
    monkeypatch.setattr(battery, "check_adapted", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = LayerSpec(name="tanh", factory=lambda: _Tanh(wrong), shapes=((6, 4),))
    prop = property_test(spec)
    if wrong:
        with pytest.raises(GradientCheckFailed, match="fail"):
            prop()
        assert len(calls) < 60, len(calls)
    else:
        prop()
        assert len(calls) > 1

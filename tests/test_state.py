"""A check leaves a layer's state as it found it, bitwise, whatever container holds it.

Each stateful layer below updates its running statistics on every forward (as a batch norm in
training does) while its output does not depend on them, so its backward is right and the check
passes; after ``check_layer`` every array, scalar and container the layer holds must be as
before, compared byte by byte (``-0.0`` and NaN payloads included) by a walker written here,
independent of :mod:`gradcheck.state`.
"""

from __future__ import annotations

import collections
import struct
from typing import Any, List

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.state import LayerState, same_bits

MOMENTUM = 0.1
# A NaN with a payload of its own: arithmetic or `arr[...] = np.nan` would replace it by the
# default NaN, whose bits differ.
ODD_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0123))[0]


def odd_stats(d: int) -> np.ndarray:
    """A running statistic holding the values a sloppy restore loses: -0.0 and a NaN payload."""
    v = np.linspace(0.5, 1.5, d)
    v[0] = -0.0
    v[-1] = ODD_NAN
    return v


def bits(obj: Any, depth: int = 0) -> Any:
    """Everything observable about ``obj`` as plain comparable data, floats by their bytes."""
    if depth > 8:
        return ("deep", id(obj))
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, float):
        return ("float", struct.pack("<d", obj))
    if isinstance(obj, (bool, int, str, type(None))):
        return (type(obj).__name__, obj)
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [bits(v, depth + 1) for v in obj])
    if isinstance(obj, dict):
        return ("dict", [(k, bits(v, depth + 1)) for k, v in obj.items()])
    if isinstance(obj, np.random.Generator):
        return ("rng", repr(obj.bit_generator.state))
    if hasattr(obj, "__dict__"):  # attribute order carries no meaning
        return (type(obj).__name__, bits(dict(sorted(vars(obj).items())), depth + 1))
    return ("other", id(obj))


class Tanh:
    """The stateless part: y = tanh(x), dx = dy * (1 - y^2)."""

    def forward(self, x):
        self.y = np.tanh(x)
        self.update(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y**2)

    def update(self, x):
        pass


class DictStats(Tanh):
    """``self.running = {"mean", "var"}``: one entry rebound, the other updated in place."""

    def __init__(self, d=3):
        self.running = {"mean": np.zeros(d), "var": odd_stats(d)}

    def update(self, x):
        r = self.running
        r["mean"] = (1 - MOMENTUM) * r["mean"] + MOMENTUM * x.mean(axis=0)
        r["var"] *= 1 - MOMENTUM
        r["var"] += MOMENTUM * x.var(axis=0)
        r["var"][0] = 0.0  # the -0.0 becomes +0.0: equal as numbers, not as bits
        r["steps"] = r.get("steps", 0) + 1  # a key the forward adds


class ListStats(Tanh):
    """``self.stats = [mean, var]``: slots rebound and updated in place."""

    def __init__(self, d=3):
        self.stats = [np.zeros(d), odd_stats(d)]

    def update(self, x):
        self.stats[0] = (1 - MOMENTUM) * self.stats[0] + MOMENTUM * x.mean(axis=0)
        self.stats[1][np.isnan(self.stats[1])] = np.nan  # the default NaN's bits
        self.stats[1] += MOMENTUM * x.var(axis=0)


class TupleStats(Tanh):
    """``self.stats = (mean, var)``, a new tuple on every forward."""

    def __init__(self, d=3):
        self.stats = (np.zeros(d), odd_stats(d))

    def update(self, x):
        mean, var = self.stats
        self.stats = (
            (1 - MOMENTUM) * mean + MOMENTUM * x.mean(axis=0),
            (1 - MOMENTUM) * var + MOMENTUM * x.var(axis=0),
        )


class Stats:
    """Not a layer: a plain object holding arrays, a counter and a history."""

    def __init__(self, d):
        self.mean = np.zeros(d)
        self.var = odd_stats(d)
        self.count = 0
        self.history: List[float] = []


class NestedStats(Tanh):
    """``self.stats = Stats()``, one level further down a ``self.inner.stats``."""

    def __init__(self, d=3):
        self.stats = Stats(d)
        self.inner = type("Holder", (), {})()
        self.inner.stats = Stats(d)

    def update(self, x):
        for s in (self.stats, self.inner.stats):
            s.mean += MOMENTUM * (x.mean(axis=0) - s.mean)
            s.var = s.var * (1 - MOMENTUM)
            s.count += 1
            s.history.append(float(x.sum()))


class AppendsInputs(Tanh):
    """numpy-ml style: every forward appends its input to a list, and a dict of lists."""

    def __init__(self):
        self.X: List[np.ndarray] = []
        self.derived_variables = {"Z": []}

    def update(self, x):
        self.X.append(x)
        self.derived_variables["Z"].append(x * 2)


class DrawsRandomNumbers(Tanh):
    """Draws from its own generator on every forward (as dropout does), without using them."""

    def __init__(self):
        self.rng = np.random.default_rng(5)

    def update(self, x):
        self.rng.random(x.shape)


class WrongDictStats(DictStats):
    """The stateful layer with a wrong backward: restoring state must not hide it."""

    def backward(self, dy):
        return dy * (1 - self.y**2) * 1.001


STATEFUL = [DictStats, ListStats, TupleStats, NestedStats, AppendsInputs, DrawsRandomNumbers]


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(6, 3))


@pytest.mark.parametrize("make", STATEFUL, ids=lambda c: c.__name__)
def test_check_leaves_state_bitwise_as_found_and_the_verdict_is_right(make, x):
    layer = make()
    layer.forward(x + 1.0)  # the user trained it a little before checking
    before = bits(layer)
    result = check_layer(layer, x, seed=0)
    assert result.status == "pass", result.explain()
    assert bits(layer) == before


def test_restoring_state_does_not_hide_a_wrong_backward(x):
    layer = WrongDictStats()
    before = bits(layer.running)
    result = check_layer(layer, x, seed=0)
    assert result.status == "fail"
    assert bits(layer.running) == before


def test_an_array_updated_in_place_keeps_its_identity(x):
    layer = DictStats()
    var = layer.running["var"]
    check_layer(layer, x, seed=0)
    assert layer.running["var"] is var
    assert same_bits(var, odd_stats(3))


def test_a_rebound_dict_entry_and_attribute_get_the_original_objects_back(x):
    layer = DictStats()
    running, mean = layer.running, layer.running["mean"]
    tuple_layer = TupleStats()
    pair = tuple_layer.stats
    check_layer(layer, x, seed=0)
    check_layer(tuple_layer, x, seed=0)
    assert layer.running is running and layer.running["mean"] is mean
    assert list(layer.running) == ["mean", "var"]  # the key the forward added is gone
    assert tuple_layer.stats is pair


def test_a_list_the_forward_appended_to_gets_its_captured_items_back(x):
    layer = AppendsInputs()
    first = x + 1.0
    layer.forward(first)
    cache = layer.X
    check_layer(layer, x, seed=0)
    assert layer.X is cache and len(cache) == 1 and cache[0] is first
    assert len(layer.derived_variables["Z"]) == 1


# -- LayerState on its own ---------------------------------------------------------------------


class Bag:
    pass


def test_a_read_only_array_that_was_rebound_is_bound_again():
    bag = Bag()
    frozen = odd_stats(4)
    frozen.flags.writeable = False
    bag.frozen = frozen
    state = LayerState.capture(bag)
    bag.frozen = np.zeros(4)
    state.restore()
    assert bag.frozen is frozen


def test_an_array_that_can_no_longer_take_its_bytes_is_replaced_by_a_copy():
    bag = Bag()
    bag.v = odd_stats(4)
    state = LayerState.capture(bag)
    original = bag.v
    original[1] = 7.0
    original.flags.writeable = False  # changed, then frozen: its bytes cannot go back in place
    state.restore()
    assert bag.v is not original and same_bits(bag.v, odd_stats(4))
    assert bag.v.flags.writeable


def test_namedtuples_shared_references_and_cycles():
    Pair = collections.namedtuple("Pair", "mean var")
    bag = Bag()
    shared = odd_stats(3)
    bag.pair = Pair(shared, np.ones(3))
    bag.alias = shared
    bag.me = bag
    bag.nested = {"l": [1, (2.5, shared)], "t": ()}
    before = bits({k: v for k, v in sorted(vars(bag).items()) if k != "me"})
    state = LayerState.capture(bag)
    shared += 1.0
    bag.pair = Pair(np.zeros(3), bag.pair.var)
    bag.nested["l"].append("extra")
    bag.nested["t"] = (1,)
    del bag.alias
    state.restore()
    assert bits({k: v for k, v in sorted(vars(bag).items()) if k != "me"}) == before
    assert bag.me is bag and bag.alias is shared and bag.pair.mean is shared
    assert isinstance(bag.pair, Pair)


def test_a_changed_tuple_is_rebuilt_with_its_type():
    Pair = collections.namedtuple("Pair", "a b")
    bag = Bag()
    bag.p = Pair(np.zeros(2), [1])
    state = LayerState.capture(bag)
    bag.p.b.append(2)  # the list inside the tuple changed in place: the tuple is still the same
    p = bag.p
    state.restore()
    assert bag.p is p and bag.p.b == [1]


def test_harness_managed_attributes_and_modules_are_left_alone():
    bag = Bag()
    bag.params = {"W": np.ones(2)}
    bag.np = np
    state = LayerState.capture(bag)
    bag.params["W"] = np.zeros(2)
    state.restore()
    assert bag.params["W"][0] == 0.0  # the harness restores parameters itself
    assert bag.np is np

"""The registry: N-D shapes, targets, references with arguments, and entry points of every kind.

Entry points are real ``importlib.metadata.EntryPoint`` objects pointing at a throwaway module;
each test runs against an empty registry of its own.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from gradcheck import registry
from gradcheck.registry import (
    BUILTIN_ENTRY_POINT,
    Registry,
    make_input,
    register_layer,
    spec_from_reference,
)
from gradcheck.targets import TargetSpec, draw_target, parse_target

MODULE = textwrap.dedent(
    """
    import numpy as np
    from gradcheck import register_layer

    class Cube:
        def forward(self, x):
            self.x = x
            return x ** 3
        def backward(self, dy):
            return 3 * dy * self.x ** 2

    class NotALayer:
        pass

    def make_cube():
        return Cube()

    def register():
        register_layer("ep-registered", Cube, shapes=[(2, 3, 4, 4)], replace=True)

    def registers_nothing():
        return None

    def broken():
        raise RuntimeError("no weights")

    class Scaled(Cube):
        def __init__(self, c, power=3):
            self.c = c
    """
)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    (tmp_path / "ep_module.py").write_text(MODULE)
    (tmp_path / "ep_side_effect.py").write_text(
        "from ep_module import Cube\nfrom gradcheck import register_layer\n"
        "register_layer('ep-on-import', Cube, replace=True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", Registry())
    yield tmp_path
    for name in ("ep_module", "ep_side_effect"):
        sys.modules.pop(name, None)


def use_entry_points(monkeypatch, *pairs):
    eps = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in pairs]
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)


def errors_by_name():
    return {name.split(" = ")[0]: err for name, err in registry.load_entry_points(force=True)}


def test_entry_points_of_every_kind(fresh, monkeypatch):
    use_entry_points(
        monkeypatch,
        ("builtin", "layers.catalogue:register"),
        ("a-class", "ep_module:Cube"),
        ("a-factory", "ep_module:make_cube"),
        ("a-function", "ep_module:register"),
        ("a-module", "ep_side_effect"),
        ("nothing", "ep_module:registers_nothing"),
        ("not-a-layer", "ep_module:NotALayer"),
        ("broken", "ep_module:broken"),
        ("missing", "ep_module:does_not_exist"),
    )
    errors = errors_by_name()
    names = {s.name for s in registry.registered_layers()}
    # A class and a zero-argument factory are registered under the entry point's name.
    assert {"a-class", "a-factory", "ep-registered", "ep-on-import"} <= names
    assert registry.get_layer_spec("a-class").factory.__name__ == "Cube"
    assert registry.get_layer_spec("ep-registered").shapes == ((2, 3, 4, 4),)
    # One that registers nothing, or names no layer, is reported by name; so are broken ones.
    assert set(errors) == {"nothing", "not-a-layer", "broken", "missing"}
    assert "registered no layer variant" in errors["nothing"]
    assert "has no forward/backward" in errors["not-a-layer"]
    assert errors["broken"] == "RuntimeError: no weights"
    assert "AttributeError" in errors["missing"]
    # Loading again (modules are imported once) is not mistaken for registering nothing.
    assert set(errors_by_name()) == set(errors)


def test_a_missing_builtin_entry_point_is_reported_not_imported(fresh, monkeypatch):
    use_entry_points(monkeypatch)
    errors = registry.load_entry_points(force=True)
    assert [name for name, _ in errors] == [BUILTIN_ENTRY_POINT]
    assert "source tree" in errors[0][1] and "pip install -e ." in errors[0][1]
    assert registry.registered_layers() == []


def test_registry_never_imports_the_layers_package():
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module or "")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            imported |= set(args)
    assert not any(m == "layers" or m.startswith("layers.") for m in imported), imported


def test_nd_shapes_and_targets_in_register_layer(fresh):
    from ep_module import Cube

    register_layer("conv-like", Cube, shapes=[(2, 3, 8, 8), (1, 3, 8, 8)])
    register_layer("mse-like", Cube, shapes=[(8, 1)], target="normal:Nx1")
    assert registry.get_layer_spec("conv-like").shapes == ((2, 3, 8, 8), (1, 3, 8, 8))
    assert registry.get_layer_spec("mse-like").target == TargetSpec("normal", shape=("N", 1))
    for bad in ([], [(0, 3)], [()], ["8x3"], [(8, -1, 2)]):
        with pytest.raises(ValueError, match="shapes must be tuples of positive ints"):
            register_layer("bad", Cube, shapes=bad)
    with pytest.raises(ValueError, match="target: a target is one of"):
        register_layer("bad", Cube, target="gaussian")


def test_draw_makes_the_input_and_a_loss_layers_target(fresh):
    from ep_module import Cube

    class Loss(Cube):
        is_loss = True

    spec = registry.LayerSpec("l", Loss, target=parse_target("normal:Nx1"))
    x, target = spec.draw(Loss(), (8, 1), seed=3)
    assert np.array_equal(x, make_input("matrix", (8, 1), 3))
    assert np.array_equal(target, draw_target(parse_target("normal:Nx1"), (8, 1), 3))
    assert target.shape == (8, 1)
    # Not a loss layer: no target. A reference to a loss layer: logits, unless regression.
    assert spec.draw(Cube(), (8, 1), 3)[1] is None
    ref = registry.LayerSpec("m:L", Loss, source="--layer")
    assert np.array_equal(ref.draw(Loss(), (4, 3), 0)[0], 3 * make_input("matrix", (4, 3), 0))
    assert make_input("matrix", (2, 3, 4, 4), 0).shape == (2, 3, 4, 4)


def test_targets_are_drawn_from_their_own_stream():
    labels = draw_target(parse_target("labels:4"), (6, 4), 0)
    assert labels.shape == (6,) and labels.dtype.kind == "i" and labels.max() < 4
    onehot = draw_target(parse_target("onehot:4"), (6, 4), 0)
    assert onehot.shape == (6, 4) and np.array_equal(onehot.argmax(1), labels)
    assert draw_target(parse_target("normal"), (6, 4), 0).shape == (6, 4)
    assert draw_target(parse_target("normal:N"), (6, 4), 0).shape == (6,)
    assert draw_target(parse_target("normal:3x2"), (6, 4), 0).shape == (3, 2)
    user = np.random.default_rng(0).standard_normal((6, 4))
    assert not np.allclose(draw_target(parse_target("normal"), (6, 4), 0), user)
    for bad in ("labels", "labels:0", "onehot:x", "normal:4y", "poisson:3"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_references_with_constructor_arguments(fresh):
    spec = spec_from_reference("ep_module:Scaled(2.5, power=2)", shapes=[(4, 3, 2)])
    layer = spec.factory()
    assert layer.c == 2.5 and spec.shapes == ((4, 3, 2),) and spec.source == "--layer"
    with pytest.raises(
        ValueError, match=r"cannot be called with no arguments.*Scaled\(c, power=3\)"
    ):
        spec_from_reference("ep_module:Scaled")
    with pytest.raises(ValueError, match=r"do not fit Scaled\(c, power=3\)"):
        spec_from_reference("ep_module:Scaled(1, colour=2)")
    with pytest.raises(ValueError, match="is not a Python literal"):
        spec_from_reference("ep_module:Scaled(np.pi)")
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        spec_from_reference("ep_module")
    with pytest.raises(ValueError, match="has no attribute"):
        spec_from_reference("ep_module:Nope()")

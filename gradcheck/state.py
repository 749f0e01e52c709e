"""Snapshots of a layer's state beyond its parameters, so that a check leaves the layer as given.

A gradient check calls forward dozens of times. A layer that keeps running statistics (a
decorrelated batch norm's running mean and whitening matrix, a step counter, a numpy-ml style
list that every forward appends its input to) would otherwise come out of the check with its
statistics pulled toward the checked batch.

What is captured: the layer's attributes and, recursively (to a depth of ``_MAX_DEPTH``), what
they hold: arrays, scalars and strings, lists, tuples and dicts, sub-layers and other objects
with a ``__dict__`` (``self.stats = Stats()``), and the state of NumPy random generators.
Modules, classes, functions and objects without a ``__dict__`` are not looked into; only which
object an attribute names is restored. Attributes named ``params``, ``grads`` and ``cache`` are
the harness's business (it restores parameters itself) and are left alone.

Restoring is bitwise (arrays compared by their bytes, so ``-0.0`` and NaN payloads count) and
keeps identities, so that whoever else holds a reference (an optimizer, the caller) sees the
same object: an array that is still the same object, same shape and dtype, and writeable gets
its bytes back in place; an attribute, list slot or dict entry that the check rebound is bound
to the original object again (its bytes restored first), or to a copy of the captured array
when the original can no longer take them (read-only now, or resized); a list or dict that
grew, shrank or was reordered gets its captured items back, in place. Attributes the check
added are left: a forward creates its cache anew on every call anyway.
"""

from __future__ import annotations

import copy
import types
from typing import Any, Dict, List, Tuple

import numpy as np

# Attributes the harness manages itself or that a forward recomputes anyway.
# ``_gradcheck_record``: what the harness's own adapters (gradcheck.functions) record during a
# check (the layer's exceptions), which must outlive the restore.
_SKIPPED = frozenset({"params", "grads", "cache", "_gradcheck_record"})
_SCALARS = (bool, int, float, complex, str, bytes, type(None))
_MAX_DEPTH = 6
# Objects looked into per capture: a layer that holds a reference to something vast (a logger,
# a dataset object) must not make every check walk all of it.
_MAX_NODES = 10_000
_NOT_WALKED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays have the same shape, dtype and bytes (``-0.0 != 0.0``; two NaNs
    match only with the same payload)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


class _Snap:
    """What one value looked like; :meth:`restore` puts it back as far as it can in place and
    returns the object that should be bound where the value was."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def restore(self) -> Any:
        return self.obj


class _Array(_Snap):
    def __init__(self, obj: np.ndarray) -> None:
        super().__init__(obj)
        self.saved = obj.copy()

    def restore(self) -> Any:
        current = self.obj
        if current.shape == self.saved.shape and current.dtype == self.saved.dtype:
            if same_bits(current, self.saved):
                return current
            if current.flags.writeable:
                # Same dtype, so copyto moves the bits unchanged (NaN payloads included).
                np.copyto(current, self.saved, casting="no")
                return current
        return self.saved.copy()


class _List(_Snap):
    def __init__(self, obj: List[Any], items: List[_Snap]) -> None:
        super().__init__(obj)
        self.items = items

    def restore(self) -> Any:
        values = [s.restore() for s in self.items]
        current = self.obj
        if len(current) != len(values) or any(a is not b for a, b in zip(current, values)):
            current[:] = values
        return current


class _Dict(_Snap):
    def __init__(self, obj: Dict[Any, Any], items: List[Tuple[Any, _Snap]]) -> None:
        super().__init__(obj)
        self.items = items

    def restore(self) -> Any:
        values = [(k, s.restore()) for k, s in self.items]
        current = self.obj
        now = list(current.items())
        if len(now) != len(values) or any(
            k1 is not k2 or v1 is not v2 for (k1, v1), (k2, v2) in zip(now, values)
        ):
            current.clear()
            current.update(values)
        return current


class _Tuple(_Snap):
    def __init__(self, obj: Tuple[Any, ...], items: List[_Snap]) -> None:
        super().__init__(obj)
        self.items = items

    def restore(self) -> Any:
        values = [s.restore() for s in self.items]
        if all(a is b for a, b in zip(self.obj, values)):
            return self.obj
        # A tuple cannot change in place: a new one of the same type with the restored items.
        kind = type(self.obj)
        make = getattr(kind, "_make", kind)  # a namedtuple is built from its fields
        try:
            return make(values)
        except TypeError:
            return tuple(values)


class _Object(_Snap):
    def __init__(self, obj: Any, attributes: Dict[str, _Snap]) -> None:
        super().__init__(obj)
        self.attributes = attributes

    def restore(self) -> Any:
        now = vars(self.obj)
        for name, snap in self.attributes.items():
            value = snap.restore()
            if name not in now or now[name] is not value:
                try:
                    setattr(self.obj, name, value)
                except (AttributeError, TypeError):  # read-only: nothing a forward could change
                    pass
        return self.obj


class _Generator(_Snap):
    """A ``np.random.Generator``: a dropout layer's draws move its stream along."""

    def __init__(self, obj: np.random.Generator) -> None:
        super().__init__(obj)
        self.saved = copy.deepcopy(obj.bit_generator.state)

    def restore(self) -> Any:
        self.obj.bit_generator.state = copy.deepcopy(self.saved)
        return self.obj


class _RandomState(_Snap):
    def __init__(self, obj: np.random.RandomState) -> None:
        super().__init__(obj)
        self.saved = obj.get_state()

    def restore(self) -> Any:
        self.obj.set_state(self.saved)
        return self.obj


class _Walk:
    """One capture: the objects already seen (a shared or cyclic reference is restored through
    its first occurrence) and how many were looked into."""

    def __init__(self) -> None:
        self.seen: Dict[int, Any] = {}
        self.nodes = 0

    def attributes(self, obj: Any, depth: int) -> Dict[str, _Snap]:
        return {
            name: self.snap(value, depth + 1)
            for name, value in list(vars(obj).items())
            if name not in _SKIPPED
        }

    def snap(self, value: Any, depth: int) -> _Snap:
        if isinstance(value, _SCALARS) or depth > _MAX_DEPTH or self.nodes >= _MAX_NODES:
            return _Snap(value)
        if id(value) in self.seen:
            return _Snap(value)
        self.seen[id(value)] = value
        self.nodes += 1
        if isinstance(value, np.ndarray):
            return _Array(value)
        if isinstance(value, np.random.Generator):
            return _Generator(value)
        if isinstance(value, np.random.RandomState):
            return _RandomState(value)
        if isinstance(value, list):
            return _List(value, [self.snap(v, depth + 1) for v in list(value)])
        if isinstance(value, tuple):
            return _Tuple(value, [self.snap(v, depth + 1) for v in value])
        if isinstance(value, dict):
            return _Dict(value, [(k, self.snap(v, depth + 1)) for k, v in list(value.items())])
        if not isinstance(value, _NOT_WALKED) and isinstance(
            getattr(value, "__dict__", None), dict
        ):
            return _Object(value, self.attributes(value, depth))
        return _Snap(value)


class LayerState:
    """The state held in a layer's attributes (and everything they hold), copied."""

    def __init__(self, root: _Snap) -> None:
        self.root = root

    @classmethod
    def capture(cls, layer: Any) -> LayerState:
        return cls(_Walk().snap(layer, 0))

    def restore(self) -> None:
        """Put every captured value back, bitwise, in place where the object is still there."""
        self.root.restore()

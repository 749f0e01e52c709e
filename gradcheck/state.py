"""Snapshots of a layer's state beyond its parameters, so that a check leaves the layer as given.

A gradient check calls forward dozens of times. A layer that keeps running statistics (a
decorrelated batch norm's running mean and whitening matrix, a step counter) would otherwise
come out of the check with its statistics pulled toward the checked batch.
"""

from __future__ import annotations

from typing import Any, List, Set, Tuple

import numpy as np

# Attributes the harness manages itself or that a forward recomputes anyway.
_SKIPPED = frozenset({"params", "grads", "cache"})
_SCALARS = (bool, int, float, complex, str, type(None))
_MAX_DEPTH = 6


def _is_layer(obj: Any) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


class LayerState:
    """The arrays and scalars held in a layer's attributes (and its sub-layers'), copied."""

    def __init__(self, entries: List[Tuple[Any, str, Any]]) -> None:
        self.entries = entries

    @classmethod
    def capture(cls, layer: Any) -> LayerState:
        entries: List[Tuple[Any, str, Any]] = []
        cls._walk(layer, entries, set(), 0)
        return cls(entries)

    @classmethod
    def _walk(
        cls, obj: Any, entries: List[Tuple[Any, str, Any]], seen: Set[int], depth: int
    ) -> None:
        if id(obj) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(obj))
        try:
            attributes = vars(obj)
        except TypeError:
            return
        for name, value in list(attributes.items()):
            if name in _SKIPPED:
                continue
            if isinstance(value, np.ndarray):
                entries.append((obj, name, value.copy()))
            elif isinstance(value, _SCALARS):
                entries.append((obj, name, value))
            elif _is_layer(value):
                cls._walk(value, entries, seen, depth + 1)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if _is_layer(item):
                        cls._walk(item, entries, seen, depth + 1)

    def restore(self) -> None:
        """Put every captured value back (arrays in place when their shape still matches)."""
        for owner, name, saved in self.entries:
            current = getattr(owner, name, None)
            if (
                isinstance(saved, np.ndarray)
                and isinstance(current, np.ndarray)
                and current.shape == saved.shape
                and current.dtype == saved.dtype
                and current.flags.writeable
            ):
                current[...] = saved
            else:
                try:
                    setattr(owner, name, saved.copy() if isinstance(saved, np.ndarray) else saved)
                except AttributeError:  # a read-only property: nothing a forward could change
                    pass

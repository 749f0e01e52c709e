"""Where a layer raised: the file and line of the layer's own frame, and the traceback's tail.

A user's layer usually fails inside NumPy (``np.dot`` of misaligned arrays, ``inv`` of a
singular matrix); the useful line is the last one in the user's code, not NumPy's or the
harness's. :func:`layer_frame` finds it: the innermost frame outside the harness, NumPy, SciPy
and the standard library (falling back to the innermost frame outside the harness).

:class:`LocatedFinding` is a :class:`~gradcheck.result.Finding` that also carries ``location``
(``"mylayers.py:12 in forward"``) and ``traceback`` (the last frames, innermost last) and writes
both into its JSON. Renderers that know only ``Finding`` see the location in the message.
"""

from __future__ import annotations

import importlib.util
import os
import sysconfig
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .result import Finding

# Frames kept in a finding's JSON, innermost last.
TRACEBACK_FRAMES = 6

_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _package_dir(name: str) -> Optional[str]:
    spec = importlib.util.find_spec(name)
    origin = getattr(spec, "origin", None)
    return os.path.dirname(os.path.abspath(origin)) + os.sep if origin else None


# NumPy's and SciPy's own frames, and the standard library's (but not the packages installed
# below it: a user's layer may live in site-packages).
_LIBRARY_DIRS = tuple(d for d in (_package_dir("numpy"), _package_dir("scipy")) if d)
_STDLIB_DIRS = tuple(
    {os.path.abspath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)


def _in_harness(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_HARNESS_DIR)


def _in_library(filename: str) -> bool:
    path = os.path.abspath(filename)
    if path.startswith(_LIBRARY_DIRS):
        return True
    installed = f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path
    return path.startswith(_STDLIB_DIRS) and not installed


def _display_path(filename: str) -> str:
    """A path relative to the working directory when it lies below it, else as it is."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if rel.startswith("..") else rel


def _frames(exc: BaseException) -> List[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


def layer_frame(exc: BaseException) -> Optional[traceback.FrameSummary]:
    """The innermost frame of ``exc``'s traceback in the layer's own code, or ``None``."""
    frames = [f for f in _frames(exc) if not _in_harness(f.filename)]
    own = [f for f in frames if not _in_library(f.filename)]
    chosen = own or frames
    return chosen[-1] if chosen else None


def location(exc: BaseException) -> Optional[str]:
    """``"mylayers.py:12 in forward"`` for the layer's frame of ``exc``, or ``None``."""
    frame = layer_frame(exc)
    if frame is None:
        return None
    return f"{_display_path(frame.filename)}:{frame.lineno} in {frame.name}"


def last_frames(exc: BaseException, n: int = TRACEBACK_FRAMES) -> Tuple[str, ...]:
    """The last ``n`` frames of ``exc``'s traceback, innermost last, one line each:
    ``"file.py:12 in forward: return x @ self.w"``."""
    out = []
    for f in _frames(exc)[-n:]:
        code = f": {f.line.strip()}" if f.line else ""
        out.append(f"{_display_path(f.filename)}:{f.lineno} in {f.name}{code}")
    return tuple(out)


def describe(exc: BaseException) -> str:
    """``"ValueError: message (at mylayers.py:12 in forward)"``."""
    where = location(exc)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} (at {where})" if where else text


@dataclass(frozen=True)
class LocatedFinding(Finding):
    """A finding about an exception the layer raised, with where it was raised."""

    location: Optional[str] = None
    traceback: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:  # type: ignore[override]
        d: Dict[str, Any] = dict(super().to_dict())
        d["location"] = self.location
        d["traceback"] = list(self.traceback)
        return d


def located(code: str, severity: str, message: str, exc: BaseException) -> LocatedFinding:
    """A finding for ``exc`` whose message ends with the layer's location."""
    where = location(exc)
    if where and where not in message:
        message = f"{message} (at {where})"
    return LocatedFinding(code, severity, message, where, last_frames(exc))

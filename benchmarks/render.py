"""Markdown for ``docs/performance.md``: machine facts, times, ratios, accuracy, targets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .timing import Timing

Cell = Tuple[str, str]  # (method key, size label)


@dataclass(frozen=True)
class Row:
    """A row of the times table: a method and what it is."""

    key: str
    label: str


@dataclass(frozen=True)
class Ratio:
    """``numerator time / denominator time`` per size; ``targets`` maps a size to its minimum."""

    label: str
    numerator: str
    denominator: str
    targets: Dict[str, float]


def fmt_time(seconds: float) -> str:
    """Three significant digits in a readable unit: ``0.913 ms``, ``115 ms``, ``1.84 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def time_cell(timing: Optional[Timing]) -> str:
    if timing is None:
        return "-"
    if timing.capped is not None:
        extra = f" ({timing.note})" if timing.note else ""
        return f"> {timing.capped:.0f} s{extra}"
    if not timing.samples:
        return timing.note or "-"
    text = f"{fmt_time(timing.median)} (min {fmt_time(timing.minimum)}, n {len(timing.samples)})"
    status = getattr(timing.outcome, "status", None)
    if status not in (None, "pass"):
        text += f" **{status}**"
    detail = getattr(timing.outcome, "detail", None)
    if detail:
        text += f" [{detail}]"
    return text


def ratio_value(times: Dict[Cell, Timing], ratio: Ratio, size: str) -> Tuple[Optional[float], bool]:
    """(ratio of medians, whether it is only a lower bound because the numerator was capped)."""
    num, den = times.get((ratio.numerator, size)), times.get((ratio.denominator, size))
    if den is None or not den.ok or num is None:
        return None, False
    if num.capped is not None:
        return num.capped / den.median, True
    if not num.ok:
        return None, False
    return num.median / den.median, False


def ratio_cell(times: Dict[Cell, Timing], ratio: Ratio, size: str) -> str:
    value, bound = ratio_value(times, ratio, size)
    if value is None:
        return "-"
    text = ("> " if bound else "") + fmt_ratio(value)
    target = ratio.targets.get(size)
    if target is not None:
        text += f" ({'met' if value >= target else 'NOT met'}: >= {target:g}x)"
    return text


def fmt_error(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1e}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines

"""The targets of issue 16, each with the figure this run measured, met or not, and a cause.

Every figure and every cause is computed from what the run measured (times, the checks' own
counts of evaluations, the layers' call counts, memory, the commands' output); nothing here is
a constant about the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .memory import CASES as MEMORY_CASES
from .ours import Counts
from .render import Cell, fmt_ratio, fmt_time
from .timing import Timing
from .tools import CommandTiming, own_seconds, slowest_tests

MiB = 2**20


@dataclass
class TanhRun:
    """The tanh section: timings by key, the forward's own time, call counts, the budget."""

    label: str
    size: int
    times: Dict[str, Timing]
    forward_seconds: float  # median time of one forward of the layer at X
    counts: Dict[str, Counts]  # "right" / "scale" / "sparse" -> calls of one default check
    budget: int  # the default budget for this input size


@dataclass
class DetectionRun:
    """The detection section: per seed (caught, named the planted entry, twin passed, seconds)."""

    label: str
    seeds: int
    caught: int
    named: int
    twin_passed: int
    resolves: List[float]  # the right twin's resolves_entry per seed
    wrong_seconds: List[float]
    right_seconds: List[float]
    torch: List[Tuple[str, float]]  # torch slow gradcheck on the first seeds: (status, seconds)
    missed: List[str] = field(default_factory=list)  # one line per missed seed


@dataclass
class Measured:
    """Everything the targets are read from."""

    sizes: Sequence[str]
    entries: Dict[str, int]  # size label -> N*D
    times: Dict[Cell, Timing]
    counts: Dict[Cell, Counts]  # (config, size) -> calls of one check
    tanh: Optional[TanhRun]
    detection: Optional[DetectionRun]
    memory: List[dict]
    tools: Dict[str, CommandTiming]
    workers_option: bool
    # (D, seconds on one thread, seconds on two) of a stacked eigh: what threads give here.
    thread_scaling: List[Tuple[int, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    met: Optional[bool]  # None: not measured
    cause: str = ""


def _ok(t: Optional[Timing]) -> bool:
    return t is not None and t.ok


def _ratio(m: Measured, num: str, den: str, size: str) -> Optional[float]:
    a, b = m.times.get((num, size)), m.times.get((den, size))
    if b is None or not b.ok or a is None:
        return None
    if a.capped is not None:
        return a.capped / b.median
    return a.median / b.median if a.ok else None


# torch run with its own thread count, beside the one-thread row of the same check.
DEFAULT_THREADS = {"torch-slow": "torch-slow-dt", "torch-fast": "torch-fast-dt"}


def _peer_ratio(m: Measured, num: str, den: str, size: str) -> Tuple[Optional[float], str]:
    """The ratio against the faster torch setting measured at ``size``, and which it was."""
    value = _ratio(m, num, den, size)
    alt = DEFAULT_THREADS.get(num)
    other = _ratio(m, alt, den, size) if alt else None
    if other is not None and (value is None or other < value):
        return other, " (torch's own threads)"
    return value, ""


def _evals(m: Measured, key: str, size: str) -> str:
    t = m.times.get((key, size))
    o = t.outcome if t is not None else None
    if o is None or o.evaluations is None:
        return "?"
    detail = f" ({o.detail})" if o.detail else ""
    return f"{o.evaluations:,} forward evaluations{detail}"


def _speed_cause(m: Measured, ours: str, peer: str, size: str, peer_work: str) -> str:
    t, p = m.times.get((ours, size)), m.times.get((peer, size))
    if not _ok(t) or not _ok(p):
        return "a cell was not measured"
    o = t.outcome  # type: ignore[union-attr]
    per = ""
    if o is not None and o.evaluations:
        per = f", {fmt_time(t.median / o.evaluations)} per evaluation"  # type: ignore[union-attr]
    return (
        f"ours {fmt_time(t.median)}: {_evals(m, ours, size)}{per}; "  # type: ignore[union-attr]
        f"torch {fmt_time(p.median)}: {peer_work}"  # type: ignore[union-attr]
    )


def _ratio_target(
    m: Measured, what: str, num: str, den: str, sizes: Sequence[str], minimum: float, work: str
) -> Target:
    """``num / den >= minimum`` at every one of ``sizes``."""
    parts, met, worst_size, worst, worst_peer = [], True, None, None, num
    for size in sizes:
        if size not in m.sizes:
            parts.append(f"{size}: not run")
            met = False
            continue
        value, which = _peer_ratio(m, num, den, size)
        if value is None:
            parts.append(f"{size}: not measured")
            met = False
            continue
        bound = "> " if not which and m.times[num, size].capped is not None else ""
        parts.append(f"{size}: {bound}{fmt_ratio(value)}{which}")
        if value < minimum:
            met = False
            if worst is None or value < worst:
                worst, worst_size = value, size
                worst_peer = DEFAULT_THREADS[num] if which else num
    cause = ""
    if not met and worst_size is not None:
        entries = m.entries[worst_size]
        cause = f"at {worst_size}: " + _speed_cause(
            m, den, worst_peer, worst_size, work.format(n=entries, n2=2 * entries)
        )
    return Target(what, "; ".join(parts), met, cause)


def speed_targets(m: Measured) -> List[Target]:
    slow_work = "2 forwards per entry ({n2:,}) and one backward per output entry ({n:,})"
    fast_work = "one directional derivative (2 forwards) and one backward"
    rows = [
        _ratio_target(
            m,
            "full mode / torch default (slow) gradcheck >= 10x at 64x16",
            "torch-slow",
            "ours-full-central",
            ["64x16"],
            10.0,
            slow_work,
        ),
        _ratio_target(
            m,
            "full mode / torch slow >= 10x at 128x32",
            "torch-slow",
            "ours-full-central",
            ["128x32"],
            10.0,
            slow_work,
        ),
        _ratio_target(
            m,
            "full mode / torch slow >= 4x at 256x64",
            "torch-slow",
            "ours-full-central",
            ["256x64"],
            4.0,
            slow_work,
        ),
    ]
    up_to = [s for s in m.sizes if m.entries[s] <= 256 * 64]
    rows += [
        _ratio_target(
            m,
            "directional mode (its default, adaptive directions) / torch `fast_mode` >= 1.5x "
            "at every size up to 256x64",
            "torch-fast",
            "ours-directional",
            up_to,
            1.5,
            fast_work,
        ),
        _ratio_target(
            m,
            "directional mode with `directions=3` / torch `fast_mode` >= 1.5x at every size "
            "up to 256x64",
            "torch-fast",
            "ours-dir3",
            up_to,
            1.5,
            fast_work,
        ),
        _ratio_target(
            m,
            "the default check / torch default (slow) gradcheck >= 10x at 64x16 and 128x32",
            "torch-slow",
            "ours-auto",
            ["64x16", "128x32"],
            10.0,
            slow_work,
        ),
    ]
    return rows


def detection_target(m: Measured) -> Target:
    d = m.detection
    what = "the default check catches a single entry wrong by a relative 1e-6 at 64x32"
    if d is None:
        return Target(what, "not measured in this run", None)
    measured = (
        f"caught on {d.caught}/{d.seeds} seeds (worst entry named = the planted one on "
        f"{d.named}/{d.seeds}); the right twin passed on {d.twin_passed}/{d.seeds}"
    )
    met = d.caught == d.seeds and d.twin_passed == d.seeds
    cause = "" if met else "; ".join(d.missed) or "a right twin did not pass"
    return Target(what + f" ({d.label})", measured, met, cause)


def tanh_targets(m: Measured) -> List[Target]:
    t = m.tanh
    if t is None:
        return [Target("tanh at 5000x200", "not measured in this run", None)]
    rows = []
    right = t.times.get("ours-auto")
    what = f"tanh {t.label}: the default check under 2 s when correct"
    if not _ok(right):
        rows.append(Target(what, "not measured", None))
    else:
        o = right.outcome  # type: ignore[union-attr]
        median = right.median  # type: ignore[union-attr]
        c = t.counts.get("right")
        forward_share = c.points * t.forward_seconds if c else None
        cause = ""
        if median >= 2.0 or o.status != "pass":
            cause = f"{o.evaluations:,} evaluations ({o.detail or 'one screen'})"
            if forward_share is not None and c is not None:
                cause += (
                    f"; the layer's forward ({c.forward} calls, {c.points} points at "
                    f"{fmt_time(t.forward_seconds)} each) is {fmt_time(forward_share)} of it, "
                    f"the harness's own array work the other {fmt_time(median - forward_share)}"
                )
        rows.append(
            Target(
                what, f"{fmt_time(median)}, {o.status}", median < 2.0 and o.status == "pass", cause
            )
        )
    for kind, text in (("scale", "every entry 1% wrong"), ("sparse", "1% of entries 1% wrong")):
        cell = t.times.get(f"ours-auto-{kind}")
        what = f"tanh {t.label}, {text}: `fail` naming its worst entries within the default budget"
        if not _ok(cell):
            rows.append(Target(what, "not measured", None))
            continue
        o = cell.outcome  # type: ignore[union-attr]
        named = o.named or 0
        extra = t.budget
        measured = (
            f"{o.status}, {named} entries named (worst {o.worst}), {o.evaluations:,} evaluations "
            f"(budget {extra:,} beyond the first batch), {fmt_time(cell.median)}"  # type: ignore[union-attr]
        )
        met = o.status == "fail" and named > 0
        cause = ""
        if not met:
            cause = f"verdict {o.status}, {named} entries named ({o.detail})"
            if o.localization:
                cause += f"; the check's finding: {o.localization}"
        rows.append(Target(what, measured, met, cause))
    return rows


def tool_targets(m: Measured) -> List[Target]:
    rows = []
    imports = m.tools.get("imports")
    import_time = imports.median if imports is not None else None
    for key, what, limit in (
        ("suite", "the whole test suite (README's `pytest`) under 2 minutes on 2 cores", 120.0),
        ("report", "`gradcheck report` on the built-ins under 2 s", 2.0),
        ("paper", "`gradcheck paper` under 10 s", 10.0),
    ):
        timing = m.tools.get(key)
        if timing is None or timing.median is None:
            note = timing.note if timing is not None and timing.note else "not run"
            rows.append(Target(what, note, None))
            continue
        seconds = timing.median
        codes = sorted(set(timing.returncodes))
        measured = (
            f"{fmt_time(seconds)} (exit {', '.join(str(c) for c in codes)}): {timing.last_line}"
        )
        met = seconds < limit
        cause = ""
        if not met:
            if key == "suite":
                slow = slowest_tests(timing.output)
                cause = (
                    "README's `pytest` runs the tests on every core (`-n auto`), each a real "
                    "check or CLI run; slowest: "
                    + ", ".join(f"{test} {sec:.1f} s" for sec, test in slow)
                )
            else:
                own = own_seconds(timing.last_line)
                cause = (
                    f"its own work {own:.1f} s by its last line"
                    if own is not None
                    else "see output"
                )
                if import_time is not None:
                    cause += f"; interpreter start and imports {fmt_time(import_time)}"
        rows.append(Target(what, measured, met, cause))
    return rows


def memory_targets(m: Measured) -> List[Target]:
    rows = []
    for r in m.memory:
        label = MEMORY_CASES[r["case"]][0] if r.get("case") in MEMORY_CASES else r.get("case")
        what = f"memory, {label}: peak under 4x the stacked chunk bound plus the layer's own use"
        if "error" in r:
            rows.append(Target(what, r["error"], None))
            continue
        own = max(r["layer_single"], r["layer_stack"])
        limit = 4 * r["chunk_bytes"] + own
        peak = r["traced_peak"]
        measured = (
            f"traced peak {peak / MiB:.1f} MiB (RSS growth {r['rss_growth'] / MiB:.1f} MiB) vs "
            f"4 x {r['chunk_bytes'] / MiB:.2f} + {own / MiB:.2f} = {limit / MiB:.1f} MiB"
        )
        met = peak <= limit and r["rss_growth"] <= limit
        cause = ""
        if not met:
            held = r.get("held_after_contracts")
            if held is not None:
                copies = held / (8 * r["size"])
                dirs = r["largest_batch"] * r["size"] * 8
                rest = peak - held - dirs
                cause = (
                    f"the check holds {held / MiB:.1f} MiB ({copies:.0f} input-sized arrays) "
                    f"from its contract checks on through the estimates; a batch of "
                    f"{r['largest_batch']} directions is {dirs / MiB:.1f} MiB; the other "
                    f"{rest / MiB:.1f} MiB of the peak arise inside the estimates"
                )
        rows.append(Target(what, measured, met, cause))
    return rows


def workers_target(m: Measured) -> Target:
    what = (
        "every core: a `workers` option, identical verdicts and numbers for 1 and all workers, "
        "targets with all cores"
    )
    parts = []
    for label, key in (("gradcheck report", "report"), ("gradcheck paper", "paper")):
        every, one = m.tools.get(key), m.tools.get(key + "-one")
        if every is not None and one is not None and every.median and one.median:
            parts.append(
                f"`{label}` {fmt_time(every.median)} with every core against "
                f"{fmt_time(one.median)} with `--workers 1` ({one.median / every.median:.2f}x)"
            )
    measured = "; ".join(parts) or "the commands were not timed"
    measured += (
        ". `report`, `paper` and `mutants` take `--workers` (default: the cores available), and "
        "their reports are identical for 1 and 2 workers but for timings (tests)"
    )
    if m.workers_option:
        return Target(what, measured + "; `check_layer` has `workers=`", None)
    scaling = ", ".join(
        f"{one / two:.2f}x at D = {d}" for d, one, two in m.thread_scaling if two > 0
    )
    return Target(
        what,
        measured + "; within one check every figure here is one process",
        False,
        "`check_layer` has no `workers` option. Two Python threads on a stacked eigh gave "
        + (scaling or "(not measured)")
        + " in this run (as far as NumPy's LAPACK calls release the GIL), but threads would race "
        "on a layer's own state: a forward that stores `self.x` and reads it back, or a "
        "parameter the estimate perturbs in place, would mix two points' values with no error. "
        "One check across processes needs the layer forked into each, which is not built",
    )


def all_targets(m: Measured) -> List[Target]:
    return [
        *speed_targets(m),
        detection_target(m),
        *tanh_targets(m),
        *tool_targets(m),
        *memory_targets(m),
        workers_target(m),
    ]


def verdict_text(met: Optional[bool]) -> str:
    return {True: "met", False: "**NOT met**", None: "not measured"}[met]


def table_rows(targets: Sequence[Target]) -> List[List[str]]:
    return [
        [t.what, t.measured.replace("|", "/"), verdict_text(t.met), t.cause.replace("|", "/")]
        for t in targets
    ]

"""The mutation self-test: the battery must fail on every deliberately wrong backward.

``run_mutation_test`` runs the standard battery (:mod:`gradcheck.battery`) on each mutant of
``layers.mutants`` and on every correct registered variant. A mutant is *caught* when at least
one of its checks fails or errors (an inconclusive check does not count); a *false alarm* is a
correct variant's check that does not pass. The goal is a score of 100% with no false alarms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .battery import BATTERY_SEEDS, BatteryItem, battery_items, spec_items
from .registry import registered_layers
from .result import CheckResult


@dataclass
class MutantOutcome:
    """What the battery said about one mutant."""

    name: str
    base: str
    mistake: str
    results: List[CheckResult]

    @property
    def caught(self) -> bool:
        return any(r.status in ("fail", "error") for r in self.results)

    @property
    def caught_by(self) -> str:
        """The first evidence: a named finding, or the gradient comparison that failed."""
        for r in self.results:
            for f in r.findings:
                if f.severity in ("fail", "error"):
                    return f"{f.code} ({r.shape[0]}x{r.shape[1]}, seed {r.seed})"
        for r in self.results:
            if r.status == "fail" and r.worst is not None:
                w = r.worst
                return (
                    f"{w.kind} {w.name!r} {w.mode} rel error {w.comparison.rel_error:.1e} "
                    f"({r.shape[0]}x{r.shape[1]}, seed {r.seed})"
                )
        statuses = sorted({r.status for r in self.results})
        return "not caught: every check " + "/".join(statuses)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "mutant": self.name,
            "base": self.base,
            "mistake": self.mistake,
            "caught": self.caught,
            "caught_by": self.caught_by,
            "checks": len(self.results),
            "failed_checks": sum(r.status in ("fail", "error") for r in self.results),
        }


@dataclass
class MutationReport:
    """The score, the false alarms, and every mutant's outcome."""

    outcomes: List[MutantOutcome]
    correct_results: List[CheckResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(o.caught for o in self.outcomes) / max(1, len(self.outcomes))

    @property
    def false_alarms(self) -> List[CheckResult]:
        return [r for r in self.correct_results if r.status in ("fail", "error")]

    @property
    def inconclusive(self) -> List[CheckResult]:
        return [r for r in self.correct_results if r.status == "inconclusive"]

    @property
    def ok(self) -> bool:
        return self.score == 1.0 and not self.false_alarms

    def summary_line(self) -> str:
        caught = sum(o.caught for o in self.outcomes)
        return (
            f"mutation score {100 * self.score:.0f}% ({caught}/{len(self.outcomes)} mutants "
            f"caught); false alarms {len(self.false_alarms)} in {len(self.correct_results)} "
            f"checks of correct layers ({len(self.inconclusive)} inconclusive)"
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "score": self.score,
            "mutants": [o.to_dict() for o in self.outcomes],
            "correct_checks": len(self.correct_results),
            "false_alarms": [r.to_dict() for r in self.false_alarms],
            "inconclusive": [r.summary() for r in self.inconclusive],
            "ok": self.ok,
        }


def mutant_items(seeds: Sequence[int] = BATTERY_SEEDS) -> Dict[str, List[BatteryItem]]:
    from layers.mutants import mutant_catalogue

    return {
        m.name: battery_items(m.name, m.factory, input=m.input, shapes=m.shapes, seeds=seeds)
        for m in mutant_catalogue()
    }


def run_mutation_test(
    seeds: Sequence[int] = BATTERY_SEEDS,
    *,
    include_correct: bool = True,
    only: Optional[str] = None,
) -> MutationReport:
    """Run the battery on every mutant (and, unless told not to, on every correct variant)."""
    from layers.mutants import mutant_catalogue

    outcomes = []
    for m in mutant_catalogue():
        if only is not None and only not in m.name:
            continue
        items = battery_items(m.name, m.factory, input=m.input, shapes=m.shapes, seeds=seeds)
        outcomes.append(MutantOutcome(m.name, m.base, m.mistake, [item.run() for item in items]))
    correct: List[CheckResult] = []
    if include_correct:
        for spec in registered_layers():
            correct.extend(item.run() for item in spec_items(spec, seeds=seeds))
    return MutationReport(outcomes, correct)


def render_mutation_text(report: MutationReport) -> str:
    rows = [("mutant", "base", "mistake", "caught by")]
    for o in report.outcomes:
        rows.append(
            (o.name, o.base, o.mistake, o.caught_by if o.caught else "NOT CAUGHT: " + o.caught_by)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 9)
    for r in report.false_alarms:
        lines.append("false alarm: " + r.summary())
    lines += ["", report.summary_line()]
    return "\n".join(lines) + "\n"


def render_mutation_markdown(report: MutationReport) -> str:
    lines = [
        f"**{report.summary_line()}**",
        "",
        "| mutant | base | mistake | caught by |",
        "|---|---|---|---|",
    ]
    for o in report.outcomes:
        verdict = o.caught_by if o.caught else f"**NOT CAUGHT** ({o.caught_by})"
        lines.append(f"| `{o.name}` | `{o.base}` | {o.mistake} | {verdict} |")
    for r in report.false_alarms:
        lines.append(f"\n- false alarm: {r.summary()}")
    return "\n".join(lines) + "\n"

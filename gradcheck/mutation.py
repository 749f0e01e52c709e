"""The mutation self-test: the battery must fail on every deliberately wrong backward.

``run_mutation_test`` runs the standard battery (:mod:`gradcheck.battery`) on each mutant it is
given (the CLI passes ``layers.mutants``) and on every correct registered variant. A mutant is
*caught* when at least one of its checks fails or errors (an inconclusive check does not count);
a *false alarm* is a correct variant's check that does not pass. The goal is a score of 100%
with no false alarms.

Mistake signatures (:mod:`gradcheck.diagnosis`): a mutant may declare the signature its mistake
has (``Mutant.signature``, a label such as ``"scale 1/N"``). It is *named* when every check whose
gradient comparison failed reports that label for at least one failing argument. A correct
layer must never get a signature (it never fails, so the diagnosis never runs; counted anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .battery import BATTERY_SEEDS, battery_items, spec_items
from .isolation import map_concurrently
from .registry import registered_layers
from .result import CheckResult


def _failed_comparisons(r: CheckResult) -> bool:
    return any(a.status == "fail" and a.mode == "full" for a in r.arguments)


def signature_labels(r: CheckResult) -> List[str]:
    """The diagnosis labels of a check's arguments, in argument order."""
    return [a.diagnosis.label for a in r.arguments if a.diagnosis is not None]


@dataclass
class MutantOutcome:
    """What the battery said about one mutant."""

    name: str
    base: str
    mistake: str
    results: List[CheckResult]
    expected: Optional[str] = None  # the signature the mutant declares, if any

    @property
    def named(self) -> List[str]:
        """Every signature label reported over the mutant's checks, each once, in order."""
        seen: List[str] = []
        for r in self.results:
            for label in signature_labels(r):
                if label not in seen:
                    seen.append(label)
        return seen

    @property
    def names_expected(self) -> Optional[bool]:
        """Whether every check that failed on its gradients named ``expected`` (``None`` when the
        mutant declares no signature)."""
        if self.expected is None:
            return None
        failed = [r for r in self.results if _failed_comparisons(r)]
        return bool(failed) and all(self.expected in signature_labels(r) for r in failed)

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
            "expected_signature": self.expected,
            "named_signatures": self.named,
            "names_expected": self.names_expected,
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
    def declared(self) -> List[MutantOutcome]:
        """The mutants that declare a signature."""
        return [o for o in self.outcomes if o.expected is not None]

    @property
    def signatures_named(self) -> int:
        """How many of the declared signatures the diagnosis named."""
        return sum(bool(o.names_expected) for o in self.declared)

    @property
    def false_signatures(self) -> List[CheckResult]:
        """Checks of correct layers that got a signature (there must be none)."""
        return [r for r in self.correct_results if signature_labels(r)]

    @property
    def ok(self) -> bool:
        return (
            self.score == 1.0
            and not self.false_alarms
            and self.signatures_named == len(self.declared)
            and not self.false_signatures
        )

    def summary_line(self) -> str:
        caught = sum(o.caught for o in self.outcomes)
        return (
            f"mutation score {100 * self.score:.0f}% ({caught}/{len(self.outcomes)} mutants "
            f"caught); signatures named {self.signatures_named}/{len(self.declared)}; "
            f"false alarms {len(self.false_alarms)} in {len(self.correct_results)} "
            f"checks of correct layers ({len(self.inconclusive)} inconclusive, "
            f"{len(self.false_signatures)} with a signature)"
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "score": self.score,
            "mutants": [o.to_dict() for o in self.outcomes],
            "signatures_declared": len(self.declared),
            "signatures_named": self.signatures_named,
            "correct_checks": len(self.correct_results),
            "false_alarms": [r.to_dict() for r in self.false_alarms],
            "false_signatures": [r.summary() for r in self.false_signatures],
            "inconclusive": [r.summary() for r in self.inconclusive],
            "ok": self.ok,
        }


def run_mutation_test(
    mutants: Iterable[Any],
    seeds: Sequence[int] = BATTERY_SEEDS,
    *,
    include_correct: bool = True,
    only: Optional[str] = None,
    workers: int = 1,
) -> MutationReport:
    """Run the battery on every mutant (and, unless told not to, on every correct variant).

    ``mutants`` is the catalogue of deliberately wrong layers (``layers.mutants.mutant_catalogue()``
    for the built-ins), each with ``name``, ``base``, ``mistake``, ``factory``, ``input``,
    ``shapes`` and ``signature``: passed in by the front end, so that the harness never imports
    the layer zoo itself. ``workers``: with more than one (and ``fork``), the mutants' and the
    variants' batteries run side by side, each in its own worker process; the report is the
    same for any number (only the checks' ``elapsed`` differs).
    """
    chosen = [m for m in mutants if only is None or only in m.name]
    batteries = [
        battery_items(m.name, m.factory, input=m.input, shapes=m.shapes, seeds=seeds)
        for m in chosen
    ]
    if include_correct:
        batteries += [spec_items(spec, seeds=seeds) for spec in registered_layers()]
    results: List[List[CheckResult]] = map_concurrently(
        lambda index: [item.run() for item in batteries[index]], len(batteries), workers
    )
    outcomes = [
        MutantOutcome(m.name, m.base, m.mistake, r, m.signature) for m, r in zip(chosen, results)
    ]
    correct = [r for rs in results[len(chosen) :] for r in rs]
    return MutationReport(outcomes, correct)


def _signature_cells(o: MutantOutcome) -> Tuple[str, str]:
    """(expected, named) for the tables; a declared signature not named is marked."""
    named = ", ".join(o.named) or "-"
    if o.expected is not None and not o.names_expected:
        named = f"NOT NAMED ({named})"
    return o.expected or "-", named


def render_mutation_text(report: MutationReport) -> str:
    rows = [("mutant", "base", "mistake", "expected", "named", "caught by")]
    for o in report.outcomes:
        rows.append(
            (
                o.name,
                o.base,
                o.mistake,
                *_signature_cells(o),
                o.caught_by if o.caught else "NOT CAUGHT: " + o.caught_by,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 9)
    for alarm in report.false_alarms:
        lines.append("false alarm: " + alarm.summary())
    for signed in report.false_signatures:
        lines.append("signature on a correct layer: " + signed.summary())
    lines += ["", report.summary_line()]
    return "\n".join(lines) + "\n"


def render_mutation_markdown(report: MutationReport) -> str:
    lines = [
        f"**{report.summary_line()}**",
        "",
        "| mutant | base | mistake | expected signature | named | caught by |",
        "|---|---|---|---|---|---|",
    ]
    for o in report.outcomes:
        verdict = o.caught_by if o.caught else f"**NOT CAUGHT** ({o.caught_by})"
        expected, named = _signature_cells(o)
        lines.append(
            f"| `{o.name}` | `{o.base}` | {o.mistake} | {expected} | {named} | {verdict} |"
        )
    for r in report.false_alarms:
        lines.append(f"\n- false alarm: {r.summary()}")
    for r in report.false_signatures:
        lines.append(f"\n- signature on a correct layer: {r.summary()}")
    return "\n".join(lines) + "\n"

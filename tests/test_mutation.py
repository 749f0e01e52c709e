"""The mutation self-test: every deliberately wrong backward is caught, no correct layer fails."""

from __future__ import annotations

import re
from functools import cache

import pytest

from gradcheck.battery import BATTERY_SEEDS, battery_items
from gradcheck.diagnosis import KINDS
from gradcheck.mutation import (
    MutantOutcome,
    render_mutation_markdown,
    render_mutation_text,
    run_mutation_test,
)
from layers.mutants import mutant_catalogue

MUTANTS = mutant_catalogue()
BY_NAME = {m.name: m for m in MUTANTS}


@cache
def outcome_of(name: str) -> MutantOutcome:
    m = BY_NAME[name]
    items = battery_items(m.name, m.factory, input=m.input, shapes=m.shapes)
    return MutantOutcome(m.name, m.base, m.mistake, [i.run() for i in items], m.signature)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_mutant_is_caught(mutant):
    outcome = outcome_of(mutant.name)
    assert outcome.caught, outcome.caught_by


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_declared_signature_is_named_and_no_other(mutant):
    """A declared signature is named in every check that failed on its gradients; a mutant
    that declares none (no signature describes its mistake) gets none."""
    outcome = outcome_of(mutant.name)
    if mutant.signature is None:
        assert outcome.named == [], outcome.named
        assert outcome.names_expected is None
    else:
        assert outcome.names_expected, (mutant.signature, outcome.named)
        assert outcome.named == [mutant.signature]


def test_a_dropped_covariance_path_has_no_simple_signature():
    """The issue's example of a mistake without a simple signature: the gradient is wrong
    everywhere, by a matrix of full rank, and the diagnosis says nothing rather than guess."""
    outcome = outcome_of("zca-no-covariance-path")
    failed = [a for r in outcome.results for a in r.arguments if a.status == "fail"]
    assert failed and all(a.mode == "full" and a.diagnosis is None for a in failed)


def test_the_declared_signatures_cover_every_kind():
    declared = {m.signature.split()[0] for m in MUTANTS if m.signature}
    assert declared == set(KINDS)
    scales = {m.signature for m in MUTANTS if m.signature and m.signature.startswith("scale")}
    assert scales >= {"scale -1", "scale 1/N", "scale N", "scale"}


def test_catalogue_covers_the_mistakes_the_issue_names():
    mistakes = " | ".join(m.mistake for m in MUTANTS)
    for phrase in (
        "sign flip",
        "missing transpose",
        "not symmetrized",
        "1/(N-1)",
        "forgets to subtract mean(dy)",
        "(1 - 1/m)",
        "covariance path",
        "eps ignored",
        "1/N of the mean",
        "relative 1e-4",
        "in place in dy",
        "only for symmetric dy",
    ):
        assert phrase in mistakes, phrase


def test_mutants_that_special_inputs_would_hide_are_built_to_be_visible():
    """dy^T mutant needs square inputs; the gamma mutant needs gamma != 1."""
    by_name = {m.name: m for m in MUTANTS}
    assert all(n == d for n, d in by_name["zca-dy-transposed"].shapes)
    layer = by_name["dbn-forgets-gamma"].factory()
    assert abs(layer.params["gamma"] - 1.0).max() > 0.1


def test_score_and_false_alarms_over_the_whole_catalogue():
    report = run_mutation_test(mutant_catalogue(), seeds=BATTERY_SEEDS)
    assert report.score == 1.0, [o.caught_by for o in report.outcomes if not o.caught]
    assert report.false_alarms == []
    assert report.false_signatures == []
    assert report.signatures_named == len(report.declared) == 15
    assert report.ok
    line = report.summary_line()
    assert "100%" in line and "signatures named 15/15" in line and "0 with a signature" in line
    text, markdown = render_mutation_text(report), render_mutation_markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("dense-bias-mean "))
    assert re.search(r"scale 1/N +scale 1/N +param 'b'", row), row
    assert "| scale 1/N | scale 1/N |" in markdown
    assert "NOT NAMED" not in text
    doc = report.to_dict()
    by_name = {m["mutant"]: m for m in doc["mutants"]}
    assert by_name["zca-no-symmetrization"]["named_signatures"] == ["symmetric-part"]
    assert by_name["zca-no-covariance-path"]["names_expected"] is None


def test_workers_give_the_same_report():
    """Batteries side by side, each in its own worker: the same outcomes in the same order."""
    mutants = [m for m in mutant_catalogue() if m.base in ("tanh", "center")]
    alone = run_mutation_test(mutants, seeds=(0,), include_correct=False)
    together = run_mutation_test(mutants, seeds=(0,), include_correct=False, workers=2)
    assert len(together.outcomes) == len(mutants) > 1
    assert together.to_dict() == alone.to_dict()

"""The mutation self-test: every deliberately wrong backward is caught, no correct layer fails."""

from __future__ import annotations

import pytest

from gradcheck.battery import BATTERY_SEEDS, battery_items
from gradcheck.mutation import MutantOutcome, run_mutation_test
from layers.mutants import mutant_catalogue

MUTANTS = mutant_catalogue()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_mutant_is_caught(mutant):
    items = battery_items(mutant.name, mutant.factory, input=mutant.input, shapes=mutant.shapes)
    outcome = MutantOutcome(mutant.name, mutant.base, mutant.mistake, [i.run() for i in items])
    assert outcome.caught, outcome.caught_by


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
    report = run_mutation_test(seeds=BATTERY_SEEDS)
    assert report.score == 1.0, [o.caught_by for o in report.outcomes if not o.caught]
    assert report.false_alarms == []
    assert report.ok
    assert "100%" in report.summary_line()

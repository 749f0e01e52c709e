"""Shared, computed-once material for the paper suite's test modules.

The full report (random draws for every variant plus the Hypothesis counterexample search) takes
a few seconds; the verdict, counterexample and CLI tests all read the same one.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from gradcheck.isolation import available_cores
from gradcheck.paper.suite import PaperReport, run_paper_suite

SEED = 0
EXAMPLES = 32


@cache
def full_report() -> PaperReport:
    """``gradcheck paper --seed 0 --examples 32`` as data (no gap study), measured on every core
    (the report is the same for any number of workers: tests/paper/test_paper_cli.py)."""
    return run_paper_suite(seed=SEED, examples=EXAMPLES, workers=available_cores())


def lapack_2x2_eigenvectors_symmetric() -> bool:
    """Whether this LAPACK returns a symmetric eigenvector matrix (a reflection) for 2 x 2 input.

    Then ``D = D^T`` for every ``D = 2`` batch and the error of (B1) cannot show there.
    """
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.standard_normal((5, 2))
        _, vecs = np.linalg.eigh(a.T @ a)
        if not np.allclose(vecs, vecs.T, atol=1e-14):
            return False
    return True


def describe(case) -> str:
    """A reproducible one-line description of a case, for assertion messages."""
    return f"{case.describe()} ({case.origin}); x = {case.x.tolist()}"

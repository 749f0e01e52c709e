"""The paper study: which of the DBN paper's four backward variants is the true gradient.

The four variants of the chain (B1)-(B7) (``layers/paper.py``; the equations are quoted from the
reconstruction in ``shared/paper/dbn-equations.md``) are checked with :func:`check_layer` in full
mode against the numerical gradient. Nothing here presumes an answer: a variant's *verdict* is
``"correct"`` when every check passes and ``"wrong"`` when any fails; the derivation's prediction
(:data:`EXPECTED`) is only compared with it afterwards, for the exit code.

One job per module, each importing only from the ones above it:

- :mod:`~gradcheck.paper.cases`: a case (a batch and how to check it) and the random draws
  with an exact covariance spectrum, the domain of the verdicts;
- :mod:`~gradcheck.paper.search`: the smallest counterexample, searched for by Hypothesis over
  integer-valued batches;
- :mod:`~gradcheck.paper.special`: inputs on which a wrong variant still passes, and why;
- :mod:`~gradcheck.paper.verdicts`: a variant's verdict over the draws, with its search;
- :mod:`~gradcheck.paper.gap`: the gap study, the backward routes as two eigenvalues meet;
- :mod:`~gradcheck.paper.suite`: the whole study as one run and its report data;
- :mod:`~gradcheck.paper.render`: the report as text, Markdown or JSON;
- :mod:`~gradcheck.paper.gap_plot`: the gap study as a picture (matplotlib);
- :mod:`~gradcheck.paper.command`: the ``gradcheck paper`` subcommand.

The study is an output of the harness (tier 3) and may import the paper's layer variants
(``layers.paper``, ``layers.whitening``); nothing else in ``gradcheck`` imports ``layers``.

Import from the modules themselves (``from gradcheck.paper.suite import run_paper_suite``):
this package imports none of them, so that the CLI can add the ``paper`` subcommand without
loading the study (Hypothesis, SciPy and the layers) until the command runs.
"""

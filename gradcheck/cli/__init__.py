"""The ``gradcheck`` command line: ``report``, ``list``, ``mutants``, ``paper``, ``plot step-size``.

What ``report`` checks: layers (``--layer MODULE:ATTR`` or ``MODULE:ATTR(ARGS)``, the registered
catalogue), a forward/backward function pair (``--pair``) or a value-and-gradient function
(``--value-and-grad``) whose arguments are drawn from ``--input NAME=SHAPE`` and given by
``--kwarg NAME=LITERAL`` and ``--target NAME=SPEC`` (see :mod:`gradcheck.functions`).

Exit codes: 0 all checks passed; 1 a check failed or errored (or, with ``--strict``, was
inconclusive); 2 a usage or input error (unknown layer, malformed ``--shape``, a module that does
not import, an ``--input`` the function does not take, a negative ``--seed``, matplotlib missing
for ``plot``).

One module per subcommand, each with the function that adds its parser and the one that runs it:
:mod:`~gradcheck.cli.report` (with :mod:`~gradcheck.cli.selection`, which chooses the layers),
:mod:`~gradcheck.cli.mutants`, :mod:`~gradcheck.cli.listing`, :mod:`~gradcheck.cli.plot`; the
``paper`` subcommand lives with its study in :mod:`gradcheck.paper.command`.
:mod:`~gradcheck.cli.parser` assembles them and holds :func:`main`, the console script;
:mod:`~gradcheck.cli.common` is what they share (exit codes, the parser class that exits 2).
"""

from .parser import build_parser, main

__all__ = ["build_parser", "main"]

"""The options of one check: everything :func:`gradcheck.check_layer` takes besides the layer,
its input and the data drawn for it (``dy``, ``target``, ``seed``).

:class:`CheckOptions` is the one list of them and of their defaults: ``check_layer``'s keyword
defaults are read from :data:`DEFAULTS`, the runner's job options extend the class
(:class:`gradcheck.runner.RunOptions`), and a reproduce command is written from it
(:func:`gradcheck.runner.reproduce_command`).

Tier 1: it knows the estimators' method names (tier 0) and nothing above.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .finite_diff import METHODS

MODES: Tuple[str, ...] = ("auto", "full", "directional")


@dataclass(frozen=True)
class CheckOptions:
    """How one check estimates and compares (see :func:`gradcheck.check_layer` for each one).

    ``mode``: ``"auto"``, ``"full"`` or ``"directional"``. ``method``: one of
    :data:`gradcheck.finite_diff.METHODS`. ``rtol``, ``atol``: ``None`` for the defaults of
    :mod:`gradcheck.compare`. ``directions``: Gaussian directions per argument, ``None`` for
    adaptive. ``budget``: forward evaluations auto mode may spend beyond its first screen,
    ``None`` for ``check_layer``'s default. ``escalate``: repeat an unresolved or failed central
    or five-point comparison with richardson. ``allow_float32``: accept float32 inputs.
    ``dtype``: the dtype of the checked input, by name (``check_layer`` takes it from ``x``; the
    runner casts the input it draws to it). ``check_params``: check the parameters too.
    ``chunk``: perturbed points per stacked forward, ``None`` for the default. ``n_worst``:
    worst entries kept per argument.
    """

    mode: str = "auto"
    method: str = "central"
    rtol: Optional[float] = None
    atol: Optional[float] = None
    directions: Optional[int] = None  # None: adaptive
    budget: Optional[int] = None  # None: check_layer's default
    escalate: bool = True
    allow_float32: bool = False
    dtype: str = "float64"
    check_params: bool = True
    chunk: Optional[int] = None
    n_worst: int = 5

    def validate(self, who: str = "check_layer") -> None:
        """Raise ``ValueError`` (its message starting with ``who``) for an unknown mode or
        method, a negative budget or fewer than one direction."""
        if self.mode not in MODES:
            raise ValueError(
                f"{who}: unknown mode {self.mode!r}; expected one of {', '.join(MODES)}"
            )
        if self.method not in METHODS:
            raise ValueError(
                f"{who}: unknown method {self.method!r}; expected one of {', '.join(METHODS)}"
            )
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"{who}: budget must be at least 0, got {self.budget}")
        if self.directions is not None and self.directions < 1:
            raise ValueError(f"{who}: directions must be at least 1, got {self.directions}")

    def check_keywords(self) -> Dict[str, Any]:
        """These options as :func:`gradcheck.check_layer`'s keywords (all but ``dtype``, which
        ``check_layer`` reads from its input)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(CheckOptions)
            if f.name != "dtype"
        }


#: Every option at its default: the defaults of :func:`gradcheck.check_layer`'s keywords.
DEFAULTS = CheckOptions()

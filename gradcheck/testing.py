"""Assertion helpers for custom tests: a failure message shows the worst entries side by side."""

from __future__ import annotations

from typing import Any, Optional

from .check import check_layer
from .result import CheckResult


class GradientCheckFailed(AssertionError):
    """A gradient check that did not pass; ``result`` holds the full :class:`CheckResult`."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.explain())
        self.result = result


def assert_gradients_pass(
    layer: Any,
    x: Any,
    *,
    allow_inconclusive: bool = False,
    reproduce: Optional[str] = None,
    **kwargs: Any,
) -> CheckResult:
    """Check ``layer`` at ``x`` (options as :func:`gradcheck.check_layer`) and assert it passed.

    Raises :class:`GradientCheckFailed` (an ``AssertionError``) whose message is the result's
    :meth:`~gradcheck.result.CheckResult.explain`: the verdict, the worst entries with analytic
    and numeric values side by side, every finding, and ``reproduce`` when given. An
    inconclusive result fails too unless ``allow_inconclusive``.
    """
    result = check_layer(layer, x, **kwargs)
    if reproduce:
        result.reproduce = reproduce
    accepted = ("pass", "inconclusive") if allow_inconclusive else ("pass",)
    if result.status not in accepted:
        raise GradientCheckFailed(result)
    return result

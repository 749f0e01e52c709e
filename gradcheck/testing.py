"""Assertion helpers for custom tests: a failure message shows the worst entries side by side.

:func:`assert_gradients_pass` checks a layer, :func:`assert_functions_pass` a forward/backward
function pair and :func:`assert_value_and_grad_pass` a ``(value, grad)`` function; each raises
:class:`GradientCheckFailed` (an ``AssertionError``) whose message is the result's
:meth:`~gradcheck.result.CheckResult.explain`. The helpers hide their own frames from pytest's
tracebacks (``__tracebackhide__``), so a failure points at the test's line.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .check import check_layer
from .functions import check_functions, check_value_and_grad
from .result import CheckResult


class GradientCheckFailed(AssertionError):
    """A gradient check that did not pass; ``result`` holds the full :class:`CheckResult`."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.explain())
        self.result = result


def _verdict(
    result: CheckResult, allow_inconclusive: bool, reproduce: Optional[str]
) -> CheckResult:
    __tracebackhide__ = True
    if reproduce:
        result.reproduce = reproduce
    accepted = ("pass", "inconclusive") if allow_inconclusive else ("pass",)
    if result.status not in accepted:
        raise GradientCheckFailed(result)
    return result


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
    __tracebackhide__ = True
    return _verdict(check_layer(layer, x, **kwargs), allow_inconclusive, reproduce)


def assert_functions_pass(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *inputs: Any,
    allow_inconclusive: bool = False,
    reproduce: Optional[str] = None,
    **kwargs: Any,
) -> CheckResult:
    """Check a function pair (arguments as :func:`gradcheck.check_functions`) and assert it
    passed, as :func:`assert_gradients_pass` does::

        assert_functions_pass(affine_forward, affine_backward, x, w, b)
        assert_functions_pass(conv_forward, conv_backward, x, w, b, {"stride": 1, "pad": 1})
    """
    __tracebackhide__ = True
    result = check_functions(forward, backward, *inputs, **kwargs)
    return _verdict(result, allow_inconclusive, reproduce)


def assert_value_and_grad_pass(
    fun: Callable[..., Any],
    *inputs: Any,
    allow_inconclusive: bool = False,
    reproduce: Optional[str] = None,
    **kwargs: Any,
) -> CheckResult:
    """Check ``value, grad = fun(*inputs)`` (arguments as
    :func:`gradcheck.check_value_and_grad`) and assert it passed."""
    __tracebackhide__ = True
    result = check_value_and_grad(fun, *inputs, **kwargs)
    return _verdict(result, allow_inconclusive, reproduce)

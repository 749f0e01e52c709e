"""Gradient verification for hand-written NumPy backward passes.

The one idea: a backward pass is a vector-Jacobian product, so ``layer.backward(dy)`` must equal
the gradient of ``L(x) = <layer.forward(x), dy>``. :func:`check_layer` estimates that gradient
numerically, with an error estimate of its own, and compares entry by entry.
"""

from .check import check_layer
from .compare import compare, default_rtol, relative_error
from .finite_diff import harness_rng, partial_derivatives
from .result import ArgumentResult, CheckResult, Finding

__all__ = [
    "ArgumentResult",
    "CheckResult",
    "Finding",
    "check_layer",
    "compare",
    "default_rtol",
    "harness_rng",
    "partial_derivatives",
    "relative_error",
]

__version__ = "0.1.0"

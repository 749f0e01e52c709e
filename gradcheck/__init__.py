"""Gradient verification for hand-written NumPy backward passes.

The one idea: a backward pass is a vector-Jacobian product, so ``layer.backward(dy)`` must equal
the gradient of ``L(x) = <layer.forward(x), dy>``. :func:`check_layer` estimates that gradient
numerically, with an error estimate of its own, and compares entry by entry.

Hand-written backward passes in other shapes are checked directly: :func:`check_functions` for
``out, cache = f_forward(x, w, b)`` / ``dx, dw, db = f_backward(dout, cache)`` pairs, and
:func:`check_value_and_grad` for ``loss, dx = f(x, y)`` functions.
"""

from .check import check_layer
from .compare import compare, default_rtol, relative_error
from .finite_diff import directional_derivatives, harness_rng, partial_derivatives
from .functions import check_functions, check_value_and_grad
from .registry import LayerSpec, register_layer, registered_layers
from .result import ArgumentResult, CheckResult, Finding
from .testing import (
    GradientCheckFailed,
    assert_functions_pass,
    assert_gradients_pass,
    assert_value_and_grad_pass,
)
from .version import __version__ as __version__

__all__ = [
    "ArgumentResult",
    "CheckResult",
    "Finding",
    "GradientCheckFailed",
    "LayerSpec",
    "assert_functions_pass",
    "assert_gradients_pass",
    "assert_value_and_grad_pass",
    "check_functions",
    "check_layer",
    "check_value_and_grad",
    "compare",
    "default_rtol",
    "directional_derivatives",
    "harness_rng",
    "partial_derivatives",
    "register_layer",
    "registered_layers",
    "relative_error",
]

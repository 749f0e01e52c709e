"""The peers, each wrapped as a zero-argument call on a :class:`~benchmarks.problem.Problem`.

Every peer is an optional extra (``pip install -e .[bench]``) and is imported lazily: a peer that
is not installed raises :class:`Unavailable`, which the benchmark turns into a note in the table.

What each wrapper computes, for the same question "is my backward right?":

* ``torch_gradcheck``: ``torch.autograd.gradcheck(f, (X,), eps=1e-6, atol=1e-5, rtol=1e-3)`` on
  ``f(X) = ZCA(X)`` written in PyTorch (float64, ``torch.linalg.eigh``). Slow mode builds the full
  numerical Jacobian (``N*D x N*D``, two forwards per input entry) and the full analytical one
  (one backward per output entry) and compares them; ``fast_mode=True`` compares the scalar
  ``v^T J u`` for one random pair ``u, v``.
* ``torch_numerical_gradient``: torch's own numerical Jacobian (``_get_numerical_jacobian``,
  the routine slow-mode gradcheck uses, same ``eps``) contracted with ``dY``: ``J^T dY``.
* ``scipy_gradient``: ``scipy.optimize._numdiff.approx_derivative(L, x, method="3-point")`` on
  the scalar ``L(x) = <f(x), dY>`` with SciPy's default step ``eps^(1/3) * max(1, |x_i|)``.
* ``numdifftools_gradient``: ``numdifftools.Gradient(L)(x)`` with its defaults (central
  differences, 15 steps from a ``MaxStepGenerator`` with base step 2, Richardson extrapolation).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

from .problem import Problem

Array = np.ndarray

INSTALL_HINT = "pip install -e .[bench]"

# The settings of the issue: torch's documented defaults for eps, atol, rtol.
TORCH_EPS = 1e-6
TORCH_ATOL = 1e-5
TORCH_RTOL = 1e-3


class Unavailable(Exception):
    """A peer that cannot run here; the message says why and how to install it."""


@dataclass(frozen=True)
class Outcome:
    """What one call produced: a verdict (checks) or a gradient estimate (estimators)."""

    status: Optional[str] = None  # "pass" | "fail" | "inconclusive" | "error"
    gradient: Optional[Array] = None  # (N, D) numeric estimate of dL/dX
    error: Optional[Array] = None  # (N, D) the estimator's own error estimate, if it has one
    detail: Optional[str] = None  # how a check got its verdict, when it took more than one step


def _import(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{package} is not installed ({INSTALL_HINT})") from exc


def versions() -> Dict[str, str]:
    """Versions of the peers that are installed (``"not installed"`` otherwise)."""
    found = {}
    for name, module in (
        ("torch", "torch"),
        ("numdifftools", "numdifftools"),
        ("threadpoolctl", "threadpoolctl"),
    ):
        try:
            found[name] = str(importlib.import_module(module).__version__)
        except ImportError:
            found[name] = "not installed"
    return found


# -- PyTorch ---------------------------------------------------------------------------------


def torch_zca(eps: float) -> Callable[[Any], Any]:
    """``X -> ZCA(X)`` in PyTorch, the same arithmetic as ``layers.whitening.zca_forward``."""
    torch = _import("torch", "torch")

    def forward(x: Any) -> Any:
        n, d = x.shape
        xc = x - x.mean(dim=0, keepdim=True)
        cov = xc.T @ xc / n
        sigma = 0.5 * (cov + cov.T) + eps * torch.eye(d, dtype=x.dtype)
        eigvals, eigvecs = torch.linalg.eigh(sigma)
        w = (eigvecs * eigvals.rsqrt()) @ eigvecs.T
        return xc @ (0.5 * (w + w.T))

    return forward


def _torch_input(problem: Problem) -> Any:
    torch = _import("torch", "torch")
    return torch.tensor(problem.x, dtype=torch.float64, requires_grad=True)


def torch_gradcheck(problem: Problem, fast_mode: bool) -> Callable[[], Outcome]:
    """``torch.autograd.gradcheck`` on ``X -> ZCA(X)``, slow (full Jacobians) or fast mode."""
    torch = _import("torch", "torch")
    forward = torch_zca(problem.eps)
    x = _torch_input(problem)

    def run() -> Outcome:
        ok = torch.autograd.gradcheck(
            forward,
            (x,),
            eps=TORCH_EPS,
            atol=TORCH_ATOL,
            rtol=TORCH_RTOL,
            fast_mode=fast_mode,
            raise_exception=False,
        )
        return Outcome(status="pass" if ok else "fail")

    return run


def torch_numerical_gradient(problem: Problem) -> Callable[[], Outcome]:
    """``J^T dY`` from torch's numerical Jacobian of ``ZCA`` at ``X`` (central, ``eps=1e-6``)."""
    torch = _import("torch", "torch")
    module = importlib.import_module("torch.autograd.gradcheck")
    numerical_jacobian = getattr(module, "_get_numerical_jacobian", None)
    if numerical_jacobian is None:
        raise Unavailable("this torch has no torch.autograd.gradcheck._get_numerical_jacobian")
    forward = torch_zca(problem.eps)
    x = _torch_input(problem)
    dy = torch.tensor(problem.dy.ravel(), dtype=torch.float64)

    def run() -> Outcome:
        jacobian = numerical_jacobian(forward, (x,), eps=TORCH_EPS)[0][0]  # (N*D in, N*D out)
        grad = (jacobian @ dy).detach().numpy().reshape(problem.x.shape)
        return Outcome(gradient=grad)

    return run


def torch_autograd_gradient(problem: Problem) -> Array:
    """PyTorch's autograd gradient of ``L``: an independent check of the analytic reference."""
    torch = _import("torch", "torch")
    x = _torch_input(problem)
    loss = (torch_zca(problem.eps)(x) * torch.tensor(problem.dy)).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return grad.detach().numpy()


def torch_threads() -> Optional[int]:
    try:
        return int(importlib.import_module("torch").get_num_threads())
    except ImportError:
        return None


# -- SciPy and numdifftools ------------------------------------------------------------------


def scipy_gradient(problem: Problem) -> Callable[[], Outcome]:
    """SciPy's ``approx_derivative(L, x, method="3-point")``: 2 calls of ``L`` per entry."""
    numdiff = _import("scipy.optimize._numdiff", "scipy")
    loss = problem.objective()
    x0 = problem.x.ravel()

    def run() -> Outcome:
        grad = numdiff.approx_derivative(loss, x0, method="3-point")
        return Outcome(gradient=np.reshape(grad, problem.x.shape))

    return run


def numdifftools_gradient(problem: Problem) -> Callable[[], Outcome]:
    """``numdifftools.Gradient(L)(x)`` with its default settings."""
    nd = _import("numdifftools", "numdifftools")
    loss = problem.objective()
    x0 = problem.x.ravel()

    def run() -> Outcome:
        grad = nd.Gradient(loss)(x0)
        return Outcome(gradient=np.reshape(grad, problem.x.shape))

    return run

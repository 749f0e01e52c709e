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
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from .problem import Problem
from .tanh import WRONG_FACTOR, TanhProblem

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
    named: Optional[int] = None  # a failing check: how many wrong entries it named
    worst: Optional[Tuple[int, ...]] = None  # a failing check: the index of its worst entry
    evaluations: Optional[int] = None  # forward evaluations (points) the estimates used
    resolves_entry: Optional[float] = None  # a directional screen: see ArgumentResult
    localization: Optional[str] = None  # a check's finding on how it localized a failure


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


def _torch_input(problem: Union[Problem, TanhProblem]) -> Any:
    torch = _import("torch", "torch")
    return torch.tensor(problem.x, dtype=torch.float64, requires_grad=True)


def torch_tanh(problem: TanhProblem) -> Callable[[Any], Any]:
    """``X -> tanh(X)`` in PyTorch; for a wrong problem, a custom backward wrong as its twin's."""
    torch = _import("torch", "torch")
    if problem.wrong is None:
        return torch.tanh  # type: ignore[no-any-return]
    layer = problem.layer()
    if problem.wrong == "scale":
        factor = torch.full((problem.n, problem.d), WRONG_FACTOR, dtype=torch.float64)
    else:
        mask = torch.from_numpy(layer.mask((problem.n, problem.d)))
        factor = torch.where(mask, WRONG_FACTOR, 1.0).to(torch.float64)
    return _wrong_backward(torch, torch.tanh, lambda g: g * factor)


def torch_zca_wrong_entry(
    eps: float, index: Tuple[int, int], factor: float
) -> Callable[[Any], Any]:
    """``X -> ZCA(X)`` whose backward multiplies entry ``index`` of ``dX`` by ``factor``."""
    torch = _import("torch", "torch")

    def corrupt(g: Any) -> Any:
        g = g.clone()
        g[index] = g[index] * factor
        return g

    return _wrong_backward(torch, torch_zca(eps), corrupt)


def _wrong_backward(
    torch: Any, forward: Callable[[Any], Any], corrupt: Callable[[Any], Any]
) -> Any:
    """``forward`` as a ``torch.autograd.Function`` whose backward is autograd's, then ``corrupt``.

    ``corrupt`` is linear (a fixed factor per entry), so the wrong backward is still a linear map
    of the upstream gradient: only the numbers are wrong.
    """

    class Wrong(torch.autograd.Function):  # type: ignore[misc, name-defined]
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            with torch.no_grad():
                return forward(x)

        @staticmethod
        def backward(ctx: Any, dy: Any) -> Any:
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                xx = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(forward(xx), xx, dy)
            return corrupt(g)

    return Wrong.apply


def _torch_forward(problem: Union[Problem, TanhProblem]) -> Callable[[Any], Any]:
    if isinstance(problem, TanhProblem):
        return torch_tanh(problem)
    return torch_zca(problem.eps)


def torch_gradcheck(
    problem: Union[Problem, TanhProblem],
    fast_mode: bool,
    *,
    forward: Optional[Callable[[Any], Any]] = None,
    default_threads: bool = False,
) -> Callable[[], Outcome]:
    """``torch.autograd.gradcheck`` on ``X -> f(X)``, slow (full Jacobians) or fast mode.

    ``f`` is the problem's function in PyTorch (ZCA or tanh) unless ``forward`` is given. With
    ``default_threads``, each call runs with PyTorch's own intra-op thread count (what it chose
    at import, before the benchmark's thread limit), restored afterwards.
    """
    torch = _import("torch", "torch")
    fn = forward if forward is not None else _torch_forward(problem)
    x = _torch_input(problem)
    threads = torch_default_threads() if default_threads else None

    def run() -> Outcome:
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            ok = torch.autograd.gradcheck(
                fn,
                (x,),
                eps=TORCH_EPS,
                atol=TORCH_ATOL,
                rtol=TORCH_RTOL,
                fast_mode=fast_mode,
                raise_exception=False,
            )
        finally:
            torch.set_num_threads(previous)
        return Outcome(status="pass" if ok else "fail")

    return run


_TORCH_DEFAULT: Dict[str, int] = {}


def torch_default_threads() -> Optional[int]:
    """PyTorch's intra-op thread count as it set itself, remembered at the first call.

    :func:`benchmarks.machine.thread_limit` calls this before it limits PyTorch, so the value
    is PyTorch's own default, not the benchmark's limit.
    """
    if "threads" not in _TORCH_DEFAULT:
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            return None
        _TORCH_DEFAULT["threads"] = int(torch.get_num_threads())
    return _TORCH_DEFAULT["threads"]


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

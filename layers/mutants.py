"""Deliberately wrong backward passes, derived from the built-in layers.

The mutation self-test (``gradcheck mutants``) runs the standard battery on each of these and
expects every one to be caught: a harness that passes a wrong backward proves nothing. Each
mutant is one realistic mistake, of the kind people make when deriving by hand; its docstring
says which. Where the mistake has a simple *mistake signature* (``gradcheck.diagnosis``), the
mutant declares it in ``signature`` (a label such as ``"scale 1/N"`` or ``"offset"``), and the
self-test also counts whether the diagnosis names it; ``None`` declares that no signature of the
catalogue describes the mistake, so none may be reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .activations import LeakyReLU, Sigmoid, Tanh
from .base import Array
from .centering import Center
from .dense import Dense
from .softmax_ce import SoftmaxCrossEntropy
from .standardize import Standardize
from .whitening import DecorrelatedBatchNorm, ZCAWhitening, _sym, _t, inv_sqrt_backward


@dataclass(frozen=True)
class Mutant:
    """A wrong variant of a built-in layer: ``factory()`` builds it, ``shapes`` are its inputs."""

    name: str
    base: str  # the registered name of the correct layer it derives from
    mistake: str
    factory: Callable[[], Any]
    shapes: Tuple[Tuple[int, int], ...] = ((8, 3), (16, 5))
    input: str = "matrix"
    signature: Optional[str] = None  # the diagnosis label expected, where one applies


# -- centering --------------------------------------------------------------------------------


class CenterForgetsMean(Center):
    """Treats centering as the identity in the backward: forgets to subtract ``mean(dy)``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        return np.array(dy, dtype=np.float64)


class CenterElementwise(Center):
    """Reads ``d(x_i - mean)/dx_i = 1 - 1/m`` as the whole derivative (drops the off-diagonal
    ``-1/m`` terms), so ``dx = (1 - 1/m) dy``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        m = dy.shape[self._ax]
        return (1.0 - 1.0 / m) * dy


class CenterLoopFromOne(Center):
    """Subtracts ``mean(dy)`` in a loop over the examples that starts at 1 instead of 0: the
    first example keeps ``dy`` unchanged (an off-by-one)."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        dx = np.array(dy, dtype=np.float64, copy=True)
        mean = dy.mean(axis=-2)
        for i in range(1, dy.shape[-2]):
            dx[..., i, :] -= mean
        return dx


# -- dense ------------------------------------------------------------------------------------


class DenseSignFlip(Dense):
    """Returns ``-dx``: a sign lost in the derivation."""

    def backward(self, dy: Array) -> Array:
        return -super().backward(dy)


class DenseMissingTranspose(Dense):
    """``dx = dy @ W`` instead of ``dy @ W^T`` (shapes only agree for a square ``W``)."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        return dy @ self.cache["W"]


class DenseBiasMean(Dense):
    """``db = mean(dy)`` instead of ``sum(dy)``: a ``1/N`` that belongs to the loss, not here."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        self.grads["b"] = dy.mean(axis=0)
        return dx


class DenseNoBiasGradient(Dense):
    """Treats the bias as a constant: ``grads["b"]`` is left at zeros."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        self.grads["b"] = np.zeros_like(self.grads["b"])
        return dx


class DenseWeightTransposed(Dense):
    """``dW = dy^T x`` instead of ``x^T dy`` (shapes only agree for a square ``W``)."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        self.grads["W"] = self.grads["W"].T.copy()
        return dx


class DenseWeightFromCenteredInput(Dense):
    """``dW = Xc^T dy`` with the batch-centered input (a cache shared with a batch-norm
    backward): off by ``mean(x)^T sum(dy)``, an outer product."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        x = self.cache["x"].reshape(-1, self.n_in)
        xc = x - x.mean(axis=0)
        self.grads["W"] = xc.T @ np.asarray(dy).reshape(-1, self.n_out)
        return dx


class DenseAccumulates(Dense):
    """Adds into ``grads`` on every backward (the numpy-ml pattern) instead of overwriting."""

    def backward(self, dy: Array) -> Array:
        previous = self.grads
        dx = super().backward(dy)
        if previous:
            self.grads = {k: previous[k] + v for k, v in self.grads.items()}
        return dx


# -- standardization --------------------------------------------------------------------------


class StandardizeUnbiased(Standardize):
    """Uses ``1/(N-1)`` for the variance path in the backward while the forward uses ``1/N``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        xhat, inv_std = self.cache["xhat"], self.cache["inv_std"]
        n = dy.shape[-2]
        mean_dy = dy.mean(axis=-2, keepdims=True)
        return inv_std * (dy - mean_dy - xhat * (dy * xhat).sum(axis=-2, keepdims=True) / (n - 1))


class StandardizeNoVariancePath(Standardize):
    """Treats the standard deviation as a constant: drops the variance path."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        inv_std = self.cache["inv_std"]
        return inv_std * (dy - dy.mean(axis=-2, keepdims=True))


class StandardizeLoopStopsShort(Standardize):
    """Fills ``dx`` feature by feature in a loop that stops one short (``range(D - 1)``): the
    last feature keeps ``dy``."""

    def backward(self, dy: Array) -> Array:
        full = super().backward(dy)
        dx = np.array(dy, dtype=np.float64, copy=True)
        for j in range(dy.shape[-1] - 1):
            dx[..., j] = full[..., j]
        return dx


# -- whitening --------------------------------------------------------------------------------


def _zca_parts(layer: ZCAWhitening, dy: Array) -> Tuple[Array, Array, Array, Array, Array]:
    c = layer.cache
    return c["xc"], c["w"], c["eigvals"], c["eigvecs"], np.asarray(dy, dtype=np.float64)


def _uncenter(layer: ZCAWhitening, dxc: Array) -> Array:
    return dxc - dxc.mean(axis=-2, keepdims=True) if layer.cache["center"] else dxc


class ZCANoCovariancePath(ZCAWhitening):
    """Treats ``W = Sigma^{-1/2}`` as a constant: ``dx = center(dy W)``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        _, w, _, _, dy = _zca_parts(self, dy)
        return _uncenter(self, dy @ _t(w))


class ZCANoSymmetrization(ZCAWhitening):
    """Uses ``dL/dSigma`` without symmetrizing it, with ``(2/N) Xc dL/dSigma`` (which assumes a
    symmetric ``dL/dSigma``): the paper's second switch.

    Offers the diagnosis hook ``backward_symmetrized`` (see :mod:`gradcheck.diagnosis`): the
    same chain with ``dL/dSigma`` replaced by its symmetric part where it is formed.
    """

    def backward(self, dy: Array) -> Array:
        return self._chain(dy, symmetrize=False)

    def backward_symmetrized(self, dy: Array) -> Array:
        """This backward with ``dL/dSigma`` replaced by ``(G + G^T) / 2``: the diagnosis hook."""
        return self._chain(dy, symmetrize=True)

    def _chain(self, dy: Array, symmetrize: bool) -> Array:
        super().backward(dy)
        xc, w, lam, q, dy = _zca_parts(self, dy)
        s = np.sqrt(lam)
        f = -1.0 / (s[..., :, None] * s[..., None, :] * (s[..., :, None] + s[..., None, :]))
        sigma_bar = q @ (f * (_t(q) @ (_t(xc) @ dy) @ q)) @ _t(q)
        if symmetrize:
            sigma_bar = _sym(sigma_bar)
        return _uncenter(self, dy @ _t(w) + (2.0 / xc.shape[-2]) * (xc @ sigma_bar))


class ZCAUnbiased(ZCAWhitening):
    """Backpropagates the covariance with ``2/(N-1)`` while the forward divides by ``N``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        xc, w, lam, q, dy = _zca_parts(self, dy)
        sigma_bar = inv_sqrt_backward(_t(xc) @ dy, lam, q)
        return _uncenter(self, dy @ _t(w) + (2.0 / (xc.shape[-2] - 1)) * (xc @ sigma_bar))


class ZCAEpsIgnored(ZCAWhitening):
    """Forgets ``eps`` in the backward: uses the eigenvalues of the bare covariance."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        xc, _, lam, q, dy = _zca_parts(self, dy)
        bare = lam - self.eps
        w = _sym((q * (1.0 / np.sqrt(bare))[..., None, :]) @ _t(q))
        sigma_bar = inv_sqrt_backward(_t(xc) @ dy, bare, q)
        return _uncenter(self, dy @ w + (2.0 / xc.shape[-2]) * (xc @ sigma_bar))


class ZCADyTransposed(ZCAWhitening):
    """Uses ``dy^T`` where ``dy`` belongs (only possible for square batches): right exactly
    when the upstream gradient is symmetric, so symmetric test gradients hide it."""

    def backward(self, dy: Array) -> Array:
        return super().backward(_t(np.asarray(dy)))


class ZCAOffByRelative1e4(ZCAWhitening):
    """A gradient wrong by a relative 1e-4: a constant slightly off somewhere."""

    def backward(self, dy: Array) -> Array:
        return super().backward(dy) * (1.0 + 1e-4)


class DBNForgetsGamma(DecorrelatedBatchNorm):
    """Forgets to multiply ``dy`` by ``gamma`` before the whitening backward; invisible while
    ``gamma`` is still at its initial value of ones, so the factory sets a random ``gamma``."""

    def backward(self, dy: Array) -> Array:
        saved = self.cache["gamma"]
        self.cache["gamma"] = np.ones_like(saved)
        try:
            dx = super().backward(dy)
        finally:
            self.cache["gamma"] = saved
        return dx


def _dbn_with_random_gamma() -> DecorrelatedBatchNorm:
    layer = DBNForgetsGamma(num_features=5)
    rng = np.random.default_rng(99)
    layer.params["gamma"] = 1.0 + 0.5 * rng.standard_normal(5)
    layer.params["beta"] = rng.standard_normal(5)
    return layer


class DBNGammaBetaSwapped(DecorrelatedBatchNorm):
    """Writes the gradient of ``beta`` into ``grads["gamma"]`` and that of ``gamma`` into
    ``grads["beta"]``: two keys exchanged."""

    def backward(self, dy: Array) -> Array:
        dx = super().backward(dy)
        self.grads = {"gamma": self.grads["beta"], "beta": self.grads["gamma"]}
        return dx


# -- softmax cross-entropy and activations ---------------------------------------------------


class SoftmaxCENoMean(SoftmaxCrossEntropy):
    """Returns ``p - onehot`` for the mean reduction: forgets the ``1/N``."""

    def backward(self) -> Array:  # type: ignore[override]
        grad = super().backward()
        return grad * grad.shape[-2]


class SoftmaxCEForgetsTarget(SoftmaxCrossEntropy):
    """Returns ``p / N``: forgets to subtract the one-hot target, so each example's target
    entry is off by ``1/N`` and no other entry is."""

    def backward(self) -> Array:  # type: ignore[override]
        grad = super().backward()
        labels = self.cache["labels"]
        onehot = np.arange(grad.shape[-1]) == labels[:, None]
        return grad + onehot / grad.shape[-2]


class SigmoidWrongDerivative(Sigmoid):
    """``sigma'(x) = sigma(x)`` (an exponential's derivative) instead of ``sigma (1 - sigma)``."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        return np.asarray(dy) * self.cache["y"]


class LeakyReLUAsReLU(LeakyReLU):
    """Copies ReLU's derivative: zero slope for negative inputs."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        return np.asarray(dy) * (self.cache["x"] > 0)


class TanhMutatesDy(Tanh):
    """Computes the right gradient, but in place in ``dy``, corrupting the caller's array."""

    def backward(self, dy: Array) -> Array:
        super().backward(dy)
        dy *= 1.0 - self.cache["y"] ** 2
        return dy


def mutant_catalogue() -> List[Mutant]:
    """Every mutant, in a stable order."""
    return [
        Mutant(
            "center-forgets-mean",
            "center",
            "backward forgets to subtract mean(dy)",
            CenterForgetsMean,
            signature="offset",
        ),
        Mutant(
            "center-elementwise",
            "center",
            "elementwise (1 - 1/m) reading of the derivative",
            CenterElementwise,
        ),
        Mutant(
            "center-loop-from-one",
            "center",
            "off-by-one: the loop over examples starts at 1",
            CenterLoopFromOne,
            signature="rows",
        ),
        Mutant(
            "dense-sign-flip",
            "dense",
            "sign flip",
            lambda: DenseSignFlip(5, 3),
            ((8, 5), (1, 5)),
            signature="scale -1",
        ),
        Mutant(
            "dense-missing-transpose",
            "dense",
            "missing transpose (dy @ W)",
            lambda: DenseMissingTranspose(4, 4),
            ((8, 4),),
        ),
        Mutant(
            "dense-weight-transposed",
            "dense",
            "dW = dy^T x: the weight gradient transposed",
            lambda: DenseWeightTransposed(4, 4),
            ((8, 4), (16, 4)),
            signature="transpose",
        ),
        Mutant(
            "dense-weight-centered-input",
            "dense",
            "dW from the batch-centered input",
            lambda: DenseWeightFromCenteredInput(5, 3),
            ((8, 5), (16, 5)),
            signature="rank-one",
        ),
        Mutant(
            "dense-bias-mean",
            "dense",
            "db = mean(dy): 1/N where none belongs",
            lambda: DenseBiasMean(5, 3),
            ((8, 5),),
            signature="scale 1/N",
        ),
        Mutant(
            "dense-no-bias-gradient",
            "dense",
            "bias treated as a constant: db = 0",
            lambda: DenseNoBiasGradient(5, 3),
            ((8, 5),),
            signature="zero",
        ),
        Mutant(
            "dense-accumulates",
            "dense",
            "adds into grads instead of overwriting",
            lambda: DenseAccumulates(5, 3),
            ((8, 5),),
        ),
        Mutant(
            "standardize-unbiased",
            "standardize",
            "1/(N-1) in the backward, 1/N forward",
            StandardizeUnbiased,
        ),
        Mutant(
            "standardize-no-variance-path",
            "standardize",
            "variance path dropped",
            StandardizeNoVariancePath,
        ),
        Mutant(
            "standardize-loop-stops-short",
            "standardize",
            "off-by-one: the loop over features stops one short",
            StandardizeLoopStopsShort,
            signature="columns",
        ),
        Mutant(
            "zca-no-covariance-path",
            "zca-eigh",
            "covariance path of whitening dropped",
            ZCANoCovariancePath,
            ((16, 4), (4, 6)),
        ),
        Mutant(
            "zca-no-symmetrization",
            "zca-eigh",
            "dL/dSigma not symmetrized",
            ZCANoSymmetrization,
            ((16, 4), (4, 6)),
            signature="symmetric-part",
        ),
        Mutant(
            "zca-unbiased",
            "zca-eigh",
            "2/(N-1) in the covariance backward",
            ZCAUnbiased,
            ((16, 4), (32, 8)),
        ),
        Mutant(
            "zca-eps-ignored",
            "zca-eigh",
            "eps ignored in the backward",
            ZCAEpsIgnored,
            ((16, 4), (32, 8)),
        ),
        Mutant(
            "zca-dy-transposed",
            "zca-eigh",
            "right only for symmetric dy",
            ZCADyTransposed,
            ((6, 6), (4, 4)),
            signature="transpose",
        ),
        Mutant(
            "zca-off-1e-4",
            "zca-eigh",
            "gradient off by a relative 1e-4",
            ZCAOffByRelative1e4,
            ((16, 4), (4, 6)),
            signature="scale",
        ),
        Mutant(
            "dbn-forgets-gamma",
            "dbn",
            "gamma dropped from the input gradient",
            _dbn_with_random_gamma,
            ((16, 5),),
        ),
        Mutant(
            "dbn-gamma-beta-swapped",
            "dbn",
            "gradients of gamma and beta exchanged",
            lambda: DBNGammaBetaSwapped(num_features=5),
            ((16, 5),),
            signature="swapped",
        ),
        Mutant(
            "softmax-ce-no-mean",
            "softmax-ce",
            "missing the 1/N of the mean",
            SoftmaxCENoMean,
            ((8, 3), (16, 10)),
            "logits",
            signature="scale N",
        ),
        Mutant(
            "softmax-ce-forgets-target",
            "softmax-ce",
            "p/N: the one-hot target not subtracted",
            SoftmaxCEForgetsTarget,
            ((8, 10), (16, 10)),
            "logits",
            signature="entries",
        ),
        Mutant(
            "sigmoid-wrong-derivative", "sigmoid", "sigma' taken as sigma", SigmoidWrongDerivative
        ),
        Mutant(
            "leaky-relu-as-relu",
            "leaky-relu",
            "negative slope dropped",
            LeakyReLUAsReLU,
            signature="zero",
        ),
        Mutant("tanh-mutates-dy", "tanh", "right gradient, computed in place in dy", TanhMutatesDy),
    ]

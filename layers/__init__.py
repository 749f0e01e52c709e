"""NumPy layers with hand-written forward and backward passes (rows are examples).

Every layer follows the protocol in :mod:`layers.base`: ``forward`` recomputes its cache,
``backward`` overwrites ``grads`` and returns ``dL/dx``, and neither mutates its arguments.
"""

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer, LayerProtocol, LossLayer
from .centering import Center
from .dense import Dense
from .softmax_ce import SoftmaxCrossEntropy, softmax
from .standardize import Standardize
from .whitening import (
    DecorrelatedBatchNorm,
    ZCAWhitening,
    inv_sqrt_backward,
    inv_sqrt_psd,
    zca_backward,
    zca_forward,
)

__all__ = [
    "Center",
    "DecorrelatedBatchNorm",
    "Dense",
    "Layer",
    "LayerProtocol",
    "LeakyReLU",
    "LossLayer",
    "ReLU",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Standardize",
    "Tanh",
    "ZCAWhitening",
    "inv_sqrt_backward",
    "inv_sqrt_psd",
    "softmax",
    "zca_backward",
    "zca_forward",
]

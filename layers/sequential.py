"""A network of layers that is itself a layer: :class:`Sequential`, and :class:`NetworkWithLoss`.

:class:`Sequential` chains layers. It follows the layer protocol of :mod:`layers.base`, so the
harness checks a whole network as it checks one layer: ``check_layer(net, x)`` compares the
gradient of the input and of *every* parameter of every sub-layer at once. Its ``params`` is a
view of the sub-layers' parameters under prefixed names (``"0.W"`` is ``params["W"]`` of layer
0); assigning ``net.params["0.W"] = a`` replaces the sub-layer's array, which is what a
finite-difference estimate does.

:class:`NetworkWithLoss` puts a loss layer on top (a loss layer for the harness:
``forward(x, labels) -> float``, ``backward() -> dL/dx``).

Train and eval mode. ``net.train()`` / ``net.eval()`` set the ``train`` flag of every sub-layer
that has one (:class:`~layers.whitening.DecorrelatedBatchNorm`,
:class:`~layers.batchnorm.BatchNorm`). In eval mode those layers use running statistics gathered
in training, so a prediction for one example does not depend on the other examples of its batch.
:class:`~layers.whitening.ZCAWhitening` and :class:`~layers.standardize.Standardize` have no
running statistics: they normalize each batch by its own statistics in either mode
(:meth:`Sequential.batch_statistics_layers` lists them). For whitening over the *examples* of a
batch that is the only meaningful choice: the ``N x N`` covariance couples the examples of one
batch, and there is no per-example statistic to keep.

Rows are examples throughout: an input is ``(N, D)`` (or a stack ``(..., N, D)`` when every
sub-layer supports stacks).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Tuple

import numpy as np

from .base import Array, Layer, LossLayer, check_upstream
from .centering import Center
from .standardize import Standardize
from .whitening import ZCAWhitening


def _split_key(key: str) -> Tuple[int, str]:
    index, _, rest = key.partition(".")
    if not rest or not index.isdigit():
        raise KeyError(f"parameter name {key!r} is not of the form '<layer index>.<name>'")
    return int(index), rest


class ParamView(dict):  # type: ignore[type-arg]
    """A snapshot of a network's parameters whose item assignment writes through.

    It is a real ``dict`` (the harness accepts only dicts as ``params``), filled with the
    sub-layers' arrays themselves, not copies, so in-place updates (``view["0.W"] -= step``)
    change the network. ``view[key] = a`` replaces the array in the owning sub-layer as well.
    Keys cannot be added or removed: the sub-layers own their parameter sets.
    """

    def __init__(self, owner: Sequential) -> None:
        super().__init__(owner._collect("params"))
        self._owner = owner

    def __setitem__(self, key: str, value: Array) -> None:
        if not dict.__contains__(self, key):
            raise KeyError(
                f"{self._owner.name}: no parameter {key!r}; the parameters are "
                f"{', '.join(self) or '(none)'}"
            )
        index, rest = _split_key(key)
        # A nested Sequential's params is itself a view, so this recurses down to the owner.
        self._owner.layers[index].params[rest] = value
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._owner.name}: parameters cannot be added or removed")

    __delitem__ = _refuse
    pop = _refuse
    popitem = _refuse
    clear = _refuse
    setdefault = _refuse


class Sequential(Layer):
    """Layers applied in order; itself a layer whose parameters are all of theirs.

    Shapes: ``x`` is ``(N, D_in)`` (a stack ``(..., N, D_in)`` when :attr:`supports_batch`);
    ``forward`` returns the last layer's output, ``backward(dy)`` returns ``dL/dx`` of the shape
    of ``x`` and fills ``grads`` with one array per key of ``params``.

    ``params`` is a fresh :class:`ParamView` on every access: ``"i.key"`` is ``params[key]`` of
    layer ``i`` (nested networks give ``"i.j.key"``). ``grads`` uses the same names and is
    overwritten by every backward. Sub-layers may be any objects following the protocol.
    A new network is in train mode: construction sets every sub-layer's ``train`` flag.
    """

    def __init__(self, layers: Iterable[Any]) -> None:
        # Layer.__init__ is not called: it would assign ``params``, which here is a computed
        # view of the sub-layers' parameters rather than storage of its own.
        self.layers: List[Any] = list(layers)
        if not self.layers:
            raise ValueError("Sequential: needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not (
                callable(getattr(layer, "forward", None))
                and callable(getattr(layer, "backward", None))
            ):
                raise TypeError(
                    f"Sequential: layer {i} ({type(layer).__name__}) has no forward/backward"
                )
            if getattr(layer, "is_loss", False):
                raise TypeError(
                    f"Sequential: layer {i} is a loss layer; put it on top with NetworkWithLoss"
                )
        self.grads: Dict[str, Array] = {}
        self.cache: Any = None
        self.training = True
        self.train(True)

    # -- the layer protocol ------------------------------------------------------------------

    @property
    def params(self) -> Dict[str, Array]:  # type: ignore[override]
        """Every sub-layer parameter under ``"<layer index>.<name>"``; see :class:`ParamView`."""
        return ParamView(self)

    @property
    def supports_batch(self) -> bool:  # type: ignore[override]
        """Stacks ``(..., N, D)`` are accepted when every sub-layer accepts them."""
        return all(getattr(layer, "supports_batch", False) for layer in self.layers)

    @property
    def supports_complex(self) -> bool:  # type: ignore[override]
        """Holomorphic only when every sub-layer is (a LeakyReLU, for one, is not)."""
        return all(getattr(layer, "supports_complex", False) for layer in self.layers)

    def forward(self, x: Array) -> Array:
        """Run every layer in order; returns the last output (``(N, D_out)`` for ``(N, D_in)``)."""
        x_in = np.shape(x)
        for layer in self.layers:
            x = layer.forward(x)
        self.cache = {"shape_in": x_in, "shape_out": np.shape(x)}
        return x

    def backward(self, dy: Array) -> Array:
        """Run the backward passes in reverse; return ``dL/dx``; fill ``grads`` for all params."""
        cache = self._require_cache()
        dy = check_upstream(self.name, "dy", dy, cache["shape_out"])
        per_layer: List[Dict[str, Array]] = [{} for _ in self.layers]
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            dy = layer.backward(dy)
            # Copy the dict, not the arrays: a sub-layer rebinds its grads on every backward.
            per_layer[i] = dict(getattr(layer, "grads", None) or {})
        self.grads = {
            f"{i}.{key}": g for i, grads in enumerate(per_layer) for key, g in grads.items()
        }
        return dy

    # -- modes ------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Sequential:
        """Set train (``True``) or eval mode on every sub-layer that has a ``train`` flag."""
        self.training = bool(mode)
        for layer in self.layers:
            if isinstance(layer, Sequential):
                layer.train(mode)
            elif isinstance(getattr(layer, "train", None), bool):
                layer.train = bool(mode)
        return self

    def eval(self) -> Sequential:
        """Eval mode: layers with running statistics use them instead of the batch's own."""
        return self.train(False)

    def batch_statistics_layers(self) -> List[Tuple[int, Any]]:
        """``(index, layer)`` of the layers that use the batch's own statistics even in eval mode.

        These are the normalization layers without running statistics (ZCAWhitening,
        Standardize, Center); their output for one example depends on the rest of its batch.
        """
        found: List[Tuple[int, Any]] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                found += [(i, inner) for _, inner in layer.batch_statistics_layers()]
            elif isinstance(layer, (ZCAWhitening, Standardize, Center)):
                found.append((i, layer))
        return found

    # -- conveniences -----------------------------------------------------------------------

    @property
    def n_params(self) -> int:
        """The number of scalar parameters."""
        return int(sum(np.size(p) for p in self.params.values()))

    def _collect(self, attr: str) -> Dict[str, Array]:
        out: Dict[str, Array] = {}
        for i, layer in enumerate(self.layers):
            values = getattr(layer, attr, None)
            if isinstance(values, Mapping):
                out.update({f"{i}.{key}": value for key, value in values.items()})
        return out

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Any:
        return self.layers[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


class NetworkWithLoss(LossLayer):
    """A network with a loss layer on top, as one loss layer.

    ``forward(x, labels)``: ``x`` is ``(N, D_in)`` (or a stack ``(..., N, D_in)``, giving a
    ``(...)`` array of losses), ``labels`` whatever the loss takes (``(N,)`` class indices for
    :class:`~layers.softmax_ce.SoftmaxCrossEntropy`); returns the loss. ``backward()`` returns
    ``dL/dx`` (shape of ``x``) and fills ``grads`` for every network parameter. ``params`` is the
    network's :class:`ParamView`, so ``check_layer(model, x, target=labels)`` checks them all.
    """

    def __init__(self, network: Sequential, loss: LossLayer) -> None:
        # No Layer.__init__: params is the network's view (see Sequential.__init__).
        self.network = network
        self.loss = loss
        self.grads: Dict[str, Array] = {}
        self.cache: Any = None

    @property
    def params(self) -> Dict[str, Array]:  # type: ignore[override]
        """The network's parameters (the loss layer has none)."""
        return self.network.params

    @property
    def supports_batch(self) -> bool:  # type: ignore[override]
        return self.network.supports_batch and bool(getattr(self.loss, "supports_batch", False))

    @property
    def supports_complex(self) -> bool:  # type: ignore[override]
        return self.network.supports_complex and bool(getattr(self.loss, "supports_complex", False))

    def forward(self, x: Array, target: Array) -> Any:  # type: ignore[override]
        """Return the loss of the network's output against ``target``."""
        self.cache = True
        return self.loss.forward(self.network.forward(x), target)

    def backward(self) -> Array:  # type: ignore[override]
        """Return ``dL/dx`` for the last forward; fill ``grads`` for every network parameter."""
        self._require_cache()
        dx = self.network.backward(self.loss.backward())
        self.grads = self.network.grads
        return dx

    def predict(self, x: Array) -> Array:
        """Class indices ``(N,)``: the argmax of the network's output (in the current mode)."""
        return np.argmax(self.network.forward(x), axis=-1)

    def __repr__(self) -> str:
        return f"NetworkWithLoss({self.network!r}, {self.loss!r})"


__all__ = ["NetworkWithLoss", "ParamView", "Sequential"]

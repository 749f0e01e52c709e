"""A network of layers that is itself a layer, and the loop that trains it.

:class:`Sequential` chains layers. It follows the layer protocol of :mod:`layers.base`, so the
harness checks a whole network as it checks one layer: ``check_layer(net, x)`` compares the
gradient of the input and of *every* parameter of every sub-layer at once. Its ``params`` is a
view of the sub-layers' parameters under prefixed names (``"0.W"`` is ``params["W"]`` of layer
0); assigning ``net.params["0.W"] = a`` replaces the sub-layer's array, which is what a
finite-difference estimate does.

:class:`NetworkWithLoss` puts a loss layer on top (a loss layer for the harness:
``forward(x, labels) -> float``, ``backward() -> dL/dx``). :func:`build_mlp` builds the network
of the blog's experiment; :func:`fit` trains it with an optimizer from :mod:`layers.optim` using
nothing but the layers' hand-written backward passes.

Train and eval mode. ``net.train()`` / ``net.eval()`` set the ``train`` flag of every sub-layer
that has one (:class:`~layers.whitening.DecorrelatedBatchNorm`, :class:`BatchNorm`). In eval mode
those layers use running statistics gathered in training, so a prediction for one example does
not depend on the other examples of its batch. :class:`~layers.whitening.ZCAWhitening` and
:class:`~layers.standardize.Standardize` have no running statistics: they normalize each batch by
its own statistics in either mode (:meth:`Sequential.batch_statistics_layers` lists them). For
whitening over the *examples* of a batch that is the only meaningful choice: the ``N x N``
covariance couples the examples of one batch, and there is no per-example statistic to keep.

Rows are examples throughout: an input is ``(N, D)`` (or a stack ``(..., N, D)`` when every
sub-layer supports stacks).
"""

from __future__ import annotations

import time
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np

from .activations import LeakyReLU, Tanh
from .base import (
    Array,
    Layer,
    LossLayer,
    as_float64,
    check_choice,
    check_matrix,
    check_real,
    check_upstream,
    ensure_feature_params,
    sum_over_leading_axes,
)
from .centering import Center
from .dense import Dense
from .standardize import Standardize
from .whitening import DecorrelatedBatchNorm, ZCAWhitening

NORMS: Tuple[str, ...] = ("none", "standardize", "zca", "dbn")
WHITEN_OVER: Tuple[str, ...] = ("features", "examples")

# The blog's whitening layer added this to the eigenvalues of its 250 x 250 covariance.
BLOG_EXAMPLES_EPS = 0.06


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


class BatchNorm(Layer):
    """:class:`~layers.standardize.Standardize` in training, running statistics at inference.

    Shapes: ``x`` is ``(N, D)`` or a stack ``(..., N, D)``; ``y`` and ``dx`` have its shape;
    ``params["gamma"]``, ``params["beta"]`` are ``(D,)`` when ``affine``.

    Train mode (``train = True``) is exactly ``Standardize`` (its forward and backward run), and
    a single ``(N, D)`` batch also updates ``running_mean`` and ``running_var`` (``(D,)``, from
    zeros and ones) as ``r = (1 - momentum) r + momentum * batch_value``, with the same biased
    variance the batch was normalized with. As in DecorrelatedBatchNorm, a stacked forward (the
    harness evaluating perturbed copies) leaves them alone.

    Eval mode: ``xhat = (x - running_mean) / sqrt(running_var + eps)``, a fixed affine map, so
    ``dx = dy * gamma / sqrt(running_var + eps)``. The backward follows the mode of the last
    forward.
    """

    supports_batch: ClassVar[bool] = True
    supports_complex: ClassVar[bool] = False

    def __init__(
        self, num_features: int, eps: float = 1e-5, affine: bool = False, momentum: float = 0.1
    ) -> None:
        super().__init__()
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm: argument 'momentum' must be in [0, 1], got {momentum!r}")
        self.inner = Standardize(eps=eps, affine=affine, num_features=num_features)
        # One dict shared with the inner layer, so a parameter replaced by the harness or an
        # optimizer is seen by both modes.
        self.params = self.inner.params
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.affine = bool(affine)
        self.momentum = float(momentum)
        self.train = True
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)

    def forward(self, x: Array) -> Array:
        """Standardize by the batch (train) or by the running statistics (eval)."""
        x = as_float64(check_matrix(self.name, "x", x))
        check_real(self.name, "x", x)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"{self.name}: argument 'x' must have {self.num_features} features, "
                f"got shape {x.shape}"
            )
        if self.train:
            y = self.inner.forward(x)
            if x.ndim == 2:
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * x.mean(axis=0)
                self.running_var = (1 - m) * self.running_var + m * x.var(axis=0)
            self.cache = {"train": True, "shape": x.shape}
            return y
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        xhat = (x - self.running_mean) * inv_std
        self.cache = {"train": False, "shape": x.shape, "xhat": xhat, "inv_std": inv_std}
        if not self.affine:
            return xhat
        ensure_feature_params(self, self.num_features, gamma=1.0, beta=0.0)
        self.cache["gamma"] = self.params["gamma"]
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        """Return ``dL/dx`` (shape of ``x``); fill ``grads["gamma"]``, ``grads["beta"]``."""
        cache = self._require_cache()
        if cache["train"]:
            dx = self.inner.backward(dy)
            self.grads = self.inner.grads
            return dx
        dy = check_upstream(self.name, "dy", dy, cache["shape"])
        if not self.affine:
            self.grads = {}
            return dy * cache["inv_std"]
        self.grads = {
            "gamma": sum_over_leading_axes(dy * cache["xhat"]),
            "beta": sum_over_leading_axes(dy),
        }
        return dy * cache["gamma"] * cache["inv_std"]

    def __repr__(self) -> str:
        return (
            f"BatchNorm(num_features={self.num_features}, eps={self.eps!r}, "
            f"affine={self.affine}, momentum={self.momentum!r})"
        )


def default_eps(norm: str, whiten_over: str = "features") -> float:
    """The ``eps`` :func:`make_norm` uses for ``norm`` when none is given.

    ``"standardize"`` (and ``"none"``, which has no use for it): the layers' 1e-5. Whitening
    over examples: the blog's 0.06. Whitening over features (``"zca"``, ``"dbn"``): 1e-3 rather
    than 1e-5, because the batch covariance of D hidden units is rank-deficient whenever the
    batch has fewer than D + 1 examples, and ``eps`` then sets how strongly the empty
    directions are amplified (``eps^(-1/2)``) at inference, where the running statistics meet
    test data that does have components there (on the digits, 1e-5 cost 3 to 6 points of test
    accuracy).
    """
    check_choice("default_eps", "norm", norm, NORMS)
    check_choice("default_eps", "whiten_over", whiten_over, WHITEN_OVER)
    if norm in ("none", "standardize"):
        return 1e-5
    return BLOG_EXAMPLES_EPS if whiten_over == "examples" else 1e-3


def make_norm(
    norm: str,
    num_features: int,
    *,
    whiten_over: str = "features",
    eps: Optional[float] = None,
    momentum: float = 0.1,
) -> Optional[Layer]:
    """The normalization layer :func:`build_mlp` puts after the first hidden layer.

    ``"none"``: no layer (``None``). ``"standardize"``: :class:`BatchNorm` (Standardize with
    running mean and variance, no affine). ``"zca"`` over features:
    ``DecorrelatedBatchNorm(affine=False)``, which in train mode is ZCAWhitening over features
    (centred) and adds running statistics for inference. ``"zca"`` over examples: the blog's
    layer, ``ZCAWhitening(axis="examples", center=False)``, which has no running statistics.
    ``"dbn"``: ``DecorrelatedBatchNorm(affine=True)``. Only ``"zca"`` whitens over examples.
    """
    check_choice("make_norm", "norm", norm, NORMS)
    check_choice("make_norm", "whiten_over", whiten_over, WHITEN_OVER)
    if whiten_over == "examples" and norm != "zca":
        raise ValueError(
            f"make_norm: whitening over examples is offered for norm='zca' only, got {norm!r}"
        )
    eps = default_eps(norm, whiten_over) if eps is None else float(eps)
    if norm == "none":
        return None
    if norm == "standardize":
        return BatchNorm(num_features, eps=eps, affine=False, momentum=momentum)
    if norm == "dbn":
        return DecorrelatedBatchNorm(
            eps=eps, affine=True, momentum=momentum, num_features=num_features
        )
    if whiten_over == "examples":
        return ZCAWhitening(eps=eps, center=False, axis="examples")
    return DecorrelatedBatchNorm(
        eps=eps, affine=False, momentum=momentum, num_features=num_features
    )


def build_mlp(
    n_in: int,
    hidden: Sequence[int] = (676, 256),
    n_out: int = 10,
    *,
    norm: str = "zca",
    whiten_over: str = "features",
    eps: Optional[float] = None,
    momentum: float = 0.1,
    slope: float = 0.01,
    seed: int = 0,
) -> Sequential:
    """The blog's network: ``Dense -> Tanh -> [norm] -> Dense -> LeakyReLU -> ... -> Dense``.

    With ``hidden = (h1, h2)``: ``n_in -> h1 (tanh) -> norm -> h2 (leaky ReLU) -> n_out``; more
    sizes add ``Dense -> LeakyReLU`` blocks, one size gives ``n_in -> h1 (tanh) -> norm -> n_out``.
    The output is ``(N, n_out)`` logits for a softmax cross-entropy. The normalization layer is
    :func:`make_norm`'s. Each Dense draws its weights from its own child of
    ``np.random.SeedSequence(seed)``, so a seed fixes the initialization.
    """
    sizes = [int(n_in), *(int(h) for h in hidden), int(n_out)]
    if len(sizes) < 3 or min(sizes) < 1:
        raise ValueError(
            f"build_mlp: need n_in, at least one hidden size and n_out, all >= 1; got {sizes}"
        )
    children = np.random.SeedSequence(seed).spawn(len(sizes) - 1)
    seeds = [int(c.generate_state(1)[0]) for c in children]
    layers: List[Layer] = [Dense(sizes[0], sizes[1], seed=seeds[0]), Tanh()]
    norm_layer = make_norm(norm, sizes[1], whiten_over=whiten_over, eps=eps, momentum=momentum)
    if norm_layer is not None:
        layers.append(norm_layer)
    for i in range(1, len(sizes) - 1):
        layers.append(Dense(sizes[i], sizes[i + 1], seed=seeds[i]))
        if i < len(sizes) - 2:
            layers.append(LeakyReLU(slope))
    return Sequential(layers)


# ---------------------------------------------------------------------------------------------
# Training.

EpochRecord = Dict[str, float]
BatchCallback = Callable[[int, int, float], None]
EpochCallback = Callable[[EpochRecord], None]


def batch_indices(
    n: int, batch_size: int, rng: Optional[np.random.Generator] = None
) -> List[Array]:
    """Split ``range(n)`` (shuffled by ``rng`` when given) into ``max(1, n // batch_size)`` batches.

    The batches differ in size by at most one, so every example is used and none is smaller
    than ``batch_size`` (for ``n >= batch_size``): a small leftover batch would give whitening
    a covariance estimated from a handful of examples.
    """
    if batch_size < 1:
        raise ValueError(f"batch_indices: batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return np.array_split(order, max(1, n // batch_size))


def evaluate(model: NetworkWithLoss, x: Array, y: Array, batch_size: int) -> Tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``x`` ``(N, D)``, labels ``y`` ``(N,)``, in eval mode.

    Batches are taken in order (:func:`batch_indices` without shuffling). Layers with running
    statistics use them; the others (whitening over examples) normalize each batch by itself.
    The network's previous mode is restored afterwards.
    """
    was_training = model.network.training
    model.network.eval()
    try:
        total_loss, correct = 0.0, 0
        for idx in batch_indices(len(x), batch_size):
            total_loss += float(model.forward(x[idx], y[idx])) * len(idx)
            correct += int(np.sum(np.argmax(model.loss.probabilities, axis=-1) == y[idx]))
    finally:
        model.network.train(was_training)
    return total_loss / len(x), correct / len(x)


def train_epoch(
    model: NetworkWithLoss,
    optimizer: Any,
    x: Array,
    y: Array,
    batch_size: int,
    rng: np.random.Generator,
    on_batch: Optional[BatchCallback] = None,
) -> Tuple[float, float]:
    """One pass over ``x`` ``(N, D)``, ``y`` ``(N,)`` in shuffled minibatches, in train mode.

    Each step is ``forward``, ``backward`` (the hand-written passes), ``optimizer.step(params,
    grads)``. Returns the mean minibatch loss and accuracy as seen during training (with the
    batch statistics, and with weights that changed along the way). ``on_batch(i, n, loss)``
    is called after each step.
    """
    model.network.train()
    batches = batch_indices(len(x), batch_size, rng)
    total_loss, correct = 0.0, 0
    for i, idx in enumerate(batches):
        loss = float(model.forward(x[idx], y[idx]))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"train_epoch: the loss became {loss} at step {i + 1}; lower the learning rate"
            )
        correct += int(np.sum(np.argmax(model.loss.probabilities, axis=-1) == y[idx]))
        model.backward()
        optimizer.step(model.params, model.grads)
        total_loss += loss * len(idx)
        if on_batch is not None:
            on_batch(i + 1, len(batches), loss)
    return total_loss / len(x), correct / len(x)


def fit(
    model: NetworkWithLoss,
    optimizer: Any,
    train: Tuple[Array, Array],
    test: Optional[Tuple[Array, Array]] = None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: Optional[EpochCallback] = None,
    on_batch: Optional[BatchCallback] = None,
) -> List[EpochRecord]:
    """Train for ``epochs`` epochs; after each, measure train and test loss and accuracy.

    ``train`` and ``test`` are ``(x (N, D), labels (N,))`` pairs. Minibatches are shuffled by
    ``np.random.default_rng(seed)``. After every epoch the model is evaluated in eval mode on
    the training and the test set (:func:`evaluate`, batches of ``batch_size``) and the
    optimizer's ``end_epoch()`` applies its learning-rate decay. Each epoch's record has
    ``epoch``, ``lr`` (the rate used in that epoch), ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` (when ``test`` is given), ``batch_loss`` and
    ``batch_accuracy`` (averaged over the epoch's training steps) and ``seconds`` (training
    only, without evaluation).
    """
    if epochs < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
    rng = np.random.default_rng(seed)
    x_train, y_train = train
    history: List[EpochRecord] = []
    for epoch in range(1, epochs + 1):
        lr = float(optimizer.lr)
        start = time.perf_counter()
        batch_loss, batch_acc = train_epoch(
            model, optimizer, x_train, y_train, batch_size, rng, on_batch
        )
        seconds = time.perf_counter() - start
        train_loss, train_acc = evaluate(model, x_train, y_train, batch_size)
        record: EpochRecord = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
        }
        if test is not None:
            record["test_loss"], record["test_accuracy"] = evaluate(
                model, test[0], test[1], batch_size
            )
        record.update(batch_loss=batch_loss, batch_accuracy=batch_acc, seconds=seconds)
        optimizer.end_epoch()
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


__all__ = [
    "NORMS",
    "WHITEN_OVER",
    "BatchNorm",
    "NetworkWithLoss",
    "ParamView",
    "Sequential",
    "batch_indices",
    "build_mlp",
    "default_eps",
    "evaluate",
    "fit",
    "make_norm",
    "train_epoch",
]

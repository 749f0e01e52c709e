"""Train the blog's 3-layer network with nothing but this repository's hand-written backward passes.

    python examples/train_mlp.py                          # 8x8 digits (needs scikit-learn)
    python examples/train_mlp.py --norm zca --whiten-over examples --log run.json --plot run.png
    python examples/train_mlp.py --fashion-mnist ~/data/fashion --hidden 676,256 \\
        --norm zca --whiten-over examples --epochs 15 --batch-size 250 --lr 1e-3 --lr-decay 0.99

The network is ``Dense -> Tanh -> [normalization] -> Dense -> LeakyReLU -> Dense`` with a
softmax cross-entropy on top (:func:`layers.model.build_mlp`), trained by SGD with momentum or
Adam (:mod:`layers.optim`). Every gradient comes from the layers' own ``backward`` methods.

Data: by default the 8x8 digits that scikit-learn ships (offline; ``pip install scikit-learn``),
or Fashion-MNIST from the IDX files in a local folder (``--fashion-mnist DIR``). Nothing is
downloaded.

Output: one line per epoch with train and test loss and accuracy (both measured after the
epoch, in eval mode), a progress bar on stderr when it is a terminal, a JSON log (``--log``) and
a PNG of the learning curves (``--plot``, needs matplotlib). At inference the normalization
layers use their running statistics, except whitening over the examples of a batch, which has
none (see ``docs/training.md``).

Exit codes: 0 done; 1 training diverged (a non-finite loss, or a covariance that cannot be
whitened); 2 a usage or data error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import numpy as np

if importlib.util.find_spec("layers") is None:
    # Run from a checkout that is not pip-installed: the packages live one folder up.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layers.datasets import Dataset, IDXError, load_digits, load_fashion_mnist
from layers.model import NORMS, WHITEN_OVER, build_mlp
from layers.optim import SGD, Adam, Optimizer
from layers.sequential import NetworkWithLoss, Sequential
from layers.softmax_ce import SoftmaxCrossEntropy
from layers.training import fit

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2

# Per-dataset defaults: Fashion-MNIST's are the blog's run; the digits' suit 1,347 examples of 64
# pixels (a batch of 100 still gives 13 steps per epoch).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "digits": {"hidden": (128, 64), "batch_size": 100, "epochs": 20},
    "fashion-mnist": {"hidden": (676, 256), "batch_size": 250, "epochs": 15},
}
PLOT_HINT = "install it with `pip install matplotlib` (or `pip install 'gradcheck-dbn[plot]'`)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _sizes(text: str) -> Tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes such as 676,256, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (also what ``--help`` prints)."""
    p = _Parser(
        prog="train_mlp.py",
        description=(
            "Train Dense-Tanh-[norm]-Dense-LeakyReLU-Dense with softmax cross-entropy, using "
            "only the hand-written backward passes of this repository's layers."
        ),
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--fashion-mnist",
        metavar="DIR",
        help="read Fashion-MNIST (or MNIST) from the four IDX files in DIR, .gz or not; "
        "default: scikit-learn's 8x8 digits",
    )
    data.add_argument(
        "--limit",
        type=_positive(int),
        metavar="N",
        help="use at most N training and N test examples (a random subset fixed by --split-seed)",
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the digits' train/test split and of --limit's subset (default 0), kept "
        "apart from --seed so that runs with different seeds see the same data",
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--norm",
        choices=NORMS,
        default="zca",
        help="normalization after the first hidden layer (default zca): standardize = batch "
        "norm without affine; zca = ZCA whitening; dbn = decorrelated batch norm (ZCA + affine)",
    )
    net.add_argument(
        "--whiten-over",
        choices=WHITEN_OVER,
        default="features",
        help="zca only: whiten over the features (D x D covariance, running statistics at "
        "inference) or over the examples of a batch (N x N, as the blog did; no running "
        "statistics exist, so each test batch is whitened by itself); default features",
    )
    net.add_argument(
        "--eps",
        type=float,
        help="added to the variance or the covariance's eigenvalues (default: 1e-5 standardize, "
        "1e-3 zca/dbn over features, the blog's 0.06 over examples)",
    )
    net.add_argument(
        "--hidden",
        type=_sizes,
        metavar="H1,H2",
        help="hidden sizes (default 128,64 for digits, 676,256 for Fashion-MNIST)",
    )
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=_positive(int), help="default 20 digits, 15 Fashion-MNIST")
    train.add_argument(
        "--batch-size", type=_positive(int), help="default 100 digits, 250 Fashion-MNIST"
    )
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument(
        "--lr", type=_positive(float), default=None, help="default 1e-3 (adam), 0.05 (sgd)"
    )
    train.add_argument(
        "--lr-decay",
        type=_positive(float),
        default=0.99,
        help="multiply the learning rate by this after every epoch (default 0.99, the blog's)",
    )
    train.add_argument("--momentum", type=float, default=0.9, help="sgd only (default 0.9)")
    train.add_argument("--seed", type=int, default=0, help="weights and shuffling (default 0)")
    train.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="BLAS threads while training (default 1; 0 leaves BLAS's own default); needs "
        "threadpoolctl, which scikit-learn installs",
    )
    out = p.add_argument_group("output")
    out.add_argument("--log", metavar="FILE.json", help="write the run's settings and curves")
    out.add_argument("--plot", metavar="FILE.png", help="learning curves (needs matplotlib)")
    out.add_argument(
        "--quiet", action="store_true", help="no progress bar or per-epoch lines; final line only"
    )
    return p


# ---------------------------------------------------------------------------------------------
# Pieces of the run.


def load_data(args: argparse.Namespace) -> Dataset:
    """The dataset the arguments ask for, limited to ``--limit`` examples."""
    if args.fashion_mnist:
        data = load_fashion_mnist(os.path.expanduser(args.fashion_mnist))
    else:
        data = load_digits(seed=args.split_seed)
    return data.subset(args.limit, seed=args.split_seed)


def make_optimizer(args: argparse.Namespace) -> Optimizer:
    if args.optimizer == "sgd":
        return SGD(lr=args.lr or 0.05, momentum=args.momentum, lr_decay=args.lr_decay)
    return Adam(lr=args.lr or 1e-3, lr_decay=args.lr_decay)


_PLAIN_LAYERS = ("Dense", "Tanh", "LeakyReLU", "ReLU", "Sigmoid")


def _norm_name(layer: Any) -> str:
    kind = type(layer).__name__
    eps = getattr(layer, "eps", None)
    if kind == "DecorrelatedBatchNorm":
        name = "DBN (ZCA over features + affine)" if layer.affine else "ZCA over features"
    elif kind == "ZCAWhitening":
        name = f"ZCA over {layer.axis}" + ("" if layer.center else ", uncentred")
    elif kind == "BatchNorm":
        name = "standardize" + (" + affine" if layer.affine else "")
    else:
        return repr(layer)
    return f"[{name}, eps {eps:g}]"


def describe(net: Sequential) -> str:
    """One line: ``64 -> 128 (tanh) -> [ZCA over features, eps 0.001] -> 64 (leaky ReLU) -> 10``."""
    parts: List[str] = []
    for layer in net:
        kind = type(layer).__name__
        if kind == "Dense":
            if not parts:
                parts.append(str(layer.n_in))
            parts.append(str(layer.n_out))
        elif kind in _PLAIN_LAYERS:
            name = {"LeakyReLU": "leaky ReLU"}.get(kind, kind.lower())
            parts[-1] += f" ({name})"
        else:
            parts.append(_norm_name(layer))
    return " -> ".join(parts)


def inference_note(net: Sequential, batch_size: int) -> str:
    """How the network normalizes at inference: running statistics, or each batch by itself."""
    own = net.batch_statistics_layers()
    if not own:
        return "running statistics (a test example's prediction does not depend on its batch)"
    names = ", ".join(f"layer {i} {type(layer).__name__}" for i, layer in own)
    return (
        f"{names} has no running statistics (whitening over the examples of a batch couples "
        f"them), so each evaluation batch of about {batch_size} examples, taken in order, is "
        f"normalized by its own statistics"
    )


class Progress:
    """A one-line progress bar on ``stream``, drawn only when it is a terminal."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 30) -> None:
        isatty = getattr(stream, "isatty", None)
        self.stream = stream
        self.enabled = enabled and callable(isatty) and bool(isatty())
        self.width = width
        self.epoch = 0
        self.epochs = 0

    def batch(self, i: int, n: int, loss: float) -> None:
        if not self.enabled:
            return
        filled = self.width * i // n
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\repoch {self.epoch}/{self.epochs} [{bar}] {i}/{n} batch loss {loss:.4f}"
        )
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self.stream.flush()


def format_epoch(record: Dict[str, float]) -> str:
    line = (
        f"{int(record['epoch']):5d}  {record['train_loss']:10.4f}  "
        f"{100 * record['train_accuracy']:8.2f}%"
    )
    if "test_loss" in record:
        line += f"  {record['test_loss']:9.4f}  {100 * record['test_accuracy']:7.2f}%"
    return line + f"  {record['lr']:9.3g}  {record['seconds']:6.2f}s"


EPOCH_HEADER = "epoch  train loss  train acc  test loss  test acc         lr    train"


def plot_curves(
    logs: Sequence[Dict[str, Any]],
    path: str,
    title: Optional[str] = None,
    accuracy_range: Optional[Tuple[float, float]] = None,
) -> bool:
    """Learning curves of one or more runs' JSON logs to ``path`` (PNG); False without matplotlib.

    Left: loss (log scale), right: accuracy in percent (``accuracy_range`` zooms in), per
    epoch; train solid, test dashed; one colour per run, labelled by the log's ``label``. Uses
    matplotlib's object API only, so it never changes the caller's pyplot backend.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, log in enumerate(logs):
        colour = f"C{i % 10}"
        hist = log["history"]
        epochs = [r["epoch"] for r in hist]
        label = log.get("label", f"run {i + 1}")
        for ax, key, scale in ((ax_loss, "loss", 1.0), (ax_acc, "accuracy", 100.0)):
            ax.plot(
                epochs,
                [scale * r[f"train_{key}"] for r in hist],
                "-",
                color=colour,
                label=f"{label} train",
            )
            if hist and f"test_{key}" in hist[0]:
                ax.plot(
                    epochs,
                    [scale * r[f"test_{key}"] for r in hist],
                    "--",
                    color=colour,
                    label=f"{label} test",
                )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if accuracy_range is not None:
        ax_acc.set_ylim(*accuracy_range)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.legend(fontsize="small", ncol=2 if len(logs) > 2 else 1)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return True


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS to ``n`` threads (``n <= 0``: no limit) where threadpoolctl is installed.

    One thread is the default because the matrices here are small: on a 2-core machine that
    was also running other work, the training part of one epoch of the blog's Fashion-MNIST
    network took 11 s with one OpenBLAS thread and 136 s with two, whose threads spent the
    time waiting for each other.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    if n <= 0:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _environment() -> Dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------------
# The command.


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return int(exc.code or 0)
    if args.whiten_over == "examples" and args.norm != "zca":
        parser.print_usage(sys.stderr)
        print(
            f"train_mlp.py: error: --whiten-over examples needs --norm zca (got {args.norm})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not 0 < args.lr_decay <= 1 or not 0 <= args.momentum < 1:
        print(
            "train_mlp.py: error: --lr-decay must be in (0, 1], --momentum in [0, 1)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.eps is not None and not args.eps >= 0:
        # Checked before any data is loaded, so a typo costs nothing.
        print(
            f"train_mlp.py: error: argument 'eps' must be >= 0, got {args.eps!r}", file=sys.stderr
        )
        return EXIT_USAGE

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    say(f"seed {args.seed} (weights, shuffling); split seed {args.split_seed}")
    try:
        data = load_data(args)
    except (ImportError, FileNotFoundError, IDXError) as err:
        print(f"train_mlp.py: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    defaults = DEFAULTS["fashion-mnist" if data.name == "fashion-mnist" else "digits"]
    hidden = args.hidden or defaults["hidden"]
    epochs = args.epochs or defaults["epochs"]
    batch_size = args.batch_size or defaults["batch_size"]

    try:
        net = build_mlp(
            data.n_features,
            hidden,
            data.n_classes,
            norm=args.norm,
            whiten_over=args.whiten_over,
            eps=args.eps,
            seed=args.seed,
        )
    except ValueError as err:  # an eps the layer refuses
        print(f"train_mlp.py: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    norm_layers = [layer for layer in net if type(layer).__name__ not in _PLAIN_LAYERS]
    eps = getattr(norm_layers[0], "eps", None) if norm_layers else None
    model = NetworkWithLoss(net, SoftmaxCrossEntropy())
    optimizer = make_optimizer(args)
    inference = inference_note(net, batch_size)
    say(f"data: {data.description}")
    say(f"network: {describe(net)}; {net.n_params:,} parameters")
    say(f"optimizer: {optimizer!r}; batch {batch_size}; {epochs} epochs")
    say(f"inference: {inference}")
    if args.norm in ("zca", "dbn") and args.whiten_over == "features" and batch_size <= hidden[0]:
        say(
            f"note: a batch of {batch_size} gives a rank-deficient {hidden[0]} x {hidden[0]} "
            f"covariance; eps = {eps:g} sets how much its empty directions are amplified"
        )

    progress = Progress(sys.stderr, enabled=not args.quiet)
    progress.epochs = epochs
    say(EPOCH_HEADER)

    def on_batch(i: int, n: int, loss: float) -> None:
        if i == 1:
            progress.epoch += 1
        progress.batch(i, n, loss)

    def on_epoch(record: Dict[str, float]) -> None:
        progress.clear()
        say(format_epoch(record))

    start = time.perf_counter()
    try:
        with blas_threads(args.blas_threads):
            history = fit(
                model,
                optimizer,
                (data.x_train, data.y_train),
                (data.x_test, data.y_test),
                epochs=epochs,
                batch_size=batch_size,
                seed=args.seed,
                on_epoch=on_epoch,
                on_batch=on_batch,
            )
    except (FloatingPointError, np.linalg.LinAlgError) as err:
        progress.clear()
        print(f"train_mlp.py: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    elapsed = time.perf_counter() - start
    final = history[-1]
    label = args.norm + (f" over {args.whiten_over}" if args.norm == "zca" else "")
    summary = (
        f"final ({label}, seed {args.seed}, {epochs} epochs): "
        f"train {100 * final['train_accuracy']:.2f}% (loss {final['train_loss']:.4f}), "
        f"test {100 * final['test_accuracy']:.2f}% (loss {final['test_loss']:.4f}); "
        f"{elapsed:.1f}s"
    )
    print(summary, flush=True)

    log: Dict[str, Any] = {
        "label": label,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "split_seed": args.split_seed,
        "config": {
            "norm": args.norm,
            "whiten_over": args.whiten_over if args.norm == "zca" else None,
            "eps": eps,
            "hidden": list(hidden),
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": args.optimizer,
            "lr": optimizer.initial_lr,
            "lr_decay": args.lr_decay,
            "momentum": args.momentum if args.optimizer == "sgd" else None,
            "limit": args.limit,
            "blas_threads": args.blas_threads,
        },
        "dataset": {
            "name": data.name,
            "description": data.description,
            "n_train": len(data.y_train),
            "n_test": len(data.y_test),
            "n_features": data.n_features,
            "n_classes": data.n_classes,
        },
        "network": describe(net),
        "n_params": net.n_params,
        "optimizer": repr(optimizer),
        "inference": inference,
        "history": history,
        "final": final,
        "elapsed_seconds": elapsed,
        "environment": _environment(),
    }
    if args.log:
        with open(args.log, "w", encoding="utf-8") as f:
            json.dump(log, f, indent=2)
            f.write("\n")
        say(f"log written to {args.log}")
    if args.plot:
        title = f"{data.name}: {describe(net)}"
        if plot_curves([log], args.plot, title=title):
            say(f"learning curves written to {args.plot}")
        else:
            print(
                f"train_mlp.py: matplotlib is not installed, so no plot was written; {PLOT_HINT}",
                file=sys.stderr,
            )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""End to end: the hand-written backward passes train real networks (examples/train_mlp.py).

The synthetic test needs nothing beyond NumPy; the digits tests need scikit-learn (the ``train``
extra) and are skipped without it; the Fashion-MNIST path runs on IDX files the test writes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from layers import Dense
from layers.datasets import FASHION_MNIST_FILES, write_idx
from layers.model import build_mlp
from layers.optim import SGD, Adam
from layers.sequential import NetworkWithLoss, Sequential
from layers.softmax_ce import SoftmaxCrossEntropy
from layers.training import fit

SEED = 7
SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_mlp.py"


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS thread: these matrices are tiny, and on a busy 2-core machine BLAS threads that
    wait for each other made a 0.3 s training run take 30 s."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def train_mlp():
    """The example script, imported as a module (it is not part of an installed package)."""
    spec = importlib.util.spec_from_file_location("train_mlp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spirals(n_per_class: int, seed: int, n_classes: int = 3, extra_dims: int = 6):
    """Three interleaved spiral arms (1.5 turns each), hidden in 8-D by noise and a rotation.

    Not linearly separable (a softmax regression stays far below the thresholds below), yet a
    small network learns it in a few dozen epochs. Returns ``(x (n, 8), labels (n,))``
    shuffled.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(n_classes):
        r = rng.uniform(0.25, 1.0, n_per_class)
        angle = 2 * np.pi * c / n_classes + 3.0 * np.pi * r
        arm = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        xs.append(arm + 0.02 * rng.standard_normal(arm.shape))
        ys.append(np.full(n_per_class, c))
    x = np.concatenate(xs)
    x = np.concatenate([x, 0.1 * rng.standard_normal((len(x), extra_dims))], axis=1)
    rotation, _ = np.linalg.qr(rng.standard_normal((x.shape[1], x.shape[1])))
    order = rng.permutation(len(x))
    return (x @ rotation)[order], np.concatenate(ys)[order]


@pytest.fixture(scope="module")
def spiral_data():
    x, y = spirals(450, seed=SEED)
    return (x[:900], y[:900]), (x[900:], y[900:])


def train_spirals(spiral_data, model, optimizer, epochs=40):
    train, test = spiral_data
    return fit(model, optimizer, train, test, epochs=epochs, batch_size=50, seed=SEED)


def test_spirals_are_not_linearly_separable(spiral_data):
    model = NetworkWithLoss(Sequential([Dense(8, 3, seed=SEED)]), SoftmaxCrossEntropy())
    history = train_spirals(spiral_data, model, Adam(lr=1e-2))
    # The reference run (seed 7) stays at 34.7%, chance level.
    assert history[-1]["test_accuracy"] < 0.6


@pytest.mark.parametrize(
    ("norm", "whiten_over"),
    [
        ("none", "features"),
        ("standardize", "features"),
        ("zca", "features"),
        ("zca", "examples"),
        ("dbn", "features"),
    ],
)
def test_training_on_spirals_reaches_90_percent(spiral_data, norm, whiten_over):
    print(f"seed {SEED}")
    net = build_mlp(8, (32, 16), 3, norm=norm, whiten_over=whiten_over, seed=SEED)
    model = NetworkWithLoss(net, SoftmaxCrossEntropy())
    history = train_spirals(spiral_data, model, Adam(lr=1e-2, lr_decay=0.99))
    # Chance is 33%; the reference run (seed 7) reaches 94.9% (none) to 100% (zca, dbn).
    assert history[-1]["test_accuracy"] >= 0.90, history[-1]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3


def test_training_with_sgd_momentum_on_spirals(spiral_data):
    print(f"seed {SEED}")
    net = build_mlp(8, (32, 16), 3, norm="none", seed=SEED)
    model = NetworkWithLoss(net, SoftmaxCrossEntropy())
    history = train_spirals(spiral_data, model, SGD(lr=0.1, momentum=0.9))
    # The reference run (seed 7) reaches 99.8%.
    assert history[-1]["test_accuracy"] >= 0.85, history[-1]


def test_fit_records_and_decays(spiral_data):
    net = build_mlp(8, (8, 4), 3, norm="zca", seed=SEED)
    model = NetworkWithLoss(net, SoftmaxCrossEntropy())
    opt = Adam(lr=1e-2, lr_decay=0.5)
    seen = []
    history = train_spirals(spiral_data, model, opt, epochs=3)
    assert [r["lr"] for r in history] == [1e-2, 5e-3, 2.5e-3]
    assert opt.lr == 1.25e-3
    keys = {"epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    assert keys | {"batch_loss", "batch_accuracy", "seconds"} == set(history[0])
    again = fit(model, opt, spiral_data[0], epochs=1, batch_size=50, on_epoch=seen.append)
    assert seen == again and "test_loss" not in again[0]
    assert net.training  # evaluation restored train mode


# ---------------------------------------------------------------------------------------------
# The script


def test_digits_short_run_reaches_90_percent(train_mlp, tmp_path, capsys):
    pytest.importorskip("sklearn")
    log = tmp_path / "run.json"
    code = train_mlp.main(["--epochs", "8", "--seed", "3", "--log", str(log)])
    out = capsys.readouterr().out
    assert code == 0
    assert "seed 3" in out and "final (zca over features" in out
    record = json.loads(log.read_text())
    assert record["seed"] == 3 and record["dataset"]["n_train"] == 1347
    assert len(record["history"]) == 8
    assert record["inference"].startswith("running statistics")
    # Chance is 10%; the reference run (seed 3) has 96.7% test accuracy after 8 epochs.
    assert record["final"]["test_accuracy"] >= 0.90


def test_digits_subset_with_examples_whitening_and_plot(train_mlp, tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    code = train_mlp.main(
        ["--norm", "zca", "--whiten-over", "examples", "--limit", "500", "--epochs", "6",
         "--batch-size", "50", "--lr", "3e-3", "--plot", str(plot), "--seed", "1"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "has no running statistics" in out
    assert "[ZCA over examples, uncentred, eps 0.06]" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (final,) = [line for line in out.splitlines() if line.startswith("final (zca over examples")]
    # Chance is 10%; the reference run (seed 1) has 94.9% test accuracy.
    assert float(final.split("test ")[1].split("%")[0]) >= 80.0, final


def write_fake_fashion(folder: Path, n_train=300, n_test=100, seed=SEED):
    """A Fashion-MNIST-shaped folder (gzipped IDX) of 8x8 images: each class a bright block."""
    rng = np.random.default_rng(seed)

    def images(labels):
        x = rng.integers(0, 60, (len(labels), 8, 8))
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 4)
            x[i, 2 * r : 2 * r + 3, 2 * col : 2 * col + 2] += 180
        return x.astype(np.uint8)

    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / (FASHION_MNIST_FILES[f"{split}_images"] + ".gz"), images(labels))
        write_idx(folder / (FASHION_MNIST_FILES[f"{split}_labels"] + ".gz"), labels)


def test_fashion_mnist_folder_end_to_end(train_mlp, tmp_path, capsys):
    write_fake_fashion(tmp_path)
    log = tmp_path / "fashion.json"
    code = train_mlp.main(
        ["--fashion-mnist", str(tmp_path), "--hidden", "16,8", "--epochs", "5",
         "--batch-size", "30", "--norm", "dbn", "--optimizer", "sgd", "--lr", "0.05",
         "--log", str(log), "--quiet"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1 and out.startswith("final (dbn, seed 0, 5 epochs)")
    record = json.loads(log.read_text())
    assert record["dataset"]["name"] == "fashion-mnist"
    assert record["dataset"]["n_features"] == 64 and record["config"]["hidden"] == [16, 8]
    assert record["config"]["optimizer"] == "sgd" and record["config"]["momentum"] == 0.9
    assert record["final"]["test_accuracy"] >= 0.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--norm", "dbn", "--whiten-over", "examples"], "--whiten-over examples needs --norm zca"),
        (["--hidden", "64,x"], "comma-separated layer sizes"),
        (["--epochs", "0"], "expected a positive number"),
        (["--lr-decay", "1.5"], "--lr-decay must be in (0, 1]"),
        (["--eps", "-1", "--limit", "50"], "'eps' must be >= 0"),
        (["--fashion-mnist", "/nonexistent/fashion"], "no such folder"),
    ],
)
def test_usage_and_data_errors(train_mlp, argv, message, capsys):
    assert train_mlp.main(argv) == 2
    assert message in capsys.readouterr().err


def test_broken_idx_file_is_a_clear_error(train_mlp, tmp_path, capsys):
    write_fake_fashion(tmp_path, n_train=20, n_test=10)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    assert train_mlp.main(["--fashion-mnist", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "cannot be decompressed" in err


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_is_reported_with_exit_code_1(train_mlp, tmp_path, capsys):
    write_fake_fashion(tmp_path, n_train=40, n_test=20)
    argv = ["--fashion-mnist", str(tmp_path), "--hidden", "8,4", "--epochs", "2", "--quiet"]
    assert train_mlp.main([*argv, "--optimizer", "sgd", "--lr", "1e200"]) == 1
    assert "training diverged" in capsys.readouterr().err


def test_missing_scikit_learn_says_how_to_install(train_mlp, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert train_mlp.main(["--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install scikit-learn" in err and "--fashion-mnist DIR" in err


def test_missing_matplotlib_continues_without_plot(train_mlp, tmp_path, monkeypatch, capsys):
    write_fake_fashion(tmp_path, n_train=40, n_test=20)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)
    plot = tmp_path / "no.png"
    argv = ["--fashion-mnist", str(tmp_path), "--hidden", "8,4", "--epochs", "1", "--quiet"]
    assert train_mlp.main([*argv, "--plot", str(plot)]) == 0
    assert "pip install matplotlib" in capsys.readouterr().err
    assert not plot.exists()


def test_help_returns_zero(train_mlp, capsys):
    assert train_mlp.main(["--help"]) == 0
    assert "--whiten-over" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(train_mlp):
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = train_mlp.Progress(stream, enabled=True, width=10)
        bar.epoch, bar.epochs = 1, 2
        bar.batch(5, 10, 0.25)
        bar.clear()
    assert "epoch 1/2 [#####.....] 5/10 batch loss 0.2500" in tty.getvalue()
    assert pipe.getvalue() == ""
    quiet = _Terminal()
    train_mlp.Progress(quiet, enabled=False).batch(1, 2, 0.0)
    assert quiet.getvalue() == ""

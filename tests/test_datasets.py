"""layers.datasets: the IDX reader on files the tests write, Fashion-MNIST folders, the digits."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest

from layers.datasets import (
    FASHION_MNIST_FILES,
    Dataset,
    IDXError,
    load_digits,
    load_fashion_mnist,
    read_idx,
    stratified_split,
    write_idx,
)

SEED = 31


def idx_bytes(code: int, shape, payload: bytes) -> bytes:
    """An IDX file assembled by hand from the format's definition (not by write_idx)."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def put(path, raw: bytes):
    path.write_bytes(raw)
    return path


def fashion_folder(tmp_path, n_train=12, n_test=6, size=4, gz=True, seed=SEED):
    """A miniature Fashion-MNIST folder: uint8 images ``(n, size, size)`` and labels 0..9."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(tmp_path / (FASHION_MNIST_FILES[key] + suffix), arr)
    return arrays


# ---------------------------------------------------------------------------------------------
# read_idx / write_idx


def test_reads_a_hand_made_uint8_file(tmp_path):
    pixels = bytes(range(24))
    path = put(tmp_path / "images-idx3-ubyte", idx_bytes(0x08, (2, 3, 4), pixels))
    arr = read_idx(path, ndim=3)
    assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4)
    np.testing.assert_array_equal(arr.ravel(), np.arange(24))


def test_reads_big_endian_multibyte_types(tmp_path):
    raw = idx_bytes(0x0B, (3,), struct.pack(">3h", -2, 300, 7))
    np.testing.assert_array_equal(read_idx(put(tmp_path / "s", raw)), [-2, 300, 7])
    raw = idx_bytes(0x0E, (2,), struct.pack(">2d", 1.5, -0.25))
    arr = read_idx(put(tmp_path / "d", raw))
    assert arr.dtype == np.float64 and arr.dtype.isnative
    np.testing.assert_array_equal(arr, [1.5, -0.25])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a-idx", "a-idx.gz"])
def test_write_then_read_round_trip(tmp_path, dtype, name):
    arr = (np.arange(30) % 17 - 5).astype(dtype).reshape(5, 3, 2)
    if np.dtype(dtype).kind == "u":
        arr = np.arange(30, dtype=dtype).reshape(5, 3, 2)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_gzip_is_recognized_by_content_not_name(tmp_path):
    raw = gzip.compress(idx_bytes(0x08, (3,), b"\x01\x02\x03"))
    np.testing.assert_array_equal(read_idx(put(tmp_path / "labels-idx1-ubyte", raw)), [1, 2, 3])


def test_truncated_payload_names_file_and_sizes(tmp_path):
    path = put(tmp_path / "cut-idx3-ubyte", idx_bytes(0x08, (10, 28, 28), bytes(1000)))
    with pytest.raises(IDXError) as err:
        read_idx(path)
    message = str(err.value)
    assert str(path) in message and "truncated" in message
    assert "(10, 28, 28)" in message and "7840 bytes" in message and "only 1000" in message


def test_truncated_header(tmp_path):
    with pytest.raises(IDXError, match="truncated IDX header: 3 dimensions need 16"):
        read_idx(put(tmp_path / "h", bytes([0, 0, 8, 3]) + struct.pack(">I", 5)))
    with pytest.raises(IDXError, match="at least 4 bytes"):
        read_idx(put(tmp_path / "tiny", b"\x00\x00"))


def test_truncated_gzip_stream(tmp_path):
    raw = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    path = put(tmp_path / "cut.gz", raw[: len(raw) // 2])
    with pytest.raises(IDXError, match="gzip-compressed but cannot be decompressed") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_wrong_magic(tmp_path):
    path = put(tmp_path / "notidx", b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(IDXError, match=r"not an IDX file.*two zero bytes.*got 0x01020801") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    png = put(tmp_path / "picture.png", b"\x89PNG\r\n\x1a\n" + bytes(16))
    with pytest.raises(IDXError, match="not an IDX file"):
        read_idx(png)


def test_unknown_type_code(tmp_path):
    path = put(tmp_path / "t", idx_bytes(0x07, (2,), b"\x00\x00"))
    with pytest.raises(IDXError, match=r"unknown IDX element type code 0x07.*0x08 unsigned byte"):
        read_idx(path)


def test_wrong_number_of_dimensions(tmp_path):
    path = put(tmp_path / "labels", idx_bytes(0x08, (4,), bytes(4)))
    with pytest.raises(IDXError, match=r"expected an IDX file of 3 dimension.*has 1") as err:
        read_idx(path, ndim=3)
    assert str(path) in str(err.value)
    with pytest.raises(IDXError, match="declares 0 dimensions"):
        read_idx(put(tmp_path / "zero", bytes([0, 0, 8, 0])))


def test_trailing_bytes(tmp_path):
    path = put(tmp_path / "long", idx_bytes(0x08, (2, 2), bytes(4) + b"extra"))
    with pytest.raises(IDXError, match="5 unexpected trailing bytes"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing-here")


def test_write_idx_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="no element type for dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST folders


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist(tmp_path, gz):
    arrays = fashion_folder(tmp_path, gz=gz)
    data = load_fashion_mnist(tmp_path)
    assert data.name == "fashion-mnist" and data.n_classes == 10 and data.n_features == 16
    assert data.x_train.shape == (12, 16) and data.x_test.shape == (6, 16)
    assert data.x_train.dtype == np.float64 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train, arrays["train_images"].reshape(12, 16) / 255.0)
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"])
    assert 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0


def test_fashion_mnist_missing_file_lists_what_is_expected(tmp_path):
    fashion_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"no t10k-labels-idx1-ubyte or .*\.gz.*holds"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_fashion_mnist(tmp_path / "absent")


def test_fashion_mnist_mismatched_counts(tmp_path):
    fashion_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(IDXError, match=r"holds 12 images but .* holds 11 labels"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_wrong_dims_and_labels(tmp_path):
    fashion_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 16), dtype=np.uint8))
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte.gz: expected an IDX file of 3"):
        load_fashion_mnist(tmp_path)
    fashion_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(IDXError, match="labels must be 0 to 9, found 10"):
        load_fashion_mnist(tmp_path)
    fashion_folder(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((6, 4, 4), dtype=np.float32))
    with pytest.raises(IDXError, match=r"expected unsigned bytes \(type 0x08\)"):
        load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------------------------------------
# Splits, subsets, the digits


def test_stratified_split_is_deterministic_disjoint_and_balanced():
    labels = np.repeat(np.arange(4), [40, 20, 80, 60])
    train, test = stratified_split(labels, 0.25, seed=SEED)
    train2, test2 = stratified_split(labels, 0.25, seed=SEED)
    np.testing.assert_array_equal(test, test2)
    np.testing.assert_array_equal(train, train2)
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[test]), [10, 5, 20, 15])
    _, other = stratified_split(labels, 0.25, seed=SEED + 1)
    assert not np.array_equal(test, other)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_subset():
    rng = np.random.default_rng(SEED)
    data = Dataset(
        "toy",
        rng.random((50, 3)),
        np.arange(50) % 2,
        rng.random((20, 3)),
        np.arange(20) % 2,
        ("a", "b"),
    )
    assert data.subset(None) is data
    small = data.subset(10, seed=1)
    assert small.x_train.shape == (10, 3) and small.x_test.shape == (10, 3)
    assert data.subset(30).x_test.shape == (20, 3)
    np.testing.assert_array_equal(small.x_train, data.subset(10, seed=1).x_train)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        data.subset(0)


def test_load_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*gradcheck-dbn\[train\]"):
        load_digits()


def test_load_digits():
    pytest.importorskip("sklearn")
    data = load_digits(seed=0)
    assert data.x_train.shape == (1347, 64) and data.x_test.shape == (450, 64)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert sorted(set(data.y_test)) == list(range(10))
    np.testing.assert_array_equal(load_digits(seed=0).y_test, data.y_test)

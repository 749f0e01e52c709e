"""Real datasets for the training example: scikit-learn's 8x8 digits, Fashion-MNIST from IDX files.

Every loader returns a :class:`Dataset`: float64 features scaled to ``[0, 1]`` with rows as
examples (``(N, D)``), int64 labels ``(N,)``, and a fixed train/test split.

* :func:`load_digits` reads the 1,797 8x8 digit images that scikit-learn ships inside its
  package (so it works offline); scikit-learn is imported only when this is called. The split
  is stratified and fixed by a seed.
* :func:`load_fashion_mnist` reads the four IDX files of Fashion-MNIST (or MNIST, which has the
  same layout) from a local folder, gzipped or not, keeping the official 60,000 / 10,000 split.
  Nothing is downloaded.
* :func:`read_idx` / :func:`write_idx` read and write the IDX format itself. A malformed file
  raises :class:`IDXError` naming the file, what was expected and what was found.

The IDX format (big-endian throughout): two zero bytes; one byte giving the element type
(``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E``
float64); one byte giving the number of dimensions ``k``; ``k`` uint32 sizes; then the
elements in C order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

Array = np.ndarray
PathLike = Union[str, "os.PathLike[str]"]

IDX_TYPES: Dict[int, Tuple[str, str]] = {
    0x08: (">u1", "unsigned byte"),
    0x09: (">i1", "signed byte"),
    0x0B: (">i2", "short (int16)"),
    0x0C: (">i4", "int (int32)"),
    0x0D: (">f4", "float (float32)"),
    0x0E: (">f8", "double (float64)"),
}
_CODE_OF = {np.dtype(fmt).newbyteorder("="): code for code, (fmt, _) in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

INSTALL_HINT = (
    "install it with `pip install scikit-learn` (or `pip install 'gradcheck-dbn[train]'`), "
    "or train on Fashion-MNIST from local IDX files with --fashion-mnist DIR"
)


class IDXError(ValueError):
    """A file is not a well-formed IDX file, or not the one a loader expected."""


@dataclass(frozen=True)
class Dataset:
    """A classification dataset with a fixed train/test split; rows are examples.

    ``x_train`` ``(N_train, D)`` and ``x_test`` ``(N_test, D)`` are float64 in ``[0, 1]``;
    ``y_train`` ``(N_train,)`` and ``y_test`` ``(N_test,)`` are int64 class indices in
    ``[0, n_classes)``. ``classes`` names them.
    """

    name: str
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    classes: Tuple[str, ...]
    description: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, limit: Optional[int], seed: int = 0) -> Dataset:
        """At most ``limit`` training and ``limit`` test examples, drawn at random by ``seed``.

        ``None`` returns the dataset unchanged. The draw keeps the examples' original order.
        """
        if limit is None:
            return self
        if limit < 1:
            raise ValueError(f"Dataset.subset: limit must be >= 1, got {limit}")
        rng = np.random.default_rng(seed)

        def pick(n: int) -> Array:
            return np.sort(rng.choice(n, size=min(limit, n), replace=False))

        tr, te = pick(len(self.y_train)), pick(len(self.y_test))
        return Dataset(
            self.name,
            self.x_train[tr],
            self.y_train[tr],
            self.x_test[te],
            self.y_test[te],
            self.classes,
            f"{self.description} (subset: at most {limit} train and test examples, seed {seed})",
        )


# ---------------------------------------------------------------------------------------------
# IDX files.


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    # Decided by content, not by the name: a gzipped file saved without ".gz" still reads.
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise IDXError(
            f"{path}: the file is gzip-compressed but cannot be decompressed ({err}); "
            f"it is probably truncated or corrupt, download it again"
        ) from err


def read_idx(path: PathLike, *, ndim: Optional[int] = None) -> Array:
    """Read an IDX file (plain or gzip-compressed) into an array of its shape and type.

    ``ndim``, when given, is the number of dimensions the caller expects (3 for images
    ``(count, rows, columns)``, 1 for labels). Returns a native-byte-order array (uint8 for
    MNIST-style files).

    Raises ``FileNotFoundError`` for a missing file and :class:`IDXError` (a ``ValueError``)
    naming the file for: a wrong magic number, an unknown element-type code, zero dimensions,
    a header or payload shorter than declared (a truncated file), trailing bytes after the
    payload, and a number of dimensions other than ``ndim``.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(
            f"{path}: truncated IDX header: expected at least 4 bytes (magic number), "
            f"the file has {len(data)}"
        )
    if data[:2] != b"\x00\x00":
        raise IDXError(
            f"{path}: not an IDX file: the magic number must start with two zero bytes "
            f"(0x0000TTNN: TT the element type, NN the number of dimensions), "
            f"got 0x{data[:4].hex()}"
        )
    code, k = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {desc}" for c, (_, desc) in IDX_TYPES.items())
        raise IDXError(
            f"{path}: unknown IDX element type code 0x{code:02X} (magic 0x{data[:4].hex()}); "
            f"known codes: {known}"
        )
    if k == 0:
        raise IDXError(f"{path}: the IDX header declares 0 dimensions; expected at least 1")
    if ndim is not None and k != ndim:
        raise IDXError(f"{path}: expected an IDX file of {ndim} dimension(s), this one has {k}")
    header = 4 + 4 * k
    if len(data) < header:
        raise IDXError(
            f"{path}: truncated IDX header: {k} dimensions need {header} header bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{k}I", data[4:header])
    fmt, desc = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(fmt).itemsize
    payload = len(data) - header
    if payload < expected:
        raise IDXError(
            f"{path}: truncated: the header declares shape {shape} of {desc}, which is "
            f"{expected} bytes of data, but only {payload} follow the header"
        )
    if payload > expected:
        raise IDXError(
            f"{path}: {payload - expected} unexpected trailing bytes after the {expected} bytes "
            f"of data that the header declares (shape {shape} of {desc})"
        )
    arr = np.frombuffer(data, dtype=fmt, offset=header, count=expected // np.dtype(fmt).itemsize)
    return arr.reshape(shape).astype(np.dtype(fmt).newbyteorder("="))


def write_idx(path: PathLike, array: Array) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64; 1 to 255 dimensions) as IDX.

    A path ending in ``.gz`` is gzip-compressed. The inverse of :func:`read_idx`.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    code = _CODE_OF.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"write_idx: IDX has no element type for dtype {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got shape {arr.shape}")
    fmt = IDX_TYPES[code][0]
    raw = (
        bytes([0, 0, code, arr.ndim])
        + struct.pack(f">{arr.ndim}I", *arr.shape)
        + np.ascontiguousarray(arr, dtype=fmt).tobytes()
    )
    if path.endswith(".gz"):
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST.


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"{directory}: no {stem} or {stem}.gz; a Fashion-MNIST folder holds "
        + ", ".join(f"{s}[.gz]" for s in FASHION_MNIST_FILES.values())
    )


def _images_and_labels(image_path: str, label_path: str) -> Tuple[Array, Array]:
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    for path, arr in ((image_path, images), (label_path, labels)):
        if arr.dtype != np.uint8:
            raise IDXError(f"{path}: expected unsigned bytes (type 0x08), got {arr.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise IDXError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds "
            f"{labels.shape[0]} labels; the two files do not belong together"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise IDXError(
            f"{label_path}: labels must be 0 to 9, found {int(labels.max())}; "
            f"is this a label file of Fashion-MNIST or MNIST?"
        )
    x = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    return x, labels.astype(np.int64)


def load_fashion_mnist(directory: PathLike) -> Dataset:
    """Fashion-MNIST (or MNIST) from the four IDX files in ``directory``, plain or ``.gz``.

    Expects ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (each optionally with ``.gz``), as distributed. Returns the
    official split: ``x_train`` ``(60000, 784)``, ``x_test`` ``(10000, 784)``, pixels scaled
    to ``[0, 1]``, rows of the 28 x 28 images in C order.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such folder (expected the Fashion-MNIST files)")
    paths = {key: _find(directory, stem) for key, stem in FASHION_MNIST_FILES.items()}
    x_train, y_train = _images_and_labels(paths["train_images"], paths["train_labels"])
    x_test, y_test = _images_and_labels(paths["test_images"], paths["test_labels"])
    if x_train.shape[1] != x_test.shape[1]:
        raise IDXError(
            f"{paths['train_images']} and {paths['test_images']} have images of different "
            f"sizes ({x_train.shape[1]} and {x_test.shape[1]} pixels)"
        )
    return Dataset(
        "fashion-mnist",
        x_train,
        y_train,
        x_test,
        y_test,
        FASHION_MNIST_CLASSES,
        f"Fashion-MNIST from {directory}: {len(y_train)} train, {len(y_test)} test images",
    )


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits.


def stratified_split(labels: ArrayLike, test_fraction: float, seed: int) -> Tuple[Array, Array]:
    """Indices ``(train, test)`` that put ``test_fraction`` of every class in the test set.

    Deterministic for a given ``seed``; both index arrays are sorted.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"stratified_split: test_fraction must be in (0, 1), got {test_fraction}")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test.append(members[: round(test_fraction * len(members))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The 8x8 handwritten digits bundled with scikit-learn, split by class and ``seed``.

    1,797 images of 64 pixels with values 0 to 16, scaled to ``[0, 1]``; ten classes. With the
    default ``test_fraction`` the split is 1,347 train / 450 test. Raises ``ImportError`` with
    install instructions when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:
        raise ImportError(f"the digits dataset comes with scikit-learn: {INSTALL_HINT}") from err
    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(
        "digits",
        x[train],
        y[train],
        x[test],
        y[test],
        tuple(str(d) for d in range(10)),
        f"scikit-learn 8x8 digits: {len(train)} train, {len(test)} test "
        f"(stratified split, seed {seed})",
    )


__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "IDX_TYPES",
    "Dataset",
    "IDXError",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "stratified_split",
    "write_idx",
]

"""
Offline data sets, as float32 arrays ``N x 1 x H x W`` in [0, 1] and int64 labels.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_digits", "load_fashion_mnist", "load_idx", "FASHION_MNIST_PATH"]

#: Where Debian's package ``dataset-fashion-mnist`` puts the IDX files.
FASHION_MNIST_PATH = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Dataset:
    """
    A train/test split.

    :param x_train: Training inputs ``(N, C, H, W)``, float32 in [0, 1].
    :param y_train: Training labels ``(N,)``, int64.
    :param x_test: Test inputs.
    :param y_test: Test labels.
    :param name: A short name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str

    @property
    def nb_classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(self.x_train.shape[1:])

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """
        Seeded random subsets of the splits, in their original order (for quick runs on a large data set).

        :param n_train: Training samples to keep; ``None`` (or more than there are) keeps all.
        :param n_test: Test samples to keep; ``None`` keeps all.
        :param seed: Seed of the draw (a ``numpy`` generator of its own; the global state is not used).
        :return: A new data set with the same name.
        :raises ValueError: For a size below 1.
        """
        rng = np.random.default_rng(seed)

        def keep(n: int | None, size: int) -> np.ndarray:
            if n is not None and n < 1:
                raise ValueError(f"subset sizes must be at least 1, got {n}")
            return np.sort(rng.permutation(size)[:n])

        train, test = keep(n_train, len(self.x_train)), keep(n_test, len(self.x_test))
        return Dataset(self.x_train[train], self.y_train[train], self.x_test[test], self.y_test[test], self.name)


def load_digits(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """
    scikit-learn's 1,797 handwritten digits (8 x 8, 10 classes), scaled from 0..16 to [0, 1], with a seeded
    stratified train/test split.

    :param test_size: Fraction of samples in the test set.
    :param seed: Seed of the split.
    :return: The data set, inputs ``(N, 1, 8, 8)``.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return Dataset(x_tr, y_tr, x_te, y_te, "digits")


def _read_idx(path: "str | os.PathLike[str]") -> np.ndarray:
    """
    Read an IDX file (gzip-compressed or not): magic ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian int32
    sizes, then the data.

    :param path: The file.
    :return: The array, in its stored dtype.
    :raises ValueError: When the file is not an IDX file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def load_idx(images: "str | os.PathLike[str]", labels: "str | os.PathLike[str]") -> tuple[np.ndarray, np.ndarray]:
    """
    Read MNIST-format IDX files.

    :param images: The image file (``*-images-idx3-ubyte[.gz]``), ``N x H x W`` bytes.
    :param labels: The label file (``*-labels-idx1-ubyte[.gz]``).
    :return: ``(x, y)``: float32 ``(N, 1, H, W)`` in [0, 1] and int64 ``(N,)``.
    :raises ValueError: When the files disagree on the number of samples.
    """
    x = _read_idx(images)
    y = _read_idx(labels)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    x = x.astype(np.float32) / 255.0 if x.dtype.kind == "u" else x.astype(np.float32)
    return x.reshape(x.shape[0], 1, *x.shape[1:]), y.astype(np.int64)


def load_fashion_mnist(path: "str | os.PathLike[str] | None" = None) -> Dataset:
    """
    Fashion-MNIST (60,000 train, 10,000 test, 28 x 28, 10 classes) from its IDX files.

    :param path: Folder holding ``train-images-idx3-ubyte.gz`` and the three others; default
                 ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``).
    :return: The data set, inputs ``(N, 1, 28, 28)``.
    :raises FileNotFoundError: When the files are missing; the message says how to install them.
    """
    folder = Path(path) if path is not None else FASHION_MNIST_PATH
    files = {}
    parts = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for part in parts:
        candidates = [folder / f"{part}.gz", folder / part]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"Fashion-MNIST file {part}[.gz] not found in {folder}; "
                "install Debian's package: apt-get install dataset-fashion-mnist"
            )
        files[part] = found
    x_tr, y_tr = load_idx(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
    x_te, y_te = load_idx(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
    return Dataset(x_tr, y_tr, x_te, y_te, "fashion-mnist")

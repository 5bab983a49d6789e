import gzip

import numpy as np
import pytest
import torch

from art_geometry.core.rng import seeded
from art_geometry.datasets import (
    CNN6,
    MadryCNN,
    Dataset,
    FASHION_MNIST_PATH,
    MLP,
    SmallCNN,
    load_digits,
    load_fashion_mnist,
    load_idx,
    make_classifier,
    train_classifier,
)


def test_digits_split(digits):
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    assert np.array_equal(np.bincount(digits.y_test), np.bincount(load_digits().y_test))
    assert np.abs(np.bincount(digits.y_test) / 360 - np.bincount(digits.y_train) / 1437).max() < 0.01
    assert digits.nb_classes == 10 and digits.input_shape == (1, 8, 8)


def test_subset_is_seeded_ordered_and_drawn_from_the_splits():
    ids = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)
    data = Dataset(ids, np.arange(50) % 3, ids[:20] + 100, np.arange(20) % 3, "ids")
    small = data.subset(10, 5, seed=1)
    idx = small.x_train.ravel().astype(int)
    assert len(set(idx)) == 10 and list(idx) == sorted(idx) and np.array_equal(small.y_train, idx % 3)
    assert small.x_test.shape == (5, 1, 1, 1) and (small.x_test >= 100).all() and small.name == "ids"
    assert np.array_equal(data.subset(10, 5, seed=1).x_train, small.x_train)
    assert not np.array_equal(data.subset(10, 5, seed=2).x_train, small.x_train)
    whole = data.subset(None, 10**6)
    assert np.array_equal(whole.x_train, ids) and np.array_equal(whole.x_test, data.x_test)
    with pytest.raises(ValueError, match="at least 1"):
        data.subset(0)


def _write_idx(path, arr, code):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_load_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 6), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    _write_idx(tmp_path / "i.gz", images, 0x08)
    _write_idx(tmp_path / "l.gz", labels, 0x08)
    x, y = load_idx(tmp_path / "i.gz", tmp_path / "l.gz")
    assert x.shape == (7, 1, 5, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0] * 255, images)
    np.testing.assert_array_equal(y, labels)


def test_load_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(tmp_path / "bad", tmp_path / "bad")
    _write_idx(tmp_path / "i.gz", np.zeros((3, 2, 2), np.uint8), 0x08)
    _write_idx(tmp_path / "l.gz", np.zeros(2, np.uint8), 0x08)
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        load_idx(tmp_path / "i.gz", tmp_path / "l.gz")


def test_fashion_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_PATH.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist():
    data = load_fashion_mnist()
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert np.array_equal(np.bincount(data.y_train), np.full(10, 6000))
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0


@pytest.mark.parametrize(
    "model, shape", [(MLP((1, 8, 8)), (1, 8, 8)), (SmallCNN((1, 8, 8)), (1, 8, 8)),
                     (SmallCNN((1, 28, 28)), (1, 28, 28)), (CNN6((1, 28, 28)), (1, 28, 28)),
                     (MadryCNN((1, 28, 28)), (1, 28, 28))]
)
def test_zoo_shapes(model, shape):
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    assert isinstance(list(model.modules())[-1], torch.nn.Linear)


def test_training_is_seeded_and_restores_global_rng(digits):
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    weights = []
    for _ in range(2):
        with seeded(3):
            model = MLP((1, 8, 8), (16,))
        clf = make_classifier(model, (1, 8, 8), 10)
        train_classifier(clf, digits.x_train[:200], digits.y_train[:200], nb_epochs=1, batch_size=32, seed=1)
        weights.append(model.classifier.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)

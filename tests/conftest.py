import numpy as np
import pytest
import torch

from art_geometry.datasets import SmallCNN, load_digits, make_classifier, train_classifier


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """An ART classifier: SmallCNN trained 3 epochs on digits (seeded)."""
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN((1, 8, 8)), (1, 8, 8), 10)
    return train_classifier(clf, digits.x_train, digits.y_train, nb_epochs=3, batch_size=64, seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

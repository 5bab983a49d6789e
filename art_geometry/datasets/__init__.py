"""
Offline data and small models: scikit-learn's digits, Fashion-MNIST from Debian's IDX files, any MNIST-format
files, and a small model zoo trainable in seconds on a CPU through ART's ``PyTorchClassifier.fit``.
"""

from art_geometry.datasets.data import Dataset, load_digits, load_fashion_mnist, load_idx, FASHION_MNIST_PATH
from art_geometry.datasets.zoo import MLP, SmallCNN, CNN6, make_classifier, train_classifier

__all__ = [
    "Dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "FASHION_MNIST_PATH",
    "MLP",
    "SmallCNN",
    "CNN6",
    "make_classifier",
    "train_classifier",
]

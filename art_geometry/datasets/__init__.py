"""
Offline data and small models: scikit-learn's digits, Fashion-MNIST from Debian's IDX files, any MNIST-format
files, a small model zoo trainable in seconds on a CPU through ART's ``PyTorchClassifier.fit``, and standard
architectures (ResNet-18 in CIFAR and torchvision style, WideResNet, VGG-11-BN) at configurable widths.
"""

from art_geometry.datasets.architectures import VGG11BN, ResNet18, TorchvisionResNet18, WideResNet
from art_geometry.datasets.data import FASHION_MNIST_PATH, Dataset, load_digits, load_fashion_mnist, load_idx
from art_geometry.datasets.zoo import CNN6, MLP, MadryCNN, SmallCNN, make_classifier, train_classifier

__all__ = [
    "Dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "FASHION_MNIST_PATH",
    "MLP",
    "SmallCNN",
    "CNN6",
    "MadryCNN",
    "ResNet18",
    "TorchvisionResNet18",
    "WideResNet",
    "VGG11BN",
    "make_classifier",
    "train_classifier",
]

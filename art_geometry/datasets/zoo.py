"""
Small models for examples, tests and the demo report, trainable in seconds on a CPU, and the helpers that wrap
and train them through ART.

Every model ends in an ``nn.Linear`` that returns logits; its input is the "penultimate features" layer that the
region metrics use by default.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from art_geometry.core.rng import seeded

__all__ = ["MLP", "SmallCNN", "CNN6", "MadryCNN", "make_classifier", "train_classifier"]


class _FeaturesClassifier(nn.Module):
    """
    A ``features`` stack followed by a ``classifier`` head ending in the logits' ``nn.Linear`` (set by the
    subclass; no class-level annotations, which TorchScript would try to resolve).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: ``(B, *input_shape)`` inputs.
        :return: ``(B, nb_classes)`` logits.
        """
        return self.classifier(self.features(x))


class MLP(_FeaturesClassifier):
    """
    A ReLU multi-layer perceptron: ``flatten -> (Linear -> ReLU) * len(hidden) -> Linear``.

    :param input_shape: Shape of one input sample.
    :param hidden: Widths of the hidden layers.
    :param nb_classes: Number of classes.
    """

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...] = (64, 32), nb_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, nb_classes)


class SmallCNN(_FeaturesClassifier):
    """
    ``conv(16) -> ReLU -> conv(32) -> ReLU -> maxpool -> [conv(32) -> ReLU -> maxpool] -> Linear(64) -> ReLU ->
    Linear``; the bracket only for inputs larger than 8 x 8 (28 x 28 becomes 7 x 7).

    :param input_shape: ``(C, H, W)``.
    :param nb_classes: Number of classes.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 8, 8), nb_classes: int = 10):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = [
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ]
        h, w = h // 2, w // 2
        if min(h, w) > 4:
            layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(32 * h * w, 64), nn.ReLU(), nn.Linear(64, nb_classes))


class _PooledCNN(_FeaturesClassifier):
    """
    Stages of same-padded ``kernel x kernel`` convolutions, each followed by ReLU, a 2 x 2 max-pool after every
    stage, then ``Linear(hidden) -> ReLU -> Linear(nb_classes)``.

    :param input_shape: ``(C, H, W)``, H and W divisible by ``2 ** len(stages)``.
    :param nb_classes: Number of classes.
    :param stages: Output channels of the convolutions, one tuple per stage.
    :param kernel: Odd kernel side.
    :param hidden: Width of the hidden linear layer.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], nb_classes: int, stages: tuple[tuple[int, ...], ...], kernel: int,
        hidden: int,
    ):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for stage in stages:
            for out in stage:
                layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), nn.ReLU()]
                c = out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, nb_classes))


class CNN6(_PooledCNN):
    """
    The six-layer CNN shape of the PRS paper: ``conv(32) conv(32) pool conv(64) conv(64) pool`` (3 x 3) then
    ``Linear(256) Linear(nb_classes)``, ReLU after every hidden layer.

    :param input_shape: ``(C, H, W)``, H and W divisible by 4.
    :param nb_classes: Number of classes.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), nb_classes: int = 10):
        super().__init__(input_shape, nb_classes, stages=((32, 32), (64, 64)), kernel=3, hidden=256)


class MadryCNN(_PooledCNN):
    """
    The MNIST network of Madry et al.'s MNIST challenge, used by the decision-surface paper (Yu et al., Sec. 8.3:
    "a four-layer neural network model with two convolutional layers and two fully connected layers"):
    ``conv5x5(32) -> ReLU -> maxpool -> conv5x5(64) -> ReLU -> maxpool -> Linear(1024) -> ReLU -> Linear``.

    :param input_shape: ``(C, H, W)``, H and W divisible by 4.
    :param nb_classes: Number of classes.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), nb_classes: int = 10):
        super().__init__(input_shape, nb_classes, stages=((32,), (64,)), kernel=5, hidden=1024)


def make_classifier(
    model: nn.Module,
    input_shape: tuple[int, ...],
    nb_classes: int,
    *,
    lr: float = 1e-3,
    clip_values: tuple[float, float] | None = (0.0, 1.0),
):
    """
    Wrap a model in ART's ``PyTorchClassifier`` with cross-entropy loss and Adam.

    :param model: A module returning logits.
    :param input_shape: Shape of one input sample.
    :param nb_classes: Number of classes.
    :param lr: Adam's learning rate.
    :param clip_values: Valid input range.
    :return: The ART classifier.
    """
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        input_shape=tuple(input_shape),
        nb_classes=nb_classes,
        clip_values=clip_values,
    )


def train_classifier(
    classifier, x: np.ndarray, y: np.ndarray, *, nb_epochs: int = 10, batch_size: int = 64, seed: int = 0
):
    """
    Train through ART's ``fit`` with seeded shuffling; the caller's global random states are restored afterwards.

    :param classifier: An ART ``PyTorchClassifier``.
    :param x: Training inputs.
    :param y: Training labels (indices or one-hot).
    :param nb_epochs: Epochs.
    :param batch_size: Batch size.
    :param seed: Seed for the shuffling.
    :return: The same classifier, trained.
    """
    with seeded(seed):
        classifier.fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, verbose=False)
    classifier.model.eval()
    return classifier

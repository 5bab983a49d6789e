"""
What every example script shares: its command-line skeleton and classifiers that start from the same weights.
Imported by the scripts as ``_common`` (their folder is on ``sys.path`` when run as ``python examples/NAME.py``).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from typing import Any

import torch

from art_geometry import seeded
from art_geometry.datasets import Dataset, make_classifier


def example_parser(name: str, doc: str, *, data: bool = True) -> argparse.ArgumentParser:
    """
    :param name: The script's name (default output folder ``examples_out/NAME``).
    :param doc: The script's docstring (its first paragraph becomes the description).
    :param data: Offer ``--data digits | fashion-mnist`` (default digits).
    :return: A parser with ``--out``, ``--seed``, ``--quick`` (and ``--data``); the script adds its own options.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", default=f"examples_out/{name}", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, weights, shuffling and attacks")
    parser.add_argument("--quick", action="store_true", help="tiny smoke setting (a few seconds)")
    if data:
        parser.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits")
    return parser


def twin_classifiers(
    model_cls: Callable[..., torch.nn.Module], data: Dataset, lr: float, seed: int, copies: int
) -> list[Any]:
    """
    :param model_cls: The model class, called as ``model_cls(input_shape, nb_classes)``.
    :param data: The data set (input shape, number of classes).
    :param lr: Adam's learning rate.
    :param seed: Seed of the initial weights (the global random states are restored afterwards).
    :param copies: How many classifiers.
    :return: ART classifiers around copies of one model (identical initial weights), each with its own Adam.
    """
    with seeded(seed):
        model = model_cls(data.input_shape, data.nb_classes)
    return [make_classifier(copy.deepcopy(model), data.input_shape, data.nb_classes, lr=lr) for _ in range(copies)]

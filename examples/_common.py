"""
What every example script shares: its command-line skeleton, classifiers that start from the same weights, and
the writing of its JSON and figure.
Imported by the scripts as ``_common`` (their folder is on ``sys.path`` when run as ``python examples/NAME.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
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


def write_outputs(
    name: str, args: argparse.Namespace, paper: str, results: dict, plot: Callable[[dict, Path], None], started: float
) -> dict:
    """
    Write ``NAME.json`` (paper, settings, results, wall time) and ``NAME.png`` into ``args.out``.

    :param name: The script's name.
    :param args: Its parsed arguments (all but ``out`` are recorded as settings).
    :param paper: The paper and figures the script reproduces.
    :param results: The JSON-able results.
    :param plot: ``plot(results, path)`` draws the figure.
    :param started: ``time.perf_counter()`` at the start of the run.
    :return: The report written.
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report = {"paper": paper, "settings": settings, "results": results,
              "wall_seconds": time.perf_counter() - started}
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    plot(results, out / f"{name}.png")
    return report

"""
The one batching helper: iterate inputs in batches on the model's device, with an optional progress bar.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from art_geometry._model import ModelView

__all__ = ["batches", "predict_logits"]


def batches(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    batch_size: int,
    *,
    verbose: bool = False,
    desc: str = "",
) -> Iterator[tuple[slice, torch.Tensor]]:
    """
    Yield ``(slice, batch)`` pairs covering ``x`` in order; each batch is a new tensor on the model's device and
    dtype (``x`` itself is never written).

    :param view: The model view (device, dtype).
    :param x: Inputs ``(N, ...)``.
    :param batch_size: Samples per batch.
    :param verbose: Show a tqdm progress bar.
    :param desc: Progress bar label.
    """
    n = len(x)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc=desc, disable=not verbose, leave=False, unit="batch"):
        sl = slice(start, min(start + batch_size, n))
        yield sl, view.to_tensor(x[sl])


def predict_logits(
    view: ModelView, x: "np.ndarray | torch.Tensor", batch_size: int, *, verbose: bool = False
) -> torch.Tensor:
    """
    :param view: The model view, already in :meth:`ModelView.evaluating`.
    :param x: Inputs ``(N, ...)``.
    :param batch_size: Samples per batch.
    :param verbose: Show a progress bar.
    :return: Logits ``(N, nb_classes)`` on the model's device.
    """
    with torch.no_grad():
        return torch.cat([view(b) for _, b in batches(view, x, batch_size, verbose=verbose, desc="predict")])

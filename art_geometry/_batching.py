"""
The one batching helper: iterate inputs (and their labels) in batches on the model's device, with an optional
progress bar. ``batch_size`` always counts samples.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from art_geometry._model import ModelView

__all__ = ["Batch", "batches", "predict_logits"]


class Batch(NamedTuple):
    """One batch: the samples' positions ``sl`` in the data, the inputs and (when given) the labels."""

    sl: slice
    x: torch.Tensor
    y: "torch.Tensor | None"


def batches(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    batch_size: int,
    *,
    labels: "np.ndarray | torch.Tensor | None" = None,
    order: "np.ndarray | torch.Tensor | None" = None,
    verbose: bool = False,
    desc: str = "",
) -> Iterator[Batch]:
    """
    Yield :class:`Batch` es covering ``x`` in order (or in the order of the indices ``order``); each batch is a new
    tensor on the model's device and dtype (``x`` itself is never written), labels as int64 on the same device.

    :param view: The model view (device, dtype).
    :param x: Inputs ``(N, ...)``, numpy (any stride) or torch.
    :param batch_size: Samples per batch.
    :param labels: ``(N,)`` class indices, or ``None``.
    :param order: A permutation of ``range(N)`` to visit the samples in (``sl`` then indexes ``order``).
    :param verbose: Show a tqdm progress bar.
    :param desc: Progress bar label.
    """
    n = len(x) if order is None else len(order)
    y_all = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not verbose, leave=False, unit="batch"):
        sl = slice(start, min(start + batch_size, n))
        idx = sl if order is None else _indices(order[sl])
        yb = None if y_all is None else y_all[idx].to(view.device)
        yield Batch(sl, view.to_tensor(x[idx]), yb)


def _indices(idx: "np.ndarray | torch.Tensor") -> np.ndarray:
    return idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)


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
        return torch.cat([view(b.x) for b in batches(view, x, batch_size, verbose=verbose, desc="predict")])

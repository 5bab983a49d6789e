"""
The decision function of Yu et al. (ICLR 2019 submission, arXiv:1810.00144, Sec. 4, Eq. 2) on a batch of logits,

    L(x) = Z_t(x) - max_{i != t} Z_i(x),

positive where the classifier predicts ``t`` and zero on the decision boundary, and the labels ``t`` it is taken
against: the given labels, or the model's predictions. Shared by the decision surfaces, the robustness indicators
and the Jacobian-regularised trainer.
"""

from __future__ import annotations

import numpy as np
import torch

from art_geometry.core.batching import predict_logits
from art_geometry.core.prepare import Prepared

__all__ = ["decision_values", "decision_labels"]


def decision_values(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    :param logits: ``(B, C)`` logits.
    :param labels: ``(B,)`` class indices ``t``.
    :return: ``L = Z_t - max_{i != t} Z_i`` ``(B,)`` and the maximising competitor ``m`` ``(B,)``.
    """
    target = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    best, competitor = others.max(dim=1)
    return target - best, competitor


def decision_labels(prep: Prepared, batch_size: int, *, verbose: bool = False) -> np.ndarray:
    """
    The labels ``t`` of the decision function: the given ones, or the model's predictions (one pass over the
    data, in batches) when none were given.

    :param prep: The prepared data; call inside ``prep.view.evaluating()``.
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :return: ``(N,)`` int64 class indices.
    """
    if prep.labels is not None:
        return prep.labels
    logits = predict_logits(prep.view, prep.x, batch_size, verbose=verbose)
    return logits.argmax(dim=1).cpu().numpy().astype(np.int64)

"""The gap ``g = max_{k != pred} Z_k - Z_pred`` that every stage reads (``g > 0``: adversarial), and the float32
rounding of the points it is read at."""

from __future__ import annotations

import math

import torch

from art_geometry.core.model import ModelView


def _storable(pert: torch.Tensor) -> torch.Tensor:
    """A perturbation rounded to float32, the dtype it is returned in, so the checked point is the returned one."""
    return pert.to(torch.float32).to(pert.dtype)


def _gap_of(z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """:return: The gap ``g = max_{k != pred} Z_k - Z_pred`` of logits ``z`` ``(A, C)``, ``(A,)``."""
    return z.scatter(1, pred[:, None], -math.inf).amax(dim=1) - z.gather(1, pred[:, None])[:, 0]


def _gap(view: ModelView, x: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: Whether each point is adversarial, and the gap :func:`_gap_of` there."""
    with torch.no_grad():
        z = view(x)
    return z.argmax(dim=1) != pred, _gap_of(z, pred)

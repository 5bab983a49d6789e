"""
The one batched input-gradient routine: per-sample gradients ``grad_x J(x_n)`` of a per-sample objective ``J``,
batch by batch, with one forward and one backward pass per batch.

Samples are independent in eval mode, so the gradient of the batch sum ``sum_n J(x_n)`` holds every per-sample
gradient. Used by the adversarial directions of the decision surfaces (Yu et al. 2019, Sec. 4.2), the Jacobian of
the decision function (ibid., Eq. 4) and the zero-gradient analysis of the PRS paper (Sec. 4.2).

Usage, inside ``view.evaluating()``::

    for batch, grad, values in input_gradients(view, x, batch_size, objective, labels=labels):
        ...  # batch.sl: the samples' positions; grad: (B, *sample_shape); values: (B,)

with ``objective(logits (B, C), labels (B,) or None) -> (B,)``, e.g.
``lambda z, t: F.cross_entropy(z, t, reduction="none")``.
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from art_geometry.core.batching import Batch, batches
from art_geometry.core.model import ModelView

__all__ = ["Objective", "InputGradient", "input_gradients"]

#: A per-sample objective: ``(logits (B, C), labels (B,) or None) -> (B,)`` values, differentiable in the logits.
Objective = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class InputGradient(NamedTuple):
    """
    One batch of gradients.

    :ivar batch: The batch (``sl`` its positions in the data, ``x`` its inputs on the device, ``y`` its labels).
    :ivar grad: ``(B, *sample_shape)`` ``grad_x J`` per sample, detached, in the model's dtype.
    :ivar values: ``(B,)`` ``J`` per sample, detached.
    """

    batch: Batch
    grad: torch.Tensor
    values: torch.Tensor


def input_gradients(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    batch_size: int,
    objective: Objective,
    *,
    labels: "np.ndarray | torch.Tensor | None" = None,
    verbose: bool = False,
    desc: str = "",
) -> Iterator[InputGradient]:
    """
    Yield the input gradient of ``objective`` for every batch of ``x`` (in order, through
    :func:`art_geometry.core.batching.batches`); gradients are enabled inside even when the caller disabled them. The
    parameters get no ``.grad`` (only the inputs are differentiated). Call it inside ``view.evaluating()``.

    :param view: The model view.
    :param x: Inputs ``(N, ...)``, numpy (any stride) or torch; never written.
    :param batch_size: Samples per batch.
    :param objective: ``(logits, labels) -> (B,)`` per-sample values; their sum is differentiated.
    :param labels: ``(N,)`` class indices handed to ``objective`` batch by batch, or ``None`` (it gets ``None``).
    :param verbose: Show a progress bar.
    :param desc: Progress bar label.
    :return: An iterator of :class:`InputGradient` ``(batch, grad, values)``; a sample on which the objective does
             not depend gets a zero gradient.
    :raises ValueError: When ``objective`` does not return one value per sample.
    """
    for batch in batches(view, x, batch_size, labels=labels, verbose=verbose, desc=desc):
        xb = batch.x.requires_grad_(True)
        with torch.enable_grad():
            values = objective(view(xb), batch.y)
            if values.shape != (len(xb),):
                raise ValueError(
                    f"the objective must return one value per sample, shape ({len(xb)},), got {tuple(values.shape)}"
                )
            grad = None
            if values.requires_grad:
                (grad,) = torch.autograd.grad(values.sum(), xb, allow_unused=True)
        xb.requires_grad_(False)
        yield InputGradient(batch, torch.zeros_like(xb) if grad is None else grad, values.detach())

"""
The one crafting routine behind the three attack wrappers: DeepFool margins on prepared data (the private
implementation of :func:`art_geometry.margins.deepfool_margins`) turned into adversarial points ``x + r`` in the
dtype the host library returns, each checked to be adversarial as returned (``x`` itself where no adversarial
point was found).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from art_geometry.core.batching import predict_logits
from art_geometry.core.prepare import Prepared
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.margins.gap import _gap_of
from art_geometry.margins.measure import _margins
from art_geometry.margins.results import MarginResult

__all__ = ["craft"]

#: A returned point's gap must exceed this many ulps of its largest logit: the logits of the same point differ by a
#: few ulps between forward passes of other batches or memory alignments (CPU kernels round differently; seen: 1e-6
#: on logits of 1.7, 8 ulps), so a point adversarial by less may be clean where the user evaluates it.
_SAFE_ULPS = 64


def _clearly_adversarial(logits: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """:return: Per row, whether ``max_{k != pred} Z_k - Z_pred`` exceeds :data:`_SAFE_ULPS` ulps of ``max |Z|``."""
    tol = _SAFE_ULPS * torch.finfo(logits.dtype).eps * logits.abs().amax(dim=1)
    return (_gap_of(logits, pred.to(logits.device)) > tol).cpu()


#: Relative outward moves ``x + (1 + g) r`` tried, in order, for a point that rounding to the returned dtype or
#: clipping made clean again (``g = 0`` first: the point as DeepFool found it).
_GROW = (0.0, 1e-6, 1e-4, 1e-2)


def craft(
    prep: Prepared,
    settings: DeepFoolSettings,
    *,
    clip: "tuple[Any, Any] | None",
    batch_size: int,
    verbose: bool,
    keep_misclassified: bool = False,
) -> tuple["np.ndarray | torch.Tensor", MarginResult]:
    """
    :param prep: The prepared inputs and model view.
    :param settings: The DeepFool settings.
    :param clip: ``(min, max)`` (numbers, or arrays broadcasting to one sample, as ART's ``clip_values``) the
                 returned points are clipped into, or ``None``.
    :param batch_size: Samples per batch.
    :param verbose: Show a progress bar.
    :param keep_misclassified: Return the samples the model misclassifies unchanged (foolbox's and torchattacks'
                               convention; ``prep`` must hold the labels).
    :return: ``(x_adv, result)``. ``x_adv`` is a new float32 array for numpy inputs (ART's ``ART_NUMPY_DTYPE``,
             whatever the input dtype) and a new tensor of the input's dtype and device for a tensor. It holds
             ``x + r`` where ``result.success``, evaluated by the model exactly as returned and adversarial by more
             than float noise (:data:`_SAFE_ULPS`; moved outwards by at most 1% where rounding to that dtype,
             clipping or the noise made it clean), and ``x`` elsewhere. ``result`` is the
             :func:`~art_geometry.margins.deepfool_margins` result, with ``success`` cleared (margin ``inf``, zero
             perturbation) for a point that no such move kept adversarial.
    """
    result = _margins(prep, settings, None, True, batch_size, verbose)
    view = prep.view
    x0 = torch.from_numpy(np.array(prep.x, dtype=np.float32)) if isinstance(prep.x, np.ndarray) else prep.x.detach()
    pert = torch.from_numpy(result.perturbations).to(device=x0.device, dtype=x0.dtype)
    bounds = None if clip is None else [torch.as_tensor(np.asarray(c), dtype=x0.dtype, device=x0.device) for c in clip]
    pred = torch.from_numpy(result.predictions)
    x_adv = x0.clone()
    moved = result.success & result.correct if keep_misclassified else result.success
    rows = torch.from_numpy(moved).nonzero(as_tuple=True)[0]
    with view.evaluating():
        for grow in _GROW:
            if rows.numel() == 0:
                break
            at = rows.to(x0.device)
            point = x0[at] + (1.0 + grow) * pert[at]
            x_adv[at] = point if bounds is None else torch.clamp(point, *bounds)
            # the whole batch as returned, not the moved rows alone: a point this near the boundary can be
            # adversarial in a forward pass of one batch and not of another (CPU kernels round differently), and
            # the points are returned, and typically evaluated, as this batch
            rows = rows[~_clearly_adversarial(predict_logits(view, x_adv, batch_size), pred)[rows]]
    success = result.success.copy()
    success[rows.numpy()] = False
    x_adv[rows.to(x0.device)] = x0[rows.to(x0.device)]
    result = replace(
        result,
        success=success,
        margins=np.where(success, result.margins, np.inf),
        perturbations=np.where(success.reshape((-1,) + (1,) * (x0.ndim - 1)), result.perturbations, 0).astype(
            np.float32
        ),
    )
    return (x_adv.numpy() if isinstance(prep.x, np.ndarray) else x_adv), result

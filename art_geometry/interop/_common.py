"""
The one crafting routine behind the three attack wrappers: DeepFool margins with the perturbations, turned into
adversarial points ``x + r`` (``x`` itself where no adversarial point was found).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from art_geometry._validation import check_norm, check_positive_int
from art_geometry.margins import MarginResult, deepfool_margins

__all__ = ["check_options", "craft"]


def check_options(
    norm: Any, candidates: Any, overshoot: Any, max_iter: Any, restarts: Any, batch_size: Any
) -> float:
    """
    Validate the shared hyper-parameters with messages that name them.

    :return: The norm as a float (2 or inf).
    :raises ValueError: For any invalid value.
    """
    p = check_norm(norm)
    if check_positive_int(candidates, "candidates") < 2:
        raise ValueError("candidates must be at least 2 (the predicted class and one other)")
    if isinstance(overshoot, bool) or not isinstance(overshoot, (int, float)) or not 0 <= overshoot < math.inf:
        raise ValueError(f"overshoot must be a finite non-negative number, got {overshoot!r}")
    check_positive_int(max_iter, "max_iter")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 0:
        raise ValueError(f"restarts must be a non-negative integer, got {restarts!r}")
    check_positive_int(batch_size, "batch_size")
    return p


def craft(
    classifier: Any, x: "np.ndarray | torch.Tensor", **options: Any
) -> tuple["np.ndarray | torch.Tensor", MarginResult]:
    """
    :param classifier: Anything :func:`~art_geometry._model.model_view` accepts (or a ``ModelView``).
    :param x: Inputs, numpy or torch; never modified.
    :param options: Keyword options of :func:`~art_geometry.margins.deepfool_margins`.
    :return: ``(x_adv, result)``: ``x_adv`` has the type, dtype and device of ``x`` and equals ``x + r`` where
             ``result.success`` and ``x`` elsewhere.
    """
    result = deepfool_margins(classifier, x, return_perturbations=True, **options)
    shape = (-1,) + (1,) * (x.ndim - 1)
    if isinstance(x, torch.Tensor):
        pert = torch.from_numpy(result.perturbations).to(device=x.device, dtype=x.dtype)
        ok = torch.from_numpy(result.success).to(x.device).reshape(shape)
        return torch.where(ok, x.detach() + pert, x.detach()), result
    pert = result.perturbations.astype(x.dtype, copy=False)
    return np.where(result.success.reshape(shape), x + pert, x).astype(x.dtype, copy=False), result

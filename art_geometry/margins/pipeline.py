"""The stages chained for one batch of rows: DeepFool, seeded restarts, the crossing refinement, the boundary stage."""

from __future__ import annotations

import math

import torch

from art_geometry.core.model import ModelView
from art_geometry.core.validation import check_in_bounds
from art_geometry.margins.boundary import _boundary_stage
from art_geometry.margins.deepfool import _deepfool, _restart_noise, _start
from art_geometry.margins.gap import _gap, _gap_of
from art_geometry.margins.plan import _Plan
from art_geometry.margins.refine import _crossing
from art_geometry.subspaces import SubspaceStack


def _margins_rows(
    view: ModelView,
    x0: torch.Tensor,
    stack: SubspaceStack | None,
    which: torch.Tensor,
    plan: _Plan,
    source: "tuple[torch.Tensor, torch.Tensor] | None" = None,
) -> tuple[torch.Tensor, ...]:
    """
    Margins of one batch of rows (samples, or sample-subspace pairs).

    :param source: ``(samples, index)`` when the rows repeat a few samples (``x0 = samples[index]``: the subspace
                   sweep, one row per sample and subspace): the logits and the first DeepFool iteration's
                   gradients, taken at ``x0`` where every subspace starts, are computed once per sample and shared
                   by its rows (the projection onto each row's subspace comes after). Same result as without.
    :return: ``margins, success, iterations, predictions, perturbations`` as tensors.
    :raises OutOfBoundsError: With ``box``, for samples outside the box (their margins would exceed their distance to
                              it).
    """
    if plan.box is not None:
        check_in_bounds(x0, "x", plan.box, "clip_values (box=True measures inside them)")
    distinct, index = source if source is not None else (x0, None)
    logits, pred, others, first = _start(view, distinct, plan.candidates)
    if index is not None:
        logits, pred, others, first = logits[index], pred[index], others[index], (first[0][index], first[1][index])
    gap0 = _gap_of(logits, pred)
    clean = torch.zeros_like(pred, dtype=torch.bool)
    x, success, iters, gap = _deepfool(view, x0, x0, pred, others, stack, which, plan, (clean, gap0), first)
    for attempt in range(1, plan.settings.restarts + 1):
        failed = (~success).nonzero(as_tuple=True)[0]
        if failed.numel() == 0:
            break
        noise = _restart_noise(x0[failed], attempt, plan)
        if stack is not None:
            noise = stack.project(noise, which[failed])
        start = x0[failed] + noise
        if plan.box is not None:
            start = start.clamp(*plan.box)
        xr, sr, ir, gr = _deepfool(
            view, x0[failed], start, pred[failed], others[failed], stack, which[failed], plan,
            _gap(view, start, pred[failed]),
        )
        x[failed], success[failed], iters[failed], gap[failed] = xr, sr, iters[failed] + ir, gr
    final, success = _crossing(view, x0, x - x0, success, pred, (gap0, gap), plan)
    if plan.settings.boundary_steps:
        final = _boundary_stage(view, x0, final, success, pred, gap0, stack, which, plan)
    inf = torch.full_like(success, math.inf, dtype=torch.float64)
    margins = torch.where(success, plan.settings.norm.measure(final).to(torch.float64), inf)
    return margins, success, iters, pred, final

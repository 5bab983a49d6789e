"""The boundary stage (``boundary_steps``): a few steps of a minimum-norm attack (FMN, Pintor et al., NeurIPS 2021)
started at the refined DeepFool point, which never lengthens a margin."""

from __future__ import annotations

import math

import torch

from art_geometry.core.model import ModelView
from art_geometry.margins.gap import _gap_of
from art_geometry.margins.plan import _Plan
from art_geometry.margins.refine import _crossing
from art_geometry.subspaces import SubspaceStack

#: The boundary stage's step length at its first step, relative to the margin it starts from, and at its last.
_BOUNDARY_STEP = (1.0, 0.01)


#: The boundary stage's relative change of the norm budget at its first step and at its last.
_BOUNDARY_RATE = (0.05, 0.001)


def _annealed(bounds: tuple[float, float], i: int, n: int) -> float:
    """Cosine annealing from ``bounds[0]`` at step 0 to ``bounds[1]`` at step ``n``."""
    return bounds[1] + (bounds[0] - bounds[1]) * (1 + math.cos(math.pi * i / n)) / 2


def _boundary_stage(
    view: ModelView,
    x0: torch.Tensor,
    pert: torch.Tensor,
    success: torch.Tensor,
    pred: torch.Tensor,
    gap0: torch.Tensor,
    stack: SubspaceStack | None,
    which: torch.Tensor,
    plan: _Plan,
) -> torch.Tensor:
    """
    The boundary stage: ``boundary_steps`` steps of a minimum-norm attack started at the refined DeepFool point,
    after FMN (Pintor, Croce, Hein, Biggio and Roli, "Fast Minimum-norm Adversarial Attacks through Adaptive Norm
    Perturbations", NeurIPS 2021, Algorithm 1): a gradient step on the gap alternated with a projection onto a
    norm ball whose radius adapts to whether the iterate is adversarial.

    With ``r`` the DeepFool perturbation (``delta_0 = r``, ``eps_0 = ||r||``), step ``i`` takes one forward and one
    backward pass at ``x0 + delta`` of the gap ``g = max_{k != pred} Z_k - Z_pred``, and

    * keeps ``delta`` as the best point where ``g > 0`` and ``||delta||`` is the smallest so far;
    * ``eps <- min(eps (1 - gamma), best)`` where adversarial, else ``eps <- eps (1 + gamma)``;
    * ``delta <- Pi_eps(delta + alpha ||r|| u(grad g))``, ``u`` the unit steepest step (``w / ||w||_2``, or
      ``sign(w)`` for L-inf; the gradient projected onto ``S`` in a subspace), ``Pi_eps`` the projection onto the
      ``eps``-ball (then onto ``S`` for L-inf in a subspace), clamped into the box with ``box``;

    with ``alpha`` and ``gamma`` cosine-annealed from 1 to 0.01 and from 0.05 to 0.001. The crossing on the
    segment from ``x0`` to the best point is refined and verified as the DeepFool point's (:func:`_crossing`); a
    row takes it only where it is verified adversarial and shorter than ``r``. So the stage never lengthens a
    margin and every returned point is adversarial.

    :param pert: ``(B, *shape)`` verified perturbations (zero where not ``success``).
    :param success: ``(B,)`` the rows with an adversarial point.
    :return: The perturbations after the stage, ``(B, *shape)``.
    """
    norm = plan.settings.norm
    shape = (-1,) + (1,) * (x0.ndim - 1)
    rows = success.nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return pert
    xr, pr, r, wr = x0[rows], pred[rows], pert[rows], which[rows]
    start = norm.measure(r)
    delta, best, best_norm, eps = r.clone(), r.clone(), start.clone(), start.clone()
    # the gap at ``best``, read where ``best`` moves (only moved rows are refined)
    best_gap = torch.zeros_like(start)
    n = plan.settings.boundary_steps
    for i in range(n):
        step, rate = _annealed(_BOUNDARY_STEP, i, n), _annealed(_BOUNDARY_RATE, i, n)
        xa = (xr + delta).detach().requires_grad_(True)
        z = view(xa)
        gap = _gap_of(z, pr)
        (w,) = torch.autograd.grad(gap.sum(), xa)
        adv = gap.detach() > 0
        size = norm.measure(delta)
        improved = adv & (size < best_norm)
        best = torch.where(improved.reshape(shape), delta, best)
        best_norm = torch.where(improved, size, best_norm)
        best_gap = torch.where(improved, gap.detach(), best_gap)
        eps = torch.where(adv, torch.minimum(eps * (1 - rate), best_norm), eps * (1 + rate))
        if stack is not None:
            w = stack.project(w, wr)
        delta = delta + (step * start).reshape(shape) * norm.unit_step(w, norm.dual.measure(w))
        if norm.p == 2:
            scale = eps / norm.measure(delta).clamp(min=torch.finfo(eps.dtype).tiny)
            delta = delta * scale.clamp(max=1).reshape(shape)
        else:
            delta = torch.maximum(torch.minimum(delta, eps.reshape(shape)), -eps.reshape(shape))
            if stack is not None:
                delta = stack.project(delta, wr)
        if plan.box is not None:
            delta = (xr + delta).clamp(*plan.box) - xr
    moved = best_norm < start
    candidate, ok = _crossing(view, xr, best, moved, pr, (gap0[rows], best_gap), plan)
    better = ok & (norm.measure(candidate) < start)
    out = pert.clone()
    out[rows[better]] = candidate[better]
    return out

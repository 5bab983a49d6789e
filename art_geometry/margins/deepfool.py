"""
Distances to the decision boundary: batched DeepFool (L2 and L-inf), optionally inside a subspace, with a bracketing
search that refines the crossing and seeded restarts for the samples where DeepFool fails.

DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate method to fool deep neural
networks", CVPR 2016, Algorithm 2 and Eq. (8)-(10) for the multi-class case) linearises the logit differences
``f_k = Z_k - Z_pred`` around the current point, with ``w_k = grad f_k``, and steps to the nearest linearised
boundary:

* L2: ``l = argmin_k |f_k| / ||w_k||_2`` and ``r = |f_l| / ||w_l||_2^2 * w_l``;
* L-inf (the l1-dual step): ``l = argmin_k |f_k| / ||w_k||_1`` and ``r = |f_l| / ||w_l||_1 * sign(w_l)``.

The steps accumulate into ``r_total`` and the iterate is ``x + (1 + overshoot) r_total`` (foolbox 3's placement);
each sample stops as soon as the model's prediction changes. The subspace-constrained variant of "Hold me tight!"
(Ortiz-Jimenez et al., NeurIPS 2020, Algorithm 1) replaces ``w_k`` by ``P_S w_k``. Inside a box (``box=True``)
each step is the shortest move to a linearised boundary within the box, solved exactly
(:mod:`art_geometry.margins.step`), and the iterate is ``clamp(x_i + (1 + overshoot) r_i)``; foolbox and ART step
in R^D and clamp the accumulated iterate, which takes 2-4x more iterations when the box binds.

The margin is measured from the region the MODEL PREDICTS at ``x``: the labels only split the samples into
correctly and incorrectly classified ones.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from art_geometry.core.model import ModelView
from art_geometry.margins.gap import _gap
from art_geometry.margins.plan import _Plan
from art_geometry.margins.step import box_step, free_step
from art_geometry.subspaces import SubspaceStack


def _candidate_gradients(
    z: torch.Tensor, xa: torch.Tensor, pred: torch.Tensor, others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    All candidate-class gradients from one forward pass: one batched backward pass per candidate ``j`` through the
    retained graph, each giving ``grad f_j`` of every sample at once (samples are independent: the model is in eval
    mode). On a quiet 2-core CPU this beats autograd's vmap (``is_grads_batched=True``) by 1.3-2x and a batch
    replicated per candidate by about 3x (SmallCNN, 8 x 8 and 28 x 28, batch 128 and 512, 9 candidates; identical
    gradients): ``K`` plain backward kernels over the whole batch are faster than their vmapped form.

    :param z: ``(A, C)`` logits at ``xa``, with their graph.
    :param xa: ``(A, *shape)`` the points, requiring gradients.
    :return: ``f = Z_k - Z_pred`` ``(A, K)`` and ``w = grad f`` ``(A, K, *shape)``.
    """
    f = z.gather(1, others) - z.gather(1, pred[:, None])
    k = others.shape[1]
    w = torch.stack(
        [torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 1)[0] for j in range(k)], dim=1
    )
    return f.detach(), w


def _class_gradients(
    view: ModelView, x: torch.Tensor, pred: torch.Tensor, others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: :func:`_candidate_gradients` at ``x``: ``f`` ``(A, K)`` and ``w`` ``(A, K, *shape)``."""
    xa = x.detach().requires_grad_(True)
    return _candidate_gradients(view(xa), xa, pred, others)


def _start(
    view: ModelView, x: torch.Tensor, candidates: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """
    The logits at the clean samples and DeepFool's first iteration from the same forward pass (every sample starts
    clean, so the first iteration takes gradients at every ``x``).

    :param candidates: Top classes by logit considered, the predicted one included.
    :return: The logits ``(A, C)``, the predictions ``(A,)``, the other candidates ``(A, K)`` (top classes by
             logit, the predicted one excluded) and :func:`_candidate_gradients` ``(f, w)`` there.
    """
    xa = x.detach().requires_grad_(True)
    z = view(xa)
    logits = z.detach()
    pred = logits.argmax(dim=1)
    others = logits.argsort(dim=1, descending=True)[:, 1:candidates]
    return logits, pred, others, _candidate_gradients(z, xa, pred, others)


def _deepfool(
    view: ModelView,
    x0: torch.Tensor,
    start: torch.Tensor,
    pred: torch.Tensor,
    others: torch.Tensor,
    stack: SubspaceStack | None,
    which: torch.Tensor,
    plan: _Plan,
    at_start: tuple[torch.Tensor, torch.Tensor],
    first: "tuple[torch.Tensor, torch.Tensor] | None" = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    DeepFool from ``start`` for a batch, each sample leaving the active set as soon as its prediction changes.
    Each iteration takes the candidates' gradients at the active points (:func:`_class_gradients`), steps, and
    checks the new points in one forward pass without a graph: a point found adversarial costs no gradients (with
    ~1.5 iterations a sample, checking inside the gradient pass would spend a third of the backward passes on
    points already past the boundary).

    :param at_start: Whether each ``start`` is adversarial and its gap (:func:`_gap`), ``(B,)`` each.
    :param first: ``(f, w)`` of :func:`_class_gradients` at ``start`` for every row when already known, used by
                  the first iteration instead of computing them (the subspace sweep computes them once per sample
                  for all its subspaces).
    :return: The final points ``(B, *shape)``, whether each is adversarial ``(B,)``, the iterations ``(B,)`` and
             the gap :func:`_gap_of` at the final points ``(B,)``.
    """
    b = x0.shape[0]
    x = start.clone()
    r_total = torch.zeros_like(x0)
    iters = torch.zeros(b, dtype=torch.long, device=x0.device)
    success, gap = at_start[0].clone(), at_start[1].clone()
    active = (~success).nonzero(as_tuple=True)[0]
    norm = plan.settings.norm
    for _ in range(plan.settings.max_iter):
        if active.numel() == 0:
            break
        if first is not None:
            f, w = first[0][active], first[1][active]
            first = None
        else:
            f, w = _class_gradients(view, x[active], pred[active], others[active])
        if stack is None and plan.box is not None:
            r = box_step(f, w, x[active], plan.box, norm)
            xa = (x[active] + (1.0 + plan.settings.overshoot) * r).clamp(*plan.box)
        else:
            if stack is not None:
                w = stack.project(w, which[active])
            r = free_step(f, w, norm)
            if stack is not None and norm.p != 2:
                r = stack.project(r, which[active])
            r_total[active] += r
            xa = start[active] + (1.0 + plan.settings.overshoot) * r_total[active]
            if plan.box is not None:
                xa = xa.clamp(*plan.box)
        x[active] = xa
        iters[active] += 1
        adv, gap[active] = _gap(view, xa, pred[active])
        success[active] = adv
        active = active[~adv]
    return x, success, iters, gap


def _restart_noise(x0: torch.Tensor, attempt: int, plan: _Plan) -> torch.Tensor:
    """
    Seeded Gaussian noise, std ``restart_noise`` per coordinate, drawn per sample from a generator keyed by
    ``(seed, hash of the sample's values, attempt)``: it depends neither on the batch a sample falls in nor on its
    position in ``x``, so the margins do not depend on the input order. Only the failing samples reach this (a
    loop over them, outside the hot path).
    """
    out = torch.empty_like(x0)
    host = x0.detach().to("cpu", torch.float64).numpy()
    for i in range(len(x0)):
        key = int.from_bytes(hashlib.blake2b(host[i].tobytes(), digest_size=8).digest(), "little")
        state = np.random.SeedSequence([plan.seed, key, attempt]).generate_state(2)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        noise = torch.randn(x0.shape[1:], generator=g, dtype=torch.float64)
        out[i] = noise.to(device=x0.device, dtype=x0.dtype)
    return out * plan.settings.restart_noise

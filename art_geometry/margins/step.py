"""
DeepFool's step: the shortest move to the nearest linearised boundary, in R^D and inside a box.

At a point ``x`` with logit differences ``f_k = Z_k - Z_pred < 0`` and their gradients ``w_k`` (candidates
``k``), the linearised boundary of candidate ``k`` is ``{x + r : f_k + <w_k, r> = 0}``. DeepFool (Moosavi-Dezfooli,
Fawzi and Frossard, CVPR 2016, Eq. (8)-(10)) steps to the nearest of them in R^D: ``|f_k| / ||w_k||_q`` away
(``q`` the dual norm). With a box ``lo <= x + r <= hi`` (the classifier's ``clip_values``) the nearest point of
each linearised boundary inside the box is the solution of a one-parameter problem, solved exactly here
(:func:`box_step`), instead of stepping in R^D and clamping afterwards (foolbox's and ART's clipping), which wastes
the part of the step that the clamp removes and costs clipped runs extra iterations.
"""

from __future__ import annotations

import math

import torch

from art_geometry.core.norms import Norm

__all__ = ["STEP_EPS", "free_step", "box_step"]

#: Added to the step length (in the chosen norm), as foolbox does, so that a step lands past the linearised
#: boundary rather than on it.
STEP_EPS = 1e-4


def free_step(f: torch.Tensor, w: torch.Tensor, norm: Norm) -> torch.Tensor:
    """
    The DeepFool step to the nearest linearised boundary in R^D (CVPR 2016, Eq. (8)-(10)), plus ``STEP_EPS``:
    ``l = argmin_k |f_k| / ||w_k||_q`` (``q`` the dual norm), ``r = (|f_l| / ||w_l||_q + eps) u(w_l)`` with ``u``
    the unit-p-norm steepest step (:meth:`Norm.unit_step`: ``w / ||w||_2`` for L2, ``sign(w)`` for L-inf).

    :param f: ``(A, K)`` logit differences.
    :param w: ``(A, K, *shape)`` their gradients (projected, in a subspace).
    :param norm: The norm of the margin.
    :return: ``(A, *shape)``; zero for a sample whose gradients all vanish (it cannot move).
    """
    dual = norm.dual.measure_rows(w)
    dist = torch.where(dual > 0, f.abs() / dual, torch.full_like(dual, math.inf))
    best = dist.argmin(dim=1)
    rows = torch.arange(f.shape[0], device=f.device)
    d_l, n_l, w_l = dist[rows, best], dual[rows, best], w[rows, best]
    movable = torch.isfinite(d_l)
    length = torch.where(movable, d_l + STEP_EPS, torch.zeros_like(d_l))
    return length.reshape((-1,) + (1,) * (w_l.ndim - 1)) * norm.unit_step(w_l, n_l)


def _l2_in_box(w: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """
    ``argmin ||r||_2`` subject to ``<w, r> = gain`` and ``lower <= r <= upper`` (``lower <= 0 <= upper``), per row:
    by the KKT conditions ``r = clamp(lam w, lower, upper)`` with the ``lam >= 0`` at which the nondecreasing,
    piecewise-linear ``phi(lam) = <w, clamp(lam w, lower, upper)>`` reaches ``gain``. Coordinate ``i`` clamps at
    ``lam_i = bound_i / w_i`` (``bound`` the upper room where ``w_i > 0``, the lower one where ``w_i < 0``); with
    the ``lam_i`` sorted, ``phi`` at each of them comes from cumulative sums, the segment holding ``gain`` from a
    count, and ``lam`` from that segment's line.

    :param w: ``(R, D)``; ``lower``, ``upper`` ``(R, D)``; ``gain`` ``(R,)``, ``> 0``.
    :return: ``(R, D)`` the step, ``nan`` rows where ``gain`` exceeds ``phi(inf)`` (no such point in the box).
    """
    bound = torch.where(w > 0, upper, lower)
    clamp_at = torch.where(w != 0, bound / w, torch.full_like(w, math.inf))
    order = clamp_at.argsort(dim=1)
    at = clamp_at.gather(1, order)
    w2 = (w * w).gather(1, order)
    reached = (w * bound).gather(1, order)
    done = reached.cumsum(dim=1)
    # sum of w_i^2 over the coordinates after each one (still free at its breakpoint), summed from the end
    free = torch.cat([w2.flip(1).cumsum(dim=1).flip(1)[:, 1:], torch.zeros_like(w2[:, :1])], dim=1)
    phi = torch.where(torch.isfinite(at), at * free + done, done)
    j = (phi < gain[:, None]).sum(dim=1, keepdim=True)
    feasible = j[:, 0] < w.shape[1]
    k = (j - 1).clamp(min=0)
    done_before = torch.where(j > 0, done.gather(1, k), torch.zeros_like(gain[:, None]))
    free_from = torch.where(j > 0, free.gather(1, k), w2.sum(dim=1, keepdim=True))
    lam = (gain[:, None] - done_before) / free_from
    r = torch.minimum(torch.maximum(lam * w, lower), upper)
    return torch.where(feasible[:, None], r, torch.full_like(r, math.nan))


def _linf_in_box(w: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """
    ``argmin ||r||_inf`` subject to ``<w, r> = gain`` and ``lower <= r <= upper``, per row: ``r_i = sign(w_i)
    min(eps, room_i)`` with ``room_i`` the room in the direction of ``sign(w_i)``, and the ``eps`` at which the
    nondecreasing, piecewise-linear ``phi(eps) = sum_i |w_i| min(eps, room_i)`` reaches ``gain`` (breakpoints at
    the sorted rooms, as in :func:`_l2_in_box`).

    :return: ``(R, D)`` the step, ``nan`` rows where ``gain`` exceeds ``phi(inf)``.
    """
    room = torch.where(w > 0, upper, -lower)
    order = room.argsort(dim=1)
    at = room.gather(1, order)
    size = w.abs().gather(1, order)
    done = (size * at).cumsum(dim=1)
    tail = size.flip(1).cumsum(dim=1).flip(1)
    # phi at each breakpoint: the coordinates before it capped at their room, it and those after at its room
    phi = done - size * at + at * tail
    j = (phi < gain[:, None]).sum(dim=1, keepdim=True)
    feasible = j[:, 0] < w.shape[1]
    jc = j.clamp(max=w.shape[1] - 1)
    done_before = torch.where(j > 0, done.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(gain[:, None]))
    eps = (gain[:, None] - done_before) / tail.gather(1, jc)
    r = w.sign() * torch.minimum(eps, room)
    return torch.where(feasible[:, None], r, torch.full_like(r, math.nan))


def box_step(
    f: torch.Tensor, w: torch.Tensor, x: torch.Tensor, box: tuple[float, float], norm: Norm
) -> torch.Tensor:
    """
    The DeepFool step to the nearest linearised boundary INSIDE the box: for each candidate ``k`` the shortest
    ``r`` (in ``norm``) with ``<w_k, r> = |f_k| + eps ||w_k||_q`` and ``lo <= x + r <= hi`` (the linearised
    boundary plus foolbox's ``STEP_EPS``, as :func:`free_step`), solved exactly (:func:`_l2_in_box`,
    :func:`_linf_in_box`); the step is the shortest over the candidates. Where the box binds nowhere it is
    :func:`free_step`'s. A sample none of whose linearised boundaries meets the box takes :func:`free_step`'s
    step (the caller clamps the iterate), as the unconstrained DeepFool would.

    :param f: ``(A, K)`` logit differences at ``x``.
    :param w: ``(A, K, *shape)`` their gradients.
    :param x: ``(A, *shape)`` the points, inside the box.
    :param box: ``(lo, hi)``.
    :param norm: L2 or L-inf.
    :return: ``(A, *shape)``, with ``x + r`` in the box where a linearised boundary meets it.
    """
    a, k = w.shape[:2]
    flat = w.reshape(a * k, -1)
    lower = (box[0] - x).reshape(a, 1, -1).expand(a, k, -1).reshape(a * k, -1)
    upper = (box[1] - x).reshape(a, 1, -1).expand(a, k, -1).reshape(a * k, -1)
    dual = norm.dual.measure(flat)
    gain = f.abs().reshape(-1) + STEP_EPS * dual
    solve = _l2_in_box if norm.p == 2 else _linf_in_box
    r = solve(flat, lower, upper, gain.clamp(min=torch.finfo(gain.dtype).tiny)).reshape(a, k, -1)
    length = norm.measure(r.reshape(a * k, -1)).reshape(a, k)
    length = torch.where(torch.isnan(length) | (dual.reshape(a, k) == 0), math.inf, length)
    best = length.argmin(dim=1)
    rows = torch.arange(a, device=w.device)
    step = r[rows, best].reshape(x.shape)
    reachable = torch.isfinite(length[rows, best])
    if bool(reachable.all()):
        return step
    return torch.where(reachable.reshape((-1,) + (1,) * (x.ndim - 1)), step, free_step(f, w, norm))

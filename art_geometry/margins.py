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
(:mod:`art_geometry._linear_step`), and the iterate is ``clamp(x_i + (1 + overshoot) r_i)``; foolbox and ART step
in R^D and clamp the accumulated iterate, which takes 2-4x more iterations when the box binds.

The margin is measured from the region the MODEL PREDICTS at ``x``: the labels only split the samples into
correctly and incorrectly classified ones.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry._api import legacy_positional
from art_geometry._batching import activation_bytes, batches, memory_batch_size
from art_geometry._linear_step import box_step, free_step
from art_geometry._model import ModelView
from art_geometry._norms import Norm
from art_geometry._prepare import Prepared, prepare
from art_geometry._results import ResultMixin, describe
from art_geometry._rng import resolve_seed
from art_geometry._settings import DeepFoolSettings
from art_geometry._sweep import Chunk, SweepOptions, shared_seed, sweep
from art_geometry._sweep import stack as stack_chunks
from art_geometry._validation import check_bool, check_positive_int
from art_geometry.subspaces import Subspace, SubspaceStack

__all__ = [
    "MarginResult",
    "SubspaceMarginResult",
    "deepfool_margins",
    "margin_metric",
    "subspace_margins",
]


def _split_summary(margins: np.ndarray, success: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """``describe`` over the finite margins, overall and split by correctness, with failure counts."""

    def part(mask: np.ndarray) -> dict[str, Any]:
        stats: dict[str, Any] = describe(margins[mask & success])
        stats["n_failed"] = int((mask & ~success).sum())
        stats["success_rate"] = float(success[mask].mean()) if mask.any() else float("nan")
        return stats

    everything = np.ones_like(success)
    out = part(everything)
    out["correct"] = part(correct)
    out["incorrect"] = part(~correct)
    return out


@dataclass(frozen=True)
class MarginResult(ResultMixin):
    """
    DeepFool margins of a set of samples.

    :param margins: ``(N,)`` distance to the boundary of the predicted region in the chosen norm; ``inf`` where
                    ``success`` is False.
    :param success: ``(N,)`` whether an adversarial point was found.
    :param iterations: ``(N,)`` DeepFool iterations used, summed over restarts.
    :param predictions: ``(N,)`` the model's prediction at ``x`` (the region whose boundary is measured).
    :param labels: ``(N,)`` the given labels, or the predictions when none were given.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param perturbations: ``(N, *shape)`` float32 perturbations, ``x + perturbation`` adversarial where
                          ``success`` (zeros elsewhere); only with ``return_perturbations=True``.
    :param norm: The norm (2 or inf).
    :param subspace: Name of the subspace the perturbations were constrained to, or None.
    :param params: The parameters used.
    """

    margins: np.ndarray
    success: np.ndarray
    iterations: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    perturbations: np.ndarray | None
    norm: float
    subspace: str | None
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, ``describe`` (median, p05, p95, mean, std_error, ...) of the finite margins, with
                 ``n_failed`` and ``success_rate``, overall and under ``"correct"`` / ``"incorrect"`` (failures are
                 counted, never dropped silently), and ``params``.
        """
        return {"n_samples": int(self.margins.size), **_split_summary(self.margins, self.success, self.correct),
                "params": self.params}


@dataclass(frozen=True)
class SubspaceMarginResult(ResultMixin):
    """
    DeepFool margins of a set of samples inside each of several subspaces.

    :param margins: ``(n_subspaces, N)``, ``inf`` where not successful.
    :param success: ``(n_subspaces, N)``.
    :param names: The subspaces' names.
    :param predictions: ``(N,)`` the model's predictions at ``x``.
    :param labels: ``(N,)`` the labels, or the predictions.
    :param correct: ``(N,)``.
    :param norm: The norm.
    :param params: The parameters used.
    """

    margins: np.ndarray
    success: np.ndarray
    names: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    norm: float
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, ``params`` and, under ``subspaces``, one ``describe`` (with failure counts, overall
                 and split by correctness) per subspace name.
        """
        return {
            "n_samples": int(self.margins.shape[1]),
            "subspaces": {
                name: _split_summary(self.margins[j], self.success[j], self.correct)
                for j, name in enumerate(self.names)
            },
            "params": self.params,
        }


@dataclass(frozen=True)
class _Plan:
    """DeepFool settings resolved against one model: the box as numbers, the seed drawn, candidates capped."""

    settings: DeepFoolSettings
    box: tuple[float, float] | None
    seed: int
    candidates: int

    @classmethod
    def of(cls, view: ModelView, settings: DeepFoolSettings) -> "_Plan":
        if settings.box and view.clip_values is None:
            raise ValueError("box=True clamps into the classifier's clip_values, but this classifier has none")
        return cls(
            settings=settings,
            box=view.clip_values if settings.box else None,
            seed=resolve_seed(settings.seed),
            candidates=min(settings.candidates, view.nb_classes),
        )

    def params(self, batch_size: int) -> dict[str, Any]:
        """:return: The settings as used (the seed drawn for ``seed=None``) and the batch size, JSON-safe."""
        return {**self.settings.to_dict(), "seed": self.seed, "batch_size": batch_size}


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


def _on_segment(
    view: ModelView, x0: torch.Tensor, pert: torch.Tensor, pred: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    :param t: ``(P, A)`` positions on the segments ``x0 + t pert`` of ``A`` rows, all evaluated in one forward pass
              at the float32-rounded points.
    :return: Whether each point is adversarial and its gap ``g``, both ``(P, A)``.
    """
    shape = t.shape + (1,) * (x0.ndim - 1)
    points = x0.unsqueeze(0) + _storable(t.reshape(shape) * pert.unsqueeze(0))
    adv, gap = _gap(view, points.reshape((-1,) + tuple(x0.shape[1:])), pred.repeat(t.shape[0]))
    return adv.reshape(t.shape), gap.reshape(t.shape)


def _narrow(
    bracket: tuple[torch.Tensor, ...], t: torch.Tensor, adv: torch.Tensor, gap: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """
    :param bracket: ``lo, hi, g_lo, g_hi``, each ``(A,)``, ``lo`` clean and ``hi`` adversarial.
    :param t: ``(P, A)`` probes inside the brackets, ascending along ``P``.
    :return: The narrowed ``lo, hi, g_lo, g_hi``: ``hi`` the first adversarial probe (or the old ``hi``) and ``lo``
             the point just below it, so ``lo`` stays clean and ``hi`` adversarial as evaluated.
    """
    lo, hi, g_lo, g_hi = bracket
    ts = torch.cat([lo[None], t, hi[None]])
    gs = torch.cat([g_lo[None], gap, g_hi[None]])
    flags = torch.cat([torch.zeros_like(adv[:1]), adv, torch.ones_like(adv[:1])])
    first = flags.to(torch.uint8).argmax(dim=0, keepdim=True)
    return ts.gather(0, first - 1)[0], ts.gather(0, first)[0], gs.gather(0, first - 1)[0], gs.gather(0, first)[0]


def _secant(lo: torch.Tensor, hi: torch.Tensor, g_lo: torch.Tensor, g_hi: torch.Tensor) -> torch.Tensor:
    """:return: The root of the line through ``(lo, g_lo)`` and ``(hi, g_hi)`` (the midpoint where undefined)."""
    frac = (g_lo / (g_lo - g_hi)).nan_to_num(0.5).clamp(0.0, 1.0)
    return lo + (hi - lo) * frac


def _refine_crossing(
    view: ModelView,
    x0: torch.Tensor,
    pert: torch.Tensor,
    pred: torch.Tensor,
    gaps: tuple[torch.Tensor, torch.Tensor],
    steps: int,
) -> torch.Tensor:
    """
    Batched root search for the crossing on the segment ``x0 + t pert``, ``t in [0, 1]`` (``t = 0`` clean,
    ``t = 1`` adversarial), of ``g(t) = max_{k != pred} Z_k - Z_pred``. The bracket ``[lo, hi]`` always has ``lo``
    clean and ``hi`` adversarial as evaluated at the float32-rounded point, so ``x0 + hi pert`` is adversarial.

    * Pass 0 probes the secant root ``t_0`` of ``[0, 1]``; the next guess is the secant root through ``t_0`` and
      ``t = 1`` (both near the crossing).
    * Each later pass probes ``c - s`` and ``c + s`` around the guess ``c`` in one forward pass, with
      ``s = max(min(e, tol hi / 4), n)``: ``e`` a quarter of the last Newton correction, ``tol hi`` the target
      width and ``n`` the shift of ``t`` that moves ``g`` by a quarter of its noise floor. Probes that straddle
      the root leave a bracket of width ``2 s`` (done); otherwise the next guess is the Newton step from the probe
      nearer the root with the probes' slope. So on a smooth boundary one pass after the secant resolves a sample.
    * After two passes in a row that did not halve a bracket, a pass probes its quartiles instead (bisection).

    A sample leaves the search when its bracket is narrower than ``tol hi``, ``tol = max(2^-steps, 8 eps')`` with
    ``eps'`` the coarser of float32's and the model dtype's ``eps`` (a relative precision ``2^-steps`` of the margin
    ``hi ||pert||``, at most what the float32-stored perturbation resolves), or when ``g(hi) - g(lo) <=
    64 eps |g(0)|`` (``g`` no longer resolved in the model's dtype), or after ``2 steps`` passes.

    :param gaps: ``g(0)`` and ``g(1)``, ``(B,)`` each, as evaluated before.
    :return: ``hi`` ``(B,)``.
    """
    b = x0.shape[0]
    lo = torch.zeros(b, device=x0.device, dtype=x0.dtype)
    hi = torch.ones_like(lo)
    g_lo, g_hi = gaps[0].to(x0.dtype), gaps[1].to(x0.dtype)
    # the probed points are float32-rounded (:func:`_storable`), so t is resolved to a few float32 ulps at best;
    # the gap is computed in the model's dtype
    eps = torch.finfo(x0.dtype).eps
    tol = max(2.0**-steps, 8 * max(eps, torch.finfo(torch.float32).eps))
    tol_gap = 64 * eps * g_lo.abs()
    first = _secant(lo, hi, g_lo, g_hi)
    adv, gap = _on_segment(view, x0, pert, pred, first[None])
    g_end = g_hi
    lo, hi, g_lo, g_hi = _narrow((lo, hi, g_lo, g_hi), first[None], adv, gap)
    guess = first - gap[0] * (1 - first) / (g_end - gap[0])
    guess = torch.where(torch.isfinite(guess), guess, _secant(lo, hi, g_lo, g_hi))
    err = 0.25 * (guess - first).abs()
    stalled = torch.zeros(b, dtype=torch.long, device=x0.device)
    for _ in range(2 * steps):
        act = ~((hi - lo <= tol * hi) | (g_hi - g_lo <= tol_gap))
        if not bool(act.any()):
            break
        rows = act.nonzero(as_tuple=True)[0]
        bracket = lo[rows], hi[rows], g_lo[rows], g_hi[rows]
        a_lo, a_hi, a_g_lo, a_g_hi = bracket
        width = a_hi - a_lo
        noise = 0.25 * tol_gap[rows] * width / (a_g_hi - a_g_lo)
        s = torch.maximum(torch.minimum(err[rows], 0.25 * tol * a_hi), noise)
        c = guess[rows].clamp(a_lo, a_hi)
        bisect = stalled[rows] >= 2
        low = torch.where(bisect, a_lo + 0.25 * width, (c - s).clamp(a_lo, a_hi))
        high = torch.where(bisect, a_lo + 0.75 * width, (c + s).clamp(a_lo, a_hi))
        t = torch.stack([low, high])
        adv, gap = _on_segment(view, x0[rows], pert[rows], pred[rows], t)
        n_lo, n_hi, n_g_lo, n_g_hi = _narrow(bracket, t, adv, gap)
        lo[rows], hi[rows], g_lo[rows], g_hi[rows] = n_lo, n_hi, n_g_lo, n_g_hi
        stalled[rows] = torch.where(n_hi - n_lo > 0.5 * width, stalled[rows] + 1, 0)
        nearer = gap[0].abs() <= gap[1].abs()
        near, g_near = torch.where(nearer, low, high), torch.where(nearer, gap[0], gap[1])
        newton = near - g_near * (high - low) / (gap[1] - gap[0])
        straddle = ~adv[0] & adv[1]
        use_newton = ~straddle & ~bisect & torch.isfinite(newton) & (newton > n_lo) & (newton < n_hi)
        guess[rows] = torch.where(use_newton, newton, _secant(n_lo, n_hi, n_g_lo, n_g_hi))
        err[rows] = torch.where(use_newton, 0.25 * (newton - near).abs(), 0.25 * (n_hi - n_lo))
    return hi


def _crossing(
    view: ModelView,
    x0: torch.Tensor,
    pert: torch.Tensor,
    success: torch.Tensor,
    pred: torch.Tensor,
    gaps: tuple[torch.Tensor, torch.Tensor],
    plan: _Plan,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The crossing on each segment ``x0 + t pert`` (:func:`_refine_crossing`, with ``refine``; else ``t = 1``),
    verified adversarial. A refined point lies within float noise of the boundary, and a forward pass over a
    batch of another composition can round it back; such rows are moved outwards by a relative 1e-6, then 1e-4,
    then 1e-2 (never past the end of the segment, ``t <= 1``) and re-checked.

    :param pert: ``(B, *shape)`` perturbations, ``x0 + pert`` adversarial where ``success``.
    :param success: ``(B,)`` the rows to refine.
    :param gaps: The gaps :func:`_gap_of` at ``x0`` and at ``x0 + pert``, ``(B,)`` each.
    :return: The float32-storable perturbations ``t pert`` (zero where not successful) and whether each is
             verified adversarial (``success`` and the check).
    """
    shape = (-1,) + (1,) * (x0.ndim - 1)
    pert = torch.where(success.reshape(shape), pert, torch.zeros_like(pert))
    t = torch.ones(x0.shape[0], device=x0.device, dtype=x0.dtype)
    if plan.settings.refine and bool(success.any()):
        rows = success.nonzero(as_tuple=True)[0]
        t[rows] = _refine_crossing(
            view, x0[rows], pert[rows], pred[rows], (gaps[0][rows], gaps[1][rows]), plan.settings.refine_steps
        )
    final = _storable(t.reshape(shape) * pert)
    adv = _gap(view, x0 + final, pred)[0]
    for grow in (1e-6, 1e-4, 1e-2):
        redo = success & ~adv
        if not bool(redo.any()):
            break
        t = torch.where(redo, (t * (1 + grow)).clamp(max=1.0), t)
        final = _storable(t.reshape(shape) * pert)
        # the whole batch again, not the moved rows alone: a point this near the boundary is adversarial in a
        # forward pass of one composition and not of another, and the points are returned (and typically
        # evaluated) as this batch
        adv = _gap(view, x0 + final, pred)[0]
    success = success & adv
    final[~success] = 0
    return final, success


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
    """
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


def _margins(
    prep: Prepared,
    settings: DeepFoolSettings,
    subspace: Subspace | None,
    return_perturbations: bool,
    batch_size: "int | None",
    verbose: bool,
    options: SweepOptions = SweepOptions(),
) -> MarginResult:
    """:func:`deepfool_margins` on prepared data (shared with the interop wrappers and the tracker); ``batch_size``
    ``None`` is :func:`_batch_size_for`'s."""
    view = prep.view
    if subspace is not None:
        if not isinstance(subspace, Subspace):
            raise TypeError(f"subspace must be a Subspace, got {type(subspace).__name__}")
        subspace.check_shape(prep.sample_shape)
    key = "deepfool_margins"
    plan = _Plan.of(view, replace(settings, seed=shared_seed(settings.seed, options, key)))
    batch_size = _batch_size_for(prep, batch_size, 1, plan, _BATCH)
    stack = None if subspace is None else SubspaceStack([subspace])

    def compute(chunk: Prepared, index: int) -> Chunk:
        parts: list[tuple[torch.Tensor, ...]] = []
        with view.evaluating(), torch.enable_grad():
            for batch in batches(view, chunk.x, batch_size):
                which = torch.zeros(len(batch.x), dtype=torch.long, device=view.device)
                out = _margins_rows(view, batch.x, stack, which, plan)
                parts.append(tuple(t.detach().cpu() for t in (out if return_perturbations else out[:4])))
        margins, success, iters, pred = (torch.cat([p[i] for p in parts]).numpy() for i in range(4))
        pred = pred.astype(np.int64)
        arrays = {"margins": margins.astype(np.float64), "success": success.astype(bool),
                  "iterations": iters.astype(np.int64), "predictions": pred, "labels": chunk.labels_or(pred)}
        if return_perturbations:
            arrays["perturbations"] = torch.cat([p[4] for p in parts]).to(torch.float32).numpy()
        return arrays

    params = plan.params(batch_size)
    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key=key, verbose=verbose, desc="deepfool",
                   settings={**params, "subspace": None if subspace is None else repr(subspace),
                             "return_perturbations": return_perturbations})
    pred, labels = stack_chunks(chunks, "predictions"), stack_chunks(chunks, "labels")
    return MarginResult(
        margins=stack_chunks(chunks, "margins"),
        success=stack_chunks(chunks, "success"),
        iterations=stack_chunks(chunks, "iterations"),
        predictions=pred,
        labels=labels,
        correct=pred == labels,
        perturbations=stack_chunks(chunks, "perturbations") if return_perturbations else None,
        norm=settings.p,
        subspace=None if subspace is None else subspace.name,
        params=params,
    )


def deepfool_margins(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    settings: DeepFoolSettings | None = None,
    subspace: Subspace | None = None,
    return_perturbations: bool = False,
    batch_size: "int | None" = None,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> MarginResult:
    """
    Distance from each sample to the boundary of the region the model predicts, by batched DeepFool
    (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2; L2 step Eq. (8)-(10), L-inf step with the l1 dual norm),
    optionally constrained to a subspace ``S`` ("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020,
    Algorithm 1: ``w_k <- P_S w_k``).

    Each iteration takes, for the still-active samples, one forward pass and one batched backward pass per
    top-``candidates`` class through the retained graph; a sample leaves the active set when its prediction
    changes. The iterate is ``x + (1 + overshoot) r_total`` (foolbox's placement); with ``box``, the step is the
    shortest one to a linearised boundary inside ``clip_values`` and the iterate ``clamp(x_i + (1 + overshoot)
    r_i)``. With ``refine``, a batched bracketing search (bisection with secant guesses) on ``x + t r``, ``t in
    [0, 1]``, finds the crossing so the margin ``||t r||`` is inflated neither by the overshoot nor by a step past
    the boundary; the returned point is checked to be adversarial.
    Samples still clean after ``max_iter`` restart from ``x + noise`` (seeded Gaussian, std ``restart_noise``,
    projected onto ``S``, keyed by the sample's values so results do not depend on the input order) up to
    ``restarts`` times; those that still fail get ``success=False`` and margin ``inf``.

    In a subspace with ``norm=inf`` the step is the l1-dual step of the projected gradient
    ``r = |f_l| / ||P w_l||_1 sign(P w_l)``, then projected onto ``S``; since ``<P w, P sign(P w)> = ||P w||_1``
    the projected step still reaches the linearised boundary.

    Sharded over the ranks of a ``torch.distributed`` process group when one is initialised (every rank returns
    the whole result), streamed from a ``Dataset`` / ``DataLoader``, and resumable from ``checkpoint`` (see
    docs/scale_out.md).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` (logits).
    :param x: Inputs ``(N, *input_shape)``, or a ``Dataset`` / ``DataLoader`` yielding inputs or (inputs, labels).
    :param y: Labels (indices or one-hot) to split correct from incorrect samples; default: the predictions.
    :param settings: A :class:`~art_geometry.DeepFoolSettings` (norm, candidates, overshoot, max_iter, refine,
                     refine_steps, restarts, restart_noise, box, seed); default ``DeepFoolSettings()``.
    :param subspace: Constrain the perturbations to this subspace.
    :param return_perturbations: Also return the perturbations.
    :param batch_size: Samples per batch; default: chosen from memory, at most 128 (a pass, its retained graph
                       estimated by a one-sample probe of the leaf modules' outputs and its candidates'
                       gradients, under 1 GiB; 128 on small models, a handful of samples on ImageNet-shaped ones).
    :param verbose: Show a progress bar.
    :param checkpoint: Directory to keep finished chunks in, so an interrupted run resumes where it stopped.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch; rounded up to a multiple
                       of it).
    :param options: Overrides of single settings fields, e.g. ``norm=np.inf, refine=False``.
    :return: A :class:`MarginResult`; ``params`` holds the settings used (with the seed drawn for ``seed=None``).
    """
    settings = DeepFoolSettings.build(settings, options)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    return_perturbations = check_bool(return_perturbations, "return_perturbations")
    sweep_options = SweepOptions.build(checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, **({} if batch_size is None else {"batch_size": batch_size}))
    return _margins(
        prep, settings, subspace, return_perturbations, batch_size, check_bool(verbose, "verbose"), sweep_options
    )


#: A default batch keeps one pass (the retained graph and the candidates' gradients of its rows) under this many
#: bytes.
_PASS_BYTES = 2**30
#: And takes at most this many samples: 128 for :func:`deepfool_margins` (larger batches were not faster on a
#: 2-core CPU: 256-1024 samples took 0.9-1.3x the time of 128 on the benchmark CNNs); 64 for
#: :func:`subspace_margins` (on a quiet CPU thread 64 samples x 21 DCT blocks ran the Hold me tight LeNet sweep
#: 1.3-1.4x faster than 8, 128 a further 2-5%, with the same margins).
_BATCH, _SUBSPACE_BATCH = 128, 64


def _default_batch_size(
    sample_shape: Sequence[int], rows_per_sample: int, candidates: int, activations: int, cap: int
) -> int:
    """
    :param sample_shape: The shape of one sample.
    :param rows_per_sample: Rows a sample takes in a pass (1; its subspaces in :func:`subspace_margins`).
    :param candidates: Classes considered, the predicted one included.
    :param activations: Bytes of one row's retained graph (:func:`art_geometry._batching.activation_bytes`).
    :param cap: The largest batch.
    :return: The default ``batch_size``: the most samples, at most ``cap``, whose pass stays under
             :data:`_PASS_BYTES`, a row taking its graph and about three copies of its candidates' float32
             gradients (the gradients, their copies per row and their projections). 3x224x224 inputs with 21
             subspaces and 10 classes: 3 samples before the graph; 1x28x28: 64.
    """
    gradients = max(candidates - 1, 1) * math.prod(sample_shape) * 4
    return memory_batch_size(rows_per_sample * (activations + 3 * gradients), _PASS_BYTES, cap)


def _batch_size_for(prep: Prepared, batch_size: "int | None", rows_per_sample: int, plan: _Plan, cap: int) -> int:
    """:return: ``batch_size``, or for ``None`` :func:`_default_batch_size` with the graph of one row measured by
    :func:`art_geometry._batching.activation_bytes` and the plan's candidates."""
    if batch_size is not None:
        return batch_size
    activations = activation_bytes(prep.view, prep.sample_shape)
    return _default_batch_size(prep.sample_shape, rows_per_sample, plan.candidates, activations, cap)


def _is_subspaces(value: Any) -> bool:
    """Whether a third positional argument is the old ``subspaces`` (a sequence of subspaces), not labels."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, Subspace) for v in value)


@legacy_positional("subspaces", after=2, when=_is_subspaces)
def subspace_margins(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    subspaces: Sequence[Subspace],
    settings: DeepFoolSettings | None = None,
    batch_size: "int | None" = None,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> SubspaceMarginResult:
    """
    DeepFool margins of every sample inside each subspace ("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020,
    Sec. 3: the margin along the diagonal DCT blocks, low to high frequency).

    The subspaces are measured in one pass: a batch of ``batch_size`` samples is replicated once per subspace and
    row ``i`` is projected onto its own subspace (for DCT blocks, one transform with a per-row mask), so a pass
    holds ``batch_size * len(subspaces)`` rows. Every subspace starts at the sample itself, so the logits and the
    candidates' gradients of the first DeepFool iteration are computed once per sample and projected onto each
    subspace (the reference code computes them once per subspace).

    :param classifier: The classifier.
    :param x: Inputs ``(N, *input_shape)``, or a ``Dataset`` / ``DataLoader`` (as in :func:`deepfool_margins`).
    :param y: Labels, to split correct from incorrect samples.
    :param subspaces: Subspaces of the sample shape (e.g. :func:`art_geometry.subspaces.dct_subspaces`).
    :param settings: A :class:`~art_geometry.DeepFoolSettings`, as in :func:`deepfool_margins`.
    :param batch_size: Samples per pass (each replicated ``len(subspaces)`` times); ``None``: as many as keep a
                       pass (the rows' retained graph and candidates' gradients) under 1 GiB, at most 64.
    :param verbose: Progress bar.
    :param checkpoint: Directory for finished chunks, to resume an interrupted sweep (as in
                       :func:`deepfool_margins`).
    :param chunk_size: Samples per chunk (default ``batch_size``: one batch per chunk).
    :param options: Overrides of single settings fields.
    :return: A :class:`SubspaceMarginResult`; results equal :func:`deepfool_margins` with ``subspace=`` each one.
    """
    settings = DeepFoolSettings.build(settings, options)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    sweep_options = SweepOptions.build(checkpoint, chunk_size)
    if isinstance(subspaces, Subspace):
        subspaces = [subspaces]
    prep = prepare(classifier, x, y, stream=True, **({} if batch_size is None else {"batch_size": batch_size}))
    view = prep.view
    stack = SubspaceStack(subspaces)
    stack.check_shape(prep.sample_shape)
    key = "subspace_margins"
    plan = _Plan.of(view, replace(settings, seed=shared_seed(settings.seed, sweep_options, key)))
    s = len(stack)
    batch_size = _batch_size_for(prep, batch_size, s, plan, _SUBSPACE_BATCH)

    def compute(chunk: Prepared, index: int) -> Chunk:
        margins, success, pred = [], [], []
        with view.evaluating(), torch.enable_grad():
            for batch in batches(view, chunk.x, batch_size):
                xb = batch.x
                b = xb.shape[0]
                index = torch.arange(b, device=view.device).repeat(s)
                which = torch.arange(s, device=view.device).repeat_interleave(b)
                m, ok, _, p, _ = _margins_rows(view, xb[index], stack, which, plan, (xb, index))
                margins.append(m.cpu().reshape(s, b))
                success.append(ok.cpu().reshape(s, b))
                pred.append(p[:b].cpu())
        p_np = torch.cat(pred).numpy().astype(np.int64)
        return {"margins": torch.cat(margins, dim=1).numpy(), "success": torch.cat(success, dim=1).numpy(),
                "predictions": p_np, "labels": chunk.labels_or(p_np)}

    params = plan.params(batch_size)
    names = [sub.name for sub in stack.subspaces]
    chunks = sweep(prep, compute, batch_size=batch_size, options=sweep_options, key=key, verbose=verbose,
                   desc="subspace deepfool", settings={**params, "subspaces": [repr(sub) for sub in stack.subspaces]})
    pred_np, labels = stack_chunks(chunks, "predictions"), stack_chunks(chunks, "labels")
    return SubspaceMarginResult(
        margins=stack_chunks(chunks, "margins", axis=1),
        success=stack_chunks(chunks, "success", axis=1),
        names=names,
        predictions=pred_np,
        labels=labels,
        correct=pred_np == labels,
        norm=settings.p,
        params=params,
    )


def _is_norm(value: Any) -> bool:
    """Whether a third positional argument is the old ``norm`` (a number or a name), not labels."""
    return isinstance(value, (int, float, str, Norm))


@legacy_positional("norm", after=2, when=_is_norm)
def margin_metric(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    norm: "int | float | str | Norm" = 2,
    **options: Any,
) -> np.ndarray:
    """
    ART-style metric function (as ``art.metrics``): the DeepFool margin of each sample.

    :param classifier: The classifier.
    :param x: Inputs.
    :param y: Labels (only split correct from incorrect samples; the margins do not depend on them).
    :param norm: 2 or inf.
    :param options: Keyword options of :func:`deepfool_margins` (``settings``, its fields, ``batch_size``, ...).
    :return: ``(N,)`` float64 margins (``inf`` where DeepFool failed).
    """
    return deepfool_margins(classifier, x, y, norm=norm, **options).margins

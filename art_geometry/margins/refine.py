"""The crossing refinement: a batched bracketing root search for the boundary on the segment from a sample to its
DeepFool point, and the check that the returned point is adversarial."""

from __future__ import annotations

import torch

from art_geometry.core.model import ModelView
from art_geometry.margins.gap import _gap, _storable
from art_geometry.margins.plan import _Plan


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

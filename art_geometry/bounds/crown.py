"""
CROWN- and alpha-CROWN-certified lower bounds of the distance to the decision boundary, searched on the radius.

CROWN (Zhang, Weng, Chen, Hsieh and Daniel, "Efficient Neural Network Robustness Certification with General
Activation Functions", NeurIPS 2018) bounds each activation between two linear functions of its pre-activation,
propagates a linear specification backward through the network (Theorem 3.2) and concretises it over an L_p ball in
closed form with the dual norm (Corollary 3.3): ``min_{||d||_p <= r} a^T (x + d) + b = a^T x + b - r ||a||_q``.
alpha-CROWN (Xu et al., "Fast and Complete: Enabling Complete Neural Network Verification with Rapid and
Massively Parallel Incomplete Verifiers", ICLR 2021, Sec. 3.1) optimises the lower slopes of the unstable ReLUs
(and of the ReLUs of each max-pool's tournament) by projected gradient ascent on the bound.

The specification is the vector of LOGIT DIFFERENCES ``Z_pred - Z_j`` (the rows ``e_pred - e_j`` of Theorem 3.2's
matrix ``C``), propagated backward as one linear function, so that each relaxation is chosen for the sign of the
difference's coefficient. A radius ``r`` is certified for a sample when ``min_j lower(Z_pred - Z_j) > 0`` over the
whole ball of radius ``r``; the largest certified radius is searched on ``[0, upper]`` (``upper``: a DeepFool
margin), all samples of a batch at once (:func:`~art_geometry.bounds.propagation.certified_radii`).

The bound propagation is :mod:`art_geometry.bounds.propagation`: through the model's own layers, convolutions by
their transposes, never unfolded, on the model's device in float64. The model is read as a chain of layers by the
reader every certified bound shares (:func:`art_geometry.bounds._network.read_chain`).

The certificate covers the whole ball (not only its intersection with ``clip_values``), so it bounds from below
both the clipped and the unclipped distance. It is computed in float64 and is sound up to its rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from art_geometry.bounds._network import Chain, read_chain
from art_geometry.bounds.propagation import Propagation, certified_radii
from art_geometry.core.batching import batches
from art_geometry.core.model import ModelView
from art_geometry.core.norms import L2, LINF, Norm
from art_geometry.core.validation import check_int, check_number, check_positive_int

__all__ = ["CrownCost", "crown_cost", "crown_radii", "crown_supported"]

_DTYPE = torch.float64

#: Samples the cost per sample is estimated on.
_PILOT = 4
#: An alpha-CROWN step (the final backward pass and its gradient) in final backward passes.
_ALPHA_STEP = 2.5
#: Seconds per float of the coefficient tensors a backward pass moves (:attr:`Propagation.work`), measured on a quiet
#: 2-core CPU in float64 (``benchmarks/bench_bounds.py``, the digits SmallCNN: 1.1e-8 to 1.4e-8).
_SECONDS_PER_FLOAT = 1.2e-8


def _chain(view: ModelView, input_shape: tuple[int, ...]) -> tuple["Chain | None", str]:
    """
    The model as the certified bounds read it (:func:`~art_geometry.bounds._network.read_chain`, one reader for
    every method), with what CROWN adds: max pools without ``ceil_mode``.

    :param view: The model view.
    :param input_shape: The shape of one input sample.
    :return: ``(chain, "")``, or ``(None, reason)`` where CROWN cannot bound the model.
    """
    try:
        chain = read_chain(view, input_shape)
    except ValueError as err:
        return None, f"CROWN bounds: {err}"
    bad = [f"{layer.module!r} at {layer.name!r} (ceil_mode; method='lipschitz' supports it)"
           for layer in chain.layers if layer.kind == "maxpool" and layer.module.ceil_mode]
    if bad:
        return None, f"CROWN bounds: unsupported layers: {'; '.join(bad)}"
    return chain, ""


def crown_supported(view: ModelView, input_shape: tuple[int, ...]) -> tuple[bool, str]:
    """
    Whether :func:`crown_radii` can bound the model: a chain of layers as the certified bounds read it
    (:mod:`art_geometry.bounds._network`: affine layers, arithmetic with constants, ``ReLU``, ``LeakyReLU``,
    ``Tanh``, ``Sigmoid``, ``MaxPool1d`` / ``MaxPool2d`` without ``ceil_mode``, after an affine preprocessing or
    none; a final softmax over the classes is dropped).

    :param view: The model view; the layers' modes are read inside :meth:`ModelView.evaluating` (restored).
    :param input_shape: The shape of one input sample.
    :return: ``(True, "")``, or ``(False, reason)`` with the reason naming the unsupported layers.
    """
    chain, why = _chain(view, tuple(int(s) for s in input_shape))
    return chain is not None, why


def _propagation(view: ModelView, shape: tuple[int, ...], norm: Norm) -> Propagation:
    if norm not in (L2, LINF):
        raise ValueError(f"CROWN bounds support the norms 2 and inf, got {norm}")
    chain, why = _chain(view, shape)
    if chain is None:
        raise ValueError(why)
    return Propagation(chain, norm)


@dataclass(frozen=True)
class CrownCost:
    """
    The estimated cost of the CROWN bounds of one model, per sample (:func:`crown_cost`): floats the backward passes
    move, in seconds of a 2-core CPU (deterministic, so that "auto" decides the same way on every run and rank).

    :param relax: Seconds per sample of one evaluation's intermediate bounds (every layer's backward passes).
    :param final: Seconds per sample of one final backward pass (the logit differences).
    :param samples: Samples it was estimated on.
    :param propagation: The propagation it was estimated with, for :func:`crown_radii` to reuse (building it
                        pushes large runs' rows back once).
    """

    relax: float
    final: float
    samples: int
    propagation: "Propagation | None" = field(default=None, repr=False, compare=False)

    def seconds(self, steps: int, alpha_steps: int = 0) -> float:
        """
        :param steps: Evaluations of the radius search.
        :param alpha_steps: alpha-CROWN's gradient steps per evaluation (0: CROWN).
        :return: Estimated seconds per sample: ``steps (relax + (1 + 2.5 alpha_steps) final)``.
        """
        return steps * (self.relax + (1.0 + _ALPHA_STEP * alpha_steps) * self.final)


def crown_cost(view: ModelView, x: torch.Tensor, pred: torch.Tensor, upper: torch.Tensor,
               norm: Norm) -> CrownCost:
    """
    The cost of the layers actually propagated, from the first few samples at half their ``upper`` (the radius
    search's first evaluation): interval bounds through every layer give the neurons a backward pass would be
    started from, and the floats those passes would move at most (:meth:`Propagation.relax` with ``dry=True``:
    two rows a neuron, as wide as the layers crossed), plus the floats of one final pass; at ``1.2e-8`` s a float.
    It runs no intermediate backward pass, so a model whose bounds would take hours is priced in a moment; on the
    digits SmallCNN it is about 1.4 times the cost measured.

    :param view: A model view that :func:`crown_supported` accepts.
    :param x: ``(N, ...)`` samples (only the first 4 are used).
    :param pred: ``(N,)`` their predicted classes.
    :param upper: ``(N,)`` upper bounds of their distances (non-finite ones are replaced by ``||x||``).
    :param norm: L2 or L-inf.
    :return: The per-sample cost.
    """
    shape = tuple(int(s) for s in x.shape[1:])
    prop = _propagation(view, shape, norm)
    k = min(_PILOT, len(x))
    xs = torch.as_tensor(x[:k]).to(device=view.device, dtype=_DTYPE).flatten(1)
    ps = torch.as_tensor(pred[:k], dtype=torch.long, device=view.device)
    radius = torch.as_tensor(upper[:k], dtype=_DTYPE, device=view.device)
    radius = torch.where(torch.isfinite(radius), radius, norm.measure(xs)) / 2
    with torch.no_grad():
        relax = prop.relax(xs, radius, dry=True)
        middle = prop.work
        prop.margins(xs, ps, relax)
    return CrownCost(_SECONDS_PER_FLOAT * middle / k, _SECONDS_PER_FLOAT * (prop.work - middle) / k, k, prop)


def crown_radii(view: ModelView, x: torch.Tensor, pred: torch.Tensor, norm: Norm, upper: torch.Tensor, *,
                steps: int = 10, rtol: float = 1e-2, alpha_steps: int = 0, alpha_lr: float = 0.5,
                batch_size: int = 128, propagation: "Propagation | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """
    CROWN-certified radii (Zhang et al., NeurIPS 2018, Theorem 3.2 and Corollary 3.3), or alpha-CROWN's with
    ``alpha_steps > 0`` (Xu et al., ICLR 2021): the largest ``r`` found such that ``min_j lower(Z_pred - Z_j) > 0``
    over the ball of radius ``r`` around each sample, so that no point of the ball leaves the region of ``pred``: a
    lower bound of the distance to the boundary.

    :param view: The model view (accepted by :func:`crown_supported`); its eval-mode function is bounded and the
                 user's modes and flags are restored.
    :param x: ``(N, ...)`` samples (validated by ``prepare``), on the view's device and dtype.
    :param pred: ``(N,)`` the predicted classes (the regions certified).
    :param norm: L2 or L-inf.
    :param upper: ``(N,)`` upper bounds of the distance (DeepFool margins; ``inf`` or NaN where unknown): the
                  initial brackets ``[0, upper]``.
    :param steps: Evaluations of the radius search at most, ``>= 1``.
    :param rtol: Stop a sample's search when its bracket is within ``rtol`` of its top, ``> 0``.
    :param alpha_steps: alpha-CROWN's projected Adam steps per evaluation, ``>= 0`` (0: CROWN).
    :param alpha_lr: Adam's learning rate on the slopes, ``> 0``.
    :param batch_size: Samples per propagation.
    :param propagation: The propagation of this view in this norm, already built (``CrownCost.propagation``);
                        default: built here.
    :return: ``(radii, status)``: ``(N,)`` float64 certified radii ``>= 0`` and ``(N,)`` str, ``"bound"`` where a
             radius ``> 0`` was certified, ``"failed"`` (radius 0) where none was.
    :raises ValueError: For a model :func:`crown_supported` refuses, a norm other than L2 / L-inf, or bad options.
    """
    steps = check_positive_int(steps, "steps")
    rtol = check_number(rtol, "rtol", minimum=0.0, strict=True)
    alpha_steps = check_int(alpha_steps, "alpha_steps", minimum=0)
    alpha_lr = check_number(alpha_lr, "alpha_lr", minimum=0.0, strict=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    prop = propagation or _propagation(view, tuple(int(s) for s in x.shape[1:]), norm)
    pred = torch.as_tensor(pred, dtype=torch.long, device=view.device)
    upper = torch.as_tensor(upper, dtype=_DTYPE, device=view.device)
    upper = torch.where(torch.isnan(upper), math.inf, upper)
    radii = np.zeros(len(x), dtype=np.float64)
    for b in batches(view, x, batch_size):
        found = certified_radii(prop, b.x.flatten(1).to(_DTYPE), pred[b.sl], upper[b.sl], steps=steps, rtol=rtol,
                                alpha_steps=alpha_steps, alpha_lr=alpha_lr)
        radii[b.sl] = found.cpu().numpy()
    return radii, np.where(radii > 0, "bound", "failed")

"""The second-order Taylor robustness indicator (Yu et al., Sec. 5, eq. 8-9)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from art_geometry.core.batching import batches
from art_geometry.core.decision import decision_labels
from art_geometry.core.norms import Norm
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.rng import generator
from art_geometry.core.settings import HessianSettings
from art_geometry.core.validation import check_number
from art_geometry.indicators.eigen import _InputHessian, _lanczos
from art_geometry.indicators.hessian import _check_k, _Run
from art_geometry.indicators.results import IndicatorResult
from art_geometry.sweep.loop import Chunk, chunk_seed, shared_seed, stack, sweep, sweep_keywords


def robustness_indicator(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    eps: float,
    norm: "float | str | Norm" = np.inf,
    settings: HessianSettings | None = None,
    batch_size: int = 16,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> IndicatorResult:
    """
    The worst case over the ball ``||d|| <= eps`` of the right-hand side of Yu et al. (2019) eq. 9,
    ``sum_i |J_i| |d_i| + 1/2 sum_i |lambda_i| y_i^2`` (``y = E^T d``), and whether it stays below ``L(x)``.

    Since ``|lambda_i| <= max|lambda|`` and ``||y||_2 = ||d||_2``:

    - ``norm=inf``: ``sum |J_i||d_i| <= eps ||J||_1`` and ``||d||_2^2 <= D eps^2``, so
      ``bound = eps ||J||_1 + 1/2 max|lambda| D eps^2``;
    - ``norm=2``: ``sum |J_i||d_i| <= eps ||J||_2`` (Cauchy-Schwarz), so ``bound = eps ||J||_2 + 1/2 max|lambda|
      eps^2``.

    ``certified = bound < L(x)``: under the second-order model, ``L(x + d) > 0`` on the whole ball. Only the
    competitor ``m`` maximising at ``x`` is in ``L``; another class overtaking inside the ball, or third-order
    terms, are not covered -- the flag is exact for affine models with two classes, and for any affine model it
    certifies against ``m`` only. ``max|lambda|`` is the largest-magnitude eigenvalue of the decision Hessian
    (``k`` Lanczos eigenvalues are computed; only the first enters the bound; zero for ReLU networks).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param eps: Radius of the ball, ``> 0``.
    :param norm: ``np.inf`` or ``2`` (any spelling :class:`~art_geometry.Norm` accepts).
    :param settings: A :class:`~art_geometry.HessianSettings` for the Lanczos solver; default
                     ``HessianSettings(k=1)`` (only the largest magnitude enters the bound). Its ``of`` must be
                     ``"decision"`` and ``full`` False.
    :param batch_size: Samples per chunk.
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :param options: Overrides of single settings fields (``k``, ``tol``, ``seed``).
    :return: An :class:`IndicatorResult`; ``params`` holds ``eps``, ``norm`` and the solver settings used.
    """
    ball = Norm.parse(norm)
    eps = check_number(eps, "eps", minimum=0.0, strict=True)
    settings = HessianSettings.build(HessianSettings(k=1) if settings is None else settings, options)
    if settings.of != "decision" or settings.full:
        raise ValueError("robustness_indicator bounds the decision function: its settings need of='decision', "
                         "full=False")
    batch_size, verbose, sweep_options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    run = _Run.of(settings, batch_size, verbose)
    batch_size = run.batch_size
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    key = "robustness_indicator"
    run = replace(run, seed=shared_seed(settings.seed, sweep_options, key, run.seed))
    view = prep.view
    dim = int(np.prod(prep.sample_shape))
    k = _check_k(settings.k, dim)
    tol = settings.tol

    def compute(chunk: Prepared, index: int) -> Chunk:
        gen = generator(chunk_seed(run.seed, index))
        values, grads, lams = [], [], []
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            for batch in batches(view, chunk.x, batch_size, labels=labels):
                op = _InputHessian(view, batch.x, batch.y, "decision")
                values.append(op.values)
                grads.append(op.grad)
                lams.append(_lanczos(op, k, tol, gen)[0][:, 0].abs())
        return {"values": torch.cat(values).double().cpu().numpy(), "labels": labels,
                "grads": torch.cat(grads).double().cpu().numpy(), "lam": torch.cat(lams).double().cpu().numpy()}

    params = {"eps": eps, "norm": ball.to_json(), **run.params(k=k)}
    chunks = sweep(prep, compute, batch_size=batch_size, options=sweep_options, key=key, settings=params,
                   verbose=run.verbose, desc="indicator")
    j = torch.as_tensor(stack(chunks, "grads"))
    lam = torch.as_tensor(stack(chunks, "lam"))
    labels = stack(chunks, "labels")
    l1, l2 = j.abs().sum(dim=1), j.norm(dim=1)
    # sum |J_i| |d_i| <= eps ||J||_q (q the dual norm); the largest ||d||_2^2 on the p-ball of radius eps is
    # D^(1 - 2/p) eps^2 (p >= 2: D eps^2 for inf, eps^2 for 2)
    first = eps * ball.dual.measure(j)
    curvature = 0.5 * lam * dim ** (1 - 2 / ball.p) * eps**2
    bound = first + curvature
    decision = torch.as_tensor(stack(chunks, "values"))
    return IndicatorResult(
        decision=decision.cpu().numpy(),
        first_order=first.cpu().numpy(),
        curvature=curvature.cpu().numpy(),
        bound=bound.cpu().numpy(),
        certified=(bound < decision).cpu().numpy(),
        jacobian_l1=l1.cpu().numpy(),
        jacobian_l2=l2.cpu().numpy(),
        max_abs_eigenvalue=lam.cpu().numpy(),
        labels=labels,
        eps=eps,
        norm=ball.p,
        dim=dim,
        params=params,
    )

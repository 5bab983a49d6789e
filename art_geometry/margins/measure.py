"""The public margin functions: :func:`deepfool_margins`, its prepared-input stage :func:`_margins` (the one internal
entry the tracker, the bounds and the interop wrappers call) and the ART-style :func:`margin_metric`."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from art_geometry.core.batching import batches
from art_geometry.core.norms import Norm
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.core.validation import check_bool
from art_geometry.margins.pipeline import _margins_rows
from art_geometry.margins.plan import _BATCH, _batch_size_for, _Plan
from art_geometry.margins.results import MarginResult
from art_geometry.subspaces import Subspace, SubspaceStack
from art_geometry.sweep.loop import Chunk, SweepOptions, shared_seed, sweep, sweep_keywords
from art_geometry.sweep.loop import stack as stack_chunks


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
    batch_size, verbose, sweep_options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size,
                                                        chosen_batch=True)
    return_perturbations = check_bool(return_perturbations, "return_perturbations")
    prep = prepare(classifier, x, y, stream=True, **({} if batch_size is None else {"batch_size": batch_size}))
    return _margins(prep, settings, subspace, return_perturbations, batch_size, verbose, sweep_options)


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

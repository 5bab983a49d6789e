"""Margins inside subspaces ("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020): every subspace of every sample in
one pass."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry.core.batching import batches
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.margins.pipeline import _margins_rows
from art_geometry.margins.plan import _SUBSPACE_BATCH, _batch_size_for, _Plan
from art_geometry.margins.results import SubspaceMarginResult
from art_geometry.subspaces import Subspace, SubspaceStack
from art_geometry.sweep.loop import Chunk, shared_seed, sweep, sweep_keywords
from art_geometry.sweep.loop import stack as stack_chunks


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
    batch_size, verbose, sweep_options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size,
                                                        chosen_batch=True)
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

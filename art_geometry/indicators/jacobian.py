"""Statistics of the input Jacobian ``J = grad_x L`` of the decision function (Yu et al., Sec. 5, eq. 4)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from art_geometry.core.decision import decision_labels, decision_values
from art_geometry.core.gradients import input_gradients
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.validation import check_number
from art_geometry.indicators.results import JacobianResult
from art_geometry.sweep.loop import Chunk, stack, sweep, sweep_keywords


def _decision_objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L = Z_t - max_{i != t} Z_i`` per sample, the objective of the Jacobian."""
    return decision_values(logits, labels)[0]


def jacobian_stats(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    threshold: float = 1e-3,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> JacobianResult:
    """
    The input gradient ``J = grad_x L`` of the decision function ``L = Z_t - max_{i != t} Z_i`` per sample, its
    l1 and l2 norms and its sparsity ``mean(|J_i| < threshold)`` (Yu et al. 2019, eq. 4 and 9: a sparse, small
    ``J`` bounds the first-order change ``sum |J_i| |d_i|``).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param threshold: Magnitude below which a gradient entry counts as zero, ``>= 0``.
    :param batch_size: Samples per pass.
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: A :class:`JacobianResult`.
    """
    threshold = check_number(threshold, "threshold", minimum=0.0)
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    view, shape = prep.view, prep.sample_shape

    def compute(chunk: Prepared, index: int) -> Chunk:
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            values, grads = [], []
            for part in input_gradients(view, chunk.x, batch_size, _decision_objective, labels=labels):
                values.append(part.values)
                grads.append(part.grad.flatten(1))
        j = torch.cat(grads).double()
        return {
            "gradients": j.reshape(len(labels), *shape).cpu().numpy(),
            "l1": j.abs().sum(dim=1).cpu().numpy(),
            "l2": j.norm(dim=1).cpu().numpy(),
            "sparsity": (j.abs() < threshold).double().mean(dim=1).cpu().numpy(),
            "decision": torch.cat(values).double().cpu().numpy(),
            "labels": labels,
        }

    params = {"threshold": threshold, "batch_size": batch_size}
    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key="jacobian_stats", settings=params,
                   verbose=verbose, desc="jacobian")
    return JacobianResult(
        **{name: stack(chunks, name) for name in ("gradients", "l1", "l2", "sparsity", "decision", "labels")},
        threshold=threshold,
        params=params,
    )

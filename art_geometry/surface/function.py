"""The decision function ``L(x) = Z_t(x) - max_{i != t} Z_i(x)`` per sample (Yu et al., ICLR 2019 sub., Sec. 4)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from art_geometry.core.batching import predict_logits
from art_geometry.core.decision import decision_values
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.sweep.loop import Chunk, stack, sweep, sweep_keywords


def decision_function(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> np.ndarray:
    """
    The decision function ``L(x) = Z_t(x) - max_{i != t} Z_i(x)`` of Yu et al. (2019, Sec. 4) per sample.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t`` (indices or one-hot); ``None`` uses the model's prediction (then ``L >= 0``).
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: ``(N,)`` float64 values; negative where the model does not predict ``t``.
    """
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    view = prep.view

    def compute(chunk: Prepared, index: int) -> Chunk:
        with view.evaluating():
            logits = predict_logits(view, chunk.x, batch_size)
            pred = logits.argmax(dim=1)
            labels = pred if chunk.labels is None else torch.as_tensor(chunk.labels, device=view.device)
            values, _ = decision_values(logits, labels)
        return {"values": values.double().cpu().numpy()}

    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key="decision_function",
                   settings={"batch_size": batch_size}, verbose=verbose, desc="decision")
    return stack(chunks, "values")

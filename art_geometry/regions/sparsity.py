"""Feature sparsity: the fraction of zero activations at ReLU layers (PRS paper, Fig. 12)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry.core.activations import Activations
from art_geometry.core.model import LayerRef
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.regions.layers import _is_layers, _relu_refs
from art_geometry.regions.patterns import _per_sample, _stream
from art_geometry.regions.results import SparsityResult
from art_geometry.sweep.loop import Chunk, stack, sweep, sweep_keywords


@legacy_positional("layers", after=2, when=_is_layers)
def feature_sparsity(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    layers: "Sequence[str | LayerRef] | None" = None,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> SparsityResult:
    """
    Feature sparsity: the fraction of zero (non-positive) activations ``mean_u [h_l(x)_u <= 0]`` per sample and
    ReLU layer, and its mean over layers (PRS paper, Fig. 12).

    :param classifier: The classifier.
    :param x: Inputs.
    :param y: Labels, only to report ``labels`` / ``correct``; default the predictions.
    :param layers: Layer names (modules, ``"module#k"``, ReLU sites such as ``"layer1.0.relu#1"`` or ``"relu_3"``);
                   default every ReLU site, in execution order (a model with no ReLU: ``ValueError``).
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md).
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: Per-sample, per-layer and mean sparsity.
    """
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    acts = Activations(prep.view)
    refs = _relu_refs(acts, layers)

    def compute(chunk: Prepared, index: int) -> Chunk:
        parts, predictions = _stream(
            acts, chunk.x, refs, batch_size, lambda _, h: (h <= 0).to(torch.float64).mean(dim=1).cpu()
        )
        zeros = torch.stack([torch.cat(p) for p in parts], dim=1).numpy()
        return {"zeros": zeros, **_per_sample(chunk, predictions)}

    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key="feature_sparsity", verbose=verbose,
                   desc="sparsity", settings={"layers": [str(r) for r in refs], "batch_size": batch_size})
    per_sample = stack(chunks, "zeros")
    per_layer = per_sample.mean(axis=0)
    names = [str(r) for r in refs]
    return SparsityResult(
        layers=names,
        per_sample=per_sample,
        per_layer=per_layer,
        mean=float(per_layer.mean()),
        **{name: stack(chunks, name) for name in ("predictions", "labels", "correct")},
        params={"layers": names, "batch_size": batch_size},
    )

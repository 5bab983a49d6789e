"""Cosine similarity of the class rows of the last linear layer (PRS paper, Fig. 7-8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from art_geometry.core.model import module_of
from art_geometry.core.positional import legacy_positional
from art_geometry.core.sites import is_module_of
from art_geometry.regions.results import SimilarityResult


@legacy_positional("layer", after=1)
def final_layer_similarity(classifier: Any, *, layer: "str | None" = None) -> SimilarityResult:
    """
    Cosine similarity between the class rows of the last linear layer,
    ``S_ij = w_i . w_j / (||w_i||_2 ||w_j||_2)``, and its mean off-diagonal value (PRS paper, Fig. 7-8).

    :param classifier: The classifier (no data needed: the rows are read from the weights); a TorchScript module
                       (scripted or traced) too, its linear layers found by their original class name.
    :param layer: Name of an ``nn.Linear`` module; default the last one.
    :return: The similarity matrix and its mean off-diagonal entry.
    :raises ValueError: When ``layer`` is not an ``nn.Linear`` module of the model.
    """
    layers = dict(module_of(classifier).named_modules())
    linear = [n for n, m in layers.items() if is_module_of(m, nn.Linear)]
    name = layer if layer is not None else (linear[-1] if linear else None)
    if name not in linear:
        raise ValueError(
            f"layer {name!r} is not an nn.Linear layer of the model; linear layers: {', '.join(linear) or '(none)'}"
        )
    w = layers[name].weight.detach().to(torch.float64)
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    matrix = (unit @ unit.T).cpu().numpy()
    off = matrix[~np.eye(len(matrix), dtype=bool)]
    return SimilarityResult(matrix=matrix, mean_off_diagonal=float(off.mean()), layer=name, params={"layer": name})

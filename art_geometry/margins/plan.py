"""DeepFool settings resolved against one model (the box, the seed, the candidates), and the default batch size chosen
from memory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from art_geometry.core.batching import activation_bytes, memory_batch_size
from art_geometry.core.model import ModelView
from art_geometry.core.prepare import Prepared
from art_geometry.core.rng import resolve_seed
from art_geometry.core.settings import DeepFoolSettings


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
    :param activations: Bytes of one row's retained graph (:func:`art_geometry.core.batching.activation_bytes`).
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
    :func:`art_geometry.core.batching.activation_bytes` and the plan's candidates."""
    if batch_size is not None:
        return batch_size
    activations = activation_bytes(prep.view, prep.sample_shape)
    return _default_batch_size(prep.sample_shape, rows_per_sample, plan.candidates, activations, cap)

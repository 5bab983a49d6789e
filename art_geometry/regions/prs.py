"""
Decision regions of ReLU networks and the Populated Region Set (PRS), and the inclusion ratio.

From "Empirical Study of the Decision Region and Robustness in Deep Neural Networks" (ICLR 2022 submission): a
decision region at layer l is the set of inputs whose layer-l pre-activations share one sign pattern
``s_l(x) = [h_l(x) > 0]`` (positive vs not; convolutional feature maps are flattened C x H x W). The populated
region set of a data set X is

    PRS(X, f, l) = { s_l(x) : x in X },      PRS ratio = |PRS(X, f, l)| / |X|,

the number of distinct patterns that hold at least one sample, over the number of samples.

The patterns are read and grouped in :mod:`art_geometry.regions.patterns`.

A layer is named by its dotted module name: ``"features.3"`` reads that module's output, ``"classifier.2:input"``
reads what the module receives. The default is the input of the last ``nn.Linear`` (the penultimate features). A
module that runs several times in one forward contributes the concatenation of all its calls; ``"name#k"`` reads
its k-th call. The ReLU sites found by ``torch.fx`` tracing (:mod:`art_geometry.core.activations`) are layers too:
``"layer1.0.relu#1"`` (the second call of a reused ``nn.ReLU``), ``"relu_3"`` (a call of ``F.relu`` /
``torch.relu`` / ``Tensor.relu``, named as fx names its node); they are the default layers of
:func:`layerwise_prs` and :func:`feature_sparsity`.

Every per-sample result also holds the model's ``predictions`` (read from the forward pass that records the
patterns), the ``labels`` (``y``, or the predictions when none are given) and ``correct``, as the other families.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry.core.activations import Activations
from art_geometry.core.model import LayerRef
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import Prepared, prepare, prepare_more
from art_geometry.regions.layers import _is_layer, _is_layers, _layer_ref, _relu_refs
from art_geometry.regions.patterns import _packed_patterns, _unique_rows
from art_geometry.regions.results import InclusionResult, LayerwisePRSResult, PRSResult
from art_geometry.sweep.loop import SweepOptions, sweep_keywords


def _region_set(
    prep: Prepared, layer: Any, batch_size: int, verbose: bool, options: SweepOptions = SweepOptions()
) -> PRSResult:
    """:func:`populated_region_set` on prepared data (shared with :func:`prs_ratio` and the tracker)."""
    acts = Activations(prep.view)
    ref = _layer_ref(acts, layer)
    patterns, per_sample = _packed_patterns(acts, prep, [ref], batch_size, verbose, options, "populated_region_set")
    packed, n_units = patterns[0]
    ids, counts = _unique_rows(packed)
    n = len(ids)
    return PRSResult(
        ratio=len(counts) / n,
        n_regions=len(counts),
        n_samples=n,
        region_ids=ids,
        counts=counts,
        layer=str(ref),
        n_units=n_units,
        **per_sample,
        params={"layer": str(ref), "batch_size": batch_size},
    )


@legacy_positional("layer", after=2, when=_is_layer)
def populated_region_set(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    layer: "str | LayerRef | None" = None,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> PRSResult:
    """
    The populated region set of ``x`` at ``layer``: PRS ratio = |{s_l(x) : x in X}| / |X| (PRS paper, Def. 2).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module``.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels (indices or one-hot), only to report ``labels`` / ``correct``; default the predictions.
    :param layer: Layer name (``"features.3"``, ``"fc:input"``, ``"layer1.0.relu#1"``, ``"relu_3"``); default the
                  input of the last ``nn.Linear``.
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md).
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: The region set, with per-sample region ids, predictions and per-region counts.
    """
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    return _region_set(prep, layer, batch_size, verbose, options)


@legacy_positional("layer", after=2, when=_is_layer)
def prs_ratio(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    layer: "str | LayerRef | None" = None,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> float:
    """
    The PRS ratio |PRS(X, f, l)| / |X|, in ART's metric-function style (see :func:`populated_region_set`).

    :param classifier: The classifier.
    :param x: Inputs.
    :param y: Labels (accepted as by every metric; the ratio does not depend on them).
    :param layer: Layer name; default the input of the last ``nn.Linear``.
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md).
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: The ratio, in (0, 1].
    """
    return populated_region_set(classifier, x, y, layer=layer, batch_size=batch_size, verbose=verbose,
                                checkpoint=checkpoint, chunk_size=chunk_size).ratio


def _inclusion(
    train: Prepared,
    test: Prepared,
    layer: Any,
    batch_size: int,
    verbose: bool,
    options: SweepOptions = SweepOptions(),
) -> InclusionResult:
    """:func:`inclusion_ratio` on prepared data (shared with the tracker and the inclusion robustness)."""
    acts = Activations(train.view)
    ref = _layer_ref(acts, layer)
    train_patterns, _ = _packed_patterns(acts, train, [ref], batch_size, verbose, options, "inclusion_ratio/train")
    test_patterns, per_sample = _packed_patterns(acts, test, [ref], batch_size, verbose, options,
                                                 "inclusion_ratio/test")
    packed_train, packed_test = train_patterns[0][0], test_patterns[0][0]
    ids, _ = _unique_rows(packed_train, packed_test)
    train_ids, test_ids = ids[: len(packed_train)], ids[len(packed_train) :]
    in_train = np.zeros(int(ids.max()) + 1, dtype=bool)
    in_train[train_ids] = True
    included = in_train[test_ids]
    return InclusionResult(
        ratio=float(included.mean()),
        included=included,
        n_train_regions=int(np.unique(train_ids).size),
        n_test_regions=int(np.unique(test_ids).size),
        layer=str(ref),
        **per_sample,
        params={"layer": str(ref), "batch_size": batch_size},
    )


@legacy_positional("layer", after=3, when=_is_layer)
def inclusion_ratio(
    classifier: Any,
    x_train: "np.ndarray | torch.Tensor",
    x_test: "np.ndarray | torch.Tensor",
    *,
    y_test: "np.ndarray | torch.Tensor | None" = None,
    layer: "str | LayerRef | None" = None,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> InclusionResult:
    """
    The fraction of test samples whose region is in the training PRS:
    ``|{x in X_test : s_l(x) in PRS(X_train, f, l)}| / |X_test|`` (PRS paper, Sec. 4.3, Fig. 9).

    :param classifier: The classifier.
    :param x_train: Training inputs.
    :param x_test: Test inputs.
    :param y_test: Test labels, only to report ``labels`` / ``correct`` per test sample; default the predictions.
    :param layer: Layer name; default the input of the last ``nn.Linear``.
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md).
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: The ratio and the per-sample inclusion mask (inclusion / exclusion groups) of the test samples.
    """
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    train = prepare(classifier, x_train, x_name="x_train", stream=True, batch_size=batch_size)
    test = prepare_more(train, x_test, y_test, x_name="x_test", y_name="y_test", stream=True, batch_size=batch_size)
    return _inclusion(train, test, layer, batch_size, verbose, options)


@legacy_positional("layers", after=2, when=_is_layers)
def layerwise_prs(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    layers: "Sequence[str | LayerRef] | None" = None,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> LayerwisePRSResult:
    """
    The PRS ratio at every ReLU layer (PRS paper, Fig. 2a), all layers read in one pass over ``x``.

    :param classifier: The classifier.
    :param x: Inputs.
    :param y: Labels, only to report ``labels`` / ``correct``; default the predictions.
    :param layers: Layer names (modules, ``"module#k"``, ReLU sites such as ``"layer1.0.relu#1"`` or ``"relu_3"``);
                   default every ReLU site, in execution order (a model with no ReLU: ``ValueError``).
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md).
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: Ratios, region counts and per-sample region ids per layer.
    """
    batch_size, verbose, options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    acts = Activations(prep.view)
    refs = _relu_refs(acts, layers)
    patterns, per_sample = _packed_patterns(acts, prep, refs, batch_size, verbose, options, "layerwise_prs")
    uniques = [_unique_rows(p) for p, _ in patterns]
    n = len(per_sample["predictions"])
    names = [str(r) for r in refs]
    return LayerwisePRSResult(
        layers=names,
        ratios=np.array([len(c) / n for _, c in uniques]),
        n_regions=np.array([len(c) for _, c in uniques], dtype=np.int64),
        region_ids=np.stack([ids for ids, _ in uniques]),
        n_samples=n,
        **per_sample,
        params={"layers": names, "batch_size": batch_size},
    )

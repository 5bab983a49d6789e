"""
Decision regions of ReLU networks and the Populated Region Set (PRS).

From "Empirical Study of the Decision Region and Robustness in Deep Neural Networks" (ICLR 2022 submission): a
decision region at layer l is the set of inputs whose layer-l pre-activations share one sign pattern
``s_l(x) = [h_l(x) > 0]`` (positive vs not; convolutional feature maps are flattened C x H x W). The populated
region set of a data set X is

    PRS(X, f, l) = { s_l(x) : x in X },      PRS ratio = |PRS(X, f, l)| / |X|,

the number of distinct patterns that hold at least one sample, over the number of samples.

Patterns are bit-packed (8 units per byte) and streamed over batches into one preallocated array, so memory is
N * D / 8 bytes plus one batch; distinct patterns are found by grouping the rows by a 64-bit hash and checking
every row byte for byte against its group's first row (exact; a hash collision falls back to sorting the
patterns), never with an N x N Hamming matrix or Python tuples.

A layer is named by its dotted module name: ``"features.3"`` reads that module's output, ``"classifier.2:input"``
reads what the module receives. The default is the input of the last ``nn.Linear`` (the penultimate features). A
module that runs several times in one forward contributes the concatenation of all its calls; ``"name#k"`` reads
its k-th call. The ReLU sites found by ``torch.fx`` tracing (:mod:`art_geometry._activations`) are layers too:
``"layer1.0.relu#1"`` (the second call of a reused ``nn.ReLU``), ``"relu_3"`` (a call of ``F.relu`` /
``torch.relu`` / ``Tensor.relu``, named as fx names its node); they are the default layers of
:func:`layerwise_prs` and :func:`feature_sparsity`.

Every per-sample result also holds the model's ``predictions`` (read from the forward pass that records the
patterns), the ``labels`` (``y``, or the predictions when none are given) and ``correct``, as the other families.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from art_geometry._activations import Activations
from art_geometry._api import legacy_positional
from art_geometry._batching import batches
from art_geometry._model import LayerRef, module_of
from art_geometry._prepare import Prepared, prepare, prepare_more
from art_geometry._results import ResultMixin
from art_geometry._sweep import Chunk, SweepOptions, stack, sweep
from art_geometry._validation import check_bool, check_positive_int

__all__ = [
    "PRSResult",
    "InclusionResult",
    "LayerwisePRSResult",
    "SimilarityResult",
    "SparsityResult",
    "populated_region_set",
    "prs_ratio",
    "inclusion_ratio",
    "layerwise_prs",
    "final_layer_similarity",
    "feature_sparsity",
]

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


@dataclass(frozen=True)
class PRSResult(ResultMixin):
    """
    The populated region set of a data set at one layer.

    :param ratio: ``n_regions / n_samples``.
    :param n_regions: Number of distinct sign patterns |PRS|.
    :param n_samples: Number of samples |X|.
    :param region_ids: ``(N,)`` index of each sample's region in ``counts`` (regions in a canonical order, the
                       same whatever the order or batching of the samples).
    :param counts: ``(n_regions,)`` number of samples in each region.
    :param layer: The layer the patterns were read at.
    :param n_units: Length of the sign pattern (flattened units of the layer).
    :param predictions: ``(N,)`` the model's predictions.
    :param labels: ``(N,)`` the given labels, or the predictions when none were given.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param params: The parameters used (``layer``, ``batch_size``).
    """

    ratio: float
    n_regions: int
    n_samples: int
    region_ids: np.ndarray
    counts: np.ndarray
    layer: str
    n_units: int
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ratio, n_regions, n_samples, n_units, layer, largest region size, fraction of singletons and
                 ``params``.
        """
        return {
            "layer": self.layer,
            "ratio": self.ratio,
            "n_regions": self.n_regions,
            "n_samples": self.n_samples,
            "n_units": self.n_units,
            "largest_region": int(self.counts.max()),
            "singleton_fraction": float(np.mean(self.counts == 1)),
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class InclusionResult(ResultMixin):
    """
    Which test samples fall in a region populated by the training set (PRS paper, Sec. 4, Fig. 9).

    :param ratio: Fraction of test samples whose region is in PRS(X_train).
    :param included: ``(N_test,)`` True where the test sample's region holds a training sample.
    :param n_train_regions: |PRS(X_train)|.
    :param n_test_regions: |PRS(X_test)|.
    :param layer: The layer the patterns were read at.
    :param predictions: ``(N_test,)`` the model's predictions on the test samples.
    :param labels: ``(N_test,)`` the given test labels, or the predictions when none were given.
    :param correct: ``(N_test,)`` ``predictions == labels``.
    :param params: The parameters used (``layer``, ``batch_size``).
    """

    ratio: float
    included: np.ndarray
    n_train_regions: int
    n_test_regions: int
    layer: str
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ratio, sizes of the inclusion and exclusion groups, region counts, layer, ``n_samples`` (test
                 samples) and ``params``.
        """
        return {
            "layer": self.layer,
            "ratio": self.ratio,
            "n_samples": int(len(self.included)),
            "n_included": int(self.included.sum()),
            "n_excluded": int((~self.included).sum()),
            "n_train_regions": self.n_train_regions,
            "n_test_regions": self.n_test_regions,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class LayerwisePRSResult(ResultMixin):
    """
    The PRS ratio at several layers (PRS paper, Fig. 2a).

    :param layers: Layer names, in network order.
    :param ratios: ``(L,)`` PRS ratio per layer.
    :param n_regions: ``(L,)`` number of regions per layer.
    :param region_ids: ``(L, N)`` region index of each sample at each layer.
    :param n_samples: Number of samples.
    :param predictions: ``(N,)`` the model's predictions.
    :param labels: ``(N,)`` the given labels, or the predictions.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param params: The parameters used (``layers``, ``batch_size``).
    """

    layers: list[str]
    ratios: np.ndarray
    n_regions: np.ndarray
    region_ids: np.ndarray
    n_samples: int
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """:return: The ratio per layer, ``n_samples`` and ``params``."""
        return {
            "n_samples": self.n_samples,
            "ratios": dict(zip(self.layers, self.ratios.tolist())),
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class SimilarityResult(ResultMixin):
    """
    Cosine similarity of the rows (one per class) of the last linear layer (PRS paper, Fig. 7-8).

    :param matrix: ``(C, C)`` cosine similarities ``w_i . w_j / (|w_i| |w_j|)``.
    :param mean_off_diagonal: Mean of the ``C (C - 1)`` off-diagonal entries.
    :param layer: Name of the linear layer.
    :param params: The parameters used (``layer``).
    """

    matrix: np.ndarray
    mean_off_diagonal: float
    layer: str
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: Mean and max off-diagonal similarity, layer, ``n_samples`` (0: the rows are read from the weights)
                 and ``params``.
        """
        off = self.matrix[~np.eye(len(self.matrix), dtype=bool)]
        return {
            "layer": self.layer,
            "mean_off_diagonal": self.mean_off_diagonal,
            "max_off_diagonal": float(off.max()),
            "n_samples": 0,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class SparsityResult(ResultMixin):
    """
    Fraction of zero activations at ReLU layers (PRS paper, Fig. 12).

    :param layers: Layer names.
    :param per_sample: ``(N, L)`` fraction of units that are zero, per sample and layer.
    :param per_layer: ``(L,)`` mean over samples.
    :param mean: Mean over layers of ``per_layer`` (each layer weighted equally).
    :param predictions: ``(N,)`` the model's predictions.
    :param labels: ``(N,)`` the given labels, or the predictions.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param params: The parameters used (``layers``, ``batch_size``).
    """

    layers: list[str]
    per_sample: np.ndarray
    per_layer: np.ndarray
    mean: float
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """:return: The mean sparsity, the sparsity per layer, ``n_samples`` and ``params``."""
        return {
            "mean": self.mean,
            "per_layer": dict(zip(self.layers, self.per_layer.tolist())),
            "n_samples": int(len(self.per_sample)),
            "params": dict(self.params),
        }


def _pack_signs(h: torch.Tensor) -> np.ndarray:
    """
    :param h: Activations ``(B, D)``.
    :return: The sign pattern ``h > 0`` packed 8 units per byte (first unit in the highest bit),
             ``(B, ceil(D / 8))`` uint8 on the host. On the CPU numpy's ``packbits`` does it in one pass (3-4x
             faster than torch arithmetic); on an accelerator the bits are packed there, so 1/32 of the
             activations crosses to the host.
    """
    bits = h > 0
    if bits.device.type == "cpu":
        return np.packbits(bits.numpy(), axis=1)
    return _pack_bits_on_device(bits).cpu().numpy()


def _pack_bits_on_device(bits: torch.Tensor) -> torch.Tensor:
    """:return: ``np.packbits(bits, axis=1)`` computed with torch on ``bits``' device."""
    pad = (-bits.shape[1]) % 8
    if pad:
        bits = torch.nn.functional.pad(bits, (0, pad))
    weights = _BIT_WEIGHTS.to(bits.device)
    return (bits.view(bits.shape[0], -1, 8).to(torch.uint8) * weights).sum(dim=2, dtype=torch.uint8)


def _flat_activations(calls: list[torch.Tensor]) -> torch.Tensor:
    flat = [c.reshape(c.shape[0], -1) for c in calls]
    return flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)


def _stream(
    acts: Activations,
    x: "np.ndarray | torch.Tensor",
    refs: Sequence[LayerRef],
    batch_size: int,
    reduce: Callable[[int, torch.Tensor], Any],
) -> tuple[list[list[Any]], np.ndarray]:
    """
    One pass over ``x`` recording ``refs`` (hooks, and the functional ReLU sites); ``reduce(j, activations (B, D))
    -> value`` is applied per batch and layer ``j``.

    :return: The values per layer in batch order, and the model's predictions ``(N,)`` int64 from the same forward
             passes.
    """
    view = acts.view
    out: list[list[Any]] = [[] for _ in refs]
    predictions: list[torch.Tensor] = []
    with view.evaluating(), acts.recording(list(refs)) as recorder, torch.no_grad():
        for batch in batches(view, x, batch_size):
            predictions.append(view(batch.x).argmax(dim=1).cpu())
            for j, ref in enumerate(refs):
                out[j].append(reduce(j, _flat_activations(recorder.calls(ref))))
            recorder.clear()
    return out, torch.cat(predictions).numpy().astype(np.int64)


def _packed_patterns(
    acts: Activations,
    prep: Prepared,
    refs: Sequence[LayerRef],
    batch_size: int,
    verbose: bool,
    options: SweepOptions,
    key: str,
) -> tuple[list[tuple[np.ndarray, int]], dict[str, np.ndarray]]:
    """
    The sign patterns of every sample, one sweep (sharded, streamed, checkpointed: :mod:`art_geometry._sweep`) over
    the chunks of ``prep``.

    :return: Per layer, the packed sign patterns of all samples ``(N, bytes)`` uint8 and the number of units; and
             the per-sample ``predictions``, ``labels`` and ``correct`` (:func:`_per_sample`).
    """

    def compute(chunk: Prepared, index: int) -> Chunk:
        packed: list[list[np.ndarray]] = [[] for _ in refs]
        units = [0] * len(refs)

        def store(j: int, h: torch.Tensor) -> None:
            packed[j].append(_pack_signs(h))
            units[j] = int(h.shape[1])

        _, predictions = _stream(acts, chunk.x, refs, batch_size, store)
        out = {f"packed_{j}": np.concatenate(p) for j, p in enumerate(packed)}
        out.update({f"units_{j}": np.full(len(predictions), u, dtype=np.int64) for j, u in enumerate(units)})
        return {**out, **_per_sample(chunk, predictions)}

    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key=key, verbose=verbose, desc="regions",
                   settings={"layers": [str(r) for r in refs], "batch_size": batch_size})
    patterns = [(stack(chunks, f"packed_{j}"), int(chunks[0][f"units_{j}"][0])) for j in range(len(refs))]
    return patterns, {name: stack(chunks, name) for name in ("predictions", "labels", "correct")}


#: splitmix64's finaliser constants (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", 2014).
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15))
_HASH_CHUNK = 4096


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic): a bijection that scrambles all bits."""
    z = (z ^ (z >> np.uint64(30))) * _MIX[0]
    z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    return z ^ (z >> np.uint64(31))


def _row_hashes(packed: np.ndarray) -> np.ndarray:
    """
    :param packed: ``(N, bytes)`` uint8.
    :return: ``(N,)`` uint64: ``sum_i mix(word_i XOR mix(i * golden))`` over the row's 64-bit words (zero-padded),
             computed in chunks of rows (no copy of ``packed``).
    """
    n, nbytes = packed.shape
    nwords = -(-nbytes // 8)
    salt = _mix(np.arange(1, nwords + 1, dtype=np.uint64) * _MIX[2])
    buf = np.zeros((_HASH_CHUNK, nwords * 8), dtype=np.uint8)
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _HASH_CHUNK):
        rows = packed[start : start + _HASH_CHUNK]
        buf[: len(rows), :nbytes] = rows
        out[start : start + len(rows)] = _mix(buf[: len(rows)].view(np.uint64) ^ salt).sum(axis=1, dtype=np.uint64)
    return out


def _take(blocks: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """:return: Rows ``idx`` of the blocks stacked (indices over their concatenation), without concatenating them."""
    out = np.empty((len(idx), blocks[0].shape[1]), dtype=np.uint8)
    offset = 0
    for block in blocks:
        mask = (idx >= offset) & (idx < offset + len(block))
        out[mask] = block[idx[mask] - offset]
        offset += len(block)
    return out


def _unique_rows(*blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Distinct rows of the packed patterns of one or more blocks (e.g. training and test patterns), as if stacked.

    Rows are grouped by a 64-bit hash (:func:`_row_hashes`), then every row is compared byte for byte with its
    group's first row, chunk by chunk: the grouping is exact, and memory stays at the hashes and one chunk. In the
    unlikely case of a hash collision (two distinct patterns, one hash; probability about ``N^2 / 2^65``) the rows
    are grouped by sorting the patterns themselves (``np.unique`` on a void view, which copies them).

    :param blocks: ``(N_b, bytes)`` uint8 packed patterns, all of the same width.
    :return: ``(region_ids (sum N_b,), counts (n_regions,))``; regions are numbered in a canonical order (by hash,
             or by pattern after a collision), so ids do not depend on the order or batching of the samples.
    """
    hashes = np.concatenate([_row_hashes(b) for b in blocks])
    _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    for start in range(0, len(hashes), _HASH_CHUNK):
        idx = np.arange(start, min(len(hashes), start + _HASH_CHUNK))
        if not np.array_equal(_take(blocks, idx), _take(blocks, rep[idx])):
            stacked = np.ascontiguousarray(np.concatenate(blocks, axis=0))
            rows = stacked.view(np.dtype((np.void, stacked.shape[1]))).ravel()
            _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
            break
    return inverse.reshape(-1).astype(np.int64), counts.astype(np.int64)


def _options(
    batch_size: Any, verbose: Any, checkpoint: Any = None, chunk_size: Any = None
) -> tuple[int, bool, SweepOptions]:
    """:return: ``batch_size``, ``verbose`` and the sweep options, checked."""
    return (check_positive_int(batch_size, "batch_size"), check_bool(verbose, "verbose"),
            SweepOptions.build(checkpoint, chunk_size))


def _is_layer(value: Any) -> bool:
    """Whether an extra positional argument is the old positional ``layer`` (a name), not labels."""
    return isinstance(value, (str, LayerRef))


def _is_layers(value: Any) -> bool:
    """Whether an extra positional argument is the old positional ``layers`` (a list of names), not labels."""
    return isinstance(value, (list, tuple)) and all(_is_layer(v) for v in value)


def _layer_ref(acts: Activations, layer: Any) -> LayerRef:
    """
    :param layer: A layer name (module, ``module#k`` or ReLU site), a :class:`LayerRef`, or ``None`` for the input
                  of the last ``nn.Linear``.
    :return: The resolved reference.
    :raises ValueError: For anything else, or a name the model does not have (the message lists the names).
    """
    if layer is None:
        return acts.resolve(f"{acts.view.last_linear()}:input")
    if not _is_layer(layer):
        raise ValueError(f"layer must be a layer name such as 'features.3' or 'fc:input', got {layer!r}")
    return acts.resolve(layer)


def _relu_refs(acts: Activations, layers: Any) -> list[LayerRef]:
    """
    :param layers: Layer names, or ``None`` for every ReLU site (each call of an ``nn.ReLU`` module, each call of
                   ``torch.relu`` / ``F.relu`` / ``Tensor.relu``), in execution order.
    :return: The resolved references.
    :raises ValueError: For an empty or malformed list, a name the model does not have, or (default) a model with
                        no ReLU site (GELU, SiLU, ... networks: the message names their activations).
    """
    if layers is None:
        return acts.relu_refs()
    if not _is_layers(layers):
        raise ValueError(f"layers must be a list of layer names such as ['features.1', 'fc:input'], got {layers!r}")
    if len(layers) == 0:
        raise ValueError("layers is empty: name at least one layer")
    return [acts.resolve(spec) for spec in layers]


def _per_sample(prep: Prepared, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """:return: ``predictions``, ``labels`` (the given ones, or the predictions) and ``correct``."""
    labels = prep.labels_or(predictions)
    return {"predictions": predictions, "labels": labels, "correct": predictions == labels}


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
    batch_size, verbose, options = _options(batch_size, verbose, checkpoint, chunk_size)
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
    batch_size, verbose, options = _options(batch_size, verbose, checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    return _region_set(prep, layer, batch_size, verbose, options).ratio


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
    batch_size, verbose, options = _options(batch_size, verbose, checkpoint, chunk_size)
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
    batch_size, verbose, options = _options(batch_size, verbose, checkpoint, chunk_size)
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


@legacy_positional("layer", after=1)
def final_layer_similarity(classifier: Any, *, layer: "str | None" = None) -> SimilarityResult:
    """
    Cosine similarity between the class rows of the last linear layer,
    ``S_ij = w_i . w_j / (||w_i||_2 ||w_j||_2)``, and its mean off-diagonal value (PRS paper, Fig. 7-8).

    :param classifier: The classifier (no data needed: the rows are read from the weights).
    :param layer: Name of an ``nn.Linear`` module; default the last one.
    :return: The similarity matrix and its mean off-diagonal entry.
    :raises ValueError: When ``layer`` is not an ``nn.Linear`` module of the model.
    """
    layers = dict(module_of(classifier).named_modules())
    linear = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
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
    batch_size, verbose, options = _options(batch_size, verbose, checkpoint, chunk_size)
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

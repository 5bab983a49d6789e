"""
The one loop over chunks of samples behind every per-sample family: sharded over ``torch.distributed`` ranks,
streamed from a ``Dataset`` / ``DataLoader``, and resumable from a checkpoint directory.

A sweep cuts the samples into chunks of ``chunk_size`` consecutive samples (a multiple of ``batch_size``, so the
batches, and with them every result bit, are those of an unchunked run), deals the chunks round-robin over the
ranks (:mod:`art_geometry.sweep.distributed`), loads finished chunks from the checkpoint or computes them
(:mod:`art_geometry.sweep.checkpoint`), and hands every rank all chunks' per-sample arrays in order. Only one chunk of
inputs is held at a time: memory is bounded by the chunk and the per-sample results, not by the data.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from art_geometry.core.prepare import Prepared
from art_geometry.core.rng import resolve_seed
from art_geometry.core.sources import ArraySource, Source
from art_geometry.core.validation import check_array, check_bool, check_labels, check_positive_int
from art_geometry.sweep.checkpoint import Checkpoint, data_hash, model_hash, stored_manifest
from art_geometry.sweep.distributed import agree, gather, guarded, world

__all__ = ["SweepOptions", "Chunk", "sweep", "sweep_keywords", "stack", "shared_seed", "chunk_seed"]

logger = logging.getLogger("art_geometry.sweep")

#: Default chunk: this many batches (one: the finest split, so that even a few batches spread over the ranks).
_BATCHES_PER_CHUNK = 1

Chunk = dict[str, np.ndarray]


@dataclass(frozen=True)
class SweepOptions:
    """
    How a sweep is cut and where it is checkpointed (validated once).

    :param checkpoint: Directory for finished chunks and the manifest, or ``None`` (no checkpoint).
    :param chunk_size: Samples per chunk, or ``None`` for one batch (``batch_size``); rounded up to a multiple of
                       ``batch_size``.
    """

    checkpoint: "Path | None" = None
    chunk_size: "int | None" = None

    @classmethod
    def build(cls, checkpoint: Any = None, chunk_size: Any = None) -> "SweepOptions":
        """
        :param checkpoint: A directory path (``str`` or ``os.PathLike``) or ``None``.
        :param chunk_size: A positive int or ``None``.
        :return: The validated options.
        """
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(
                f"checkpoint must be a directory path (str or os.PathLike), got {type(checkpoint).__name__}"
            )
        if isinstance(checkpoint, str) and not checkpoint:
            raise ValueError("checkpoint is an empty path: pass a directory or None")
        return cls(
            checkpoint=None if checkpoint is None else Path(checkpoint),
            chunk_size=None if chunk_size is None else check_positive_int(chunk_size, "chunk_size"),
        )

    def samples_per_chunk(self, batch_size: int) -> int:
        """:return: The chunk size used with ``batch_size``."""
        size = self.chunk_size or _BATCHES_PER_CHUNK * batch_size
        return -(-size // batch_size) * batch_size


def sweep_keywords(
    batch_size: Any, verbose: Any, checkpoint: Any = None, chunk_size: Any = None, *, chosen_batch: bool = False
) -> tuple[Any, bool, SweepOptions]:
    """
    The keywords every per-sample function takes, checked in one place.

    :param batch_size: Samples per batch: a positive int (or ``None`` where ``chosen_batch``: the function chooses it).
    :param verbose: Show a progress bar: a bool.
    :param checkpoint: Directory for finished chunks, or ``None``.
    :param chunk_size: Samples per chunk, or ``None``.
    :param chosen_batch: Whether ``batch_size=None`` is allowed.
    :return: ``batch_size``, ``verbose`` and the :class:`SweepOptions`, checked.
    :raises ValueError: For a value of the wrong type or range, naming the argument.
    """
    if batch_size is not None or not chosen_batch:
        batch_size = check_positive_int(batch_size, "batch_size")
    return batch_size, check_bool(verbose, "verbose"), SweepOptions.build(checkpoint, chunk_size)


def shared_seed(seed: "int | None", options: SweepOptions, key: str, drawn: "int | None" = None) -> int:
    """
    The seed a sweep uses: ``seed`` itself; for ``None``, the seed stored in the checkpoint's manifest when resuming,
    else rank 0's ``drawn`` seed (a fresh one when not given), shared with every rank.

    :param seed: The validated seed the user asked for, or ``None``.
    :param options: The sweep options.
    :param key: The sweep's checkpoint key.
    :param drawn: The seed already drawn for ``seed=None``, if any.
    """
    if seed is not None:
        return int(seed)
    if options.checkpoint is not None:
        stored = stored_manifest(options.checkpoint, key)
        if stored is not None and "seed" in stored:
            return int(stored["seed"])
    return int(agree(resolve_seed(None) if drawn is None else drawn))


def chunk_seed(seed: int, index: int) -> int:
    """
    :param seed: The sweep's seed.
    :param index: A chunk's index.
    :return: The seed of that chunk's random draws: ``seed`` itself for the first chunk, one derived from
             ``(seed, index)`` for the others (so draws do not depend on which rank computes the chunk).
    """
    return seed if index == 0 else int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def _source(prep: Prepared) -> Source:
    return prep.x if isinstance(prep.x, Source) else ArraySource(prep.x, prep.labels)


def _chunk_prep(prep: Prepared, source: Source, x: Any, y: Any, start: int) -> Prepared:
    """The chunk as prepared data; streamed chunks are validated here (arrays were validated as a whole)."""
    if isinstance(source, ArraySource):
        return Prepared(view=prep.view, x=x, labels=y)
    span = f"{source.name} (samples {start}..{start + len(x) - 1})"
    x = check_array(x, span, prep.view.input_shape)
    labels = None if y is None else check_labels(y, len(x), prep.view.nb_classes, f"the labels of {span}")
    return Prepared(view=prep.view, x=x, labels=labels)


def sweep(
    prep: Prepared,
    compute: Callable[[Prepared, int], Chunk],
    *,
    batch_size: int,
    options: SweepOptions,
    key: str,
    settings: dict[str, Any],
    verbose: bool = False,
    desc: str = "",
) -> list[Chunk]:
    """
    Run ``compute`` over the chunks of ``prep`` (see the module docstring).

    :param prep: Prepared data: an array (validated) or a streamed :class:`~art_geometry.core.sources.Source`.
    :param compute: ``compute(chunk, index) -> {name: (n_chunk, ...) array}`` for one chunk of prepared data and
                    its index (a family that draws random numbers seeds them from the index, so results do not
                    depend on which rank computes which chunk).
    :param batch_size: The family's batch size (the chunk size is a multiple of it).
    :param options: Checkpoint and chunk size.
    :param key: The sweep's name in the checkpoint directory.
    :param settings: JSON-safe settings that determine the result (written to and checked against the manifest).
    :param verbose: One progress bar (on rank 0) over the samples.
    :param desc: Its label.
    :return: The per-chunk arrays of every chunk, in data order, on every rank.
    """
    source = _source(prep)
    chunk_size = options.samples_per_chunk(batch_size)
    rank, size = world()
    ckpt = None
    if options.checkpoint is not None:
        ckpt = Checkpoint(options.checkpoint, key)
        ckpt.bind({"function": key, "settings": settings, "model": model_hash(prep.view), "chunk_size": chunk_size,
                   "seed": settings.get("seed")})

    def work() -> dict[int, Chunk]:
        out: dict[int, Chunk] = {}
        bar = tqdm(total=source.size, desc=desc, disable=not verbose or rank != 0, leave=False, unit="sample")
        for piece in source.pieces(chunk_size, lambda index: index % size == rank):
            if piece.x is None:
                continue
            chunk = _chunk_prep(prep, source, piece.x, piece.y, piece.start)
            span = f"samples {piece.start}..{piece.start + piece.size - 1}"
            digest = data_hash(chunk.x, chunk.labels) if ckpt is not None else ""
            arrays = ckpt.load(piece.index, digest, span) if ckpt is not None else None
            if arrays is None:
                arrays = compute(chunk, piece.index)
                if ckpt is not None:
                    ckpt.save(piece.index, arrays, digest)
            out[piece.index] = arrays
            bar.update(min(piece.size * size, (bar.total or piece.size * size) - bar.n))
        bar.close()
        if ckpt is not None:
            logger.info("checkpoint %s: %d chunk(s) loaded, %d computed", ckpt.dir, ckpt.loaded, ckpt.computed)
        return out

    merged = gather(guarded(work))
    return [merged[i] for i in range(len(merged))]


def stack(chunks: Sequence[Chunk], name: str, axis: int = 0) -> np.ndarray:
    """
    :param chunks: Per-chunk arrays, in data order.
    :param name: The array to join.
    :param axis: The sample axis of that array.
    :return: The arrays of every chunk joined along ``axis``.
    """
    return np.concatenate([c[name] for c in chunks], axis=axis)

"""
Where the samples of a sweep come from: an in-memory array (or tensor), a map-style ``torch.utils.data.Dataset``
or a ``DataLoader``. A :class:`Source` hands out fixed-size chunks of consecutive samples in order, so that a sweep
can shard them over ranks and checkpoint them one by one while holding only one chunk of inputs at a time.

Items of a ``Dataset`` and batches of a ``DataLoader`` are ``x`` alone, or ``(x, y)`` / ``[x, y]`` (further
elements are ignored); ``x`` a tensor or numpy array, ``y`` class indices or one-hot rows. A loader must visit its
samples in the same order every time (no ``shuffle=True``) and hold the whole data set (no ``DistributedSampler``:
the sweep shards it itself).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, RandomSampler, Subset

from art_geometry.core.validation import check_array

__all__ = ["Piece", "Source", "ArraySource", "LoaderSource", "DatasetSource", "as_source", "is_streamed"]


@dataclass(frozen=True)
class Piece:
    """
    One chunk of a source: its index, the position of its first sample, its size and, when it was read, its
    inputs and raw labels (``None`` for a chunk that was skipped without reading).
    """

    index: int
    start: int
    size: int
    x: "np.ndarray | torch.Tensor | None" = None
    y: Any = None


class Source(abc.ABC):
    """Samples in a fixed order, handed out in chunks (see the module docstring)."""

    #: The argument name the samples came in, for messages.
    name: str

    @property
    @abc.abstractmethod
    def size(self) -> "int | None":
        """Number of samples, or ``None`` where the source does not know it before a full pass."""

    @property
    @abc.abstractmethod
    def has_labels(self) -> bool:
        """Whether the source yields labels with the samples."""

    @abc.abstractmethod
    def head(self) -> "np.ndarray | torch.Tensor":
        """:return: The first few samples (at least one), for the probe forward pass."""

    @abc.abstractmethod
    def pieces(self, chunk_size: int, wanted: "Any") -> Iterator[Piece]:
        """
        :param chunk_size: Samples per chunk (the last may be shorter).
        :param wanted: ``wanted(index) -> bool``: whether the chunk must be read (others are only counted).
        :return: Every chunk in order; those not wanted without ``x`` / ``y``.
        """


class ArraySource(Source):
    """An in-memory array or tensor, already validated as a whole (:func:`check_array`), with optional labels."""

    def __init__(self, x: "np.ndarray | torch.Tensor", labels: "np.ndarray | None", name: str = "x"):
        self.x, self.labels, self.name = x, labels, name

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def head(self) -> "np.ndarray | torch.Tensor":
        return self.x[:4]

    def pieces(self, chunk_size: int, wanted: Any) -> Iterator[Piece]:
        for index, start in enumerate(range(0, self.size, chunk_size)):
            stop = min(start + chunk_size, self.size)
            if not wanted(index):
                yield Piece(index, start, stop - start)
                continue
            y = None if self.labels is None else self.labels[start:stop]
            yield Piece(index, start, stop - start, self.x[start:stop], y)


def _split_item(batch: Any, name: str) -> tuple[Any, Any]:
    """:return: ``(x, y)`` of a loader batch (``y`` is ``None`` for inputs alone)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) >= 2 else None)
    raise TypeError(
        f"{name} must yield inputs, or (inputs, labels) pairs, as tensors or numpy arrays; "
        f"got a batch of type {type(batch).__name__}"
    )


def _iterate(loader: DataLoader) -> Iterator[Any]:
    """Iterate ``loader`` leaving torch's global random state as it was (a loader iterator draws its base seed)."""
    state = torch.random.get_rng_state()
    try:
        it = iter(loader)
    finally:
        torch.random.set_rng_state(state)
    return it


def _check_loader(loader: DataLoader, name: str) -> None:
    if isinstance(loader.sampler, RandomSampler):
        raise ValueError(
            f"{name} is a DataLoader with shuffle=True: a sweep reads the samples in the same order on every pass "
            "and every rank; pass a loader with shuffle=False"
        )
    if isinstance(loader.sampler, DistributedSampler):
        raise ValueError(
            f"{name} uses a DistributedSampler: pass the loader of the whole data set; art-geometry shards the "
            "samples over the ranks itself"
        )


class LoaderSource(Source):
    """
    A ``DataLoader`` streamed in order and re-batched into chunks; every chunk is read (a loader cannot skip), only
    the wanted ones are kept.
    """

    def __init__(self, loader: DataLoader, name: str = "x"):
        _check_loader(loader, name)
        self.loader, self.name = loader, name
        first = next(_iterate(loader), None)
        if first is None:
            raise ValueError(f"{name} is empty: the DataLoader yields no batches")
        x, y = _split_item(first, name)
        self._head, self._has_labels = x[:4], y is not None

    @property
    def size(self) -> "int | None":
        dataset = self.loader.dataset
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            return None
        return len(dataset)  # type: ignore[arg-type]

    @property
    def has_labels(self) -> bool:
        return self._has_labels

    def head(self) -> "np.ndarray | torch.Tensor":
        return self._head

    def pieces(self, chunk_size: int, wanted: Any) -> Iterator[Piece]:
        xs: list[Any] = []
        ys: list[Any] = []
        held = start = index = 0
        for batch in _iterate(self.loader):
            x, y = _split_item(batch, self.name)
            if (y is None) == self._has_labels:
                raise ValueError(f"{self.name} yields labels with some batches and not with others")
            offset = 0
            while offset < len(x):
                take = min(chunk_size - held, len(x) - offset)
                if wanted(index):
                    xs.append(x[offset : offset + take])
                    ys.append(None if y is None else y[offset : offset + take])
                held, offset = held + take, offset + take
                if held == chunk_size:
                    yield self._piece(index, start, held, xs, ys)
                    xs, ys, start, held, index = [], [], start + held, 0, index + 1
        if held:
            yield self._piece(index, start, held, xs, ys)

    def _piece(self, index: int, start: int, size: int, xs: list[Any], ys: list[Any]) -> Piece:
        if not xs:
            return Piece(index, start, size)
        x = _concat(xs, f"{self.name} (samples {start}..{start + size - 1})")
        y = None if ys[0] is None else _concat(ys, f"the labels {self.name} yields")
        return Piece(index, start, size, x, y)


def _concat(parts: list[Any], what: str) -> "np.ndarray | torch.Tensor":
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts)
    if all(isinstance(p, (np.ndarray, torch.Tensor)) for p in parts):
        return np.concatenate([p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p for p in parts])
    raise TypeError(f"{what} must be tensors or numpy arrays, got {sorted({type(p).__name__ for p in parts})}")


class DatasetSource(LoaderSource):
    """A map-style ``Dataset``: chunks are read by index, so a rank reads only its own chunks."""

    def __init__(self, dataset: Dataset, batch_size: int, name: str = "x"):
        if not hasattr(dataset, "__len__"):
            raise TypeError(f"{name} is a Dataset without __len__: wrap it in a DataLoader to stream it")
        self.dataset, self.batch_size = dataset, batch_size
        super().__init__(DataLoader(dataset, batch_size=batch_size, shuffle=False), name)

    @property
    def size(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def pieces(self, chunk_size: int, wanted: Any) -> Iterator[Piece]:
        n = self.size
        for index, start in enumerate(range(0, n, chunk_size)):
            stop = min(start + chunk_size, n)
            if not wanted(index):
                yield Piece(index, start, stop - start)
                continue
            part = DataLoader(Subset(self.dataset, range(start, stop)), batch_size=self.batch_size, shuffle=False)
            pairs = [_split_item(b, self.name) for b in _iterate(part)]
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            yield self._piece(index, start, stop - start, xs, ys)


def is_streamed(x: Any) -> bool:
    """:return: Whether ``x`` is a ``Dataset`` or ``DataLoader`` (rather than an array)."""
    return isinstance(x, (Dataset, DataLoader))


def as_source(x: Any, labels: "np.ndarray | None", batch_size: int, name: str = "x") -> Source:
    """
    :param x: An array already validated by :func:`check_array`, a ``Dataset`` or a ``DataLoader``.
    :param labels: Validated labels of an array ``x``, or ``None``.
    :param batch_size: Samples per read for a ``Dataset``.
    :param name: The argument's name, for messages.
    :return: The source.
    """
    if isinstance(x, DataLoader):
        return LoaderSource(x, name)
    if isinstance(x, IterableDataset):
        return LoaderSource(DataLoader(x, batch_size=batch_size), name)
    if isinstance(x, Dataset):
        return DatasetSource(x, batch_size, name)
    return ArraySource(check_array(x, name), labels, name)

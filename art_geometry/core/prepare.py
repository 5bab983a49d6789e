"""
Validate, then adapt, once: the one preparation step every public function that takes data runs first.

``prepare(classifier, x, y)`` checks the inputs (:func:`art_geometry.core.validation.check_array`: any numpy stride,
contiguity or writability, floating or integer dtype; never written to), builds the model view, runs one probe
forward on the first samples (a shape mismatch or a raising model becomes a message naming ``x``; the classes of
a plain module are found; probability outputs are warned about), then checks the labels against the classes.
Composite functions prepare once and hand the :class:`Prepared` to the private implementations they share.

Dtype rule: samples are cast batch by batch to the model's floating dtype (``ModelView.to_tensor``); integer
samples are converted with their values unchanged (``uint8`` pixels stay 0..255: scale them first if the model
expects [0, 1]); ``bool`` and complex samples are refused.

Streaming: the sweep families (``prepare(..., stream=True)``) also take a ``torch.utils.data.Dataset`` or
``DataLoader`` (:mod:`art_geometry.core.sources`); the probe then runs on its first samples, the labels come from the
data (``y`` must be ``None``), and each chunk is validated when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from art_geometry.core.model import ModelView, adapt, probe, warn_if_probabilities
from art_geometry.core.sources import Source, as_source, is_streamed
from art_geometry.core.validation import check_array, check_labels

__all__ = ["Prepared", "prepare", "prepare_more"]


@dataclass(frozen=True)
class Prepared:
    """
    Validated data and the adapted model, handed from a public function to the algorithm.

    :param view: The model view, with ``nb_classes`` known.
    :param x: The user's inputs, validated and unchanged (numpy array or tensor, any stride), or a streamed
              :class:`~art_geometry.core.sources.Source` (sweep families only).
    :param labels: ``(N,)`` int64 class indices, or ``None`` when no labels were given (or they are streamed).
    """

    view: ModelView
    x: "np.ndarray | torch.Tensor | Source"
    labels: "np.ndarray | None"

    @property
    def n(self) -> int:
        """Number of samples (of an in-memory ``x``)."""
        if isinstance(self.x, Source):
            raise TypeError("a streamed source has no length before it is read")
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        first = self.x.head() if isinstance(self.x, Source) else self.x
        return tuple(int(s) for s in first.shape[1:])

    def labels_or(self, predictions: np.ndarray) -> np.ndarray:
        """
        :param predictions: ``(N,)`` the model's predictions.
        :return: The labels, or a copy of ``predictions`` when none were given.
        """
        return predictions.copy() if self.labels is None else self.labels


def prepare(
    classifier: Any,
    x: Any,
    y: Any = None,
    *,
    require_labels: bool = False,
    x_name: str = "x",
    y_name: str = "y",
    stream: bool = False,
    batch_size: int = 256,
) -> Prepared:
    """
    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel``, ``torch.nn.Module`` or a model view.
    :param x: Inputs ``(N, *input_shape)``; with ``stream``, also a ``Dataset`` or ``DataLoader``.
    :param y: Labels (indices or one-hot), or ``None``.
    :param require_labels: Refuse ``y=None``.
    :param x_name: The inputs' argument name, for messages.
    :param y_name: The labels' argument name, for messages.
    :param stream: Accept a ``Dataset`` / ``DataLoader`` for ``x`` (the sweep families).
    :param batch_size: Samples per read of a ``Dataset``.
    :return: The prepared data and model view.
    :raises TypeError: For an unsupported classifier or a wrong type of ``x`` / ``y``.
    :raises ValueError: For bad values of ``x`` / ``y`` or a model that cannot run on ``x``.
    """
    view = adapt(classifier)
    if stream and is_streamed(x):
        return _prepare_stream(view, x, y, require_labels, x_name, y_name, batch_size)
    x = check_array(x, x_name, view.input_shape)
    view, logits = probe(view, x, x_name)
    warn_if_probabilities(logits)
    if y is None and require_labels:
        raise ValueError(f"{y_name} is required: pass the labels of {x_name}")
    labels = None if y is None else check_labels(y, len(x), view.nb_classes, y_name)
    return Prepared(view=view, x=x, labels=labels)


def _prepare_stream(
    view: ModelView, x: Any, y: Any, require_labels: bool, x_name: str, y_name: str, batch_size: int
) -> Prepared:
    """:func:`prepare` for a ``Dataset`` / ``DataLoader``: probe on its first samples, labels from the data."""
    if y is not None:
        raise ValueError(f"{y_name} must be None when {x_name} is a Dataset or DataLoader: it yields the labels")
    source = as_source(x, None, batch_size, x_name)
    head = check_array(source.head(), f"the first samples of {x_name}", view.input_shape)
    view, logits = probe(view, head, x_name)
    warn_if_probabilities(logits)
    if require_labels and not source.has_labels:
        raise ValueError(f"labels are required: {x_name} must yield (inputs, labels) pairs")
    return Prepared(view=view, x=source, labels=None)


def prepare_more(
    prep: Prepared,
    x: Any,
    y: Any = None,
    *,
    x_name: str,
    y_name: str = "y",
    require_labels: bool = False,
    stream: bool = False,
    batch_size: int = 256,
) -> Prepared:
    """
    Prepare a second data set for the same model (e.g. test data beside training data), without adapting again.

    :param prep: The first prepared data set.
    :param x: The second inputs.
    :param y: Their labels, or ``None``.
    :param x_name: Their argument name.
    :param y_name: The labels' argument name.
    :param require_labels: Refuse ``y=None``.
    :param stream: Accept a ``Dataset`` / ``DataLoader`` for ``x``.
    :param batch_size: Samples per read of a ``Dataset``.
    :return: The second prepared data set, on the same view.
    """
    if stream and is_streamed(x):
        return _prepare_stream(prep.view, x, y, require_labels, x_name, y_name, batch_size)
    x = check_array(x, x_name, prep.view.input_shape)
    probe(prep.view, x, x_name)
    if y is None and require_labels:
        raise ValueError(f"{y_name} is required: pass the labels of {x_name}")
    labels = None if y is None else check_labels(y, len(x), prep.view.nb_classes, y_name)
    return Prepared(view=prep.view, x=x, labels=labels)

"""The result objects of the region family (PRS paper): one per function, per-sample arrays and ``params``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_geometry.core.results import ResultMixin

__all__ = ["PRSResult", "InclusionResult", "LayerwisePRSResult", "SimilarityResult", "SparsityResult"]


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

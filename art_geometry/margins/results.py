"""The margin family's result objects: per-sample margins, success flags and predictions, with ``params``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_geometry.core.results import ResultMixin, describe


def _split_summary(margins: np.ndarray, success: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """``describe`` over the finite margins, overall and split by correctness, with failure counts."""

    def part(mask: np.ndarray) -> dict[str, Any]:
        stats: dict[str, Any] = describe(margins[mask & success])
        stats["n_failed"] = int((mask & ~success).sum())
        stats["success_rate"] = float(success[mask].mean()) if mask.any() else float("nan")
        return stats

    everything = np.ones_like(success)
    out = part(everything)
    out["correct"] = part(correct)
    out["incorrect"] = part(~correct)
    return out


@dataclass(frozen=True)
class MarginResult(ResultMixin):
    """
    DeepFool margins of a set of samples.

    :param margins: ``(N,)`` distance to the boundary of the predicted region in the chosen norm; ``inf`` where
                    ``success`` is False.
    :param success: ``(N,)`` whether an adversarial point was found.
    :param iterations: ``(N,)`` DeepFool iterations used, summed over restarts.
    :param predictions: ``(N,)`` the model's prediction at ``x`` (the region whose boundary is measured).
    :param labels: ``(N,)`` the given labels, or the predictions when none were given.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param perturbations: ``(N, *shape)`` float32 perturbations, ``x + perturbation`` adversarial where
                          ``success`` (zeros elsewhere); only with ``return_perturbations=True``.
    :param norm: The norm (2 or inf).
    :param subspace: Name of the subspace the perturbations were constrained to, or None.
    :param params: The parameters used.
    """

    margins: np.ndarray
    success: np.ndarray
    iterations: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    perturbations: np.ndarray | None
    norm: float
    subspace: str | None
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, ``describe`` (median, p05, p95, mean, std_error, ...) of the finite margins, with
                 ``n_failed`` and ``success_rate``, overall and under ``"correct"`` / ``"incorrect"`` (failures are
                 counted, never dropped silently), and ``params``.
        """
        return {"n_samples": int(self.margins.size), **_split_summary(self.margins, self.success, self.correct),
                "params": self.params}


@dataclass(frozen=True)
class SubspaceMarginResult(ResultMixin):
    """
    DeepFool margins of a set of samples inside each of several subspaces.

    :param margins: ``(n_subspaces, N)``, ``inf`` where not successful.
    :param success: ``(n_subspaces, N)``.
    :param names: The subspaces' names.
    :param predictions: ``(N,)`` the model's predictions at ``x``.
    :param labels: ``(N,)`` the labels, or the predictions.
    :param correct: ``(N,)``.
    :param norm: The norm.
    :param params: The parameters used.
    """

    margins: np.ndarray
    success: np.ndarray
    names: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    norm: float
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, ``params`` and, under ``subspaces``, one ``describe`` (with failure counts, overall
                 and split by correctness) per subspace name.
        """
        return {
            "n_samples": int(self.margins.shape[1]),
            "subspaces": {
                name: _split_summary(self.margins[j], self.success[j], self.correct)
                for j, name in enumerate(self.names)
            },
            "params": self.params,
        }

"""
The result objects of the robustness measurements: per-sample numpy arrays and the settings used, with
``summary()`` (always ``n_samples`` and ``params``) and a ``to_dict()`` / ``from_dict()`` round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from art_geometry.core.results import ResultMixin

__all__ = ["RobustnessResult", "RobustnessCurve", "InclusionRobustnessResult", "ZeroGradientResult"]


class _Accuracies:
    """The accuracies of a result holding ``clean_correct`` ``(N,)`` and ``adv_correct`` ``(..., N)``."""

    clean_correct: np.ndarray
    adv_correct: np.ndarray

    @property
    def accuracy(self) -> float:
        """Clean accuracy."""
        return float(self.clean_correct.mean())

    def _robust_accuracy(self) -> np.ndarray:
        """:return: The fraction of samples correct both clean and under attack, per row of ``adv_correct``."""
        return self.adv_correct.mean(axis=-1)


@dataclass(frozen=True)
class RobustnessResult(_Accuracies, ResultMixin):
    """
    Per-sample outcome of one attack.

    :param labels: ``(N,)`` true labels.
    :param clean_pred: ``(N,)`` predictions on the clean inputs.
    :param adv_pred: ``(N,)`` predictions on the adversarial inputs.
    :param clean_correct: ``(N,)`` clean prediction correct.
    :param adv_correct: ``(N,)`` correct both clean and under attack.
    :param success: ``(N,)`` clean-correct samples the attack misclassified.
    :param perturbation_norm: ``(N,)`` ``||x' - x||_norm``.
    :param x_adv: The adversarial examples, when asked for (``return_adversarial=True``), else ``None``.
    :param attack: Attack name (or class name of an instance).
    :param eps: The budget (``NaN`` for an instance, whose budget is its own).
    :param norm: The norm the perturbations are measured in (1.0, 2.0 or inf).
    :param params: The settings used (:class:`~art_geometry.AttackSettings` fields with the seed drawn, and the
                   batch size).
    """

    labels: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    clean_correct: np.ndarray
    adv_correct: np.ndarray
    success: np.ndarray
    perturbation_norm: np.ndarray
    x_adv: np.ndarray | None
    attack: str
    eps: float
    norm: float
    params: dict[str, Any]

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples correct both clean and under attack."""
        return float(self._robust_accuracy())

    def summary(self) -> dict[str, Any]:
        """:return: accuracy, robust accuracy, attack success rate over clean-correct samples."""
        n_correct = int(self.clean_correct.sum())
        return {
            "n_samples": int(self.labels.size),
            "n": int(self.labels.size),
            "accuracy": self.accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": float(self.success.sum() / n_correct) if n_correct else float("nan"),
            "attack": self.attack,
            "eps": self.eps,
            "norm": self.norm,
            "params": self.params,
        }


@dataclass(frozen=True)
class RobustnessCurve(_Accuracies, ResultMixin):
    """
    Robust accuracy over a range of budgets.

    :param eps: ``(E,)`` budgets.
    :param clean_correct: ``(N,)``.
    :param adv_correct: ``(E, N)`` correct both clean and under the attack with budget ``eps[e]``.
    :param attack: Attack name.
    :param norm: The norm.
    :param params: The other settings used (the seed is the same for every budget).
    """

    eps: np.ndarray
    clean_correct: np.ndarray
    adv_correct: np.ndarray
    attack: str
    norm: float
    params: dict[str, Any]

    @property
    def robust_accuracy(self) -> np.ndarray:
        """``(E,)`` robust accuracy per budget."""
        return self._robust_accuracy()

    def summary(self) -> dict[str, Any]:
        """:return: accuracy and the robust accuracy per eps."""
        return {
            "n_samples": int(self.clean_correct.size),
            "accuracy": self.accuracy,
            "eps": self.eps.tolist(),
            "robust_accuracy": self.robust_accuracy.tolist(),
            "attack": self.attack,
            "norm": self.norm,
            "params": self.params,
        }


@dataclass(frozen=True)
class InclusionRobustnessResult(ResultMixin):
    """
    Robust accuracy of the test samples whose activation region holds a training sample ("inclusion") against
    the others ("exclusion"), PRS paper Fig. 9.

    :param included: ``(N,)`` region of the test sample is in PRS(X_train).
    :param robustness: The attack's per-sample result.
    :param layer: The layer of the regions.
    """

    included: np.ndarray
    robustness: RobustnessResult
    layer: str

    def group(self, included: bool) -> dict[str, float]:
        """
        :param included: Which group.
        :return: ``n``, ``accuracy`` and ``robust_accuracy`` of the group (NaN when empty).
        """
        mask = self.included == included
        n = int(mask.sum())
        nan = float("nan")
        return {
            "n": n,
            "accuracy": float(self.robustness.clean_correct[mask].mean()) if n else nan,
            "robust_accuracy": float(self.robustness.adv_correct[mask].mean()) if n else nan,
        }

    def summary(self) -> dict[str, Any]:
        """:return: The inclusion ratio and both groups' figures; ``params`` the attack's, with the layer."""
        return {
            "n_samples": int(self.included.size),
            "inclusion_ratio": float(self.included.mean()),
            "inclusion": self.group(True),
            "exclusion": self.group(False),
            "layer": self.layer,
            "attack": self.robustness.attack,
            "eps": self.robustness.eps,
            "params": {**self.robustness.params, "layer": self.layer},
        }


@dataclass(frozen=True)
class ZeroGradientResult(ResultMixin):
    """
    Which failures of an attack sit where the loss gradient vanishes (PRS paper, Fig. 6).

    :param robustness: The attack's per-sample result.
    :param grad_norm: ``(N,)`` ``||grad_x CE(f(x), y)||_inf`` at the clean input.
    :param zero_gradient: ``(N,)`` ``grad_norm <= tol``.
    :param failed: ``(N,)`` clean-correct samples the attack did not misclassify.
    :param tol: The threshold.
    """

    robustness: RobustnessResult
    grad_norm: np.ndarray
    zero_gradient: np.ndarray
    failed: np.ndarray
    tol: float

    @property
    def fraction(self) -> float:
        """Fraction of the attack's failures with a zero gradient (NaN when the attack never failed)."""
        n = int(self.failed.sum())
        return float((self.zero_gradient & self.failed).sum() / n) if n else float("nan")

    def summary(self) -> dict[str, Any]:
        """
        :return: Failures, zero-gradient failures, their fraction, and the fraction over all samples; ``params``
                 the attack's, with ``tol``.
        """
        return {
            "n_samples": int(self.grad_norm.size),
            "n_failed": int(self.failed.sum()),
            "n_failed_zero_gradient": int((self.zero_gradient & self.failed).sum()),
            "fraction": self.fraction,
            "zero_gradient_overall": float(self.zero_gradient.mean()),
            "tol": self.tol,
            "attack": self.robustness.attack,
            "eps": self.robustness.eps,
            "params": {**self.robustness.params, "tol": self.tol},
        }

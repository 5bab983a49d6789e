"""
DeepFool margins as an ART evasion attack (ART 1.x ``art.attacks.EvasionAttack``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassGradientsMixin
from art.estimators.estimator import BaseEstimator

from art_geometry.interop._common import check_options, craft
from art_geometry.margins import MarginResult

__all__ = ["DeepFoolMargin"]

logger = logging.getLogger(__name__)


class DeepFoolMargin(EvasionAttack):
    """
    Minimal untargeted perturbations from :func:`art_geometry.margins.deepfool_margins`: batched DeepFool
    (Moosavi-Dezfooli et al., CVPR 2016) with the crossing refined by bisection and noisy restarts, so the returned
    point lies just past the boundary of the region the model predicts at ``x``.

    ``generate`` returns ``x + r`` (``x`` unchanged where no adversarial point was found); the margins and the
    success flags of the last call are kept in :attr:`last_result`. Usable wherever ART takes an evasion attack,
    e.g. ``AdversarialTrainer(classifier, DeepFoolMargin(classifier))`` or
    ``art.metrics.adversarial_accuracy(classifier, x, y, attack_crafter=DeepFoolMargin(classifier))``.

    | Paper link: https://arxiv.org/abs/1511.04599
    """

    attack_params = EvasionAttack.attack_params + [
        "norm",
        "candidates",
        "overshoot",
        "max_iter",
        "refine",
        "restarts",
        "box",
        "batch_size",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, ClassGradientsMixin)

    def __init__(
        self,
        classifier: Any,
        norm: "int | float | str" = 2,
        candidates: int = 10,
        overshoot: float = 0.02,
        max_iter: int = 50,
        refine: bool = True,
        restarts: int = 3,
        box: bool = False,
        batch_size: int = 128,
        verbose: bool = False,
    ) -> None:
        """
        :param classifier: A trained ART ``PyTorchClassifier``.
        :param norm: 2 or ``np.inf``.
        :param candidates: Number of top classes by logit considered, the predicted one included.
        :param overshoot: Overshoot of the DeepFool iterate ``x + (1 + overshoot) r``.
        :param max_iter: DeepFool iterations per attempt.
        :param refine: Bisect back to the crossing (the smallest adversarial point on the segment).
        :param restarts: Noisy restarts for the samples where DeepFool fails.
        :param box: Keep the iterates inside the classifier's ``clip_values``.
        :param batch_size: Samples per batch.
        :param verbose: Show a progress bar.
        """
        super().__init__(estimator=classifier)
        self.norm = norm
        self.candidates = candidates
        self.overshoot = overshoot
        self.max_iter = max_iter
        self.refine = refine
        self.restarts = restarts
        self.box = box
        self.batch_size = batch_size
        self.verbose = verbose
        self.last_result: MarginResult | None = None
        self._check_params()

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """
        :param x: Inputs ``(N, *input_shape)``; not modified.
        :param y: Ignored: the attack leaves the region the model predicts (as ART's ``DeepFool``).
        :return: Adversarial examples, same shape and dtype as ``x``; ``x`` itself where the attack failed.
        """
        x_adv, result = craft(
            self.estimator, x, norm=self.norm, candidates=self.candidates, overshoot=self.overshoot,
            max_iter=self.max_iter, refine=self.refine, restarts=self.restarts, box=self.box,
            batch_size=self.batch_size, verbose=self.verbose,
        )
        self.last_result = result
        logger.info("DeepFoolMargin: success rate %.3f", float(result.success.mean()))
        return x_adv

    def _check_params(self) -> None:
        check_options(self.norm, self.candidates, self.overshoot, self.max_iter, self.restarts, self.batch_size)
        for name in ("refine", "box", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

"""
DeepFool margins as an ART evasion attack (ART 1.x ``art.attacks.EvasionAttack``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.attacks.attack import EvasionAttack
from art.estimators.classification.pytorch import PyTorchClassifier

from art_geometry.core.model import adapt
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import prepare
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.core.validation import check_bool, check_positive_int
from art_geometry.interop._common import craft
from art_geometry.margins import MarginResult

__all__ = ["DeepFoolMargin"]

logger = logging.getLogger(__name__)


def _is_old_option(value: Any) -> bool:
    """Whether a second positional argument is the old ``norm`` (anything but a settings object)."""
    return value is not None and not isinstance(value, DeepFoolSettings)


class DeepFoolMargin(EvasionAttack):
    """
    Minimal untargeted perturbations from :func:`art_geometry.margins.deepfool_margins`: batched DeepFool
    (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2) with the crossing refined by a bracketing search and noisy
    restarts, so the returned point lies just past the boundary of the region the model predicts at ``x``.

    ART's conventions: ``generate`` returns ``ART_NUMPY_DTYPE`` (float32) arrays, clipped into the classifier's
    ``clip_values`` (``box`` defaults to whether the classifier has them, as ART's own attacks clip), and each
    returned point is checked adversarial as returned, in float32, where :attr:`last_result` reports ``success``;
    ``x`` itself (in float32) where the attack failed. ``y`` is ignored, as by ART's ``DeepFool``. Every field of
    :class:`~art_geometry.DeepFoolSettings` is an attribute listed in ``attack_params``, so ``set_params(...)``
    works and validates (``AdversarialTrainer`` calls it); ``norm`` reads as ART's attacks spell it (``2.0``,
    ``np.inf``). ``minimal`` is ``True`` and can only be set to ``True``: DeepFool is minimal by construction, and
    ART's ``empirical_robustness`` sets it. Usable wherever ART takes an evasion attack, e.g.
    ``AdversarialTrainer(classifier, DeepFoolMargin(classifier))``,
    ``art.metrics.adversarial_accuracy(classifier, x, y, attack_crafter=DeepFoolMargin(classifier))`` or, registered
    in ``art.metrics.metrics.SUPPORTED_METHODS``, ``empirical_robustness(classifier, x, name)``.

    | Paper link: https://arxiv.org/abs/1511.04599
    """

    attack_params = EvasionAttack.attack_params + [*DeepFoolSettings.field_names(), "batch_size", "verbose", "minimal"]
    _estimator_requirements = (PyTorchClassifier,)

    @legacy_positional(
        "norm", "candidates", "overshoot", "max_iter", "refine", "restarts", "box", "batch_size", "verbose",
        after=2, when=_is_old_option,
    )
    def __init__(
        self,
        classifier: PyTorchClassifier,
        settings: DeepFoolSettings | None = None,
        *,
        batch_size: int = 128,
        verbose: bool = False,
        **options: Any,
    ) -> None:
        """
        :param classifier: A trained ART ``PyTorchClassifier`` whose preprocessing, if any, is ART's PyTorch
                           (differentiable) preprocessing; anything else is refused here.
        :param settings: A :class:`~art_geometry.DeepFoolSettings`, used as given; default: the defaults with
                         ``box`` = whether the classifier has ``clip_values``.
        :param batch_size: Samples per batch.
        :param verbose: Show a progress bar.
        :param options: Overrides of single settings fields (``norm=np.inf``, ``box=False`` for the unclipped
                        margins, ...).
        :raises EstimatorError: For an estimator other than a ``PyTorchClassifier`` (ART's check).
        :raises ValueError: For non-differentiable preprocessing, or an invalid option.
        """
        super().__init__(estimator=classifier)
        adapt(classifier)  # refuses non-differentiable preprocessing now rather than in generate
        if settings is None:
            settings = DeepFoolSettings(box=classifier.clip_values is not None)
        settings = DeepFoolSettings.build(settings, options)
        for name in DeepFoolSettings.field_names():
            setattr(self, name, getattr(settings, name))
        self.minimal = True
        self.batch_size = batch_size
        self.verbose = verbose
        self.last_result: MarginResult | None = None
        self._check_params()

    @property
    def settings(self) -> DeepFoolSettings:
        """The validated settings, rebuilt from the attributes by every ``set_params``."""
        return self._settings

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """
        :param x: Inputs ``(N, *input_shape)``, any real dtype; not modified.
        :param y: Ignored: the attack leaves the region the model predicts (as ART's ``DeepFool``).
        :return: Adversarial examples, float32 (``ART_NUMPY_DTYPE``), inside ``clip_values`` when ``box``; ``x``
                 (as float32) where the attack failed. The margins and success flags are in :attr:`last_result`.
        """
        prep = prepare(self.estimator, x)
        clip = self.estimator.clip_values if self._settings.box else None
        x_adv, result = craft(prep, self._settings, clip=clip, batch_size=self.batch_size, verbose=self.verbose)
        self.last_result = result
        logger.info("DeepFoolMargin: success rate %.3f", float(result.success.mean()))
        return x_adv

    def _check_params(self) -> None:
        """Rebuild the settings from the attributes (``set_params`` sets them first), validated there."""
        super()._check_params()
        settings = DeepFoolSettings.build(None, {name: getattr(self, name) for name in DeepFoolSettings.field_names()})
        if settings.box and self.estimator.clip_values is None:
            raise ValueError("box=True clips into the classifier's clip_values, but this classifier has none")
        check_positive_int(self.batch_size, "batch_size")
        check_bool(self.verbose, "verbose")
        if check_bool(self.minimal, "minimal") is not True:
            raise ValueError("minimal=False: DeepFoolMargin finds minimal perturbations by construction (DeepFool)")
        self._settings = settings
        self.norm = settings.p  # as ART's attacks spell it, whatever spelling was set

"""
DeepFool margins as a torchattacks attack. Needs torchattacks: ``pip install art-geometry[torchattacks]``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

try:
    from torchattacks.attack import Attack
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "art_geometry.interop.torchattacks needs torchattacks: pip install art-geometry[torchattacks]"
    ) from err

from art_geometry.core.model import adapt
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import prepare
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.core.validation import check_class_indices, check_images, check_in_bounds, check_positive_int
from art_geometry.interop._common import craft

__all__ = ["TorchattacksDeepFoolMargin"]

#: torchattacks' input range: every torchattacks attack takes and returns images in [0, 1].
_UNIT_BOX = (0.0, 1.0)


class _AttackLogits(nn.Module):
    """The attacked model as torchattacks sees it: ``attack.get_logits`` (normalisation included when set)."""

    def __init__(self, attack: Attack) -> None:
        super().__init__()
        self.model = attack.model
        self._attack = [attack]  # a list, so the attack is not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attack[0].get_logits(x)


def _is_old_option(value: Any) -> bool:
    """Whether a second positional argument is the old ``norm`` (anything but a settings object)."""
    return value is not None and not isinstance(value, DeepFoolSettings)


class TorchattacksDeepFoolMargin(Attack):
    """
    :func:`art_geometry.margins.deepfool_margins` as a torchattacks ``Attack``: ``adv = attack(images, labels)``.

    torchattacks' conventions, as ``torchattacks.DeepFool``: tensors in and out (numpy images are a
    ``TypeError``), untargeted, images in [0, 1] and kept there (``box`` defaults to ``True`` here), samples the
    model already misclassifies returned unchanged, the device taken from the model, normalisation through
    ``set_normalization_used(mean, std)`` (the attack then works on unnormalised images), and the model run in the
    train/eval modes ``Attack.__call__`` sets from ``set_model_training_mode(...)`` (eval by default). With
    batch-norm layers in training mode the samples of a batch are no longer independent and with dropout in
    training mode the model is random: the margins are then those of that model.

    :param model: A ``torch.nn.Module`` returning logits (anything else is a ``TypeError``).
    :param settings: A :class:`~art_geometry.DeepFoolSettings`, used as given; default: the defaults with
                     ``box=True``.
    :param batch_size: Samples per batch.
    :param options: Overrides of single settings fields (``norm=float("inf")``, ``box=False``, ...).
    """

    @legacy_positional(
        "norm", "candidates", "overshoot", "max_iter", "refine", "restarts", "box", "batch_size",
        after=2, when=_is_old_option,
    )
    def __init__(
        self, model: nn.Module, settings: DeepFoolSettings | None = None, *, batch_size: int = 128, **options: Any
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module (torchattacks attacks a module), got {type(model).__name__}; for an "
                "ART classifier pass classifier.model, or use art_geometry.interop.DeepFoolMargin"
            )
        super().__init__("DeepFoolMargin", model)
        self.settings = DeepFoolSettings.build(DeepFoolSettings(box=True) if settings is None else settings, options)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.supported_mode = ["default"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """
        :param images: ``(N, C, H, W)`` floating-point tensor in [0, 1] (torchattacks' input range, checked whatever
                       ``box``); not modified.
        :param labels: ``(N,)`` integer class indices.
        :return: Adversarial images on the attack's device, in the dtype of ``images``.
        :raises TypeError: For numpy or integer images, or non-integer labels.
        :raises ValueError: For NaN or inf images, or labels of the wrong shape or out of range.
        :raises OutOfBoundsError: For images outside [0, 1] (a ``ValueError``).
        """
        images = check_images(images, "images", tensor=True).detach().to(self.device)
        check_in_bounds(images, "images", _UNIT_BOX, "torchattacks' input range")
        view = replace(
            adapt(_AttackLogits(self)),
            clip_values=_UNIT_BOX if self.settings.box else None,
            eval_mode=not self._model_training,
        )
        prep = prepare(view, images, x_name="images")
        prep = replace(prep, labels=check_class_indices(labels, prep.n, prep.view.nb_classes, "labels"))
        x_adv, _ = craft(prep, self.settings, clip=view.clip_values, batch_size=self.batch_size, verbose=False,
                         keep_misclassified=True)
        return x_adv

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

from art_geometry._model import model_view
from art_geometry.interop._common import check_options, craft

__all__ = ["TorchattacksDeepFoolMargin"]


class _AttackLogits(nn.Module):
    """The attacked model as torchattacks sees it: ``attack.get_logits`` (normalisation included when set)."""

    def __init__(self, attack: Attack) -> None:
        super().__init__()
        self.model = attack.model
        self._attack = [attack]  # a list, so the attack is not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attack[0].get_logits(x)


class TorchattacksDeepFoolMargin(Attack):
    """
    :func:`art_geometry.margins.deepfool_margins` as a torchattacks ``Attack``: ``adv = attack(images, labels)``.

    Like ``torchattacks.DeepFool``: untargeted, images in [0, 1] (kept there unless ``box=False``), samples the
    model already misclassifies returned unchanged, normalisation through ``set_normalization_used(mean, std)``
    (the attack then works on unnormalised images, as every torchattacks attack).

    :param model: A ``torch.nn.Module`` returning logits.
    :param norm: 2 or ``float("inf")``.
    :param candidates: Number of top classes by logit considered, the predicted one included.
    :param overshoot: Overshoot of the iterate ``x + (1 + overshoot) r``.
    :param max_iter: DeepFool iterations per attempt.
    :param refine: Bisect back to the crossing.
    :param restarts: Noisy restarts for the samples where DeepFool fails.
    :param box: Keep the iterates inside [0, 1].
    :param batch_size: Samples per batch.
    """

    def __init__(
        self,
        model: nn.Module,
        norm: "int | float | str" = 2,
        candidates: int = 10,
        overshoot: float = 0.02,
        max_iter: int = 50,
        refine: bool = True,
        restarts: int = 3,
        box: bool = True,
        batch_size: int = 128,
    ) -> None:
        super().__init__("DeepFoolMargin", model)
        self.p = check_options(norm, candidates, overshoot, max_iter, restarts, batch_size)
        self.candidates = candidates
        self.overshoot = overshoot
        self.max_iter = max_iter
        self.refine = bool(refine)
        self.restarts = restarts
        self.box = bool(box)
        self.batch_size = batch_size
        self.supported_mode = ["default"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """
        :param images: ``(N, C, H, W)`` in [0, 1]; not modified.
        :param labels: ``(N,)`` class indices.
        :return: Adversarial images on the attack's device.
        """
        images = images.detach().clone().to(self.device)
        labels = labels.detach().clone().to(self.device)
        view = model_view(_AttackLogits(self), images)
        if self.box:
            view = replace(view, clip_values=(0.0, 1.0))
        x_adv, result = craft(
            view, images, norm=self.p, candidates=self.candidates, overshoot=self.overshoot, max_iter=self.max_iter,
            refine=self.refine, restarts=self.restarts, box=self.box, batch_size=self.batch_size,
        )
        wrong = torch.from_numpy(result.predictions).to(images.device) != labels
        return torch.where(wrong.reshape((-1,) + (1,) * (images.ndim - 1)), images, x_adv)

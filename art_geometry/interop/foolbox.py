"""
DeepFool margins as a foolbox 3 minimization attack. Needs foolbox: ``pip install art-geometry[foolbox]``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

try:
    import eagerpy as ep
    from foolbox.attacks.base import MinimizationAttack, T, get_criterion, raise_if_kwargs, verify_input_bounds
    from foolbox.criteria import Misclassification
    from foolbox.distances import l2, linf
    from foolbox.models import Model
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "art_geometry.interop.foolbox needs foolbox 3: pip install art-geometry[foolbox]"
    ) from err

from art_geometry.interop._common import check_options, craft

__all__ = ["DeepFoolMarginAttack"]


class DeepFoolMarginAttack(MinimizationAttack):
    """
    :func:`art_geometry.margins.deepfool_margins` as a foolbox ``MinimizationAttack``: batched DeepFool
    (Moosavi-Dezfooli et al., CVPR 2016) with the crossing refined by bisection and noisy restarts.

    Use it as any foolbox attack: ``raw, clipped, success = attack(fmodel, images, labels, epsilons=None)`` (or
    a list of epsilons). Untargeted only (``Misclassification``): samples the model already misclassifies are
    returned unchanged (distance 0); the others move just past the boundary of their predicted region. The
    iterates stay inside the model's ``bounds`` unless ``box=False``. ``early_stop`` is accepted and ignored:
    every sample already stops at its first crossing.

    :param norm: 2 (distance ``l2``) or ``np.inf`` (``linf``).
    :param candidates: Number of top classes by logit considered, the predicted one included.
    :param overshoot: Overshoot of the iterate ``x + (1 + overshoot) r``.
    :param max_iter: DeepFool iterations per attempt.
    :param refine: Bisect back to the crossing.
    :param restarts: Noisy restarts for the samples where DeepFool fails.
    :param box: Keep the iterates inside the model's bounds (foolbox's convention).
    :param batch_size: Samples per batch.
    """

    def __init__(
        self,
        *,
        norm: "int | float | str" = 2,
        candidates: int = 10,
        overshoot: float = 0.02,
        max_iter: int = 50,
        refine: bool = True,
        restarts: int = 3,
        box: bool = True,
        batch_size: int = 128,
    ) -> None:
        self.p = check_options(norm, candidates, overshoot, max_iter, restarts, batch_size)
        self.candidates = candidates
        self.overshoot = overshoot
        self.max_iter = max_iter
        self.refine = bool(refine)
        self.restarts = restarts
        self.box = bool(box)
        self.batch_size = batch_size

    @property
    def distance(self) -> Any:
        """foolbox's ``l2`` or ``linf``, matching ``norm``."""
        return l2 if self.p == 2 else linf

    def run(
        self,
        model: Model,
        inputs: T,
        criterion: Any,
        *,
        early_stop: Optional[float] = None,
        **kwargs: Any,
    ) -> T:
        """
        :param model: A foolbox ``PyTorchModel``.
        :param inputs: Images, in the model's bounds.
        :param criterion: Labels or ``foolbox.criteria.Misclassification``.
        :param early_stop: Ignored (see the class docstring).
        :return: The perturbed inputs, same type as ``inputs``.
        :raises ValueError: For a targeted criterion.
        """
        raise_if_kwargs(kwargs)
        x, restore_type = ep.astensor_(inputs)
        del inputs, kwargs
        verify_input_bounds(x, model)
        criterion_ = get_criterion(criterion)
        if not isinstance(criterion_, Misclassification):
            raise ValueError(f"DeepFoolMarginAttack is untargeted: it needs Misclassification, got {criterion_!r}")
        raw = x.raw
        if not isinstance(raw, torch.Tensor):
            raise TypeError(f"DeepFoolMarginAttack supports foolbox's PyTorchModel, got inputs of type {type(raw)}")
        labels = torch.as_tensor(criterion_.labels.raw).to(raw.device)
        x_adv, result = craft(
            model, raw, norm=self.p, candidates=self.candidates, overshoot=self.overshoot, max_iter=self.max_iter,
            refine=self.refine, restarts=self.restarts, box=self.box, batch_size=self.batch_size,
        )
        wrong = (torch.from_numpy(result.predictions).to(raw.device) != labels).reshape((-1,) + (1,) * (raw.ndim - 1))
        return restore_type(ep.astensor(torch.where(wrong, raw, x_adv)))

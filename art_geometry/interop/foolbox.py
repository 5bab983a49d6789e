"""
DeepFool margins as a foolbox 3 minimization attack. Needs foolbox: ``pip install art-geometry[foolbox]``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

try:
    import eagerpy as ep
    from foolbox.attacks.base import MinimizationAttack, T, get_criterion, raise_if_kwargs
    from foolbox.criteria import Misclassification
    from foolbox.distances import Distance
    from foolbox.models import Model
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "art_geometry.interop.foolbox needs foolbox 3: pip install art-geometry[foolbox]"
    ) from err

from art_geometry.core.model import adapt
from art_geometry.core.prepare import prepare
from art_geometry.core.settings import DeepFoolSettings
from art_geometry.core.validation import check_class_indices, check_images, check_positive_int
from art_geometry.interop._common import craft

__all__ = ["DeepFoolMarginAttack"]


def _criterion(criterion: Any, device: torch.device) -> Any:
    """
    :return: A foolbox criterion or labels tensor as given; numpy or list labels as an int64 tensor on ``device``.
    :raises TypeError: For ``None`` or another container.
    """
    if criterion is None:
        raise TypeError("labels are required: pass the labels (N,) or foolbox.criteria.Misclassification(labels)")
    if isinstance(criterion, (np.ndarray, list, tuple)):
        labels = np.asarray(criterion)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
        return torch.as_tensor(labels, device=device)
    return criterion


class DeepFoolMarginAttack(MinimizationAttack):
    """
    :func:`art_geometry.margins.deepfool_margins` as a foolbox ``MinimizationAttack``: batched DeepFool
    (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2) with the crossing refined by a bracketing search and noisy
    restarts.

    Use it as any foolbox attack: ``raw, clipped, success = attack(fmodel, images, labels, epsilons=None)`` (or
    a list of epsilons). foolbox's conventions: untargeted only (``Misclassification``; another criterion is an
    "unsupported criterion" ``ValueError``, unknown keyword arguments a ``TypeError``), samples the model already
    misclassifies returned unchanged (distance 0), the others moved just past the boundary of their predicted
    region, in the inputs' dtype (float32, float64, ...), inside the model's ``bounds`` (``box`` defaults to
    ``True`` here). The inputs and labels are checked with messages where foolbox asserts: NaN or inf, values
    outside ``bounds`` or integer inputs, and labels that are not ``(N,)`` integer class indices in range. Only
    foolbox's ``PyTorchModel`` is supported. ``early_stop`` is accepted and ignored: every sample already stops at
    its first crossing.

    :param settings: A :class:`~art_geometry.DeepFoolSettings`, used as given; default: the defaults with
                     ``box=True``.
    :param batch_size: Samples per batch.
    :param options: Overrides of single settings fields (``norm=np.inf``, ``candidates=5``, ...).
    """

    def __init__(self, settings: DeepFoolSettings | None = None, *, batch_size: int = 128, **options: Any) -> None:
        self.settings = DeepFoolSettings.build(DeepFoolSettings(box=True) if settings is None else settings, options)
        self.batch_size = check_positive_int(batch_size, "batch_size")

    @property
    def distance(self) -> Distance:
        """foolbox's ``l2`` or ``linf``, matching ``norm``."""
        return self.settings.norm.foolbox()

    def __call__(  # type: ignore[override]
        self,
        model: Model,
        inputs: T,
        criterion: Any,
        *,
        epsilons: Union[Sequence[Union[float, None]], float, None],
        **kwargs: Any,
    ) -> Any:
        """
        foolbox's ``MinimizationAttack.__call__``, with the inputs checked first (foolbox asserts on them without
        a message, before :meth:`run`).

        Labels given as a numpy array or a list of ints are taken as a tensor on the inputs' device (foolbox itself
        needs a tensor of the inputs' framework).

        :return: ``(raw, clipped, success)`` as foolbox returns them.
        :raises TypeError: For integer inputs, inputs of a dtype the model cannot run on (foolbox evaluates the
                           model on the inputs as given, without casting), or no labels.
        :raises ValueError: For NaN or inf inputs, an empty ``epsilons``.
        :raises OutOfBoundsError: For inputs outside the model's bounds (a ``ValueError`` and the
                                  ``AssertionError`` of foolbox's contract).
        """
        raw = check_images(ep.astensor(inputs).raw, "inputs", bounds=model.bounds, tensor=True)
        if isinstance(epsilons, Sequence) and len(epsilons) == 0:
            raise ValueError("epsilons is empty: pass None (the minimal perturbations) or one or more budgets")
        criterion = _criterion(criterion, raw.device)
        dtype = adapt(model).dtype
        if raw.dtype != dtype:
            try:
                with torch.no_grad():
                    model(raw[:1])
            except RuntimeError as err:
                raise TypeError(
                    f"inputs are {raw.dtype} but the model computes in {dtype}, and foolbox evaluates the model on "
                    f"the inputs as given: pass inputs.to({dtype})"
                ) from err
        return super().__call__(model, inputs, criterion, epsilons=epsilons, **kwargs)

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
        :param inputs: Floating-point images inside the model's bounds.
        :param criterion: Labels ``(N,)`` or ``foolbox.criteria.Misclassification``.
        :param early_stop: Ignored (see the class docstring).
        :return: The perturbed inputs, same type and dtype as ``inputs``.
        :raises TypeError: For unknown keyword arguments, non-tensor or integer inputs, non-integer labels.
        :raises ValueError: For a targeted criterion, bad input values, labels of the wrong shape or out of range.
        """
        raise_if_kwargs(kwargs)
        x, restore_type = ep.astensor_(inputs)
        del inputs, kwargs
        criterion_ = get_criterion(criterion)
        if not isinstance(criterion_, Misclassification):
            raise ValueError(
                f"unsupported criterion {criterion_!r}: DeepFoolMarginAttack is untargeted (Misclassification)"
            )
        raw = check_images(x.raw, "inputs", bounds=model.bounds, tensor=True)
        prep = prepare(model, raw, x_name="inputs")
        labels = check_class_indices(criterion_.labels.raw, prep.n, prep.view.nb_classes, "labels")
        prep = replace(prep, labels=labels)
        clip = prep.view.clip_values if self.settings.box else None
        x_adv, _ = craft(prep, self.settings, clip=clip, batch_size=self.batch_size, verbose=False,
                         keep_misclassified=True)
        return restore_type(ep.astensor(x_adv))

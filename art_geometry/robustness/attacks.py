"""
The attacks behind the robustness measurements, none reimplemented: the named ones are ART's
(``FastGradientMethod``, ``BasicIterativeMethod``, ``ProjectedGradientDescentPyTorch``, ``AutoAttack``), built from an
:class:`~art_geometry.AttackSettings`; any ART ``EvasionAttack`` or torchattacks ``Attack`` instance is taken as
it is. :func:`resolve_attack` turns the ``attack=`` argument and the settings into one :class:`AttackSpec`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from torch import nn

from art_geometry.core.model import ModelView, model_view
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.rng import resolve_seed
from art_geometry.core.settings import NAMED_ATTACKS, AttackSettings

__all__ = [
    "ATTACKS",
    "AttackSpec",
    "resolve_attack",
    "is_attack_instance",
    "is_torchattacks",
    "build_art_attack",
    "art_estimator",
    "art_classifier",
    "torch_module",
]

#: Attacks known by name, and the norms each supports (as floats: 1.0, 2.0, inf).
ATTACKS: dict[str, tuple[float, ...]] = {name: tuple(n.p for n in norms) for name, norms in NAMED_ATTACKS.items()}


def _fgsm(estimator: Any, s: AttackSettings, batch_size: int, verbose: bool) -> EvasionAttack:
    from art.attacks.evasion import FastGradientMethod

    return FastGradientMethod(estimator, norm=s.norm.art, eps=s.eps, eps_step=s.step, batch_size=batch_size)


def _bim(estimator: Any, s: AttackSettings, batch_size: int, verbose: bool) -> EvasionAttack:
    from art.attacks.evasion import BasicIterativeMethod

    return BasicIterativeMethod(
        estimator, eps=s.eps, eps_step=s.step, max_iter=s.max_iter, batch_size=batch_size, verbose=verbose
    )


def _pgd(estimator: Any, s: AttackSettings, batch_size: int, verbose: bool) -> EvasionAttack:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    return ProjectedGradientDescentPyTorch(
        estimator, norm=s.norm.art, eps=s.eps, eps_step=s.step, max_iter=s.max_iter, num_random_init=1,
        batch_size=batch_size, verbose=verbose,
    )


def _autoattack(estimator: Any, s: AttackSettings, batch_size: int, verbose: bool) -> EvasionAttack:
    from art.attacks.evasion import AutoAttack

    return AutoAttack(estimator, norm=s.norm.art, eps=s.eps, eps_step=s.step, batch_size=batch_size)


#: The named-attack registry: how each name of :data:`art_geometry.core.settings.NAMED_ATTACKS` is built with ART.
_BUILDERS: dict[str, Callable[[Any, AttackSettings, int, bool], EvasionAttack]] = {
    "fgsm": _fgsm,
    "bim": _bim,
    "pgd": _pgd,
    "autoattack": _autoattack,
}


def build_art_attack(estimator: Any, settings: AttackSettings, batch_size: int, verbose: bool) -> EvasionAttack:
    """
    :param estimator: The ART classifier to attack (:func:`art_estimator`).
    :param settings: The named attack's settings.
    :param batch_size: ART's batch size.
    :param verbose: ART's progress bars (BIM, PGD).
    :return: The ART attack.
    """
    return _BUILDERS[settings.attack](estimator, settings, batch_size, verbose)


def is_torchattacks(attack: Any) -> bool:
    """
    :return: Whether ``attack`` is an instance of a torchattacks ``Attack`` class or of a subclass of one (such as
             :class:`~art_geometry.interop.TorchattacksDeepFoolMargin`), recognised without importing torchattacks.
    """
    return callable(attack) and any(c.__module__.startswith("torchattacks.") for c in type(attack).__mro__)


def is_attack_instance(attack: Any) -> bool:
    """:return: Whether ``attack`` is an ART ``EvasionAttack`` or a torchattacks ``Attack`` instance."""
    return isinstance(attack, EvasionAttack) or is_torchattacks(attack)


def _instance_norm(attack: Any, norm: Norm) -> Norm:
    """The norm an instance's perturbations are measured in: an ART attack's own ``norm``, else ``norm``."""
    if isinstance(attack, EvasionAttack) and hasattr(attack, "norm"):
        return Norm.parse(attack.norm, (L1, L2, LINF), name=f"{type(attack).__name__}.norm")
    return norm


@dataclass(frozen=True)
class AttackSpec:
    """
    The attack of one call: the named attack of ``settings``, or an attack ``instance`` (whose budget is its own;
    of the settings only ``norm`` and ``seed`` apply), with the seed drawn for ``seed=None``.

    :param settings: The settings.
    :param seed: The seed the attack runs under.
    :param instance: An ART ``EvasionAttack`` or torchattacks ``Attack``, or ``None`` for the named attack.
    """

    settings: AttackSettings
    seed: int
    instance: Any = None

    @property
    def name(self) -> str:
        """The attack's name, or the class name of the instance."""
        return self.settings.attack if self.instance is None else type(self.instance).__name__

    @property
    def norm(self) -> Norm:
        """The norm the perturbations are measured in."""
        return self.settings.norm if self.instance is None else _instance_norm(self.instance, self.settings.norm)

    @property
    def eps(self) -> float:
        """The budget; ``NaN`` for an instance."""
        return self.settings.eps if self.instance is None else math.nan

    @property
    def runs(self) -> bool:
        """Whether an attack runs at all (not for a named attack at ``eps = 0``, where ``x' = x``)."""
        return self.instance is not None or self.settings.eps > 0

    @property
    def needs_estimator(self) -> bool:
        """Whether an ART classifier must be built (a named attack that runs)."""
        return self.instance is None and self.settings.eps > 0

    def at(self, eps: float) -> "AttackSpec":
        """:return: The named attack with budget ``eps`` (same seed)."""
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, eps=eps), instance=None)

    def with_instance(self, instance: Any) -> "AttackSpec":
        """:return: The same settings and seed with ``instance`` as the attack (checked)."""
        return dataclasses.replace(self, instance=_check_instance(instance))

    def params(self, batch_size: int) -> dict[str, Any]:
        """:return: The settings that applied (the seed drawn) and the batch size, JSON-safe."""
        if self.instance is None:
            return {**self.settings.to_dict(), "seed": self.seed, "batch_size": batch_size}
        return {"attack": self.name, "norm": self.norm.to_json(), "seed": self.seed, "batch_size": batch_size}


def _check_instance(attack: Any) -> Any:
    if not is_attack_instance(attack):
        raise TypeError(
            f"attack must be one of {', '.join(ATTACKS)}, an ART EvasionAttack or a torchattacks Attack; "
            f"got {type(attack).__name__}"
        )
    if getattr(attack, "targeted", False):
        raise ValueError("attack is targeted, which does not measure robust accuracy: pass an untargeted attack")
    return attack


def resolve_attack(attack: Any, settings: "AttackSettings | None", options: Mapping[str, Any]) -> AttackSpec:
    """
    :param attack: ``None`` (the settings' attack), a name, or an ART / torchattacks attack instance.
    :param settings: An :class:`~art_geometry.AttackSettings`, or ``None`` for the defaults.
    :param options: Overrides of single settings fields (``eps``, ``norm``, ``eps_step``, ``max_iter``, ``seed``);
                    with an instance they are validated, and only ``norm`` and ``seed`` apply.
    :return: The attack of the call, its seed drawn.
    :raises TypeError: For any other ``attack``, a ``settings`` of another type or an unknown option.
    :raises ValueError: For an unknown name, a bad setting, or a targeted instance.
    """
    if attack is None or isinstance(attack, str):
        overrides = dict(options) if attack is None else {**options, "attack": attack}
        built = AttackSettings.build(settings, overrides)
        return AttackSpec(settings=built, seed=resolve_seed(built.seed))
    instance = _check_instance(attack)
    built = AttackSettings.build(settings, options)
    return AttackSpec(settings=built, seed=resolve_seed(built.seed), instance=instance)


class _ViewModule(nn.Module):
    """
    A ``ModelView`` as an ``nn.Module``: the user's model behind its preprocessing, in the user's input space. Inputs
    are cast to the model's dtype (differentiably), since ART's attacks feed float32 whatever the model's dtype.
    """

    def __init__(self, view: ModelView):
        super().__init__()
        self.inner = view.module
        self._view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._view(x.to(self._view.dtype))


def torch_module(classifier: Any, x: "np.ndarray | torch.Tensor | None" = None) -> nn.Module:
    """
    The classifier as a plain ``nn.Module`` from the user's input space to logits (preprocessing included), for
    building torchattacks attacks: ``torchattacks.PGD(torch_module(clf), eps=8/255)``.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module``.
    :param x: Example inputs (needed for a plain module or foolbox model).
    :return: A module sharing the user's parameters (its mode is the user's module's mode).
    """
    view = model_view(classifier, x)
    return view.module if view.preprocess is None else _ViewModule(view)


def art_estimator(classifier: Any, view: ModelView, sample_shape: tuple[int, ...], stacklevel: int = 3) -> Any:
    """
    :param classifier: The user's classifier.
    :param view: Its view, with the classes known.
    :param sample_shape: The shape of one input sample (a plain module declares none).
    :param stacklevel: Of the clip-values warning (so that it points at the user's call).
    :return: ``classifier`` itself when it is an ART ``PyTorchClassifier``, else one wrapping the view with
             cross-entropy loss on its device; its clip values come from the foolbox bounds, or default to
             ``(0, 1)`` with a warning for a plain module.
    """
    from art.estimators.classification import PyTorchClassifier

    if isinstance(classifier, PyTorchClassifier):
        return classifier
    clip = view.clip_values
    if clip is None:
        warnings.warn(
            "the model declares no valid input range: assuming clip_values=(0, 1)", UserWarning, stacklevel=stacklevel
        )
        clip = (0.0, 1.0)
    return PyTorchClassifier(
        model=_ViewModule(view),
        loss=nn.CrossEntropyLoss(),
        input_shape=view.input_shape if view.input_shape is not None else tuple(sample_shape),
        nb_classes=view.nb_classes,
        clip_values=clip,
        device_type="cpu" if view.device.type == "cpu" else "gpu",
    )


def art_classifier(classifier: Any, x: "np.ndarray | torch.Tensor | None" = None) -> Any:
    """
    The classifier as an ART ``PyTorchClassifier`` (returned as is when it already is an ART classifier).

    A plain module or foolbox model is wrapped with cross-entropy loss on its device; its clip values come from the
    foolbox bounds, or default to ``(0, 1)`` with a warning for a plain module.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module``.
    :param x: Example inputs (needed for a plain module or foolbox model).
    :return: The ART classifier.
    """
    view = model_view(classifier, x)
    return art_estimator(classifier, view, () if x is None else tuple(int(s) for s in x.shape[1:]))

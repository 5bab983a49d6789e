"""
Robust accuracy through the host libraries' attacks (none reimplemented here): ART's ``FastGradientMethod``,
``BasicIterativeMethod``, ``ProjectedGradientDescentPyTorch`` and ``AutoAttack`` by name, configured by an
:class:`~art_geometry.AttackSettings`, any ART ``EvasionAttack`` instance, or any torchattacks ``Attack``
instance; over a range of budgets; split by activation-region inclusion and by a vanishing input gradient (the
PRS paper's analyses).

* :mod:`.results`: the result objects;
* :mod:`.attacks`: the named-attack registry, building ART attacks, recognising ART / torchattacks instances;
* :mod:`.metrics`: :func:`robust_accuracy`, :func:`robustness_curve`, :func:`inclusion_robustness`,
  :func:`zero_gradient_analysis` (definitions in its docstring).
"""

from art_geometry.core.settings import AttackSettings
from art_geometry.robustness.attacks import ATTACKS, art_classifier, torch_module
from art_geometry.robustness.metrics import (
    inclusion_robustness,
    robust_accuracy,
    robustness_curve,
    zero_gradient_analysis,
)
from art_geometry.robustness.results import (
    InclusionRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
    ZeroGradientResult,
)

__all__ = [
    "ATTACKS",
    "AttackSettings",
    "RobustnessResult",
    "RobustnessCurve",
    "InclusionRobustnessResult",
    "ZeroGradientResult",
    "robust_accuracy",
    "robustness_curve",
    "inclusion_robustness",
    "zero_gradient_analysis",
    "art_classifier",
    "torch_module",
]

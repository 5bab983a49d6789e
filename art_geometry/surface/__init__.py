"""
Decision surfaces in input space and the loss surface in parameter space.

From "Interpreting Adversarial Robustness: A View from Decision Surface in Input Space" (Yu, Liu, Wang, Chen; ICLR
2019 submission, arXiv:1810.00144). The decision function of a sample with label ``t`` on the logits ``Z`` is

    L(x) = Z_t(x) - max_{i != t} Z_i(x)                                                       (paper, Sec. 4)

positive where the classifier predicts ``t`` and zero on the decision boundary. The paper draws ``L`` on 2-D planes
``x + a * alpha + b * beta`` spanned by two unit directions -- random, or an adversarial direction ``beta`` (the sign
of the gradient of an attack objective) with a random ``alpha`` orthogonal to it -- and contrasts it with the loss
surface in parameter space (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"), which it finds says
little about adversarial robustness.

Every grid is evaluated in large batched passes: all ``R * R`` points of all samples are streamed through the model
in chunks of ``batch_size``, with the decision function and the cross-entropy computed from the same logits.
"""

from art_geometry.surface.function import decision_function
from art_geometry.surface.parameters import ParameterSurfaceResult, parameter_loss_surface
from art_geometry.surface.planes import SurfaceResult, decision_surface

__all__ = [
    "SurfaceResult",
    "ParameterSurfaceResult",
    "decision_function",
    "decision_surface",
    "parameter_loss_surface",
]

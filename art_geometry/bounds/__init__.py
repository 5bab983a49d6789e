"""
Certified lower bounds beside the DeepFool margins: per sample a bracket ``lower <= distance <= upper`` of the
distance to the boundary of the predicted region (:func:`margin_bounds`, in :mod:`~art_geometry.bounds.brackets`),
by exact MILP (:mod:`~art_geometry.bounds.milp`), CROWN (:mod:`~art_geometry.bounds.crown`) or a Lipschitz bound
(:mod:`~art_geometry.bounds.lipschitz`), over the network read by :mod:`~art_geometry.bounds._network`.
"""

from art_geometry.bounds._network import UnsupportedModelError
from art_geometry.bounds.accuracy import RobustAccuracyBoundsResult, robust_accuracy_bounds
from art_geometry.bounds.brackets import MarginBoundsResult, margin_bounds
from art_geometry.core.settings import BoundsSettings

__all__ = [
    "BoundsSettings",
    "MarginBoundsResult",
    "margin_bounds",
    "UnsupportedModelError",
    "RobustAccuracyBoundsResult",
    "robust_accuracy_bounds",
]

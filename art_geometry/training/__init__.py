"""
Training and geometry over training: the Jacobian-regularised ART trainer with its history and callbacks, and the
tracker that measures accuracy, regions, margins and robustness at chosen epochs.
"""

from art_geometry.training.tracker import METRICS, GeometryTracker, fit_tracked, transitions
from art_geometry.training.trainer import JacobianRegularizedTrainer, TrainingCallback, TrainingHistory

__all__ = [
    "JacobianRegularizedTrainer",
    "TrainingHistory",
    "TrainingCallback",
    "GeometryTracker",
    "fit_tracked",
    "METRICS",
    "transitions",
]

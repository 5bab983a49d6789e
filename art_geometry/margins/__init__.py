"""
Distances to the decision boundary: batched DeepFool (L2 and L-inf), optionally inside a subspace or a box, with the
crossing refinement, seeded restarts and the boundary stage; one module per stage (docs/architecture.md).
"""

from art_geometry.margins.measure import deepfool_margins, margin_metric
from art_geometry.margins.results import MarginResult, SubspaceMarginResult
from art_geometry.margins.subspace import subspace_margins

__all__ = ["MarginResult", "SubspaceMarginResult", "deepfool_margins", "subspace_margins", "margin_metric"]

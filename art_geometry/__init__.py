"""
art-geometry: decision-region and decision-boundary geometry for the Adversarial Robustness Toolbox (PyTorch).

Every public function takes the classifier first (ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or
``torch.nn.Module``), numpy arrays or torch tensors, and returns result objects of per-sample numpy arrays with
``summary()`` and ``to_dict()``. See ``docs/`` for the formulas and papers.
"""

from art_geometry._model import LayerRef, ModelView, model_view
from art_geometry.regions import (
    InclusionResult,
    LayerwisePRSResult,
    PRSResult,
    SimilarityResult,
    SparsityResult,
    feature_sparsity,
    final_layer_similarity,
    inclusion_ratio,
    layerwise_prs,
    populated_region_set,
    prs_ratio,
)

__version__ = "0.1.0"

__all__ = [
    "LayerRef",
    "ModelView",
    "model_view",
    "InclusionResult",
    "LayerwisePRSResult",
    "PRSResult",
    "SimilarityResult",
    "SparsityResult",
    "feature_sparsity",
    "final_layer_similarity",
    "inclusion_ratio",
    "layerwise_prs",
    "populated_region_set",
    "prs_ratio",
]

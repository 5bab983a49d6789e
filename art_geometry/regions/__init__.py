"""
Decision regions of ReLU networks (Populated Region Set paper): the PRS ratio and region set, the inclusion ratio,
layer-wise PRS, final-layer similarity and feature sparsity.
"""

from art_geometry.regions.prs import inclusion_ratio, layerwise_prs, populated_region_set, prs_ratio
from art_geometry.regions.results import (
    InclusionResult,
    LayerwisePRSResult,
    PRSResult,
    SimilarityResult,
    SparsityResult,
)
from art_geometry.regions.similarity import final_layer_similarity
from art_geometry.regions.sparsity import feature_sparsity

__all__ = [
    "PRSResult",
    "InclusionResult",
    "LayerwisePRSResult",
    "SimilarityResult",
    "SparsityResult",
    "populated_region_set",
    "prs_ratio",
    "inclusion_ratio",
    "layerwise_prs",
    "final_layer_similarity",
    "feature_sparsity",
]

"""
art-geometry: decision-region and decision-boundary geometry for the Adversarial Robustness Toolbox (PyTorch).

Every public function takes the classifier first (ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or
``torch.nn.Module``), numpy arrays or torch tensors, and returns result objects of per-sample numpy arrays with
``summary()`` and ``to_dict()``. See ``docs/`` for the formulas and papers. The attack wrappers for ART, foolbox
and torchattacks live in :mod:`art_geometry.interop` (imported on first use).
"""

from art_geometry.bounds import MarginBoundsResult, margin_bounds
from art_geometry.bounds import RobustAccuracyBoundsResult, robust_accuracy_bounds
from art_geometry.core.model import LayerRef, ModelView, model_view
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.rng import seeded
from art_geometry.core.settings import AttackSettings, BoundsSettings, DeepFoolSettings, HessianSettings
from art_geometry.core.version import __version__ as __version__
from art_geometry.indicators import (
    HessianResult,
    IndicatorResult,
    JacobianResult,
    hessian_eigenvalues,
    jacobian_stats,
    robustness_indicator,
)
from art_geometry.margins import MarginResult, SubspaceMarginResult, deepfool_margins, margin_metric, subspace_margins
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
from art_geometry.robustness import (
    ATTACKS,
    InclusionRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
    ZeroGradientResult,
    inclusion_robustness,
    robust_accuracy,
    robustness_curve,
    zero_gradient_analysis,
)
from art_geometry.subspaces import Subspace, dct_subspaces, direction, orthogonal_complement, random_subspace, span
from art_geometry.subspaces.spectral import DCTTransform, dct2, dct_flip, high_pass, idct2, low_pass, transform_dataset
from art_geometry.surface import (
    ParameterSurfaceResult,
    SurfaceResult,
    decision_function,
    decision_surface,
    parameter_loss_surface,
)
from art_geometry.training import (
    GeometryTracker,
    JacobianRegularizedTrainer,
    TrainingCallback,
    TrainingHistory,
    fit_tracked,
    transitions,
)

__all__ = [
    # adapter
    "LayerRef",
    "ModelView",
    "model_view",
    # settings and norms
    "AttackSettings",
    "BoundsSettings",
    "HessianSettings",
    "DeepFoolSettings",
    "Norm",
    "L1",
    "L2",
    "LINF",
    "seeded",
    # regions
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
    # margins and subspaces
    "MarginResult",
    "SubspaceMarginResult",
    "deepfool_margins",
    "margin_metric",
    "subspace_margins",
    "MarginBoundsResult",
    "margin_bounds",
    "RobustAccuracyBoundsResult",
    "robust_accuracy_bounds",
    "Subspace",
    "dct_subspaces",
    "direction",
    "orthogonal_complement",
    "random_subspace",
    "span",
    "DCTTransform",
    "dct2",
    "idct2",
    "dct_flip",
    "high_pass",
    "low_pass",
    "transform_dataset",
    # surface and indicators
    "ParameterSurfaceResult",
    "SurfaceResult",
    "decision_function",
    "decision_surface",
    "parameter_loss_surface",
    "HessianResult",
    "IndicatorResult",
    "JacobianResult",
    "hessian_eigenvalues",
    "jacobian_stats",
    "robustness_indicator",
    # training and robustness
    "JacobianRegularizedTrainer",
    "TrainingCallback",
    "TrainingHistory",
    "GeometryTracker",
    "fit_tracked",
    "transitions",
    "ATTACKS",
    "InclusionRobustnessResult",
    "RobustnessCurve",
    "RobustnessResult",
    "ZeroGradientResult",
    "inclusion_robustness",
    "robust_accuracy",
    "robustness_curve",
    "zero_gradient_analysis",
]

"""
Figures for the region metrics (PRS paper): layer-wise PRS ratio (Fig. 2a) and the final-layer cosine similarity
matrices (Fig. 7-8). They take plain arrays (``result.ratios``, ``result.matrix``) so that they draw from results
and from a saved ``report.json`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["plot_layerwise_prs", "plot_similarity"]


def plot_layerwise_prs(ratios: Mapping[str, Sequence[float]]):
    """
    :param ratios: PRS ratio per ReLU layer (``LayerwisePRSResult.ratios``), by model name.
    :return: A figure: PRS ratio against layer depth, one line per model.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, values in ratios.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("ReLU layer (depth)")
    ax.set_ylabel("PRS ratio")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_similarity(matrices: Mapping[str, np.ndarray]):
    """
    :param matrices: Final-layer cosine-similarity matrices (``SimilarityResult.matrix``), by model name.
    :return: A figure: one heatmap per model, titled with its mean off-diagonal similarity.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.2), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        m = np.asarray(matrix, dtype=float)
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="coolwarm")
        ax.set_title(f"{name}\nmean off-diag {m[~np.eye(len(m), dtype=bool)].mean():.3f}", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("class")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return fig

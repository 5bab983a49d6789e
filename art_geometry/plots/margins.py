"""
Figures for the margin metrics: the margin distribution along each subspace, low to high frequency ("Hold me
tight!", Ortiz-Jimenez et al., NeurIPS 2020, Fig. 2), and histograms of the margins of correctly and incorrectly
classified samples.

classified samples; and, for comparing models, the margin distributions of several models on one axis
(empirical CDFs) and their per-subspace medians with interquartile bands on one axis.

They take result objects (:class:`~art_geometry.MarginResult`, :class:`~art_geometry.SubspaceMarginResult`), or
mappings of them by model name; a saved ``report.json`` is read back into one with ``MarginResult.from_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["plot_margin_distributions", "plot_margin_histogram", "plot_subspace_margins", "plot_subspace_medians"]


def _norm_label(norm: Any) -> str:
    return "L-inf" if float(norm) == float("inf") else "L2"


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_subspace_margins(result: Any, ax: Any = None, *, seed: int = 0):
    """
    :param result: A :class:`~art_geometry.margins.SubspaceMarginResult` (``margins`` and ``success``
                   ``(S, N)``, ``names``, ``norm``), subspaces ordered low to high frequency.
    :param ax: Axes to draw on; default a new figure.
    :param seed: Seed of the horizontal jitter of the points.
    :return: The figure: one scatter of every finite margin (jittered around its subspace index) and one line
             through the per-subspace medians; failures (``inf``) are counted in the title.
    """
    margins = np.asarray(result.margins, dtype=np.float64)
    success = np.asarray(result.success, dtype=bool)
    s, n = margins.shape
    fig, ax = _axes(ax, (7.0, 3.6))
    ok = success & np.isfinite(margins)
    cols = np.broadcast_to(np.arange(s)[:, None], (s, n))
    jitter = np.random.default_rng(seed).uniform(-0.25, 0.25, size=(s, n))
    ax.scatter((cols + jitter)[ok], margins[ok], s=4, alpha=0.25, color="tab:blue", label="samples")
    medians = np.array([np.median(margins[j][ok[j]]) if ok[j].any() else np.nan for j in range(s)])
    ax.plot(np.arange(s), medians, color="tab:red", marker="o", markersize=3, label="median")
    ax.set_xticks(np.arange(s))
    ax.set_xticklabels([str(j) for j in range(s)], fontsize=7)
    ax.set_xlabel("subspace (low → high frequency)")
    ax.set_ylabel(f"{_norm_label(getattr(result, 'norm', 2))} margin")
    failed = int((~ok).sum())
    ax.set_title(f"margin per subspace ({n} samples, {failed} failed)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_margin_histogram(result: Any, bins: int = 30, ax: Any = None):
    """
    :param result: A :class:`~art_geometry.margins.MarginResult` (``margins``, ``success``, ``correct``,
                   ``norm``).
    :param bins: Number of bins, shared by both groups.
    :param ax: Axes to draw on; default a new figure.
    :return: The figure: one step histogram of the finite margins per non-empty group (correctly / incorrectly
             classified), labelled with its size and median.
    """
    margins = np.asarray(result.margins, dtype=np.float64)
    ok = np.asarray(result.success, dtype=bool) & np.isfinite(margins)
    correct = np.asarray(result.correct, dtype=bool)
    fig, ax = _axes(ax, (5.5, 3.4))
    finite = margins[ok]
    edges = np.histogram_bin_edges(finite if finite.size else np.zeros(1), bins=bins)
    for mask, label, color in ((correct, "correct", "tab:green"), (~correct, "incorrect", "tab:red")):
        values = margins[ok & mask]
        if values.size:
            ax.hist(values, bins=edges, histtype="step", color=color, linewidth=1.5,
                    label=f"{label} (n={values.size}, median {np.median(values):.3g})")
    ax.set_xlabel(f"{_norm_label(getattr(result, 'norm', 2))} margin")
    ax.set_ylabel("samples")
    ax.set_title(f"margins ({int((~ok).sum())} failed)", fontsize=9)
    if finite.size:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _finite(result: Any) -> np.ndarray:
    """:return: The successful, finite margins of a result."""
    margins = np.asarray(result.margins, dtype=np.float64)
    return margins[np.asarray(result.success, dtype=bool) & np.isfinite(margins)]


def plot_margin_distributions(results: Mapping[str, Any], ax: Any = None) -> Any:
    """
    Empirical CDFs of the margins of several models on one axis: at margin ``r``, the fraction of the samples
    whose boundary is closer than ``r`` (the samples an attack of budget ``r`` can move), failures counting as
    never reached. Curves further right belong to models whose boundaries are further away.

    :param results: :class:`~art_geometry.margins.MarginResult` by model name, in one norm, on the same samples.
    :param ax: Axes to draw on; default a new figure.
    :return: The figure, one step line per model labelled with its median.
    :raises ValueError: When ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: pass at least one model's margins")
    fig, ax = _axes(ax, (6.0, 3.6))
    for name, result in results.items():
        values = np.sort(_finite(result))
        n = len(np.asarray(result.margins))
        median = f"{np.median(values):.3g}" if values.size else "-"
        ax.step(np.concatenate([[0.0], values]), np.arange(values.size + 1) / n, where="post",
                label=f"{name} (median {median})")
    norm = _norm_label(getattr(next(iter(results.values())), "norm", 2))
    ax.set_xlabel(f"{norm} margin r")
    ax.set_ylabel("fraction of samples with margin <= r")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_subspace_medians(results: Mapping[str, Any], ax: Any = None) -> Any:
    """
    Per-subspace median margin of several models on one axis, with a band from the 25th to the 75th percentile
    of each subspace's finite margins ("Hold me tight!", Fig. 2, models overlaid).

    :param results: :class:`~art_geometry.margins.SubspaceMarginResult` by model name, on the same subspaces.
    :param ax: Axes to draw on; default a new figure.
    :return: The figure, one line and band per model.
    :raises ValueError: When ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: pass at least one model's subspace margins")
    fig, ax = _axes(ax, (7.0, 3.6))
    for name, result in results.items():
        margins = np.asarray(result.margins, dtype=np.float64)
        ok = np.asarray(result.success, dtype=bool) & np.isfinite(margins)
        q = np.array([np.percentile(m[k], [25, 50, 75]) if k.any() else [np.nan] * 3 for m, k in zip(margins, ok)])
        steps = np.arange(len(margins))
        line = ax.plot(steps, q[:, 1], marker="o", markersize=3, label=name)[0]
        ax.fill_between(steps, q[:, 0], q[:, 2], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("subspace (low → high frequency)")
    ax.set_ylabel(f"{_norm_label(getattr(next(iter(results.values())), 'norm', 2))} margin (median, IQR band)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig

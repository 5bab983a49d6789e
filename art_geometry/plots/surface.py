"""
Figures of decision surfaces (Yu et al. 2019, Fig. 3-6): contour maps with the ``L = 0`` decision boundary and
the original point, 3-D surfaces, and two models side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from art_geometry.surface import SurfaceResult

__all__ = ["plot_surface_contour", "plot_surface_3d", "plot_surface_comparison"]


def _check_index(result: SurfaceResult, index: int) -> None:
    if not 0 <= index < len(result.labels):
        raise IndexError(f"index {index} out of range for a surface of {len(result.labels)} sample(s)")


def _axis_labels(result: SurfaceResult) -> tuple[str, str]:
    if result.directions == "adversarial":
        return "alpha (random, orthogonal)", f"beta (adversarial, {result.adversarial_loss})"
    return "alpha (random)", "beta (random)"


def _contour(ax: Any, result: SurfaceResult, index: int, surface: str, title: str) -> Any:
    z = result.decision[index] if surface == "decision" else result.loss[index]
    c = result.coords
    filled = ax.contourf(c, c, z, levels=20, cmap="RdBu" if surface == "decision" else "viridis")
    if result.decision[index].min() < 0 < result.decision[index].max():
        ax.contour(c, c, result.decision[index], levels=[0.0], colors="k", linewidths=2)
    ax.plot([0.0], [0.0], marker="*", color="gold", markersize=14, markeredgecolor="k", label="x")
    xl, yl = _axis_labels(result)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    ax.set_aspect("equal")
    return filled


def plot_surface_contour(
    result: SurfaceResult, index: int = 0, *, surface: str = "decision", ax: Any = None
) -> Any:
    """
    Contour map of one sample's surface with the ``L = 0`` boundary (black line) and the sample (star).

    :param result: A :class:`~art_geometry.surface.SurfaceResult`.
    :param index: Which sample.
    :param surface: ``"decision"`` (``L``) or ``"loss"`` (cross-entropy).
    :param ax: Axes to draw on; a new figure when ``None``.
    :return: The ``Figure``.
    """
    import matplotlib.pyplot as plt

    _check_index(result, index)
    if surface not in ("decision", "loss"):
        raise ValueError(f"surface must be 'decision' or 'loss', got {surface!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    filled = _contour(ax, result, index, surface, f"{surface} surface, label {result.labels[index]}")
    ax.figure.colorbar(filled, ax=ax, label="L(x)" if surface == "decision" else "cross-entropy")
    return ax.figure


def plot_surface_3d(result: SurfaceResult, index: int = 0, *, surface: str = "decision") -> Any:
    """
    3-D view of one sample's surface (the paper's Fig. 3 style), with the ``L = 0`` plane as a reference.

    :param result: A :class:`~art_geometry.surface.SurfaceResult`.
    :param index: Which sample.
    :param surface: ``"decision"`` or ``"loss"``.
    :return: The ``Figure``.
    """
    import matplotlib.pyplot as plt

    _check_index(result, index)
    if surface not in ("decision", "loss"):
        raise ValueError(f"surface must be 'decision' or 'loss', got {surface!r}")
    z = result.decision[index] if surface == "decision" else result.loss[index]
    a, b = np.meshgrid(result.coords, result.coords)
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(a, b, z, cmap="RdBu" if surface == "decision" else "viridis", linewidth=0, antialiased=True)
    if surface == "decision":
        ax.plot_surface(a, b, np.zeros_like(z), color="grey", alpha=0.25)
    xl, yl = _axis_labels(result)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_zlabel("L(x)" if surface == "decision" else "cross-entropy")
    ax.set_title(f"{surface} surface, label {result.labels[index]}")
    return fig


def plot_surface_comparison(results: dict[str, SurfaceResult], index: int = 0, *, surface: str = "decision") -> Any:
    """
    The same sample's surface for several models side by side (e.g. natural vs robust), on a shared colour scale.

    :param results: Surfaces by model name (computed on the same inputs).
    :param index: Which sample.
    :param surface: ``"decision"`` or ``"loss"``.
    :return: The ``Figure``.
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("results is empty: pass at least one model's surface")
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        _check_index(result, index)
        filled = _contour(ax, result, index, surface, name)
        fig.colorbar(filled, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig

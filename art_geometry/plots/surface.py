"""
Figures of decision surfaces (Yu et al. 2019, Fig. 3-6): contour maps with the ``L = 0`` decision boundary and
the original point, 3-D surfaces, and two models side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from art_geometry.surface import SurfaceResult

__all__ = ["plot_surface_3d", "plot_surface_comparison", "plot_surface_contour"]


def _check_index(result: SurfaceResult, index: int) -> None:
    if not 0 <= index < len(result.labels):
        raise IndexError(f"index {index} out of range for a surface of {len(result.labels)} sample(s)")


def _axis_labels(result: SurfaceResult) -> tuple[str, str]:
    if result.directions == "adversarial":
        return "alpha (random, orthogonal)", f"beta (adversarial, {result.adversarial_loss})"
    return "alpha (random)", "beta (random)"


def _values(result: SurfaceResult, index: int, surface: str) -> np.ndarray:
    return result.decision[index] if surface == "decision" else result.loss[index]


def _norm(values: list[np.ndarray], surface: str) -> Any:
    """
    The colour scale: for ``L``, centred on the boundary ``L = 0`` (white), blue where the label wins and red where
    another class does, symmetric over the largest ``|L|``; for the loss, the common range.
    """
    from matplotlib.colors import CenteredNorm, Normalize

    if surface == "decision":
        return CenteredNorm(vcenter=0.0, halfrange=max(float(np.abs(v).max()) for v in values) or 1.0)
    return Normalize(vmin=min(float(v.min()) for v in values), vmax=max(float(v.max()) for v in values))


def _contour(ax: Any, result: SurfaceResult, index: int, surface: str, title: str, norm: Any) -> Any:
    c = result.coords
    levels = np.linspace(norm.vmin, norm.vmax, 21)
    cmap = "RdBu" if surface == "decision" else "viridis"
    filled = ax.contourf(c, c, _values(result, index, surface), levels=levels, cmap=cmap, norm=norm, extend="both")
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
        _, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    norm = _norm([_values(result, index, surface)], surface)
    filled = _contour(ax, result, index, surface, f"{surface} surface, label {result.labels[index]}", norm)
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
    z = _values(result, index, surface)
    a, b = np.meshgrid(result.coords, result.coords)
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    cmap = "RdBu" if surface == "decision" else "viridis"
    ax.plot_surface(a, b, z, cmap=cmap, norm=_norm([z], surface), linewidth=0, antialiased=True)
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
    for result in results.values():
        _check_index(result, index)
    norm = _norm([_values(r, index, surface) for r in results.values()], surface)
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4.2), squeeze=False, layout="constrained")
    for ax, (name, result) in zip(axes[0], results.items()):
        filled = _contour(ax, result, index, surface, name, norm)
    fig.colorbar(filled, ax=list(axes[0]), shrink=0.8, label="L(x)" if surface == "decision" else "cross-entropy")
    return fig

"""
Figures for the certified brackets: the robust-accuracy bracket of several models on one axis, the certified curve
(a lower bound of the robust accuracy), the DeepFool curve (an upper bound) and the robust accuracy of the attacks
run on the same samples (upper bounds, at their budgets), from
:class:`~art_geometry.bounds.RobustAccuracyBoundsResult` objects (or their ``from_dict`` read back from a
``report.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["plot_robust_accuracy_bounds"]


def _norm_label(norm: Any) -> str:
    p = float(norm)
    return "L-inf" if p == float("inf") else f"L{p:g}"


def plot_robust_accuracy_bounds(results: Mapping[str, Any], ax: Any = None) -> Any:
    """
    :param results: :class:`~art_geometry.bounds.RobustAccuracyBoundsResult` by model name, all in one norm
                    (``eps``, ``certified``, ``deepfool``, ``attack_eps``, ``attack_accuracy``, ``norm``,
                    ``params["attacks"]``).
    :param ax: Axes to draw on; default a new figure.
    :return: The figure: per model one colour, its certified curve (solid) and DeepFool curve (dashed) as steps over
             ``eps`` with the band between them shaded, and one marker per attack result at its budget; the
             legend names the models and the three kinds.
    :raises ValueError: When ``results`` is empty or mixes norms.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not results:
        raise ValueError("results is empty: pass at least one model's RobustAccuracyBoundsResult")
    norms = {float(r.norm) for r in results.values()}
    if len(norms) > 1:
        raise ValueError(f"results mixes the norms {sorted(norms)}: one figure shows one threat model")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
    else:
        fig = ax.figure
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    attacks: list[str] = []
    for k, (name, r) in enumerate(results.items()):
        colour = colours[k % len(colours)]
        eps = np.asarray(r.eps, dtype=np.float64)
        certified = np.asarray(r.certified, dtype=np.float64)
        deepfool = np.asarray(r.deepfool, dtype=np.float64)
        ax.plot(eps, certified, color=colour, drawstyle="steps-post", linewidth=1.6)
        ax.plot(eps, deepfool, color=colour, drawstyle="steps-post", linewidth=1.2, linestyle="--")
        ax.fill_between(eps, certified, deepfool, step="post", color=colour, alpha=0.12, linewidth=0)
        at = np.asarray(r.attack_eps, dtype=np.float64)
        if at.size:
            ax.plot(at, np.asarray(r.attack_accuracy, dtype=np.float64), color=colour, linestyle="none", marker="o",
                    markersize=5, markeredgecolor="black", markeredgewidth=0.6)
            for a in r.params.get("attacks", []):
                if a.get("attack") not in attacks:
                    attacks.append(str(a.get("attack")))
        handles.append(Line2D([], [], color=colour, linewidth=1.6, label=name))
    handles += [
        Line2D([], [], color="grey", linewidth=1.6, label="certified (lower bound)"),
        Line2D([], [], color="grey", linewidth=1.2, linestyle="--", label="DeepFool (upper bound)"),
    ]
    if attacks:
        handles.append(Line2D([], [], color="grey", linestyle="none", marker="o", markeredgecolor="black",
                              label=f"{', '.join(attacks)} (upper bound)"))
    norm = _norm_label(next(iter(norms)))
    ax.set_xlabel(f"budget eps ({norm})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0.0)
    ax.set_title(f"robust accuracy brackets ({norm}): certified <= true <= empirical", fontsize=9)
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return fig

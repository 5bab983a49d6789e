"""
The adversarial gallery: for a few samples of one model, the clean input, the minimal perturbation a margin
attack found (rescaled so that it is visible), the adversarial input ``x + delta``, with the predicted classes
and the margin ``||delta||`` in each title ("DeepFool", Moosavi-Dezfooli et al., CVPR 2016, Fig. 1 layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["image_of", "plot_adversarial_gallery"]


def image_of(x: np.ndarray) -> np.ndarray:
    """
    :param x: One input ``(C, H, W)`` (or ``(H, W)``).
    :return: What ``imshow`` draws: ``(H, W)`` for one channel, ``(H, W, C)`` for three.
    :raises ValueError: For an input that is not an image.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x
    if x.ndim == 3 and x.shape[0] in (1, 3):
        return x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    raise ValueError(f"x must be an image (C, H, W) with 1 or 3 channels, got shape {x.shape}")


def plot_adversarial_gallery(
    x: np.ndarray,
    perturbations: np.ndarray,
    labels: Sequence[int],
    predictions: Sequence[int],
    adversarial_predictions: Sequence[int],
    margins: Sequence[float],
    *,
    title: str = "",
) -> Any:
    """
    One column per sample, three rows: the clean input (true and predicted class), the perturbation ``delta`` rescaled to the
    full colour range (``(delta / max|delta| + 1) / 2``, so that 0 is the middle colour; the factor in the title), and ``x + delta`` clipped
    to the input range of ``x`` with its predicted class.

    :param x: ``(N, C, H, W)`` clean inputs.
    :param perturbations: ``(N, C, H, W)`` the perturbations (non-finite entries of failed samples drawn as 0).
    :param labels: ``(N,)`` true classes.
    :param predictions: ``(N,)`` predicted classes of ``x``.
    :param adversarial_predictions: ``(N,)`` predicted classes of ``x + delta``.
    :param margins: ``(N,)`` ``||delta||`` (``inf`` when the attack failed).
    :param title: Figure title (e.g. the model and norm).
    :return: The figure.
    :raises ValueError: When the shapes disagree.
    """
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=np.float64)
    delta = np.nan_to_num(np.asarray(perturbations, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    n = len(x)
    if delta.shape != x.shape or not (len(labels) == len(predictions) == len(adversarial_predictions) ==
                                      len(margins) == n):
        raise ValueError(f"x {x.shape}, perturbations {delta.shape} and the per-sample lists must have {n} entries")
    lo, hi = float(x.min()), float(x.max())
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6), squeeze=False, layout="constrained")
    cmap = "gray" if x.shape[1] == 1 else None
    for i in range(n):
        clean, change, adversarial = axes[:, i]
        scale = float(np.abs(delta[i]).max()) or 1.0
        margin = float(margins[i])
        clean.imshow(image_of(x[i]), cmap=cmap, vmin=lo, vmax=hi)
        clean.set_title(f"true {labels[i]}, pred {predictions[i]}", fontsize=8)
        change.imshow(image_of((delta[i] / scale + 1) / 2), cmap="seismic" if cmap else None, vmin=0, vmax=1)
        change.set_title(f"delta x{1 / scale:.3g}\n||delta|| = {margin:.3g}", fontsize=8)
        adversarial.imshow(image_of(np.clip(x[i] + delta[i], lo, hi)), cmap=cmap, vmin=lo, vmax=hi)
        adversarial.set_title(f"x + delta: pred {adversarial_predictions[i]}" if np.isfinite(margin)
                              else "attack failed", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("clean", "perturbation", "adversarial")):
        ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig

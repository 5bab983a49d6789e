"""
Input checks shared by every public function, each with a message that names the problem.

Nothing here copies or modifies the user's arrays: the checks read them and return them (or a converted view of
the labels) unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from art_geometry._model import ModelView

__all__ = ["check_inputs", "check_labels", "check_positive_int", "check_norm"]



def check_inputs(view: ModelView, x: Any, name: str = "x") -> "np.ndarray | torch.Tensor":
    """
    Check a batch of inputs against the model.

    :param view: The model view.
    :param x: Inputs, ``(N, *input_shape)``, numpy array or torch tensor.
    :param name: The argument's name, for messages.
    :return: ``x`` itself, unchanged.
    :raises TypeError: When ``x`` is not an array or tensor of real numbers.
    :raises ValueError: When ``x`` is empty, has the wrong shape, or holds NaN or inf.
    """
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if isinstance(x, np.ndarray) and not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if isinstance(x, torch.Tensor) and (x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch of samples (N, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it holds no samples")
    if view.input_shape is not None and tuple(x.shape[1:]) != tuple(view.input_shape):
        raise ValueError(
            f"{name} has samples of shape {tuple(x.shape[1:])} but the classifier expects input_shape "
            f"{tuple(view.input_shape)}"
        )
    finite = torch.isfinite(x).all() if isinstance(x, torch.Tensor) else np.isfinite(x).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def check_labels(y: Any, n: int, nb_classes: int, name: str = "y") -> np.ndarray:
    """
    Check labels and return them as class indices.

    :param y: Class indices ``(N,)`` or one-hot / score rows ``(N, nb_classes)``; numpy or torch.
    :param n: Number of samples they must label.
    :param nb_classes: Number of classes of the model.
    :param name: The argument's name, for messages.
    :return: A new ``int64`` array of class indices, shape ``(N,)``.
    :raises ValueError: When the length, shape or range is wrong.
    """
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == nb_classes:
        arr = arr.argmax(axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be class indices (N,) or one-hot (N, {nb_classes}), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} labels {arr.shape[0]} samples but x holds {n}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)):
        raise ValueError(f"{name} must hold integer class indices")
    labels = arr.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= nb_classes):
        raise ValueError(
            f"{name} holds labels in [{labels.min()}, {labels.max()}], out of range for {nb_classes} classes"
        )
    return labels


def check_positive_int(value: Any, name: str) -> int:
    """
    :param value: A number that must be a positive integer.
    :param name: Its name, for messages.
    :return: ``int(value)``.
    :raises ValueError: Otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_norm(norm: Any, allowed: tuple[float, ...] = (2.0, float("inf"))) -> float:
    """
    :param norm: A norm order, such as ``2`` or ``np.inf`` (``"inf"`` accepted).
    :param allowed: The orders the caller supports.
    :return: The order as a float.
    :raises ValueError: When the order is not supported.
    """
    try:
        p = float(norm)
    except (TypeError, ValueError):
        p = float("nan")
    if p not in allowed:
        names = ", ".join("inf" if a == float("inf") else str(int(a)) for a in allowed)
        raise ValueError(f"norm must be one of {{{names}}}, got {norm!r}")
    return p

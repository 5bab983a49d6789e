"""
The checks shared by every public function, each with a message that names the argument and the problem: the
only place where inputs, labels and scalar options are validated.

Error contract: a wrong container or element type of ``x`` / ``y`` (a list, a string, complex or bool samples)
raises ``TypeError``; a wrong value (shape, emptiness, NaN, labels out of range) and every bad scalar option
(wrong type included, as ART's ``_check_params``) raise ``ValueError``. Nothing here copies or modifies the
user's arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "OutOfBoundsError",
    "check_array",
    "check_in_bounds",
    "check_images",
    "check_labels",
    "check_class_indices",
    "check_int",
    "check_positive_int",
    "check_number",
    "check_bool",
    "check_choice",
    "check_seed",
]

_INTEGERS = (int, np.integer)
_NUMBERS = (int, float, np.integer, np.floating)


def check_array(x: Any, name: str = "x", input_shape: "tuple[int, ...] | None" = None) -> "np.ndarray | torch.Tensor":
    """
    Check a batch of samples: a numpy array (any stride, contiguity or writability) or a torch tensor of real
    numbers (floating or integer), ``(N, ...)`` with ``N >= 1``, all finite.

    :param x: The batch.
    :param name: The argument's name, for messages.
    :param input_shape: The sample shape the classifier declares, if any.
    :return: ``x`` itself, unchanged.
    :raises TypeError: When ``x`` is not an array or tensor of real numbers.
    :raises ValueError: When ``x`` is empty, has the wrong shape, or holds NaN or inf.
    """
    if isinstance(x, np.ndarray):
        real = np.issubdtype(x.dtype, np.floating) or (np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_)
    elif isinstance(x, torch.Tensor):
        real = not (x.is_complex() or x.dtype == torch.bool)
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if not real:
        raise TypeError(f"{name} must hold real numbers (floating or integer), got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch of samples (N, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it holds no samples")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{name} has samples of shape {tuple(x.shape[1:])} but the classifier expects input_shape "
            f"{tuple(input_shape)}"
        )
    finite = torch.isfinite(x).all() if isinstance(x, torch.Tensor) else np.isfinite(x).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def check_images(
    x: Any, name: str, *, bounds: "tuple[float, float] | None" = None, tensor: bool = False
) -> "np.ndarray | torch.Tensor":
    """
    Check a batch of inputs as the attack libraries take them (foolbox, torchattacks): :func:`check_array`, plus
    a floating dtype (integer pixels are refused: these attacks move real-valued inputs) and, with ``bounds``, every
    value inside them (foolbox's ``verify_input_bounds``, which asserts without a message).

    :param x: The batch.
    :param name: The argument's name, for messages.
    :param bounds: ``(min, max)`` the values must lie in, or ``None``.
    :param tensor: Require a torch tensor.
    :return: ``x`` itself, unchanged.
    :raises TypeError: For a numpy array where a tensor is required, or a non-floating dtype.
    :raises ValueError: For the failures of :func:`check_array`, or values outside ``bounds``.
    """
    if tensor and not isinstance(x, torch.Tensor):
        hint = " (convert it with torch.from_numpy)" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}{hint}")
    x = check_array(x, name)
    floating = x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
    if not floating:
        raise TypeError(
            f"{name} must be floating point, got dtype {x.dtype}: scale integer pixels into the model's input "
            "range first (e.g. images.float() / 255)"
        )
    if bounds is not None:
        check_in_bounds(x, name, bounds, "the model's bounds")
    return x


class OutOfBoundsError(ValueError, AssertionError):
    """
    Inputs outside the valid input range: a ``ValueError`` with a message naming the argument and the range, and
    an ``AssertionError``, which is what foolbox's contract raises for inputs outside a model's bounds (its
    ``verify_input_bounds``).
    """


def check_in_bounds(x: "np.ndarray | torch.Tensor", name: str, bounds: "tuple[float, float]", what: str) -> None:
    """
    :param x: Values.
    :param name: The argument's name, for the message.
    :param bounds: ``(min, max)`` the values must lie in.
    :param what: What the bounds are, for the message (``"the model's bounds"``, ``"clip_values"``).
    :raises OutOfBoundsError: When a value lies outside ``bounds``.
    """
    lo, hi = float(x.min()), float(x.max())
    if lo < bounds[0] or hi > bounds[1]:
        raise OutOfBoundsError(f"{name} has values in [{lo:g}, {hi:g}], outside {what} [{bounds[0]:g}, {bounds[1]:g}]")


def check_labels(y: Any, n: int, nb_classes: int, name: str = "y") -> np.ndarray:
    """
    Check labels and return them as class indices.

    :param y: Class indices ``(N,)`` or one-hot / score rows ``(N, nb_classes)``; numpy array, torch tensor, or a
              list / tuple of them (converted as ``np.asarray`` converts, then checked the same way).
    :param n: Number of samples they must label.
    :param nb_classes: Number of classes of the model.
    :param name: The argument's name, for messages.
    :return: A new ``int64`` array of class indices, shape ``(N,)``.
    :raises TypeError: When ``y`` is not an array or tensor of numbers.
    :raises ValueError: When the length, shape, values or range are wrong.
    """
    y = _label_container(y, name)
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold class indices (integers), got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == nb_classes:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf values")
        arr = arr.argmax(axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be class indices (N,) or one-hot (N, {nb_classes}), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} labels {arr.shape[0]} samples but x holds {n}")
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(arr).all() and np.all(np.mod(arr, 1) == 0)):
        raise ValueError(f"{name} must hold integer class indices")
    labels = arr.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= nb_classes):
        raise ValueError(
            f"{name} holds labels in [{labels.min()}, {labels.max()}], out of range for {nb_classes} classes"
        )
    return labels


def _label_container(y: Any, name: str) -> "np.ndarray | torch.Tensor":
    """
    :return: ``y`` itself for a numpy array or tensor; a list or tuple as ``np.asarray`` converts it.
    :raises TypeError: For any other container.
    :raises ValueError: For a ragged list.
    """
    if isinstance(y, (np.ndarray, torch.Tensor)):
        return y
    if isinstance(y, (list, tuple)):
        try:
            return np.asarray(y)
        except ValueError as err:
            raise ValueError(f"{name} is a ragged list: one class index (or one-hot row) per sample") from err
    raise TypeError(
        f"{name} must be a numpy array, torch tensor or list of class indices, got {type(y).__name__}"
    )


def check_class_indices(y: Any, n: int, nb_classes: int, name: str = "labels") -> np.ndarray:
    """
    Check labels as the attack libraries take them (foolbox, torchattacks): exactly ``(N,)`` integer class
    indices (no one-hot rows, no floats), then :func:`check_labels` (range).

    :param y: The labels, a numpy array, torch tensor, or list / tuple of ints.
    :param n: Number of samples they must label.
    :param nb_classes: Number of classes of the model.
    :param name: The argument's name, for messages.
    :return: A new ``int64`` array ``(N,)``.
    :raises TypeError: When ``y`` is not an array or tensor of integers.
    :raises ValueError: For a shape other than ``(N,)`` or labels out of range.
    """
    y = _label_container(y, name)
    if isinstance(y, torch.Tensor):
        integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    else:
        integer = np.issubdtype(y.dtype, np.integer)
    if not integer:
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},), one class index per sample, got {tuple(y.shape)}")
    return check_labels(y, n, nb_classes, name)


def check_int(value: Any, name: str, minimum: "int | None" = None, maximum: "int | None" = None) -> int:
    """
    :param value: A number that must be an integer (``bool`` is not one) in ``[minimum, maximum]``.
    :param name: Its name, for messages.
    :param minimum: Smallest allowed value, or ``None``.
    :param maximum: Largest allowed value, or ``None``.
    :return: ``int(value)``.
    :raises ValueError: Otherwise.
    """
    ok = isinstance(value, _INTEGERS) and not isinstance(value, (bool, np.bool_))
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        lo = "-inf" if minimum is None else str(minimum)
        hi = "inf" if maximum is None else str(maximum)
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """
    :param value: A number that must be a positive integer.
    :param name: Its name, for messages.
    :return: ``int(value)``.
    :raises ValueError: Otherwise.
    """
    return check_int(value, name, minimum=1)


def check_number(
    value: Any,
    name: str,
    minimum: "float | None" = None,
    maximum: "float | None" = None,
    *,
    strict: bool = False,
    finite: bool = True,
) -> float:
    """
    :param value: A real number (``bool`` is not one).
    :param name: Its name, for messages.
    :param minimum: Lower bound, or ``None``.
    :param maximum: Upper bound, or ``None``.
    :param strict: The bounds themselves are excluded.
    :param finite: Refuse ``inf`` (NaN is always refused).
    :return: ``float(value)``.
    :raises ValueError: Otherwise.
    """
    ok = isinstance(value, _NUMBERS) and not isinstance(value, (bool, np.bool_)) and not math.isnan(value)
    ok = ok and (not finite or math.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if strict else value <= maximum
    if not ok:
        kind = "a finite number" if finite else "a number"
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if strict else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"{'<' if strict else '<='} {maximum:g}")
        where = f" {' and '.join(bounds)}" if bounds else ""
        raise ValueError(f"{name} must be {kind}{where}, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """
    :param value: ``True`` or ``False`` (numpy bools accepted).
    :param name: Its name, for messages.
    :return: ``bool(value)``.
    :raises ValueError: Otherwise.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """
    :param value: One of the strings ``choices``.
    :param name: Its name, for messages.
    :param choices: The accepted values.
    :return: ``value``.
    :raises ValueError: Otherwise, listing the accepted values.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_seed(value: Any, name: str = "seed") -> "int | None":
    """
    :param value: ``None`` (fresh entropy, drawn by the caller and recorded in its result) or a non-negative int.
    :param name: Its name, for messages.
    :return: The seed, or ``None``.
    :raises ValueError: Otherwise.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _INTEGERS) or value < 0:
        raise ValueError(f"{name} must be None (fresh entropy) or a non-negative integer, got {value!r}")
    return int(value)

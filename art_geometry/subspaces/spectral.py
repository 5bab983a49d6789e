"""
The orthonormal 2-D discrete cosine transform (DCT-II) on the last two axes of a tensor, as used by
"Hold me tight! Influence of discriminative features on deep network boundaries" (Ortiz-Jimenez et al.,
NeurIPS 2020) to define frequency subspaces.

For an axis of length n, the DCT matrix is ``C[k, i] = a_k cos(pi (2 i + 1) k / (2 n))`` with ``a_0 = sqrt(1/n)``
and ``a_k = sqrt(2/n)``; it is orthogonal (``C C^T = I``), so ``dct2(x) = C_H x C_W^T`` preserves the l2 norm
(Parseval) and ``idct2(z) = C_H^T z C_W`` inverts it.

On top of it, the paper's data transforms: :func:`dct_flip` (swap low and high frequencies), :func:`low_pass` and
:func:`high_pass` (complementary DCT masks), the callable :class:`DCTTransform` and :func:`transform_dataset`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, TypeVar, Union

import numpy as np
import torch

from art_geometry.core.validation import check_int

__all__ = [
    "dct_matrix",
    "dct2",
    "idct2",
    "dct_flip",
    "low_pass",
    "high_pass",
    "DCTTransform",
    "transform_dataset",
]


@functools.lru_cache(maxsize=32)
def _dct_matrix_cpu(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


def dct_matrix(n: int, *, device: "torch.device | str" = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """
    :param n: Length of the axis.
    :param device: Device of the result.
    :param dtype: Dtype of the result.
    :return: The orthonormal DCT-II matrix ``(n, n)``.
    """
    return _dct_matrix_cpu(int(n)).to(device=device, dtype=dtype)


def _check_floating_tensor(t: Any, name: str) -> None:
    if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim >= 2):
        got = f"{type(t).__name__} of dtype {t.dtype}" if hasattr(t, "dtype") else type(t).__name__
        raise TypeError(f"{name} must be a floating torch tensor (..., H, W), got {got}")


def dct2(x: torch.Tensor) -> torch.Tensor:
    """
    :param x: A floating tensor ``(..., H, W)``.
    :return: Its orthonormal 2-D DCT-II coefficients, same shape; index ``[..., 0, 0]`` is the lowest frequency.
    :raises TypeError: For anything but a floating tensor of at least two dimensions.
    """
    _check_floating_tensor(x, "x")
    ch = dct_matrix(x.shape[-2], device=x.device, dtype=x.dtype)
    cw = dct_matrix(x.shape[-1], device=x.device, dtype=x.dtype)
    return ch @ x @ cw.T


def idct2(z: torch.Tensor) -> torch.Tensor:
    """
    :param z: DCT coefficients ``(..., H, W)``, a floating tensor.
    :return: The inverse transform (the image), same shape.
    :raises TypeError: For anything but a floating tensor of at least two dimensions.
    """
    _check_floating_tensor(z, "z")
    ch = dct_matrix(z.shape[-2], device=z.device, dtype=z.dtype)
    cw = dct_matrix(z.shape[-1], device=z.device, dtype=z.dtype)
    return ch.T @ z @ cw


# --- frequency transforms of images and data sets (Hold me tight, Sec. 3.2 and Appendix: flipped and filtered data)

ArrayLike = Union[np.ndarray, torch.Tensor]
#: A data set with ``x_train, y_train, x_test, y_test, name`` fields (:class:`~art_geometry.datasets.Dataset`).
DatasetT = TypeVar("DatasetT")


def _as_images(x: ArrayLike, name: str = "x") -> tuple[torch.Tensor, bool]:
    """
    :param x: Images ``(N, C, H, W)`` or ``(C, H, W)``, numpy array or torch tensor of floats.
    :param name: The argument's name, for messages.
    :return: A torch tensor holding the same values (a new tensor: the caller's array is never written) and whether
             ``x`` was a numpy array.
    :raises TypeError: When ``x`` is not a float array or tensor.
    :raises ValueError: When ``x`` has neither 3 nor 4 axes, or holds NaN or inf (the DCT mixes every pixel of an
                        image, so one non-finite pixel would turn the whole output into NaN).
    """
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name} must hold floating-point values, got dtype {x.dtype}")
        t, is_numpy = torch.from_numpy(np.array(x, copy=True)), True
    elif isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floating-point values, got dtype {x.dtype}")
        t, is_numpy = x.detach().clone(), False
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim not in (3, 4):
        raise ValueError(f"{name} must be images (N, C, H, W) or (C, H, W), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    return t, is_numpy


def _back(t: torch.Tensor, is_numpy: bool) -> ArrayLike:
    return t.numpy() if is_numpy else t


def _check_bandwidth(bandwidth: Any, shape: tuple[int, ...]) -> int:
    """
    :param bandwidth: Side of the low-frequency DCT block of the filters.
    :param shape: Shape of the images, ``(..., H, W)``.
    :return: ``bandwidth`` as an int.
    :raises ValueError: When it is not an integer in ``[1, min(H, W)]`` (the image side).
    """
    limit = min(shape[-2], shape[-1])
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, np.integer)) or not 1 <= bandwidth <= limit:
        raise ValueError(
            f"bandwidth must be a positive integer <= the image side, in [1, {limit}] for images of size "
            f"{tuple(shape[-2:])}, got {bandwidth!r}"
        )
    return int(bandwidth)


def _low_mask(t: torch.Tensor, bandwidth: int) -> torch.Tensor:
    mask = torch.zeros(t.shape[-2:], dtype=t.dtype, device=t.device)
    mask[:bandwidth, :bandwidth] = 1
    return mask


def dct_flip(x: ArrayLike) -> ArrayLike:
    """
    Swap low and high frequencies: ``idct2(flip(dct2(x)))`` with the coefficients reversed on both spatial axes,
    so coefficient ``(k, l)`` moves to ``(H-1-k, W-1-l)`` (the "frequency-flipped" data of Hold me tight,
    Ortiz-Jimenez et al. 2020, Sec. 3.2). An orthogonal involution: ``dct_flip(dct_flip(x)) == x`` and norms are kept.

    :param x: Images ``(N, C, H, W)`` or ``(C, H, W)``; numpy (returned as numpy, same dtype) or torch; finite.
    :return: The flipped images, a new array of the same shape and type.
    :raises ValueError: When ``x`` holds NaN or inf.
    """
    t, is_numpy = _as_images(x)
    return _back(idct2(torch.flip(dct2(t), dims=(-2, -1))), is_numpy)


def _band(x: ArrayLike, bandwidth: int, keep_low: bool) -> ArrayLike:
    """:return: ``idct2(M * dct2(x))`` (``keep_low``) or ``idct2((1 - M) * dct2(x))``, ``M`` the low block's mask."""
    t, is_numpy = _as_images(x)
    mask = _low_mask(t, _check_bandwidth(bandwidth, tuple(t.shape)))
    return _back(idct2(dct2(t) * (mask if keep_low else 1 - mask)), is_numpy)


def low_pass(x: ArrayLike, bandwidth: int) -> ArrayLike:
    """
    Keep the DCT coefficients ``[0:bandwidth, 0:bandwidth]`` (the lowest frequencies on both axes) and zero the
    rest: ``idct2(M * dct2(x))`` with ``M[k, l] = 1`` iff ``k < bandwidth and l < bandwidth`` (Hold me tight's
    ``dct_low_pass``). An orthogonal projection: idempotent and norm non-increasing.

    :param x: Images ``(N, C, H, W)`` or ``(C, H, W)``; numpy (returned as numpy, same dtype) or torch; finite.
    :param bandwidth: Side of the kept low-frequency block, an integer in ``[1, min(H, W)]``.
    :return: The filtered images, a new array of the same shape and type.
    :raises ValueError: When ``x`` holds NaN or inf, or ``bandwidth`` is out of range or not an integer.
    """
    return _band(x, bandwidth, keep_low=True)


def high_pass(x: ArrayLike, bandwidth: int) -> ArrayLike:
    """
    Zero the low-frequency DCT block ``[0:bandwidth, 0:bandwidth]`` and keep every other coefficient:
    ``idct2((1 - M) * dct2(x))``, the complement of :func:`low_pass`, so ``low_pass(x, b) + high_pass(x, b) == x``.
    This is Hold me tight's ``dct_cutoff_low`` (``utils_dct.py``); note that their ``dct_high_pass`` is a different
    filter (it keeps only the highest ``bandwidth x bandwidth`` block), obtained here as
    ``dct_flip(low_pass(dct_flip(x), bandwidth))``.

    :param x: Images ``(N, C, H, W)`` or ``(C, H, W)``; numpy (returned as numpy, same dtype) or torch; finite.
    :param bandwidth: Side of the removed low-frequency block, an integer in ``[1, min(H, W)]``.
    :return: The filtered images, a new array of the same shape and type.
    :raises ValueError: When ``x`` holds NaN or inf, or ``bandwidth`` is out of range or not an integer.
    """
    return _band(x, bandwidth, keep_low=False)


class DCTTransform:
    """
    A frequency transform of images as a callable, for :func:`transform_dataset` or a data pipeline.

    :param kind: ``"flip"`` (:func:`dct_flip`), ``"low_pass"`` (:func:`low_pass`) or ``"high_pass"``
                 (:func:`high_pass`).
    :param bandwidth: The filters' bandwidth; required for the filters, not allowed for ``"flip"``.
    """

    kinds = ("flip", "low_pass", "high_pass")

    def __init__(self, kind: str = "flip", bandwidth: int | None = None) -> None:
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        if kind == "flip" and bandwidth is not None:
            raise ValueError("the 'flip' transform takes no bandwidth")
        if kind != "flip" and bandwidth is None:
            raise ValueError(f"the {kind!r} transform needs a bandwidth (a positive integer)")
        self.kind = kind
        self.bandwidth = None if bandwidth is None else check_int(bandwidth, "bandwidth", minimum=1)

    @property
    def name(self) -> str:
        """A short name such as ``dct_flip`` or ``low_pass8``."""
        return "dct_flip" if self.kind == "flip" else f"{self.kind}{self.bandwidth}"

    def __call__(self, x: ArrayLike) -> ArrayLike:
        """
        :param x: Images ``(N, C, H, W)`` or ``(C, H, W)``, numpy or torch.
        :return: The transformed images, same shape and type.
        """
        if self.kind == "flip":
            return dct_flip(x)
        fn = low_pass if self.kind == "low_pass" else high_pass
        return fn(x, self.bandwidth)

    def __repr__(self) -> str:
        extra = "" if self.bandwidth is None else f", bandwidth={self.bandwidth}"
        return f"DCTTransform(kind={self.kind!r}{extra})"


def transform_dataset(dataset: DatasetT, transform: Callable[[ArrayLike], ArrayLike]) -> DatasetT:
    """
    Apply an image transform to both splits of a data set (the labels are kept), e.g. to train on frequency-flipped
    Fashion-MNIST as in Hold me tight, Sec. 3.2.

    :param dataset: A :class:`~art_geometry.datasets.Dataset` (any dataclass with its fields); not modified.
    :param transform: A callable on image batches, such as :class:`DCTTransform`; it must keep the shape.
    :return: A new data set named ``"<name>-<transform name>"``.
    :raises ValueError: When the transform changes the shape of the images.
    """
    x_train = np.asarray(transform(dataset.x_train))
    x_test = np.asarray(transform(dataset.x_test))
    if x_train.shape != dataset.x_train.shape or x_test.shape != dataset.x_test.shape:
        raise ValueError(
            f"the transform changed the shape of the images from {dataset.x_train.shape[1:]} to {x_train.shape[1:]}"
        )
    label = getattr(transform, "name", type(transform).__name__)
    return dataclasses.replace(
        dataset,
        x_train=x_train.astype(dataset.x_train.dtype, copy=False),
        y_train=dataset.y_train.copy(),
        x_test=x_test.astype(dataset.x_test.dtype, copy=False),
        y_test=dataset.y_test.copy(),
        name=f"{dataset.name}-{label}",
    )

"""
The orthonormal 2-D discrete cosine transform (DCT-II) on the last two axes of a tensor, as used by
"Hold me tight! Influence of discriminative features on deep network boundaries" (Ortiz-Jimenez et al.,
NeurIPS 2020) to define frequency subspaces.

For an axis of length n, the DCT matrix is ``C[k, i] = a_k cos(pi (2 i + 1) k / (2 n))`` with ``a_0 = sqrt(1/n)``
and ``a_k = sqrt(2/n)``; it is orthogonal (``C C^T = I``), so ``dct2(x) = C_H x C_W^T`` preserves the l2 norm
(Parseval) and ``idct2(z) = C_H^T z C_W`` inverts it.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["dct_matrix", "dct2", "idct2"]


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


def dct2(x: torch.Tensor) -> torch.Tensor:
    """
    :param x: A tensor ``(..., H, W)``.
    :return: Its orthonormal 2-D DCT-II coefficients, same shape; index ``[..., 0, 0]`` is the lowest frequency.
    """
    ch = dct_matrix(x.shape[-2], device=x.device, dtype=x.dtype)
    cw = dct_matrix(x.shape[-1], device=x.device, dtype=x.dtype)
    return ch @ x @ cw.T


def idct2(z: torch.Tensor) -> torch.Tensor:
    """
    :param z: DCT coefficients ``(..., H, W)``.
    :return: The inverse transform (the image), same shape.
    """
    ch = dct_matrix(z.shape[-2], device=z.device, dtype=z.dtype)
    cw = dct_matrix(z.shape[-1], device=z.device, dtype=z.dtype)
    return ch.T @ z @ cw

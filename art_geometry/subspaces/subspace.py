"""
Linear subspaces of the input space, as orthogonal projections applied to batches of tensors.

The frequency subspaces of "Hold me tight! Influence of discriminative features on deep network boundaries"
(Ortiz-Jimenez et al., NeurIPS 2020, Sec. 3) are K x K blocks on the diagonal of the orthonormal 2-D DCT: their
projection is ``idct2(mask * dct2(v))`` (a transform, never a dense D x D basis). Other subspaces (random, the span
of given vectors, a direction, a complement) hold an orthonormal basis ``Q`` (``dim x D``) and project with
``P v = Q^T Q v``.

Every projection works on a batch ``(B, *shape)`` of any device and dtype and returns a new tensor of the same
shape, computed in floating point: a floating batch keeps its dtype, an integer or bool batch is promoted to
float32. :class:`SubspaceStack` projects a stacked batch whose rows each belong to a different subspace in one call
(per-row masks in the DCT domain), which is how several subspaces are measured in one pass.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry.core.validation import check_array
from art_geometry.subspaces.spectral import dct2, idct2


class Subspace(abc.ABC):
    """
    A linear subspace ``S`` of the space of samples of shape :attr:`shape`, used through its orthogonal projection.

    :ivar shape: Shape of one input sample it lives in, e.g. ``(1, 28, 28)``.
    :ivar dim: Its dimension.
    :ivar name: A short label for tables and plots.
    """

    shape: tuple[int, ...]
    dim: int
    name: str

    @abc.abstractmethod
    def _project(self, v: torch.Tensor) -> torch.Tensor:
        """Project a checked batch ``(B, *shape)``."""

    def project(self, v: "torch.Tensor | np.ndarray") -> "torch.Tensor | np.ndarray":
        """
        Orthogonal projection ``P_S v`` of a batch, computed in floating point: an integer or bool ``v`` is promoted
        to float32 (the projection of integers is not integer), a floating ``v`` keeps its dtype.

        :param v: Tensor ``(B, *shape)``, any device and dtype, or a numpy array (any strides; returned as numpy).
        :return: A new tensor of the same shape and device (a new numpy array for a numpy ``v``), of ``v``'s dtype
                 when floating, else float32.
        :raises TypeError: For anything but a tensor or a numpy array of real numbers.
        :raises ValueError: When the samples do not have the subspace's shape.
        """
        if isinstance(v, np.ndarray):
            return self.project(torch.from_numpy(np.array(check_array(v, "v"), copy=True))).numpy()
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"v must be a torch.Tensor or numpy array of samples, got {type(v).__name__}")
        if tuple(v.shape[1:]) != self.shape:
            raise ValueError(
                f"subspace {self.name!r} lives in samples of shape {self.shape}, got a batch of shape {tuple(v.shape)}"
            )
        return self._project(_floating(v))

    def check_shape(self, input_shape: Sequence[int]) -> None:
        """
        :param input_shape: Shape of one input sample.
        :raises ValueError: When it differs from the subspace's shape.
        """
        if tuple(int(s) for s in input_shape) != self.shape:
            raise ValueError(
                f"subspace {self.name!r} lives in samples of shape {self.shape}, but the inputs have shape "
                f"{tuple(input_shape)}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shape={self.shape}, dim={self.dim})"


class DCTBlockSubspace(Subspace):
    """
    The span of the 2-D DCT basis images with both frequency indices in ``[start, start + size)``, shared across
    channels (dimension ``C * size^2``). Projection: ``idct2(M * dct2(v))`` with ``M`` the 0/1 block mask.

    :param shape: Shape of one sample, ``(C, H, W)`` or ``(H, W)``.
    :param start: First frequency index of the block on both axes.
    :param size: Side ``K`` of the block.
    """

    def __init__(self, shape: Sequence[int], start: int, size: int):
        self.shape = _image_shape(shape)
        h, w = self.shape[-2:]
        if start < 0 or size < 1 or start + size > min(h, w):
            raise ValueError(f"DCT block [{start}, {start + size}) does not fit in an image of size {h} x {w}")
        self.start = int(start)
        self.size = int(size)
        channels = math.prod(self.shape[:-2])
        self.dim = channels * self.size**2
        self.name = f"dct[{self.start}:{self.start + self.size}]"

    def mask(self, device: "torch.device | str" = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """:return: The 0/1 mask ``(H, W)`` of the block in the DCT domain."""
        h, w = self.shape[-2:]
        m = torch.zeros(h, w, device=device, dtype=dtype)
        m[self.start : self.start + self.size, self.start : self.start + self.size] = 1
        return m

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        return idct2(dct2(v) * self.mask(v.device, v.dtype))


class BasisSubspace(Subspace):
    """
    The span of the rows of an orthonormal basis ``Q`` (``dim x D``): ``P v = Q^T (Q v)`` on flattened samples.

    :param shape: Shape of one sample.
    :param basis: Orthonormal rows ``(dim, D)`` (checked), float64 recommended.
    :param name: A label.
    """

    def __init__(self, shape: Sequence[int], basis: torch.Tensor, name: str):
        self.shape = tuple(int(s) for s in shape)
        d = math.prod(self.shape)
        if basis.ndim != 2 or basis.shape[1] != d:
            raise ValueError(f"a basis for samples of shape {self.shape} must be (dim, {d}), got {tuple(basis.shape)}")
        gram = basis @ basis.T
        if not torch.allclose(gram, torch.eye(basis.shape[0], dtype=basis.dtype), atol=1e-6):
            raise ValueError("the basis rows are not orthonormal")
        self.basis = basis.detach().clone()
        self.dim = int(basis.shape[0])
        self.name = name

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        q = self.basis.to(device=v.device, dtype=v.dtype)
        flat = v.reshape(v.shape[0], -1)
        return ((flat @ q.T) @ q).reshape(v.shape)


class ComplementSubspace(Subspace):
    """
    The orthogonal complement ``S^perp`` of a subspace: ``P_perp v = v - P_S v``.

    :param subspace: The subspace ``S``.
    """

    def __init__(self, subspace: Subspace):
        self.subspace = subspace
        self.shape = subspace.shape
        self.dim = math.prod(self.shape) - subspace.dim
        self.name = f"complement({subspace.name})"

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        return v - self.subspace.project(v)


class SubspaceStack:
    """
    Several subspaces of one sample shape, projecting a stacked batch whose row ``i`` belongs to subspace
    ``which[i]`` in one call.

    When every member is a :class:`DCTBlockSubspace`, the projection is one transform with a per-row mask:
    ``idct2(M[which] * dct2(v))``; otherwise each member projects its own rows.

    :param subspaces: The subspaces, all of the same shape.
    """

    def __init__(self, subspaces: Sequence[Subspace]):
        subspaces = list(subspaces)
        if not subspaces:
            raise ValueError("no subspaces given")
        for s in subspaces:
            if not isinstance(s, Subspace):
                raise TypeError(f"expected Subspace objects, got {type(s).__name__}")
            if s.shape != subspaces[0].shape:
                raise ValueError(
                    f"all subspaces must live in the same sample shape: {subspaces[0].name!r} has "
                    f"{subspaces[0].shape}, {s.name!r} has {s.shape}"
                )
        self.subspaces = subspaces
        self.shape = subspaces[0].shape
        self._dct = all(isinstance(s, DCTBlockSubspace) for s in subspaces)

    def __len__(self) -> int:
        return len(self.subspaces)

    def check_shape(self, input_shape: Sequence[int]) -> None:
        """:raises ValueError: When the inputs' sample shape differs from the subspaces'."""
        self.subspaces[0].check_shape(input_shape)

    def project(self, v: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """
        :param v: Tensor ``(B, *extra, *shape)``: row ``i`` (with any extra axes, e.g. one per candidate class)
                  is projected onto subspace ``which[i]``; integer or bool rows are promoted to float32, as in
                  :meth:`Subspace.project`.
        :param which: Long tensor ``(B,)`` of subspace indices.
        :return: The projected tensor, same shape; ``v``'s dtype when floating, else float32.
        """
        v = _floating(v)
        if self._dct:
            blocks: list[DCTBlockSubspace] = self.subspaces  # type: ignore[assignment]
            masks = torch.stack([s.mask(v.device, v.dtype) for s in blocks])[which]
            masks = masks.reshape(masks.shape[:1] + (1,) * (v.ndim - 3) + masks.shape[1:])
            return idct2(dct2(v) * masks)
        out = torch.empty_like(v)
        flat_shape = (-1,) + self.shape
        for j, s in enumerate(self.subspaces):
            rows = (which == j).nonzero(as_tuple=True)[0]
            if rows.numel():
                part = v[rows]
                out[rows] = s.project(part.reshape(flat_shape)).reshape(part.shape)
        return out


def _floating(v: torch.Tensor) -> torch.Tensor:
    """:return: ``v`` itself when floating point (or complex), else (integer, bool) ``v`` converted to float32."""
    return v if v.is_floating_point() or v.is_complex() else v.to(torch.float32)


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    """:return: ``shape`` as a tuple of ints; :raises ValueError: naming ``name`` for anything but positive integers."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not dims or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                       for s in dims):
        raise ValueError(f"{name} must be a sequence of positive integers such as (1, 28, 28), got {shape!r}")
    return tuple(int(s) for s in dims)


def _image_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = _shape(shape, "image_shape")
    if len(shape) < 2:
        raise ValueError(f"an image shape is (C, H, W) or (H, W), got {shape}")
    return shape


def dct_subspaces(image_shape: Sequence[int], block_size: int = 8, stride: int = 1) -> list[DCTBlockSubspace]:
    """
    The diagonal DCT blocks of "Hold me tight!" (Ortiz-Jimenez et al., NeurIPS 2020, Sec. 3), low to high
    frequency: block ``j`` spans the DCT coefficients ``[j T, j T + K)`` on both axes, shared across channels.

    :param image_shape: Shape of one sample, ``(C, H, W)`` or ``(H, W)``.
    :param block_size: ``K``.
    :param stride: ``T``.
    :return: ``(min(H, W) - K) // T + 1`` subspaces (21 for 28 x 28 with K = 8, T = 1), each of dimension
             ``C K^2``.
    """
    shape = _image_shape(image_shape)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    side = min(shape[-2:])
    if block_size > side:
        raise ValueError(f"block_size {block_size} exceeds the image side {side}")
    return [DCTBlockSubspace(shape, j * stride, block_size) for j in range((side - block_size) // stride + 1)]


def _as_matrix(vectors: "np.ndarray | torch.Tensor") -> torch.Tensor:
    """:return: The vectors as float64 rows ``(N_vec, D)``, copied (a numpy array of any strides)."""
    t = torch.as_tensor(np.array(vectors, dtype=np.float64)) if isinstance(vectors, np.ndarray) else vectors
    t = t.detach().to(torch.float64)
    return t.reshape(t.shape[0], -1)


def _orthonormal_rows(mat: torch.Tensor, what: str) -> torch.Tensor:
    """Orthonormal basis of the row space of ``mat`` (``n x D``) through a rank-revealing SVD."""
    if not bool(torch.isfinite(mat).all()):
        raise ValueError(f"{what} contain NaN or inf values")
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    tol = s.max() * max(mat.shape) * torch.finfo(mat.dtype).eps if s.numel() else 0.0
    rank = int((s > tol).sum())
    if rank == 0:
        raise ValueError(f"{what} span only the zero vector")
    return vh[:rank]


def random_subspace(shape: Sequence[int], dim: int, seed: int = 0) -> BasisSubspace:
    """
    A random subspace: the orthonormal basis from the QR decomposition of a seeded Gaussian ``D x dim`` matrix
    (uniformly distributed on the Grassmannian).

    :param shape: Shape of one sample.
    :param dim: Its dimension, ``1 <= dim <= D``.
    :param seed: Seed of the Gaussian draw.
    :return: The subspace.
    """
    shape = _shape(shape, "shape")
    d = math.prod(shape)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= d:
        raise ValueError(f"dim must be an integer in [1, {d}], got {dim!r}")
    g = torch.Generator().manual_seed(int(seed))
    q, _ = torch.linalg.qr(torch.randn(d, int(dim), generator=g, dtype=torch.float64))
    return BasisSubspace(shape, q.T.contiguous(), f"random(dim={dim}, seed={seed})")


def span(vectors: "np.ndarray | torch.Tensor", name: str | None = None) -> BasisSubspace:
    """
    The span of given vectors, orthonormalised (rank-revealing SVD, so dependent vectors are allowed).

    :param vectors: ``(N_vec, *shape)`` numpy array or torch tensor of real numbers, finite.
    :param name: A label (default ``span(N)``).
    :return: The subspace, of dimension the rank of the vectors.
    :raises TypeError: For a container or dtype other than real arrays.
    :raises ValueError: For an empty, 1-D or non-finite array.
    """
    check_array(vectors, "vectors")
    basis = _orthonormal_rows(_as_matrix(vectors), "the vectors")
    return BasisSubspace(tuple(vectors.shape[1:]), basis, name or f"span({basis.shape[0]})")


def direction(u: "np.ndarray | torch.Tensor", name: str | None = None) -> BasisSubspace:
    """
    The one-dimensional span of ``u``.

    :param u: One sample-shaped vector (non-zero).
    :param name: A label (default ``direction``).
    :return: The subspace.
    """
    if not isinstance(u, (np.ndarray, torch.Tensor)) or u.ndim < 1:
        raise TypeError(f"u must be a sample-shaped numpy array or torch tensor, got {type(u).__name__}")
    check_array(u[None], "u")
    return span(u[None], name or "direction")


def orthogonal_complement(subspace: Subspace) -> ComplementSubspace:
    """
    :param subspace: A subspace ``S``.
    :return: ``S^perp``, projecting with ``P_perp = I - P_S``.
    """
    if not isinstance(subspace, Subspace):
        raise TypeError(f"expected a Subspace, got {type(subspace).__name__}")
    return ComplementSubspace(subspace)

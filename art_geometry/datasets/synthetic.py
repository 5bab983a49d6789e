"""
The synthetic data sets of "Hold me tight! Influence of discriminative features on deep network boundaries"
(Ortiz-Jimenez, Modas, Moosavi-Dezfooli and Frossard, NeurIPS 2020): a known orthonormal basis ``U`` in which the
only discriminative information lies along its first columns, so margins along ``u1`` (and ``u2``) have known
values and every other direction is pure noise.

``T1`` (:func:`linearly_separable`, paper Sec. 3.1): ``x = U (x1 ⊕ sigma n)``, ``x1 = (epsilon / 2) y``,
``y in {-1, +1}``, ``n ~ N(0, I_{D-1})``.

``T2`` (:func:`alternating`, paper Sec. 4.1): ``x = U (x1 ⊕ x2 ⊕ sigma n)`` with the same ``x1``, ``x2 = rho k``
for ``y = +1`` and ``x2 = rho (k + 1/2)`` for ``y = -1``, ``k`` uniform in ``{-K, ..., K-1}``.

Scale of ``x1`` (our reading, decided from the paper's text): the paper prints ``x1 = epsilon y`` for both sets,
but for ``T1(epsilon = 5)`` it reports a median margin along ``u1`` of 2.50 (Table 1; 5th / 95th percentiles 1.74
/ 3.22) and concludes that the network builds "a boundary in u1 with median margin epsilon / 2". With centres at
``±epsilon`` a boundary crossing ``u1`` cannot be ``epsilon / 2`` from the median sample of both classes (the two
distances add up to ``2 epsilon`` for a boundary orthogonal to ``u1``); with centres at ``±epsilon / 2`` the
boundary ``<u1, x> = 0`` is exactly ``epsilon / 2`` from every sample. We therefore read ``epsilon`` as the
distance between the class centres and use the same reading in ``T2`` so that ``epsilon`` means the same in
both. A result at ``epsilon`` here is the printed formula's result at ``epsilon / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SyntheticData", "alternating", "linearly_separable"]


@dataclass(frozen=True)
class SyntheticData:
    """
    A synthetic data set with its generating basis.

    :param x: Samples ``(n, dim)``, float32.
    :param y: Classes ``(n,)``, int64 in ``{0, 1}`` (class 0 is ``y = -1`` in the paper's notation).
    :param U: The orthonormal basis ``(dim, dim)``, float64; column ``k`` is ``u_{k+1}``.
    :param params: The generating parameters.
    """

    x: np.ndarray
    y: np.ndarray
    U: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def u1(self) -> np.ndarray:
        """The discriminative direction of ``T1``: ``U[:, 0]``."""
        return self.U[:, 0]

    @property
    def u2(self) -> np.ndarray:
        """The second direction: ``U[:, 1]`` (the alternating feature of ``T2``)."""
        return self.U[:, 1]

    def coordinates(self) -> np.ndarray:
        """:return: The samples in the basis ``U``: ``x U``, shape ``(n, dim)``."""
        return self.x.astype(np.float64) @ self.U


def _check(n: Any, dim: Any, epsilon: Any, sigma: Any, min_dim: int) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (both classes), got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < min_dim:
        raise ValueError(f"dim must be an integer >= {min_dim}, got {dim!r}")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
    return int(n), int(dim)


def _basis_and_labels(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A Haar-random orthonormal basis (QR of a Gaussian matrix, signs fixed) and balanced shuffled classes."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    basis = q * np.sign(np.diag(r))[None, :]
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    return basis, labels


def linearly_separable(
    n: int, dim: int = 100, *, epsilon: float = 1.0, sigma: float = 1.0, seed: int = 0
) -> SyntheticData:
    """
    Hold me tight's ``T1`` (Sec. 3.1): ``x = U (x1 ⊕ sigma n)`` with ``x1 = (epsilon / 2) s``, ``s = ±1`` the
    class sign, ``n ~ N(0, I_{dim-1})`` and ``U`` a seeded Haar-random orthonormal matrix. Only ``u1`` is
    discriminative; the distance from each sample to the max-margin boundary ``<u1, x> = 0`` is ``epsilon / 2``.

    :param n: Number of samples (classes balanced: ``n // 2`` and ``n - n // 2``).
    :param dim: Dimension ``D`` of the samples.
    :param epsilon: Distance between the two class centres along ``u1``.
    :param sigma: Standard deviation of the noise on the other ``D - 1`` coordinates.
    :param seed: Seed of ``U``, the labels and the noise.
    :return: The data set: ``x`` float32 ``(n, dim)``, ``y`` int64 in ``{0, 1}``, ``U`` and the parameters.
    """
    n, dim = _check(n, dim, epsilon, sigma, 2)
    rng = np.random.default_rng(seed)
    basis, labels = _basis_and_labels(rng, n, dim)
    coords = np.empty((n, dim))
    coords[:, 0] = (epsilon / 2.0) * (2 * labels - 1)
    coords[:, 1:] = sigma * rng.standard_normal((n, dim - 1))
    params = {"name": "T1", "n": n, "dim": dim, "epsilon": float(epsilon), "sigma": float(sigma), "seed": seed}
    return SyntheticData((coords @ basis.T).astype(np.float32), labels, basis, params)


def alternating(
    n: int,
    dim: int = 100,
    *,
    rho: float = 20.0,
    epsilon: float = 1.0,
    sigma: float = 1.0,
    k: int = 3,
    seed: int = 0,
) -> SyntheticData:
    """
    Hold me tight's ``T2(rho, epsilon, sigma, K)`` (Sec. 4.1, Fig. 5-6): ``x = U (x1 ⊕ x2 ⊕ x3)`` with
    ``x1 = (epsilon / 2) y`` (see the module docstring for the factor 1/2), ``x2 = rho j`` when ``y = +1`` and
    ``x2 = rho (j + 1/2)`` when ``y = -1``, ``j`` drawn uniformly from ``{-K, ..., K-1}``, ``x3 ~ N(0, sigma^2
    I_{dim-2})`` and ``U`` a seeded Haar-random orthonormal matrix.

    Along ``u2`` the samples lie on ``4 K`` stripes ``rho / 2`` apart whose classes alternate (class ``+1`` on the
    integer multiples of ``rho``, class ``-1`` half-way between), from ``-K rho`` to ``(K - 1/2) rho``: a
    feature that separates the classes with a non-linear pattern (a sample is ``rho / 4`` from the mid-point to
    the next stripe) but not linearly, beside ``u1``, which separates them linearly with margin ``epsilon / 2``.

    :param n: Number of samples (classes balanced).
    :param dim: Dimension ``D >= 3``.
    :param rho: The paper's ``rho``: distance between two stripes of the same class along ``u2``.
    :param epsilon: Distance between the class centres along ``u1``.
    :param sigma: Standard deviation of the noise on the other ``D - 2`` coordinates.
    :param k: The paper's ``K``: stripes per class along ``u2`` (``j in {-K, ..., K-1}``).
    :param seed: Seed of ``U``, the labels, the stripes and the noise.
    :return: The data set: ``x`` float32 ``(n, dim)``, ``y`` int64 in ``{0, 1}`` (class 1 is ``y = +1``), ``U``
             and the parameters.
    """
    n, dim = _check(n, dim, epsilon, sigma, 3)
    if not (np.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer (stripes per class), got {k!r}")
    rng = np.random.default_rng(seed)
    basis, labels = _basis_and_labels(rng, n, dim)
    stripe = rng.integers(-k, k, size=n)
    coords = np.empty((n, dim))
    coords[:, 0] = (epsilon / 2.0) * (2 * labels - 1)
    coords[:, 1] = rho * (stripe + 0.5 * (labels == 0))
    coords[:, 2:] = sigma * rng.standard_normal((n, dim - 2))
    params = {
        "name": "T2", "n": n, "dim": dim, "rho": float(rho), "epsilon": float(epsilon), "sigma": float(sigma),
        "k": int(k), "seed": seed,
    }
    return SyntheticData((coords @ basis.T).astype(np.float32), labels, basis, params)

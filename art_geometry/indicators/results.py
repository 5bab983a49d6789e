"""The result objects of the Jacobian, Hessian and indicator functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_geometry.core.results import ResultMixin, describe


@dataclass(frozen=True)
class JacobianResult(ResultMixin):
    """
    The input gradient ``J = grad_x L`` of the decision function per sample (Yu et al. 2019, eq. 4 and 9).

    :param gradients: ``(N, *input_shape)`` the gradients, as images.
    :param l1: ``(N,)`` ``||J||_1``.
    :param l2: ``(N,)`` ``||J||_2``.
    :param sparsity: ``(N,)`` fraction of entries with ``|J_i| < threshold``.
    :param decision: ``(N,)`` ``L(x)``.
    :param labels: ``(N,)`` labels ``t`` used.
    :param threshold: The sparsity threshold.
    :param params: The parameters used (``threshold``, ``batch_size``).
    """

    gradients: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    sparsity: np.ndarray
    decision: np.ndarray
    labels: np.ndarray
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """:return: Distributions of the l1 and l2 norms and of the sparsity, ``n_samples`` and ``params``."""
        return {
            "n_samples": int(len(self.l1)),
            "threshold": self.threshold,
            "l1": describe(self.l1),
            "l2": describe(self.l2),
            "sparsity": describe(self.sparsity),
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class HessianResult(ResultMixin):
    """
    Eigenvalues of the input Hessian per sample (Yu et al. 2019, eq. 6-9).

    :param eigenvalues: ``(N, k)`` top-``k`` eigenvalues by decreasing magnitude, or ``(N, D)`` all of them.
    :param l1: ``(N,)`` ``sum |lambda_i|`` over the returned eigenvalues (a lower bound of the full sum for top-k).
    :param sparsity: ``(N,)`` fraction of returned eigenvalues with ``|lambda| < zero_tol``.
    :param labels: ``(N,)`` labels ``t`` used.
    :param of: ``"decision"`` (Hessian of ``L``) or ``"loss"`` (Hessian of the cross-entropy).
    :param full: Whether the full spectrum was computed.
    :param zero_tol: Threshold below which an eigenvalue counts as zero.
    :param n_products: Hessian-vector products per sample.
    :param params: The parameters used (``k``, ``of``, ``full``, ``zero_tol``, ``tol``, ``seed``, ``batch_size``).
    """

    eigenvalues: np.ndarray
    l1: np.ndarray
    sparsity: np.ndarray
    labels: np.ndarray
    of: str
    full: bool
    zero_tol: float
    n_products: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs(self) -> np.ndarray:
        """``(N,)`` the largest eigenvalue magnitude of each sample."""
        return np.abs(self.eigenvalues[:, 0])

    def summary(self) -> dict[str, Any]:
        """:return: Distributions of the largest magnitude, the l1 and the sparsity, ``n_samples`` and ``params``."""
        return {
            "of": self.of,
            "full": self.full,
            "k": int(self.eigenvalues.shape[1]),
            "n_samples": int(len(self.l1)),
            "max_abs": describe(self.max_abs),
            "l1": describe(self.l1),
            "sparsity": describe(self.sparsity),
            "n_products": self.n_products,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class IndicatorResult(ResultMixin):
    """
    The second-order robustness indicator of Yu et al. (2019, eq. 9) over an ``eps`` ball.

    :param decision: ``(N,)`` ``L(x)``.
    :param first_order: ``(N,)`` worst case of ``sum |J_i| |d_i|`` over the ball.
    :param curvature: ``(N,)`` worst case of ``1/2 sum |lambda_i| y_i^2`` over the ball.
    :param bound: ``(N,)`` ``first_order + curvature``.
    :param certified: ``(N,)`` ``bound < L(x)``: the decision is kept on the whole ball by the second-order model.
    :param jacobian_l1: ``(N,)`` ``||J||_1``.
    :param jacobian_l2: ``(N,)`` ``||J||_2``.
    :param max_abs_eigenvalue: ``(N,)`` ``max |lambda|`` of the decision Hessian.
    :param labels: ``(N,)`` labels ``t`` used.
    :param eps: Radius of the ball.
    :param norm: Its norm (``2`` or ``inf``).
    :param dim: Input dimension ``D``.
    :param params: The parameters used (``eps``, ``norm``, ``k``, ``tol``, ``seed``, ``batch_size``).
    """

    decision: np.ndarray
    first_order: np.ndarray
    curvature: np.ndarray
    bound: np.ndarray
    certified: np.ndarray
    jacobian_l1: np.ndarray
    jacobian_l2: np.ndarray
    max_abs_eigenvalue: np.ndarray
    labels: np.ndarray
    eps: float
    norm: float
    dim: int
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: Certified fraction, distributions of the bound, its two terms and ``L(x) - bound``, ``n_samples``
                 and ``params``.
        """
        return {
            "eps": self.eps,
            "norm": "inf" if np.isinf(self.norm) else int(self.norm),
            "n_samples": int(len(self.bound)),
            "certified_fraction": float(self.certified.mean()),
            "bound": describe(self.bound),
            "first_order": describe(self.first_order),
            "curvature": describe(self.curvature),
            "slack": describe(self.decision - self.bound),
            "jacobian_l1": describe(self.jacobian_l1),
            "params": dict(self.params),
        }

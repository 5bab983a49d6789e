"""
Robustness indicators from the input-space Jacobian and Hessian of the decision function.

From "Interpreting Adversarial Robustness: A View from Decision Surface in Input Space" (Yu et al., ICLR 2019
submission, arXiv:1810.00144, Sec. 5, eq. 4-9). With ``L(x) = Z_t(x) - max_{i != t} Z_i(x)``, the second-order
Taylor model of a perturbation ``d`` is

    L(x + d) - L(x) ~ J d + 1/2 d^T H d,        J = grad_x L,  H = hess_x L = E diag(lambda) E^T      (eq. 4-7)

and, with ``y = E^T d``,

    |J d + 1/2 d^T H d| <= sum_i |J_i| |d_i| + 1/2 sum_i |lambda_i| y_i^2                              (eq. 8-9)

so small Jacobian entries and small Hessian eigenvalues mean a wide, flat plateau around ``x``.

At a given ``x`` the maximising competitor ``m = argmax_{i != t} Z_i(x)`` is fixed, so ``J`` and ``H`` are those of
``Z_t - Z_m``. For piecewise-linear (ReLU, max-pool) networks ``Z`` is affine on each activation region, so ``H`` is
zero almost everywhere: :func:`hessian_eigenvalues` warns when every eigenvalue is zero and offers the Hessian of
the cross-entropy (``of="loss"``), ``J_Z^T (diag(p) - p p^T) J_Z``, whose softmax part is not zero (rank <= C - 1
for such networks).

Hessian-vector products come from double backward on a retained graph (one forward and one backward per batch of
samples, then one backward per product); many products at once replicate the batch through one forward and two
backward passes. Top-k eigenvalues come from Lanczos runs with full reorthogonalisation, batched over samples:
a run whose wanted Ritz pairs have residuals ``|beta_m s_{m,i}| <= tol * ||H||`` is locked, and the result is
accepted only once a run from a fresh random vector in the orthogonal complement of everything locked finds no
larger eigenvalue (a Krylov space holds one vector per distinct eigenvalue, so repeated and clustered eigenvalues
are found by these restarts, as on breakdown); the full spectrum from all ``D`` products with the identity and
``torch.linalg.eigvalsh``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from art_geometry._batching import batches
from art_geometry._decision import decision_labels, decision_values
from art_geometry._gradients import input_gradients
from art_geometry._model import ModelView
from art_geometry._norms import Norm
from art_geometry._prepare import Prepared, prepare
from art_geometry._results import ResultMixin, describe
from art_geometry._rng import generator, resolve_seed
from art_geometry._settings import HessianSettings
from art_geometry._sweep import Chunk, SweepOptions, chunk_seed, shared_seed, stack, sweep
from art_geometry._validation import check_bool, check_number, check_positive_int

__all__ = [
    "JacobianResult",
    "HessianResult",
    "IndicatorResult",
    "jacobian_stats",
    "hessian_eigenvalues",
    "robustness_indicator",
]

#: Largest input dimension for which ``full=True`` builds the ``D x D`` Hessian.
FULL_SPECTRUM_MAX_DIM = 4096



class _InputHessian:
    """
    The gradient and Hessian-vector products of a per-sample objective with respect to a batch of inputs.

    The objective is ``L = Z_t - max_{i != t} Z_i`` (``"decision"``) or the cross-entropy ``-log softmax(Z)_t``
    (``"loss"``); samples are independent in eval mode, so the gradient of the batch sum holds every per-sample
    gradient, and a product with a batch of vectors ``V`` (one per sample) holds every ``H_n v_n``.
    """

    def __init__(self, view: ModelView, x: torch.Tensor, labels: torch.Tensor, of: str):
        self.view, self.labels, self.of = view, labels, of
        self.x = x.detach().requires_grad_(True)
        values, grad = self._gradient(self.x, labels)
        self.values = values.detach()
        self.grad = grad.detach().flatten(1)
        self._graph = grad if grad.requires_grad else None

    def _gradient(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: The objective per sample and its input gradient, with the graph for double backward."""
        with torch.enable_grad():
            logits = self.view(x)
            if self.of == "decision":
                values = decision_values(logits, labels)[0]
            else:
                values = F.cross_entropy(logits, labels, reduction="none")
            (grad,) = torch.autograd.grad(values.sum(), x, create_graph=True)
        return values, grad

    @property
    def dim(self) -> int:
        """Input dimension ``D``."""
        return self.grad.shape[1]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """:param v: ``(B, D)``. :return: ``(B, D)`` rows ``H_n v_n`` (one backward on the retained graph)."""
        if self._graph is None:
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(self._graph, self.x, grad_outputs=v.view_as(self.x), retain_graph=True)
        return hv.flatten(1)

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """
        :param v: ``(K, B, D)``.
        :return: ``(K, B, D)``, ``H_n v_{k, n}``: the batch replicated ``K`` times through one forward and two
                 backward passes (much faster than ``is_grads_batched``, whose vmap over double backward of
                 convolutions and pooling falls back to slow paths).
        """
        if self._graph is None:
            return torch.zeros_like(v)
        k = len(v)
        xs = self.x.detach().expand(k, *self.x.shape).reshape(-1, *self.x.shape[1:]).clone().requires_grad_(True)
        _, grad = self._gradient(xs, self.labels.repeat(k))
        (hv,) = torch.autograd.grad(grad, xs, grad_outputs=v.reshape(xs.shape))
        return hv.reshape(v.shape)


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from ``w`` ``(B, D)`` its components on the orthonormal rows of ``basis`` ``(B, m, D)``, twice."""
    for _ in range(2):
        w = w - torch.einsum("bmd,bm->bd", basis, torch.einsum("bmd,bd->bm", basis, w))
    return w


def _tridiagonal(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> torch.Tensor:
    """
    :param alphas: ``n`` scalar tensors, the diagonal of ``T``.
    :param betas: ``n`` scalar tensors; the first ``n - 1`` are the off-diagonal of ``T`` (the last couples ``T``
                  to the next Lanczos vector and stays out of it).
    :return: ``(n, n)`` the symmetric tridiagonal ``T``.
    """
    t = torch.diag(torch.stack(alphas))
    if len(betas) > 1:
        off = torch.stack(betas[:-1])
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return t


def _top_by_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    order = values.abs().argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order[:, :k])


def _lanczos(op: _InputHessian, k: int, tol: float, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """
    Top-``k`` eigenvalues by magnitude of every sample's Hessian, by Lanczos runs with full reorthogonalisation and
    locking, batched over samples (one Hessian-vector product per step for the whole batch).

    Each sample keeps a set of locked orthonormal vectors ``Y`` with values ``Theta``. A run starts from a random
    unit vector orthogonal to ``Y`` and explores ``P H P`` (``P = I - Y Y^T``) with every vector orthogonalised
    against ``Y`` and the run, so its tridiagonal ``T`` is exact; ``T s_i = theta_i s_i`` gives Ritz pairs of
    residual ``||H y_i - theta_i y_i|| = beta_m |s_{m,i}|`` (up to the coupling ``||R||`` of ``Y``, below). A
    run ends with

    - breakdown (``beta <= 100 eps ||H||``): the run spans an invariant subspace of ``P H P``; its vectors and the
      eigenvalues ``V`` of ``T`` are locked. Started from a random vector, it holds (with probability one) exactly
      one eigenvector per distinct eigenvalue of ``P H P``, so the rest of the spectrum only repeats ``V``: the
      sample is done when the run has length one (the rest is one eigenspace, its value fills the spectrum) or
      when the ``k``-th largest locked magnitude is ``>= max |V|``;
    - convergence: the ``k`` largest-magnitude Ritz pairs have residual ``<= tol ||H||``; their Ritz vectors and
      values are locked.

    Converged Ritz values alone are not the top-``k``: a Krylov space holds one vector per distinct eigenvalue, so
    the second copy of a repeated eigenvalue, and the members of a cluster closer than the residual, are missing
    from it while every wanted Ritz value has a small residual. Hence a sample holding ``k`` locked values is done
    only when a further run, from a fresh random vector in the complement, converges its largest-magnitude Ritz
    value ``mu`` at ``|mu| <= |Theta|_(k) + tol ||H||`` (``|Theta|_(k)`` the ``k``-th largest locked magnitude): the
    complement holds no larger eigenvalue, else that run is locked too. Since ``H Y = Y Theta + R`` with small
    ``R``, in the basis ``[Y, Y_perp]`` ``H`` is ``Theta (+) P H P`` up to off-diagonal blocks of norm ``||R||``, so
    (Weyl) the spectrum of ``H`` is ``Theta`` together with that of ``P H P`` within ``||R||``. A sample whose
    locked vectors and run fill all ``D`` dimensions is done with the eigenvalues of ``T`` and ``Theta``.

    :param op: The Hessian-vector products of a batch of ``B`` samples.
    :param k: Eigenvalues per sample, ``<= D``.
    :param tol: Relative residual at which Ritz pairs count as converged.
    :param gen: Generator of the random start vectors.
    :return: ``(B, k)`` eigenvalues sorted by decreasing magnitude, and the number of products per sample.
    """
    b, d = op.grad.shape
    dtype, device = op.grad.dtype, op.grad.device
    breakdown = 100 * torch.finfo(dtype).eps

    def fresh(basis: torch.Tensor) -> torch.Tensor:
        r = torch.randn(b, d, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        r = _orthogonalise(r, basis)
        return r / r.norm(dim=1, keepdim=True)

    # rows [0, start[i]) of sample i are its locked vectors, rows [start[i], used[i]) its run, the rest zero
    basis = torch.zeros(b, 0, d, device=device, dtype=dtype)
    start, used = [0] * b, [0] * b
    locked: list[list[torch.Tensor]] = [[] for _ in range(b)]
    alphas: list[list[torch.Tensor]] = [[] for _ in range(b)]
    betas: list[list[torch.Tensor]] = [[] for _ in range(b)]
    scale = torch.zeros(b, device=device, dtype=dtype)
    result: list[torch.Tensor | None] = [None] * b
    q = fresh(basis)
    step = 0
    while True:
        step += 1
        active = [i for i in range(b) if result[i] is None]
        if max(used[i] for i in active) == basis.shape[1]:
            basis = torch.cat([basis, basis.new_zeros(b, 1, d)], dim=1)
        rows = torch.tensor(active, device=device)
        basis[rows, torch.tensor([used[i] for i in active], device=device)] = q[rows]
        for i in active:
            used[i] += 1
        w = op.matvec(q)
        alpha = (w * q).sum(dim=1)
        w = _orthogonalise(w, basis)
        beta = w.norm(dim=1)
        scale = torch.maximum(scale, torch.maximum(alpha.abs(), beta))
        broken = (beta <= breakdown * scale).tolist()
        restart = [False] * b
        for i in active:
            alphas[i].append(alpha[i])
            betas[i].append(beta[i])
            t = _tridiagonal(alphas[i], betas[i])
            n = len(t)
            found = torch.cat(locked[i]) if locked[i] else t.new_zeros(0)
            if broken[i] or used[i] == d:
                values = torch.linalg.eigvalsh(t)
                found = torch.cat([found, values.expand(1 + d - used[i]) if n == 1 else values])
                top = _top_by_magnitude(found[None], k)[0]
                if n == 1 or used[i] == d or (len(found) >= k and top[-1].abs() >= values.abs().max()):
                    result[i] = top
                else:
                    locked[i].append(values)
                    restart[i] = True
            elif n >= k and (n <= 64 or n % 8 == 0):
                theta, s = torch.linalg.eigh(t)
                wanted = theta.abs().argsort(descending=True)[:k]
                converged = (beta[i] * s[-1, wanted].abs() <= tol * scale[i]).tolist()
                if (
                    len(found) >= k
                    and converged[0]
                    and theta[wanted[0]].abs() <= _top_by_magnitude(found[None], k)[0, -1].abs() + tol * scale[i]
                ):
                    result[i] = _top_by_magnitude(found[None], k)[0]
                elif all(converged):
                    basis[i, start[i] : start[i] + k] = s[:, wanted].T @ basis[i, start[i] : used[i]]
                    basis[i, start[i] + k : used[i]] = 0
                    used[i] = start[i] + k
                    locked[i].append(theta[wanted])
                    restart[i] = True
            if restart[i]:
                start[i] = used[i]
                alphas[i], betas[i] = [], []
        if all(r is not None for r in result):
            return torch.stack(result), step  # type: ignore[arg-type]
        q = w / torch.where(beta > 0, beta, 1.0)[:, None]
        if any(restart):
            q = torch.where(torch.tensor(restart, device=device)[:, None], fresh(basis), q)


def _full_spectrum(op: _InputHessian, chunk: int) -> torch.Tensor:
    """:return: ``(B, D)`` all eigenvalues of each ``H_n`` (from ``D`` products with the identity), by magnitude."""
    b, d = op.grad.shape
    eye = torch.eye(d, device=op.grad.device, dtype=op.grad.dtype)
    cols = []
    for start in range(0, d, chunk):
        v = eye[start : start + chunk, None, :].expand(-1, b, -1)
        cols.append(op.matmat(v))
    h = torch.cat(cols).permute(1, 0, 2)
    return _top_by_magnitude(torch.linalg.eigvalsh((h + h.transpose(1, 2)) / 2), d)


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


def _decision_objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L = Z_t - max_{i != t} Z_i`` per sample, the objective of the Jacobian."""
    return decision_values(logits, labels)[0]


def jacobian_stats(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    threshold: float = 1e-3,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> JacobianResult:
    """
    The input gradient ``J = grad_x L`` of the decision function ``L = Z_t - max_{i != t} Z_i`` per sample, its
    l1 and l2 norms and its sparsity ``mean(|J_i| < threshold)`` (Yu et al. 2019, eq. 4 and 9: a sparse, small
    ``J`` bounds the first-order change ``sum |J_i| |d_i|``).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param threshold: Magnitude below which a gradient entry counts as zero, ``>= 0``.
    :param batch_size: Samples per pass.
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: A :class:`JacobianResult`.
    """
    threshold = check_number(threshold, "threshold", minimum=0.0)
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    options = SweepOptions.build(checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    view, shape = prep.view, prep.sample_shape

    def compute(chunk: Prepared, index: int) -> Chunk:
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            values, grads = [], []
            for part in input_gradients(view, chunk.x, batch_size, _decision_objective, labels=labels):
                values.append(part.values)
                grads.append(part.grad.flatten(1))
        j = torch.cat(grads).double()
        return {
            "gradients": j.reshape(len(labels), *shape).cpu().numpy(),
            "l1": j.abs().sum(dim=1).cpu().numpy(),
            "l2": j.norm(dim=1).cpu().numpy(),
            "sparsity": (j.abs() < threshold).double().mean(dim=1).cpu().numpy(),
            "decision": torch.cat(values).double().cpu().numpy(),
            "labels": labels,
        }

    params = {"threshold": threshold, "batch_size": batch_size}
    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key="jacobian_stats", settings=params,
                   verbose=verbose, desc="jacobian")
    return JacobianResult(
        **{name: stack(chunks, name) for name in ("gradients", "l1", "l2", "sparsity", "decision", "labels")},
        threshold=threshold,
        params=params,
    )


@dataclass(frozen=True)
class _Run:
    """Hessian settings with the seed drawn, and the loop's batch size and progress flag."""

    settings: HessianSettings
    seed: int
    batch_size: int
    verbose: bool

    @classmethod
    def of(cls, settings: HessianSettings, batch_size: int, verbose: bool) -> "_Run":
        return cls(settings, resolve_seed(settings.seed), batch_size, verbose)

    def params(self, k: int) -> dict[str, Any]:
        """:return: The settings as used (``k`` as run, the seed drawn) and the batch size, JSON-safe."""
        return {**self.settings.to_dict(), "k": k, "seed": self.seed, "batch_size": self.batch_size}


def _check_k(k: Any, dim: int) -> int:
    k = check_positive_int(k, "k")
    if k > dim:
        raise ValueError(f"k={k} eigenvalues asked for, but the input has only {dim} dimensions")
    return k


def hessian_eigenvalues(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    settings: HessianSettings | None = None,
    batch_size: int = 16,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> HessianResult:
    """
    Eigenvalues of the Hessian with respect to the input of ``L = Z_t - Z_m`` (``of="decision"``, ``m`` the
    maximising competitor at ``x``) or of the cross-entropy (``of="loss"``) per sample (Yu et al. 2019, eq. 6-9).

    ``full=False``: the top-``k`` by magnitude, by Lanczos runs with full reorthogonalisation on Hessian-vector
    products, batched over the samples of a chunk: the ``k`` wanted Ritz pairs of a run are locked once their
    residuals are ``<= tol * ||H||`` (an eigenvalue error bound), and a sample is done when a further run in the
    orthogonal complement of the locked vectors, from a fresh random vector, converges its largest magnitude at
    ``<= |lambda_k| + tol * ||H||`` (so second copies of repeated eigenvalues and unresolved cluster members, absent
    from one Krylov space, are found). ``full=True``: all ``D`` eigenvalues from ``D`` batched products with the
    identity and ``torch.linalg.eigvalsh`` (``D <= FULL_SPECTRUM_MAX_DIM``).

    For piecewise-linear (ReLU, max-pool) networks the decision Hessian is zero almost everywhere; a warning says
    so when every eigenvalue is zero, and ``of="loss"`` gives the non-zero softmax curvature.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param settings: A :class:`~art_geometry.HessianSettings` (``k`` eigenvalues, ``of`` ``"decision"`` or
                     ``"loss"``, ``full``, ``zero_tol``, ``tol``, ``seed``); default ``HessianSettings()``.
    :param batch_size: Samples per chunk (each chunk keeps its double-backward graph in memory).
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :param options: Overrides of single settings fields, e.g. ``k=5, of="loss"``.
    :return: A :class:`HessianResult`; ``params`` holds the settings used (the seed drawn for ``seed=None``).
    """
    settings = HessianSettings.build(settings, options)
    run = _Run.of(settings, check_positive_int(batch_size, "batch_size"), check_bool(verbose, "verbose"))
    sweep_options = SweepOptions.build(checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=run.batch_size)
    key = "hessian_eigenvalues"
    run = replace(run, seed=shared_seed(settings.seed, sweep_options, key, run.seed))
    view = prep.view
    of, full, zero_tol, tol = settings.of, settings.full, settings.zero_tol, settings.tol
    batch_size = run.batch_size
    dim = int(np.prod(prep.sample_shape))
    if full and dim > FULL_SPECTRUM_MAX_DIM:
        raise ValueError(
            f"full=True builds the {dim} x {dim} Hessian; inputs of more than {FULL_SPECTRUM_MAX_DIM} dimensions "
            "need the top-k solver (full=False)"
        )
    k = dim if full else _check_k(settings.k, dim)

    def compute(chunk: Prepared, index: int) -> Chunk:
        gen = generator(chunk_seed(run.seed, index))
        eigs, products = [], 0
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            for batch in batches(view, chunk.x, batch_size, labels=labels):
                op = _InputHessian(view, batch.x, batch.y, of)
                if full:
                    eigs.append(_full_spectrum(op, max(1, 512 // len(batch.x))))
                    products = dim
                else:
                    top, steps = _lanczos(op, k, tol, gen)
                    eigs.append(top)
                    products = max(products, steps)
        return {"eigenvalues": torch.cat(eigs).double().cpu().numpy(), "labels": labels,
                "products": np.full(len(labels), products, dtype=np.int64)}

    chunks = sweep(prep, compute, batch_size=batch_size, options=sweep_options, key=key, settings=run.params(k=k),
                   verbose=run.verbose, desc="hessian")
    labels, products = stack(chunks, "labels"), int(stack(chunks, "products").max())
    lam = stack(chunks, "eigenvalues")
    if of == "decision" and np.all(np.abs(lam) <= zero_tol):
        warnings.warn(
            "every eigenvalue of the decision-function Hessian is zero: the model is piecewise linear (ReLU) "
            "around these inputs, where the Hessian of L vanishes almost everywhere; use of='loss' for the "
            "softmax curvature",
            UserWarning,
            stacklevel=2,
        )
    return HessianResult(
        eigenvalues=lam,
        l1=np.abs(lam).sum(axis=1),
        sparsity=(np.abs(lam) < zero_tol).mean(axis=1),
        labels=labels,
        of=of,
        full=full,
        zero_tol=zero_tol,
        n_products=int(products),
        params=run.params(k=k),
    )


def robustness_indicator(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    eps: float,
    norm: "float | str | Norm" = np.inf,
    settings: HessianSettings | None = None,
    batch_size: int = 16,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> IndicatorResult:
    """
    The worst case over the ball ``||d|| <= eps`` of the right-hand side of Yu et al. (2019) eq. 9,
    ``sum_i |J_i| |d_i| + 1/2 sum_i |lambda_i| y_i^2`` (``y = E^T d``), and whether it stays below ``L(x)``.

    Since ``|lambda_i| <= max|lambda|`` and ``||y||_2 = ||d||_2``:

    - ``norm=inf``: ``sum |J_i||d_i| <= eps ||J||_1`` and ``||d||_2^2 <= D eps^2``, so
      ``bound = eps ||J||_1 + 1/2 max|lambda| D eps^2``;
    - ``norm=2``: ``sum |J_i||d_i| <= eps ||J||_2`` (Cauchy-Schwarz), so ``bound = eps ||J||_2 + 1/2 max|lambda|
      eps^2``.

    ``certified = bound < L(x)``: under the second-order model, ``L(x + d) > 0`` on the whole ball. Only the
    competitor ``m`` maximising at ``x`` is in ``L``; another class overtaking inside the ball, or third-order
    terms, are not covered -- the flag is exact for affine models with two classes, and for any affine model it
    certifies against ``m`` only. ``max|lambda|`` is the largest-magnitude eigenvalue of the decision Hessian
    (``k`` Lanczos eigenvalues are computed; only the first enters the bound; zero for ReLU networks).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param eps: Radius of the ball, ``> 0``.
    :param norm: ``np.inf`` or ``2`` (any spelling :class:`~art_geometry.Norm` accepts).
    :param settings: A :class:`~art_geometry.HessianSettings` for the Lanczos solver; default
                     ``HessianSettings(k=1)`` (only the largest magnitude enters the bound). Its ``of`` must be
                     ``"decision"`` and ``full`` False.
    :param batch_size: Samples per chunk.
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :param options: Overrides of single settings fields (``k``, ``tol``, ``seed``).
    :return: An :class:`IndicatorResult`; ``params`` holds ``eps``, ``norm`` and the solver settings used.
    """
    ball = Norm.parse(norm)
    eps = check_number(eps, "eps", minimum=0.0, strict=True)
    settings = HessianSettings.build(HessianSettings(k=1) if settings is None else settings, options)
    if settings.of != "decision" or settings.full:
        raise ValueError("robustness_indicator bounds the decision function: its settings need of='decision', "
                         "full=False")
    run = _Run.of(settings, check_positive_int(batch_size, "batch_size"), check_bool(verbose, "verbose"))
    sweep_options = SweepOptions.build(checkpoint, chunk_size)
    batch_size = run.batch_size
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    key = "robustness_indicator"
    run = replace(run, seed=shared_seed(settings.seed, sweep_options, key, run.seed))
    view = prep.view
    dim = int(np.prod(prep.sample_shape))
    k = _check_k(settings.k, dim)
    tol = settings.tol

    def compute(chunk: Prepared, index: int) -> Chunk:
        gen = generator(chunk_seed(run.seed, index))
        values, grads, lams = [], [], []
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            for batch in batches(view, chunk.x, batch_size, labels=labels):
                op = _InputHessian(view, batch.x, batch.y, "decision")
                values.append(op.values)
                grads.append(op.grad)
                lams.append(_lanczos(op, k, tol, gen)[0][:, 0].abs())
        return {"values": torch.cat(values).double().cpu().numpy(), "labels": labels,
                "grads": torch.cat(grads).double().cpu().numpy(), "lam": torch.cat(lams).double().cpu().numpy()}

    params = {"eps": eps, "norm": ball.to_json(), **run.params(k=k)}
    chunks = sweep(prep, compute, batch_size=batch_size, options=sweep_options, key=key, settings=params,
                   verbose=run.verbose, desc="indicator")
    j = torch.as_tensor(stack(chunks, "grads"))
    lam = torch.as_tensor(stack(chunks, "lam"))
    labels = stack(chunks, "labels")
    l1, l2 = j.abs().sum(dim=1), j.norm(dim=1)
    # sum |J_i| |d_i| <= eps ||J||_q (q the dual norm); the largest ||d||_2^2 on the p-ball of radius eps is
    # D^(1 - 2/p) eps^2 (p >= 2: D eps^2 for inf, eps^2 for 2)
    first = eps * ball.dual.measure(j)
    curvature = 0.5 * lam * dim ** (1 - 2 / ball.p) * eps**2
    bound = first + curvature
    decision = torch.as_tensor(stack(chunks, "values"))
    return IndicatorResult(
        decision=decision.cpu().numpy(),
        first_order=first.cpu().numpy(),
        curvature=curvature.cpu().numpy(),
        bound=bound.cpu().numpy(),
        certified=(bound < decision).cpu().numpy(),
        jacobian_l1=l1.cpu().numpy(),
        jacobian_l2=l2.cpu().numpy(),
        max_abs_eigenvalue=lam.cpu().numpy(),
        labels=labels,
        eps=eps,
        norm=ball.p,
        dim=dim,
        params=params,
    )

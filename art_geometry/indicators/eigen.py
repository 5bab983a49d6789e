"""The input Hessian as an operator (Hessian-vector products by double backward, batched over samples) and its
eigenvalues: batched Lanczos with full reorthogonalisation and restarts, or the full spectrum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from art_geometry.core.decision import decision_values
from art_geometry.core.model import ModelView

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

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

from art_geometry.indicators.hessian import hessian_eigenvalues
from art_geometry.indicators.indicator import robustness_indicator
from art_geometry.indicators.jacobian import jacobian_stats
from art_geometry.indicators.results import HessianResult, IndicatorResult, JacobianResult

__all__ = [
    "JacobianResult",
    "HessianResult",
    "IndicatorResult",
    "jacobian_stats",
    "hessian_eigenvalues",
    "robustness_indicator",
]

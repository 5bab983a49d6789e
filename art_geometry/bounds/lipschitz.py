"""
Certified radii from Lipschitz constants: for the logit difference ``g_j = Z_pred - Z_j`` and the norm ``p`` of the
input, ``|g_j(x') - g_j(x)| <= L_j ||x' - x||_p``, so no point with ``||x' - x||_p < g_j(x) / L_j`` leaves the
region of ``pred`` towards ``j``; the certified radius is ``min_j g_j(x) / L_j`` (Hein & Andriushchenko, "Formal
Guarantees on the Robustness of a Classifier against Adversarial Manipulation", NeurIPS 2017, Theorem 2.1, with a
global constant; Szegedy et al., ICLR 2014, Sec. 4.3, for the product of layer norms).

The chain of layers (:mod:`art_geometry.bounds._network`) splits at its non-affine layers into runs of affine
layers. The logits are ``Z = A_K(h(x))`` with ``A_K`` the last run (a dense ``C x m`` map with rows ``r_k``, read by
autograd) and ``h`` everything before it, measured in the same ``p``:

    L_j = ||r_pred - r_j||_q * prod_k ||A_k||_{p->p} * prod_k c_k(p)

(``q`` the dual norm), tighter than ``2 max_k ||r_k||_q`` times the product. The factors, each a certified upper
bound:

* a run of affine layers small enough to write densely (at most :data:`~art_geometry.bounds._network.DENSE_LIMIT`
  entries): its exact operator norm: the largest absolute column sum for ``p = 1``, row sum for ``p = inf``, the
  largest singular value (float64 SVD, backward stable) for ``p = 2``;
* otherwise the product of its layers' norms: ``Linear`` exact as above; ``Conv1d`` / ``Conv2d`` and average
  pools: the exact absolute row / column sums ``|A| 1`` and ``|A|^T 1`` (one forward and one backward pass of the
  layer with ``|W|``) for ``p = inf`` / ``1``; for ``p = 2`` ``min(sqrt(||A||_1 ||A||_inf), ||C||_2)`` where
  ``C`` is the circular convolution on the zero-padded grid, ``||C||_2 = max_w sigma_max(K^(w))`` over the grid's
  discrete frequencies (Sedghi, Gupta and Long, ICLR 2019, Theorem 6): the zero-padded, strided convolution is
  ``C`` restricted to the valid outputs, so its norm is at most ``||C||_2``; eval-mode batch norm: the largest
  ``|gamma| / sqrt(var + eps)``; flattens, reshapes, identities, eval-mode dropouts: 1; the mean/std
  preprocessing: the largest ``1 / |std|``; arithmetic with a constant ``c``: ``max |c|`` for ``x * c``,
  ``max 1 / |c|`` for ``x / c``, ``|alpha|`` for ``c +- alpha x``, 1 for ``x +- alpha c``;
* activations: ``c = 1`` for ReLU and Tanh, ``1/4`` for Sigmoid, ``max(1, |slope|)`` for LeakyReLU; a max-pool whose
  windows cover each input at most ``m = prod_d min(k_d, ceil((dilation_d (k_d - 1) + 1) / stride_d))`` times:
  ``1`` for ``p = inf``, ``sqrt(m)`` for ``p = 2``, ``m`` for ``p = 1``.

Power iteration is not used anywhere: it converges to the norm from below, so it would not certify. The constants
are computed in float64 and inflated by a relative ``1e-6`` against rounding. The radius holds in all of R^D, so
it also bounds the distance inside ``clip_values`` from below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_geometry.bounds._network import DENSE_LIMIT, Arithmetic, Chain, Layer, Preprocessing, unfold
from art_geometry.core.norms import L1, L2, LINF, Norm

__all__ = ["LipschitzBound"]

#: Relative inflation of every constant, against the rounding of its float64 computation.
_SAFETY = 1e-6


def _dense_norm(w: torch.Tensor, norm: Norm) -> float:
    """:return: The exact operator norm ``||W||_{p->p}`` of a dense ``(out, in)`` matrix."""
    if norm == LINF:
        return float(w.abs().sum(dim=1).max())
    if norm == L1:
        return float(w.abs().sum(dim=0).max())
    return float(torch.linalg.matrix_norm(w, ord=2))


def _abs_sums(layer: Layer, weight: "torch.Tensor | None", device: torch.device) -> tuple[float, float]:
    """
    :param layer: A convolution (``weight`` its float64 kernel) or a pool (``weight`` None: already non-negative).
    :return: ``(||A||_inf, ||A||_1)``: the largest entries of ``|A| 1`` and ``|A|^T 1``.
    """
    module = layer.module
    if weight is None:
        fn = layer.fn
    else:
        conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
        kernel = weight.abs()

        def fn(z: torch.Tensor) -> torch.Tensor:
            return conv(z, kernel, None, module.stride, module.padding, module.dilation, module.groups)

    with torch.enable_grad():
        ones = torch.ones((1,) + layer.in_shape, dtype=torch.float64, device=device, requires_grad=True)
        out = fn(ones)
        (cols,) = torch.autograd.grad(out.sum(), ones)
    return float(out.detach().max()), float(cols.max())


def _padded_grid(module: nn.Module, spatial: tuple[int, ...]) -> list[int]:
    """The size of each spatial dimension after the convolution's zero padding."""
    kernel, dilation = module.kernel_size, module.dilation
    if module.padding == "valid":
        return list(spatial)
    if module.padding == "same":
        return [n + d * (k - 1) for n, k, d in zip(spatial, kernel, dilation)]
    return [n + 2 * p for n, p in zip(spatial, module.padding)]


def _circular_norm(module: nn.Module, weight: torch.Tensor, in_shape: tuple[int, ...]) -> float:
    """
    ``||C||_2`` of the circular convolution with the layer's kernel on its zero-padded grid (Sedghi et al., ICLR
    2019, Theorem 6): the largest singular value of the ``c_out x c_in`` kernel transform over the grid's
    frequencies; ``inf`` when that transform would exceed :data:`DENSE_LIMIT` entries.
    """
    grid = _padded_grid(module, tuple(in_shape[1:]))
    c_out, per_group = int(weight.shape[0]), int(weight.shape[1])
    c_in = per_group * module.groups
    if c_out * c_in * math.prod(grid) > DENSE_LIMIT:
        return math.inf
    full = weight.new_zeros((c_out, c_in) + tuple(weight.shape[2:]))
    outs = c_out // module.groups
    for g in range(module.groups):
        full[g * outs:(g + 1) * outs, g * per_group:(g + 1) * per_group] = weight[g * outs:(g + 1) * outs]
    kernel = weight.new_zeros((c_out, c_in) + tuple(grid))
    taps = tuple(slice(0, d * (k - 1) + 1, d) for k, d in zip(weight.shape[2:], module.dilation))
    kernel[(slice(None), slice(None)) + taps] = full
    spatial = tuple(range(2, kernel.ndim))
    spectrum = torch.fft.fftn(kernel, dim=spatial)
    mats = spectrum.permute(spatial + (0, 1)).reshape(-1, c_out, c_in)
    return float(torch.linalg.matrix_norm(mats, ord=2).max())


def _layer_norm(layer: Layer, norm: Norm, device: torch.device) -> float:
    """A certified upper bound of one affine layer's operator norm ``||A||_{p->p}`` (linear part)."""
    module = layer.module
    if isinstance(module, Arithmetic):
        return module.scale()
    if isinstance(module, Preprocessing):
        with torch.no_grad():
            zeros = torch.zeros((1,) + layer.in_shape, dtype=torch.float64, device=device)
            return float((layer(zeros + 1) - layer(zeros)).abs().max())
    if isinstance(module, nn.Linear):
        return _dense_norm(module.weight.detach().to(torch.float64), norm)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale = 1.0 / torch.sqrt(module.running_var.detach().to(torch.float64) + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach().to(torch.float64)
        return float(scale.abs().max())
    conv = isinstance(module, (nn.Conv1d, nn.Conv2d))
    if conv or isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        weight = module.weight.detach().to(device=device, dtype=torch.float64) if conv else None
        linf, l1 = _abs_sums(layer, weight, device)
        if norm == LINF:
            return linf
        if norm == L1:
            return l1
        holder = math.sqrt(l1 * linf)
        return min(holder, _circular_norm(module, weight, layer.in_shape)) if conv else holder
    return 1.0  # reshapes, flattens, identities, eval-mode dropouts


def _block_norm(block: list[Layer], in_shape: tuple[int, ...], norm: Norm, device: torch.device) -> float:
    """The operator norm of a run of affine layers: exact when it fits densely, else the product of its layers'."""
    if not block:
        return 1.0
    if math.prod(in_shape) * block[-1].out_dim <= DENSE_LIMIT:
        return _dense_norm(unfold(block, in_shape, device)[0], norm)
    return math.prod(_layer_norm(layer, norm, device) for layer in block)


def _tuple(value: "int | tuple[int, ...]", nd: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * nd


def _nonlinear_constant(layer: Layer, norm: Norm) -> float:
    """The Lipschitz constant ``p -> p`` of an activation or max-pool."""
    module = layer.module
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(module.negative_slope))
    if isinstance(module, nn.Sigmoid):
        return 0.25
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        nd = 1 if isinstance(module, nn.MaxPool1d) else 2
        kernel = _tuple(module.kernel_size, nd)
        stride = _tuple(module.stride or module.kernel_size, nd)
        dilation = _tuple(module.dilation, nd)
        cover = math.prod(min(k, math.ceil((d * (k - 1) + 1) / s)) for k, s, d in zip(kernel, stride, dilation))
        return {L1: float(cover), L2: math.sqrt(cover), LINF: 1.0}[norm]
    return 1.0  # ReLU, Tanh


def _rows(block: list[Layer], in_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The rows ``r_k`` ``(C, m)`` of the last run of affine layers (the identity when the chain ends otherwise)."""
    if not block:
        return torch.eye(math.prod(in_shape), dtype=torch.float64, device=device)
    with torch.enable_grad():
        z = torch.zeros((1,) + in_shape, dtype=torch.float64, device=device, requires_grad=True)
        out = z
        for layer in block:
            out = layer(out)
        out = out.flatten()
        rows = [torch.autograd.grad(out[k], z, retain_graph=k < out.numel() - 1)[0].flatten()
                for k in range(out.numel())]
    return torch.stack(rows)


@dataclass(frozen=True)
class LipschitzBound:
    """
    The Lipschitz constants of all logit differences of one chain in one norm.

    :param pair: ``(C, C)`` ``L[k, j]``, the constant of ``Z_k - Z_j``.
    :param norm: The norm of the input.
    """

    pair: torch.Tensor
    norm: Norm

    @classmethod
    def of(cls, chain: Chain, norm: Norm) -> "LipschitzBound":
        """
        :param chain: The model's chain of layers.
        :param norm: The norm of the input (1, 2 or inf).
        :return: The constants ``L[k, j] = ||r_k - r_j||_q * prod(factors)``, inflated by ``1 + 1e-6``.
        """
        factor = 1.0
        *inner, (block, in_shape, _) = chain.affine_runs()
        for run, run_shape, after in inner:
            factor *= _block_norm(run, run_shape, norm, chain.device) * _nonlinear_constant(after, norm)
        with torch.no_grad():
            rows = _rows(block, in_shape, chain.device)
            pair = torch.stack([norm.dual.measure(rows - rows[k]) for k in range(rows.shape[0])])
        return cls(pair=pair * (factor * (1.0 + _SAFETY)), norm=norm)

    def radii(self, logits: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """
        :param logits: ``(B, C)`` float64 logits of the chain at the samples.
        :param pred: ``(B,)`` the classes whose regions are certified.
        :return: ``(B,)`` float64 ``min_{j != pred} max(Z_pred - Z_j, 0) / L[pred, j]`` (``inf`` terms where a
                 difference is constant and positive).
        """
        gap = logits.gather(1, pred[:, None]) - logits
        lip = self.pair.to(logits.device)[pred]
        ratio = torch.where(lip > 0, gap.clamp(min=0) / lip, torch.where(gap > 0, math.inf, 0.0))
        ratio = ratio.scatter(1, pred[:, None], math.inf)
        return ratio.amin(dim=1)

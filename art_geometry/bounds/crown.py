"""
CROWN-certified lower bounds of the distance to the decision boundary, bisected on the radius.

CROWN (Zhang, Weng, Chen, Hsieh and Daniel, "Efficient Neural Network Robustness Certification with General
Activation Functions", NeurIPS 2018) bounds each activation between two linear functions of its pre-activation
(Sec. 3.1, Table 1: for an unstable ReLU with pre-activation bounds ``l < 0 < u`` the upper line
``u (z - l) / (u - l)`` and the adaptive lower line ``z`` if ``u >= -l`` else ``0``, "CROWN-Ada"), propagates a
linear specification backward through the network (Theorem 3.2) and concretises it over an L_p ball in closed
form with the dual norm (Corollary 3.3): ``min_{||d||_p <= r} a^T (x + d) + b = a^T x + b - r ||a||_q``.

The specification is the vector of LOGIT DIFFERENCES ``Z_pred - Z_j`` (the matrix ``C`` of Theorem 3.2 has the
rows ``e_pred - e_j``), propagated backward as one linear function, so that each relaxation is chosen for the
sign of the difference's coefficient: tighter than subtracting the interval bounds of two logits bounded one by
one. A radius ``r`` is certified for a sample when ``min_j lower(Z_pred - Z_j) > 0`` over the whole ball of
radius ``r``; the largest certified radius is found by bisection on ``[0, upper]`` (``upper``: a DeepFool margin,
an upper bound of the distance), all samples of a batch at once with per-sample radii.

The bound propagation is the ``bound-propagation`` package (``pip install art-geometry[bounds]``). Its L_p set
concretises with the exponent ``p / (1 - p)`` instead of the dual ``p / (p - 1)`` in 0.4.7 (an unsound bound),
so the L2 ball is :class:`_L2Ball` below.

The model is read as a chain of layers by the reader every certified bound shares
(:func:`art_geometry.bounds._network.read_chain`: a ``torch.fx`` trace of the forward, an ``nn.Sequential`` or a
module whose forward calls its layers one after the other, such as the zoo's ``MLP`` and ``SmallCNN``) and rebuilt in
float64 on the model's device from ``nn.Linear`` layers, activations and ``Cat`` blocks of bound-propagation:
every run of affine layers between two nonlinear ones (the classifier's mean/std preprocessing, convolutions,
eval-mode batch norms, average pools, flattens, arithmetic with constants) is unfolded into one dense
``nn.Linear`` by pushing the standard basis through it, a max pool is a tournament of
``max(a, b) = b + relu(a - b)``, a leaky ReLU is ``s z + (1 - s) relu(z)``, and a final softmax is dropped.

Cost: CROWN keeps, for every activation layer, a linear bound of each of its pre-activations in the input, and
each bisection step recomputes them: memory ``batch_size * width * input_dim`` floats for the widest layer, and
time ``batch_size * width_k * width_j * width_(j-1)`` per pair of layers ``j < k``. An MLP on 8 x 8 digits takes
milliseconds per step on a CPU; a convolutional network (widths of thousands) takes seconds per sample and step
on a CPU and wants a GPU and a smaller ``batch_size``.

The certificate covers the whole ball (not only its intersection with ``clip_values``), so it bounds from below
both the clipped and the unclipped distance. It is computed in float64 and is sound up to its rounding.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from art_geometry.bounds._network import Chain, read_chain, unfold
from art_geometry.core.batching import batches
from art_geometry.core.model import ModelView
from art_geometry.core.norms import L2, LINF, Norm
from art_geometry.core.rng import generator
from art_geometry.core.validation import check_number, check_positive_int

__all__ = ["crown_radii", "crown_seconds", "crown_supported"]

_DTYPE = torch.float64


def _bound_propagation() -> Any:
    try:
        with warnings.catch_warnings():  # its kernels use torch.jit.script, deprecated in torch 2.13
            warnings.filterwarnings("ignore", message=".*torch.jit.script", category=DeprecationWarning)
            import bound_propagation
    except ImportError as err:
        raise ImportError(
            "CROWN bounds need the bound-propagation package: pip install art-geometry[bounds]"
        ) from err
    return bound_propagation


@functools.cache
def _factory(bp: Any) -> Callable[[], Any]:
    """
    :param bp: The bound-propagation module.
    :return: A builder of bound-propagation's factory (adaptive ReLU lower lines) with a ``BoundLinear`` that
             starts a backward pass from the identity (bound-propagation's start for every pre-activation) by
             taking its weight, instead of multiplying an expanded identity matrix into it.
    """

    def identity(bounds: Any) -> bool:
        slope = bounds[0]
        return (
            slope.dim() == 3 and slope.stride(0) == 0 and slope.shape[1] == slope.shape[2]
            and torch.equal(slope[0], torch.eye(slope.shape[1], dtype=slope.dtype, device=slope.device))
        )

    class BoundLinear(bp.BoundLinear):  # type: ignore[misc, name-defined]
        def crown_backward(self, linear_bounds: Any, optimize: bool) -> Any:
            sides = [b for b in (linear_bounds.lower, linear_bounds.upper) if b is not None]
            if not sides or not all(identity(b) for b in sides):
                return super().crown_backward(linear_bounds, optimize)
            weight, bias = self.module.weight, self.module.bias
            start = sides[0][0]
            slope = weight.unsqueeze(0).expand(start.shape[0], *weight.shape)
            moved = [None if b is None else (slope, b[1] + bias) for b in (linear_bounds.lower, linear_bounds.upper)]
            return bp.LinearBounds(linear_bounds.region, moved[0], moved[1])

    def build() -> Any:
        factory = bp.BoundModelFactory(adaptive_relu=True)
        factory.register(nn.Linear, BoundLinear)
        return factory

    return build


def _chain(view: ModelView, input_shape: tuple[int, ...]) -> tuple["Chain | None", str]:
    """
    The model as the certified bounds read it (:func:`~art_geometry.bounds._network.read_chain`, one reader for
    every method), with what CROWN adds: max pools without ``ceil_mode``.

    :param view: The model view.
    :param input_shape: The shape of one input sample.
    :return: ``(chain, "")``, or ``(None, reason)`` where CROWN cannot bound the model.
    """
    try:
        chain = read_chain(view, input_shape)
    except ValueError as err:
        return None, f"CROWN bounds: {err}"
    bad = [f"{layer.module!r} at {layer.name!r} (ceil_mode)" for layer in chain.layers
           if layer.kind == "maxpool" and layer.module.ceil_mode]
    if bad:
        return None, f"CROWN bounds: unsupported layers: {'; '.join(bad)}"
    return chain, ""


def crown_supported(view: ModelView, input_shape: tuple[int, ...]) -> tuple[bool, str]:
    """
    Whether :func:`crown_radii` can bound the model: a chain of layers as the certified bounds read it
    (:mod:`art_geometry.bounds._network`: affine layers, arithmetic with constants, ``ReLU``, ``LeakyReLU``,
    ``Tanh``, ``Sigmoid``, ``MaxPool1d`` / ``MaxPool2d`` without ``ceil_mode``, after an affine preprocessing or
    none; a final softmax over the classes is dropped).

    :param view: The model view; the layers' modes are read inside :meth:`ModelView.evaluating` (restored).
    :param input_shape: The shape of one input sample.
    :return: ``(True, "")``, or ``(False, reason)`` with the reason naming the unsupported layers.
    """
    chain, why = _chain(view, tuple(int(s) for s in input_shape))
    return chain is not None, why


#: Seconds per sample per weight of the unfolded network for 20 bisection steps, measured on a quiet 2-core CPU
#: (``benchmarks/bench_bounds.py``: SmallCNN, 8.0M weights, 9.0 s per sample; MLP 64-24-24-10, 2,410 weights,
#: 2.3 ms per sample).
_SECONDS_PER_WEIGHT = 1.1e-6


def crown_seconds(view: ModelView, input_shape: tuple[int, ...], steps: int = 20) -> tuple[float, int]:
    """
    Estimated cost of :func:`crown_radii` per sample on a CPU, from the size of the network it bounds (every affine
    run unfolded to a dense matrix): ``1.1e-6 s x weights x steps / 20``.

    :param view: A model view that :func:`crown_supported` accepts.
    :param input_shape: The sample shape.
    :param steps: Bisection steps.
    :return: ``(seconds per sample, weights of the unfolded network)``.
    """
    chain, why = _chain(view, tuple(int(s) for s in input_shape))
    if chain is None:
        raise ValueError(why)
    with torch.no_grad():
        net = _bound_network(chain)
    weights = sum(p.numel() for p in net.parameters())
    return _SECONDS_PER_WEIGHT * weights * steps / 20, int(weights)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = skip_init(nn.Linear, weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
    layer.requires_grad_(False)
    layer.weight.copy_(weight)
    layer.bias.copy_(bias)
    return layer


def _windows(pool: nn.Module, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """
    :param pool: A ``MaxPool1d`` / ``MaxPool2d`` without ``ceil_mode``.
    :param shape: Its input sample shape ``(C, L)`` or ``(C, H, W)``.
    :param device: Where to build the index tensor.
    :return: ``(n_out, window)`` flat input indices of each output's window (``-1`` for padding), checked against
             the pool on random inputs.
    """
    two = isinstance(pool, nn.MaxPool2d)
    names = ("kernel_size", "stride", "padding", "dilation")
    values = [getattr(pool, n) for n in names]
    values = [(v, v) if isinstance(v, int) else (int(v[0]), int(v[-1])) for v in values]
    if not two:  # a 1-d pool is a 2-d pool over a grid of height 1
        values = [(0 if n == "padding" else 1, v[0]) for n, v in zip(names, values)]
    kernel, stride, padding, dilation = values
    channels = shape[0]
    grid = shape[1:] if two else (1, shape[1])
    index = torch.arange(1, math.prod(shape) + 1, dtype=_DTYPE, device=device).reshape(1, channels, *grid)
    cols = F.unfold(index, kernel, dilation=dilation, padding=padding, stride=stride)
    width = kernel[0] * kernel[1]
    windows = cols.reshape(channels, width, -1).permute(0, 2, 1).reshape(-1, width).round().long() - 1
    probe = torch.randn((2, *shape), dtype=_DTYPE, device=device, generator=generator(0, device))
    pooled = pool(probe)
    flat = probe.flatten(1)
    expected = torch.where(windows >= 0, flat[:, windows.clamp(min=0)], -math.inf).amax(dim=2)
    if pooled[0].numel() != windows.shape[0] or not torch.equal(pooled.flatten(1), expected):
        raise ValueError(f"cannot read the windows of {pool!r} on inputs of shape {shape}")
    return windows


def _tournament(windows: torch.Tensor, size: int) -> list[nn.Module]:
    """
    The max over each window as bound-propagation layers: rounds of ``max(a, b) = b + relu(a - b)``, each a
    ``Cat`` (the input and ``relu(D z)``) followed by the linear layer that adds ``b``.

    :param windows: ``(n_out, width)`` input indices (``-1``: none).
    :param size: Input length.
    :return: The layers, from inputs of length ``size`` to the ``n_out`` maxima.
    """
    bp = _bound_propagation()
    device = windows.device
    if windows.shape[1] == 1:  # a subsampling: one linear selection
        select = torch.zeros((windows.shape[0], size), dtype=_DTYPE, device=device)
        select[torch.arange(windows.shape[0], device=device), windows[:, 0]] = 1.0
        return [_linear(select, torch.zeros(windows.shape[0], dtype=_DTYPE, device=device))]
    layers: list[nn.Module] = []
    places = windows
    while places.shape[1] > 1:
        if places.shape[1] % 2:
            places = torch.cat([places, torch.full_like(places[:, :1], -1)], dim=1)
        a, b = places[:, 0::2].reshape(-1), places[:, 1::2].reshape(-1)
        both = torch.nonzero((a >= 0) & (b >= 0)).flatten()
        diff = torch.zeros((len(both), size), dtype=_DTYPE, device=device)
        rows = torch.arange(len(both), device=device)
        diff[rows, a[both]] = 1.0
        diff[rows, b[both]] -= 1.0
        keep = torch.where(b >= 0, b, a)
        combine = torch.zeros((len(a), size + len(both)), dtype=_DTYPE, device=device)
        valid = torch.nonzero(keep >= 0).flatten()
        combine[valid, keep[valid]] = 1.0
        combine[both, size + rows] = 1.0
        zeros = torch.zeros(len(both), dtype=_DTYPE, device=device)
        layers += [bp.Cat(nn.Sequential(_linear(diff, zeros), nn.ReLU())),
                   _linear(combine, torch.zeros(len(a), dtype=_DTYPE, device=device))]
        size = len(a)
        n_out = places.shape[0]
        places = torch.where(keep >= 0, torch.arange(size, device=device), -1).reshape(n_out, -1)
    return layers


def _leaky(slope: float, size: int, device: torch.device) -> list[nn.Module]:
    """:return: ``leaky_relu(z) = slope z + (1 - slope) relu(z)``: a ``Cat`` of the input and its ReLU, then a sum."""
    eye = torch.eye(size, dtype=_DTYPE, device=device)
    combine = torch.cat([slope * eye, (1.0 - slope) * eye], dim=1)
    return [_bound_propagation().Cat(nn.ReLU()), _linear(combine, torch.zeros(size, dtype=_DTYPE, device=device))]


def _merged(layers: list[nn.Module]) -> list[nn.Module]:
    """:return: ``layers`` with each run of consecutive ``nn.Linear`` multiplied into one."""
    out: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Linear) and out and isinstance(out[-1], nn.Linear):
            first = out.pop()
            layer = _linear(layer.weight @ first.weight, layer.weight @ first.bias + layer.bias)
        out.append(layer)
    return out


def _bound_network(chain: Chain) -> nn.Sequential:
    """
    The model's chain as float64 layers of bound-propagation on flattened inputs: each run of affine layers
    unfolded into one dense ``nn.Linear`` (:func:`~art_geometry.bounds._network.unfold`), ReLU, Tanh and Sigmoid as
    themselves, a leaky ReLU as ``s z + (1 - s) relu(z)``, a max pool as a tournament of ReLUs. The user's layers
    are read, never modified.

    :param chain: The model's chain (:func:`_chain`).
    :return: The network, on the chain's device.
    """
    layers: list[nn.Module] = []
    for block, in_shape, after in chain.affine_runs():
        if block or after is None and not layers:
            layers.append(_linear(*unfold(block, in_shape, chain.device, limit=None)))
        if after is None:
            break
        size = after.in_dim
        if after.kind == "maxpool":
            layers += _tournament(_windows(after.module, after.in_shape, chain.device), size)
        elif isinstance(after.module, nn.LeakyReLU):
            layers += _leaky(float(after.module.negative_slope), size, chain.device)
        else:
            layers.append(nn.ReLU() if after.kind == "relu" else type(after.module)())
    return nn.Sequential(*_merged(layers))


class _L2Ball:
    """
    The input set ``{x + d : ||d||_2 <= eps}`` per sample for bound-propagation: ``a^T x + b -/+ eps ||a||_2``
    (CROWN, Corollary 3.3); the box ``x -/+ eps`` that contains the ball seeds the interval bounds.

    :param mid: ``(B, d)`` centres.
    :param eps: ``(B,)`` radii.
    """

    def __init__(self, mid: torch.Tensor, eps: torch.Tensor):
        self.mid, self.eps = mid, eps

    def __getitem__(self, item: Any) -> "_L2Ball":
        # (..., features): bound-propagation slicing a layer's bounds keeps every sample and its radius
        per_sample = isinstance(item, tuple) and len(item) > 0 and item[0] is Ellipsis
        return _L2Ball(self.mid[item], self.eps if per_sample else self.eps[item])

    def __len__(self) -> int:
        return self.mid.size(0)

    def size(self, dim: "int | None" = None) -> Any:
        return self.mid.size() if dim is None else self.mid.size(dim)

    @property
    def device(self) -> torch.device:
        return self.mid.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mid.dtype

    def concretize(self, linear_bounds: Any) -> tuple["torch.Tensor | None", "torch.Tensor | None"]:
        out = []
        for sign, bounds in ((-1.0, linear_bounds.lower), (1.0, linear_bounds.upper)):
            if bounds is None:
                out.append(None)
                continue
            slope, intercept = bounds
            centre = slope.matmul(self.mid.unsqueeze(-1)).squeeze(-1)
            out.append(centre + sign * self.eps.unsqueeze(-1) * slope.norm(dim=-1) + intercept)
        return out[0], out[1]

    def bounding_hyperrect(self) -> Any:
        radius = self.eps.unsqueeze(-1)
        return _bound_propagation().IntervalBounds(self, self.mid - radius, self.mid + radius)


def _region(x: torch.Tensor, eps: torch.Tensor, norm: Norm) -> Any:
    """:return: The per-sample ball of radius ``eps`` around the flattened ``x``."""
    if norm == L2:
        return _L2Ball(x, eps)
    radius = eps.unsqueeze(-1)
    return _bound_propagation().HyperRectangle(x - radius, x + radius)


def _difference_lower(model: Any, x: torch.Tensor, pred: torch.Tensor, eps: torch.Tensor, norm: Norm,
                      nb_classes: int) -> torch.Tensor:
    """
    CROWN lower bounds of the logit differences over the balls, with the specification ``C = e_pred - e_j``
    propagated backward as one linear function (Theorem 3.2).

    :param model: The bound-propagation model of :func:`_bound_network`.
    :param x: ``(B, d)`` float64 flattened samples.
    :param pred: ``(B,)`` the classes whose region is certified.
    :param eps: ``(B,)`` radii.
    :param norm: L2 or L-inf.
    :param nb_classes: Number of logits.
    :return: ``(B, nb_classes)`` lower bounds of ``Z_pred - Z_j`` (``inf`` at ``j = pred``).
    """
    bp = _bound_propagation()
    region = _region(x, eps, norm)
    eye = torch.eye(nb_classes, dtype=x.dtype, device=x.device)
    spec = eye[pred].unsqueeze(1) - eye.unsqueeze(0)
    model.propagate_size(x.shape[1])
    model.crown_relax(region)
    try:
        bounds = model.crown_backward(bp.LinearBounds(region, (spec, torch.zeros_like(spec[..., 0])), None), False)
    finally:
        model.clear_relaxation()
    lower = bounds.concretize().lower
    return lower.scatter(1, pred.unsqueeze(1), math.inf)


def _bisect(model: Any, x: torch.Tensor, pred: torch.Tensor, upper: torch.Tensor, norm: Norm, nb_classes: int,
            steps: int, rtol: float) -> torch.Tensor:
    """
    The largest certified radius per sample by bisection on ``[0, upper]``; where ``upper`` is not finite the
    bracket first grows by doubling from ``||x||`` (or 1). Each step is one CROWN call on the samples whose
    bracket is still wider than ``rtol`` of its top.

    :return: ``(B,)`` certified radii (0 where none was certified).
    """
    lo = torch.zeros_like(upper)
    hi = torch.where(torch.isfinite(upper), upper, torch.full_like(upper, math.inf))
    start = norm.measure(x)
    start = torch.where(start > 0, start, torch.ones_like(start))
    for _ in range(steps):
        active = torch.nonzero((hi > 0) & (torch.isinf(hi) | (hi - lo > rtol * hi))).flatten()
        if active.numel() == 0:
            break
        low, high = lo[active], hi[active]
        r = torch.where(torch.isfinite(high), (low + high) / 2, torch.where(low > 0, 2 * low, start[active]))
        ok = _difference_lower(model, x[active], pred[active], r, norm, nb_classes).amin(dim=1) > 0
        lo[active] = torch.where(ok, r, low)
        hi[active] = torch.where(ok, high, r)
    return lo


def crown_radii(view: ModelView, x: torch.Tensor, pred: torch.Tensor, norm: Norm, upper: torch.Tensor, *,
                steps: int = 20, rtol: float = 1e-3, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """
    CROWN-certified radii (Zhang et al., NeurIPS 2018, Theorem 3.2 and Corollary 3.3): the largest ``r`` found by
    bisection such that ``min_j lower(Z_pred - Z_j) > 0`` over the ball of radius ``r`` around each sample, so
    that no point of the ball leaves the region of ``pred``: a lower bound of the distance to the boundary.

    :param view: The model view (accepted by :func:`crown_supported`); its eval-mode function is bounded and the
                 user's modes and flags are restored.
    :param x: ``(N, ...)`` samples (validated by ``prepare``), on the view's device and dtype.
    :param pred: ``(N,)`` the predicted classes (the regions certified).
    :param norm: L2 or L-inf.
    :param upper: ``(N,)`` upper bounds of the distance (DeepFool margins; ``inf`` or NaN where unknown): the
                  initial brackets ``[0, upper]``.
    :param steps: CROWN calls per batch at most (bisection steps), ``>= 1``.
    :param rtol: Stop a sample's bisection when its bracket is within ``rtol`` of its top, ``> 0``.
    :param batch_size: Samples per CROWN call.
    :return: ``(radii, status)``: ``(N,)`` float64 certified radii ``>= 0`` and ``(N,)`` str, ``"bound"`` where a
             radius ``> 0`` was certified, ``"failed"`` (radius 0) where none was.
    :raises ValueError: For a model :func:`crown_supported` refuses, a norm other than L2 / L-inf, or bad options.
    :raises ImportError: Without the bound-propagation package.
    """
    factory = _factory(_bound_propagation())()
    steps = check_positive_int(steps, "steps")
    rtol = check_number(rtol, "rtol", minimum=0.0, strict=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    if norm not in (L2, LINF):
        raise ValueError(f"CROWN bounds support the norms 2 and inf, got {norm}")
    pred = torch.as_tensor(pred, dtype=torch.long, device=view.device)
    upper = torch.as_tensor(upper, dtype=_DTYPE, device=view.device)
    radii = np.zeros(len(x), dtype=np.float64)
    shape = tuple(int(s) for s in x.shape[1:])
    chain, why = _chain(view, shape)
    if chain is None:
        raise ValueError(why)
    with torch.no_grad():
        net = _bound_network(chain)
        model = factory.build(net)
        nb_classes = int(net(torch.zeros((1, math.prod(shape)), dtype=_DTYPE, device=view.device)).shape[1])
        for b in batches(view, x, batch_size):
            found = _bisect(model, b.x.flatten(1).to(_DTYPE), pred[b.sl], upper[b.sl], norm, nb_classes, steps, rtol)
            radii[b.sl] = found.cpu().numpy()
    return radii, np.where(radii > 0, "bound", "failed")

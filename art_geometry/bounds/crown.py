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

The model is read as a chain of layers (``torch.fx`` trace of the forward: an ``nn.Sequential``, or a module
whose forward calls its layers one after the other, such as the zoo's ``MLP`` and ``SmallCNN``) and rebuilt in
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

import copy
import functools
import math
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import skip_init

from art_geometry._batching import batches
from art_geometry._model import ModelView
from art_geometry._norms import L2, LINF, Norm
from art_geometry._rng import generator
from art_geometry._validation import check_number, check_positive_int

__all__ = ["crown_radii", "crown_seconds", "crown_supported"]

Stage = Callable[[torch.Tensor], torch.Tensor]

#: Activation layers bound-propagation relaxes.
_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Tanh, nn.Sigmoid)

#: The same activations called as functions or tensor methods in a forward.
_ACTIVATION_CALLS: dict[Any, type[nn.Module]] = {
    torch.relu: nn.ReLU, F.relu: nn.ReLU, "relu": nn.ReLU,
    torch.tanh: nn.Tanh, F.tanh: nn.Tanh, "tanh": nn.Tanh,
    torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, "sigmoid": nn.Sigmoid,
}

#: Softmax over the classes: dropped at the end of the chain (the predicted class is that of the logits).
_SOFTMAX: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LogSoftmax)
_SOFTMAX_CALLS = {torch.softmax, torch.log_softmax, F.softmax, F.log_softmax, "softmax", "log_softmax"}

#: Affine layers (in eval mode), unfolded into dense linear layers.
_AFFINE: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
)

#: Layers that are affine only in eval mode.
_MODAL: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)

#: Max pools, bounded as tournaments of ReLUs.
_POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d)

#: Arithmetic with a constant operand (affine in the other one), as functions or tensor methods.
_ARITHMETIC: dict[Any, str] = {
    operator.add: "add", torch.add: "add", "add": "add",
    operator.sub: "sub", torch.sub: "sub", "sub": "sub",
    operator.mul: "mul", torch.mul: "mul", "mul": "mul",
    operator.truediv: "div", torch.div: "div", "div": "div",
}

#: Floats of one chunk of basis vectors when unfolding affine layers.
_UNFOLD_FLOATS = 1 << 24

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


@dataclass(frozen=True)
class _Layer:
    """
    One link of the model's chain.

    :param kind: ``"affine"`` (``op`` maps a batch affinely), ``"activation"`` (``op`` is the activation class),
                 ``"leaky"`` (``op`` is the negative slope), ``"maxpool"`` (``op`` is the pooling module) or
                 ``"softmax"`` (``op`` is ``None``).
    :param op: See ``kind``.
    """

    kind: str
    op: Any


def _refusal(module: nn.Module) -> str:
    """:return: Why a layer (read inside :meth:`ModelView.evaluating`) cannot be bounded, or ``""``."""
    if isinstance(module, _POOLS):
        if module.ceil_mode or module.return_indices:
            return f"{type(module).__name__} with ceil_mode or return_indices"
        return ""
    if isinstance(module, _SOFTMAX):
        return "" if module.dim in (None, 1, -1) else f"{type(module).__name__} not over the classes"
    if not isinstance(module, _ACTIVATIONS + _AFFINE + (nn.LeakyReLU,)):
        return type(module).__name__
    if isinstance(module, _MODAL) and module.training:
        return f"{type(module).__name__} in train mode"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.running_mean is None:
        return f"{type(module).__name__} without running statistics"
    return ""


def _constant(arg: Any, root: nn.Module) -> Any:
    """:return: A ``get_attr`` node's tensor (float64 copy) or a plain number; ``None`` for anything else."""
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        value = functools.reduce(getattr, str(arg.target).split("."), root)
        return value.detach().to(_DTYPE) if isinstance(value, torch.Tensor) else None
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return arg
    return None


def _arithmetic(node: fx.Node, prev: fx.Node, root: nn.Module) -> "Stage | None":
    """:return: ``x -> x (op) c`` (or ``c (op) x`` for add, sub, mul) for a node with one constant operand."""
    name = _ARITHMETIC[node.target]
    if len(node.args) != 2 or set(node.kwargs) - ({"alpha"} if name in ("add", "sub") else set()):
        return None
    first, second = node.args
    if first is prev and second is not prev:
        const, swapped = _constant(second, root), False
    elif second is prev and first is not prev and name != "div":
        const, swapped = _constant(first, root), True
    else:
        return None
    if const is None:
        return None
    alpha = node.kwargs.get("alpha", 1)
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    if name in ("add", "sub"):
        if swapped:
            return lambda z: ops[name](const, z, alpha=alpha)
        return lambda z: ops[name](z, const, alpha=alpha)
    return lambda z: ops[name](const, z) if swapped else ops[name](z, const)


def _call_layer(node: fx.Node, prev: fx.Node, root: nn.Module) -> "_Layer | None":
    """:return: The layer of a ``call_function`` / ``call_method`` node, or ``None`` when it is not supported."""
    target = node.target
    if target in _ACTIVATION_CALLS and node.args[:1] == (prev,) and len(node.args) == 1:
        return _Layer("activation", _ACTIVATION_CALLS[target])
    if target in (F.leaky_relu, "leaky_relu") and node.args[:1] == (prev,):
        slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
        return _Layer("leaky", float(slope)) if isinstance(slope, (int, float)) else None
    if target in _SOFTMAX_CALLS and node.args[:1] == (prev,):
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return _Layer("softmax", None) if dim in (None, 1, -1) else None
    if target in (torch.flatten, "flatten") and node.args[:1] == (prev,):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        if isinstance(start, int) and start >= 1 and isinstance(end, int):
            return _Layer("affine", lambda z: torch.flatten(z, start, end))
        return None
    if target in _ARITHMETIC:
        stage = _arithmetic(node, prev, root)
        return None if stage is None else _Layer("affine", stage)
    return None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    if node.op == "call_method":
        return f"{node.name} (.{node.target}())"
    return f"{node.name} ({getattr(node.target, '__name__', node.target)})"


def _node_layer(node: fx.Node, prev: fx.Node, root: nn.Module) -> tuple["_Layer | None", str]:
    """:return: ``(layer, "")`` for a supported node of the chain, ``(None, its name and why)`` otherwise."""
    if node.op != "call_module":
        found = _call_layer(node, prev, root)
        return found, "" if found is not None else _describe(node)
    sub = root.get_submodule(str(node.target))
    why = _refusal(sub) if node.args == (prev,) and not node.kwargs else "called with extra arguments"
    if why:
        return None, f"{node.target} ({why})"
    if isinstance(sub, _ACTIVATIONS):
        return _Layer("activation", type(sub)), ""
    if isinstance(sub, nn.LeakyReLU):
        return _Layer("leaky", float(sub.negative_slope)), ""
    if isinstance(sub, _SOFTMAX):
        return _Layer("softmax", None), ""
    return _Layer("maxpool" if isinstance(sub, _POOLS) else "affine", sub), ""


def _chain(view: ModelView) -> tuple[list[_Layer], str]:
    """
    Read the model as a chain of layers from a ``torch.fx`` trace of its forward; call inside
    :meth:`ModelView.evaluating` (the layers' modes are checked).

    :param view: The model view.
    :return: ``(layers, "")``, or ``([], reason)`` where the model cannot be bounded.
    """
    module = view.module
    if view.preprocess is not None and not view.affine_preprocess:
        return [], "CROWN bounds need an affine preprocessing (mean/std standardisation) or none"
    if isinstance(module, torch.jit.ScriptModule):
        return [], "CROWN bounds need the Python module, not a TorchScript module"
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as err:  # any user forward: report why it cannot be read as a chain
        return [], f"CROWN bounds need a forward that torch.fx can trace: {type(err).__name__}: {err}"
    nodes = [n for n in graph.nodes if n.op != "get_attr"]
    if [n.op for n in nodes].count("placeholder") != 1:
        return [], "CROWN bounds need a forward of one input"
    layers: list[_Layer] = []
    bad: list[str] = []
    prev = nodes[0]
    for node in nodes[1:]:
        if [n for n in node.all_input_nodes if n.op != "get_attr"] != [prev] or len(prev.users) != 1:
            return [], f"CROWN bounds need a chain of layers; {_describe(node)} does not take the previous output"
        if node.op == "output":
            break
        layer, why = _node_layer(node, prev, module)
        if layer is None:
            bad.append(why)
        else:
            layers.append(layer)
        prev = node
    while layers and layers[-1].kind == "softmax":
        layers.pop()
    if any(layer.kind == "softmax" for layer in layers):
        bad.append("a softmax before the last layer")
    if bad:
        return [], f"layers not supported by CROWN bounds: {', '.join(bad)}"
    return layers, ""


def crown_supported(view: ModelView) -> tuple[bool, str]:
    """
    Whether :func:`crown_radii` can bound the model: a chain of layers (an ``nn.Sequential``, nested ones allowed,
    or a forward that calls its layers one after the other) of ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``
    (modules or functions), ``MaxPool1d``/``MaxPool2d`` and affine layers (``Linear``, ``Conv1d``/``Conv2d``,
    eval-mode ``BatchNorm1d``/``BatchNorm2d`` with running statistics, ``AvgPool``/``AdaptiveAvgPool`` 1d/2d,
    ``Flatten``, ``Unflatten``, ``Identity``, eval-mode ``Dropout``, ``torch.flatten``, arithmetic with constants),
    after an affine preprocessing (mean/std standardisation) or none; a final softmax over the classes is dropped
    (it does not change the predicted class).

    :param view: The model view; the layers' modes are read inside :meth:`ModelView.evaluating` (restored).
    :return: ``(True, "")``, or ``(False, reason)`` with the reason naming the unsupported layers.
    """
    with view.evaluating():
        layers, why = _chain(view)
    return bool(layers), why


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
    with view.evaluating():
        chain, _ = _chain(view)
        net = _bound_network(view, chain, tuple(int(s) for s in input_shape))
    weights = sum(p.numel() for p in net.parameters())
    return _SECONDS_PER_WEIGHT * weights * steps / 20, int(weights)


def _unfold(stages: list[Stage], shape: tuple[int, ...], device: torch.device) -> tuple[nn.Linear, tuple[int, ...]]:
    """
    :param stages: Affine maps applied in order to batches of samples of shape ``shape``.
    :param shape: Their input sample shape.
    :param device: Where to build the layer.
    :return: The dense ``nn.Linear`` equal to their composition on flattened samples, and its output shape.
    """

    def apply(z: torch.Tensor) -> torch.Tensor:
        for stage in stages:
            z = stage(z)
        return z

    d = math.prod(shape)
    offset = apply(torch.zeros((1, *shape), dtype=_DTYPE, device=device))
    out_shape = tuple(offset.shape[1:])
    offset = offset.flatten(1)
    chunk = max(1, _UNFOLD_FLOATS // max(offset.shape[1], d))
    eye = torch.eye(d, dtype=_DTYPE, device=device)
    columns = [apply(eye[i:i + chunk].reshape(-1, *shape)).flatten(1) - offset for i in range(0, d, chunk)]
    return _linear(torch.cat(columns).T, offset[0]), out_shape


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = skip_init(nn.Linear, weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
    layer.requires_grad_(False)
    layer.weight.copy_(weight)
    layer.bias.copy_(bias)
    return layer


def _windows(pool: nn.Module, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, tuple[int, ...]]:
    """
    :param pool: A ``MaxPool1d`` / ``MaxPool2d`` without ``ceil_mode``.
    :param shape: Its input sample shape ``(C, L)`` or ``(C, H, W)``.
    :param device: Where to build the index tensor.
    :return: ``(n_out, window)`` flat input indices of each output's window (``-1`` for padding), and the output
             shape; checked against the pool on random inputs.
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
    return windows, tuple(pooled.shape[1:])


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


def _bound_network(view: ModelView, chain: list[_Layer], input_shape: tuple[int, ...]) -> nn.Sequential:
    """
    The model (preprocessing included) as float64 layers of bound-propagation on flattened inputs; call inside
    :meth:`ModelView.evaluating`. The user's layers are copied, never modified.

    :param view: The model view.
    :param chain: Its layers (:func:`_chain`).
    :param input_shape: The shape of one input sample.
    :return: The network, on the model's device.
    """
    stages: list[Stage] = [] if view.preprocess is None else [view.preprocess]
    layers: list[nn.Module] = []
    shape = input_shape
    for layer in chain:
        if layer.kind == "affine":
            op = layer.op
            stages.append(copy.deepcopy(op).to(_DTYPE) if isinstance(op, nn.Module) else op)
            continue
        if stages:
            linear, shape = _unfold(stages, shape, view.device)
            layers.append(linear)
            stages = []
        if layer.kind == "activation":
            layers.append(layer.op())
        elif layer.kind == "leaky":
            layers += _leaky(layer.op, math.prod(shape), view.device)
        else:
            size = math.prod(shape)
            windows, shape = _windows(layer.op, shape, view.device)
            layers += _tournament(windows, size)
    if stages or not layers:
        layers.append(_unfold(stages, shape, view.device)[0])
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
    with view.evaluating(), torch.no_grad():
        chain, why = _chain(view)
        if not chain:
            raise ValueError(why)
        shape = tuple(int(s) for s in x.shape[1:])
        net = _bound_network(view, chain, shape)
        model = factory.build(net)
        nb_classes = int(net(torch.zeros((1, math.prod(shape)), dtype=_DTYPE, device=view.device)).shape[1])
        for b in batches(view, x, batch_size):
            found = _bisect(model, b.x.flatten(1).to(_DTYPE), pred[b.sl], upper[b.sl], norm, nb_classes, steps, rtol)
            radii[b.sl] = found.cpu().numpy()
    return radii, np.where(radii > 0, "bound", "failed")

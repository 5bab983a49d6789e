"""
The model as a chain of layers, for the certified bounds: read once by ``torch.fx``, each layer re-evaluated in
float64 from the user's weights (never modified), in the mode the metrics run it.

A supported model is a chain: every layer takes the previous layer's output and nothing else (no residual
branches), from the (affine) preprocessing to the logits. Its layers are

* affine: ``Linear``, ``Conv1d`` / ``Conv2d`` (zero padding), ``BatchNorm1d`` / ``BatchNorm2d`` (eval mode, running
  statistics), ``AvgPool1d`` / ``AvgPool2d``, ``AdaptiveAvgPool1d`` / ``AdaptiveAvgPool2d``, ``Flatten``,
  ``Unflatten``, ``Identity``, ``Dropout`` (eval mode), ``Tensor.flatten`` / ``view`` / ``reshape`` /
  ``torch.flatten``, and the classifier's preprocessing when the adapter marks it affine (ART's mean/std
  standardisation, foolbox's mean/std/flip: ``ModelView.affine_preprocess``);
* arithmetic with a constant operand (a number or a parameter / buffer: ``x + c``, ``x - c``, ``c - x``,
  ``x * c``, ``x / c`` as operators, ``torch`` functions or tensor methods), affine in ``x``;
* ReLU (``nn.ReLU``, ``torch.relu``, ``F.relu``, ``Tensor.relu``), the other activations ``LeakyReLU``, ``Tanh``,
  ``Sigmoid`` (modules, functions or tensor methods), and ``MaxPool1d`` / ``MaxPool2d``;
* a final ``softmax`` / ``log_softmax`` over the classes, dropped: it does not change the predicted class, so the
  decision regions are those of the logits before it.

:func:`milp_layers` writes a network of affine layers, ReLUs and max-pools as the MILP's layer sequence (every run
of affine layers between two nonlinear layers unfolded into one dense matrix by pushing the standard basis through
it, each max-pool as the input indices of its windows); :func:`affine_relu_layers` writes a ReLU network as its
list of dense affine maps. The same chain is what the Lipschitz, MILP and CROWN bounds read (one reader for all
three).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from art_geometry.bounds.milp import RELU, MaxPool, Step
from art_geometry.core.model import ModelView, adapt
from art_geometry.core.rng import generator

__all__ = [
    "UnsupportedModelError", "Arithmetic", "Layer", "Chain", "read_chain", "affine_relu_layers", "milp_layers",
    "unfold", "pool_windows",
]

_DTYPE = torch.float64

#: Layers that are affine maps in eval mode.
_AFFINE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
)

#: Element-wise activations other than ReLU.
_ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (nn.LeakyReLU, nn.Tanh, nn.Sigmoid)

_RELU_FUNCTIONS = {torch.relu, F.relu}
#: Other activations called as functions (or tensor methods), by the module that stands in for them.
_ACTIVATION_FUNCTIONS: dict[Any, type[nn.Module]] = {
    torch.tanh: nn.Tanh, F.tanh: nn.Tanh, "tanh": nn.Tanh,
    torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, "sigmoid": nn.Sigmoid,
}
#: Arithmetic with a constant operand, as functions or tensor methods.
_ARITHMETIC: dict[Any, str] = {
    operator.add: "add", torch.add: "add", "add": "add",
    operator.sub: "sub", torch.sub: "sub", "sub": "sub",
    operator.mul: "mul", torch.mul: "mul", "mul": "mul",
    operator.truediv: "div", torch.div: "div", "div": "div",
}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "contiguous"}
_SOFTMAX_FUNCTIONS = {torch.softmax, torch.log_softmax, F.softmax, F.log_softmax}
_SOFTMAX_METHODS = {"softmax", "log_softmax"}

#: Floats of one chunk of basis vectors pushed through affine layers, and of a dense matrix at most.
_CHUNK_FLOATS = 1 << 22
DENSE_LIMIT = 1 << 24

#: Samples of the shape probe (two, so that a reshape that mixes samples shows).
_PROBE = 2


class UnsupportedModelError(ValueError):
    """A model the certified bounds cannot read (its layers, or a TorchScript module), named in the message."""



class _Reshape(nn.Module):
    """A reshape of each sample to ``shape`` (element order kept: an isometry in every L_p norm)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0],) + self.shape)


class Arithmetic(nn.Module):
    """
    ``x (op) c`` (or ``c (op) x`` for add, sub and mul) with a constant ``c``: an affine map of ``x``.

    :param op: ``"add"``, ``"sub"``, ``"mul"`` or ``"div"``.
    :param const: The constant, a float64 tensor (a copy) or a number.
    :param swapped: The constant is the first operand.
    :param alpha: The ``alpha`` of ``torch.add`` / ``torch.sub``.
    """

    def __init__(self, op: str, const: "torch.Tensor | float", swapped: bool, alpha: float = 1.0):
        super().__init__()
        self.op, self.const, self.swapped, self.alpha = op, const, swapped, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.const
        if self.op == "add":
            return c + self.alpha * x if self.swapped else x + self.alpha * c
        if self.op == "sub":
            return c - self.alpha * x if self.swapped else x - self.alpha * c
        if self.op == "mul":
            return c * x
        return x / c

    def scale(self) -> float:
        """:return: The largest factor of the linear part, ``max |d (x op c) / dx|``: its operator norm."""
        if self.op in ("add", "sub"):
            return abs(float(self.alpha)) if self.swapped else 1.0
        size = torch.as_tensor(self.const, dtype=_DTYPE).abs()
        return float(size.max()) if self.op == "mul" else float((1.0 / size).max())


class Preprocessing(nn.Module):
    """
    The classifier's affine preprocessing (mean/std standardisation, possibly a flip), run in float64.

    :param preprocess: The view's preprocessing function.
    """

    def __init__(self, preprocess: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.preprocess = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocess(x).to(x.dtype)


@dataclass(frozen=True)
class Layer:
    """
    One layer of the chain.

    :param name: Where it is in the model, for messages (``features.0``, ``flatten``, ``preprocessing``).
    :param module: The user's module, or a stand-in for a functional call (``nn.ReLU()``, a reshape, the
                   preprocessing).
    :param kind: ``"affine"``, ``"relu"``, ``"activation"`` (another element-wise activation) or ``"maxpool"``.
    :param in_shape: Shape of one input sample.
    :param out_shape: Shape of one output sample.
    :param fn: The layer in float64, independent of the modules' train/eval flags.
    """

    name: str
    module: nn.Module
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, compare=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    @property
    def in_dim(self) -> int:
        """Size of one flattened input sample."""
        return math.prod(self.in_shape)

    @property
    def out_dim(self) -> int:
        """Size of one flattened output sample."""
        return math.prod(self.out_shape)


@dataclass(frozen=True)
class Chain:
    """
    A model read as a chain of layers, preprocessing first, logits last.

    :param layers: The layers in execution order.
    :param input_shape: Shape of one input sample.
    :param device: Where the float64 layers run.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    device: torch.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: ``(B, *input_shape)`` inputs.
        :return: ``(B, nb_classes)`` float64 logits.
        """
        z = x.to(device=self.device, dtype=_DTYPE)
        for layer in self.layers:
            z = layer(z)
        return z.flatten(1)

    def relu_only(self, who: str, maxpool: bool = False) -> None:
        """
        :param who: What needs the network, for the message (``"method='milp'"``, ``"affine_relu_layers"``).
        :param maxpool: Whether max-pools without ``ceil_mode`` are allowed (the MILP reads them).
        :raises ValueError: When a layer is neither affine nor a ReLU (nor an allowed max-pool), naming it and the
                            methods that support it.
        """
        for layer in self.layers:
            what = f"{type(layer.module).__name__} at {layer.name!r}"
            if layer.kind == "activation":
                raise ValueError(
                    f"non-ReLU activation {what}: {who} needs ReLU networks; method='crown' and method='lipschitz' "
                    "support it"
                )
            if layer.kind == "maxpool" and not maxpool:
                raise ValueError(
                    f"{what}: {who} needs networks of affine layers and ReLUs (milp_layers also reads max-pools)"
                )
            if layer.kind == "maxpool" and layer.module.ceil_mode:
                raise ValueError(
                    f"{type(layer.module).__name__} with ceil_mode=True at {layer.name!r}: {who} needs max-pools "
                    "without ceil_mode; method='lipschitz' supports it"
                )

    def affine_relu(self, who: str = "affine_relu_layers") -> list[tuple[torch.Tensor, torch.Tensor]]:
        """
        :param who: What needs a ReLU network, for the message of :meth:`relu_only`.
        :return: The dense affine maps ``(W, b)`` between the ReLUs (see :func:`affine_relu_layers`).
        """
        self.relu_only(who)
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for block, in_shape, after in self.affine_runs():
            if after is None or block or not out:  # a ReLU right after a ReLU changes nothing
                out.append(unfold(block, in_shape, self.device))
        return out

    def milp_layers(self, who: str = "method='milp'") -> list[Step]:
        """
        The chain as the MILP's layer sequence (:data:`~art_geometry.bounds.milp.Layers`): each run of affine layers
        unfolded into one dense float64 ``(W, b)`` (numpy, on the CPU; a run of no layers between two nonlinear ones
        is left out), each ReLU as :data:`~art_geometry.bounds.milp.RELU`, each max-pool as a
        :class:`~art_geometry.bounds.milp.MaxPool` of its windows (:func:`pool_windows`), the map to the logits last.

        :param who: What needs the network, for the messages of :meth:`relu_only`.
        :return: The steps.
        :raises ValueError: For another activation or a max-pool with ``ceil_mode`` (naming the layer and the
                            methods that support it), or a run of affine layers too large to write densely.
        """
        self.relu_only(who, maxpool=True)
        out: list[Step] = []
        for block, in_shape, after in self.affine_runs():
            if block or after is None:
                w, b = unfold(block, in_shape, self.device)
                out.append((w.cpu().numpy(), b.cpu().numpy()))
            if after is None:
                break
            if after.kind == "maxpool":
                out.append(MaxPool(pool_windows(after.module, after.in_shape, self.device)))
            elif not out or out[-1] is not RELU:  # a ReLU right after a ReLU changes nothing
                out.append(RELU)
        return out

    def affine_runs(self) -> Iterator[tuple[list[Layer], tuple[int, ...], "Layer | None"]]:
        """
        :return: The chain split at its non-affine layers: per run, the affine layers (possibly none), the shape
                 they receive, and the non-affine layer after them (``None`` for the last run, before the logits).
        """
        block: list[Layer] = []
        in_shape = self.input_shape
        for layer in self.layers:
            if layer.kind == "affine":
                block.append(layer)
                continue
            yield block, in_shape, layer
            block, in_shape = [], layer.out_shape
        yield block, in_shape, None


def unfold(layers: "list[Layer] | tuple[Layer, ...]", in_shape: tuple[int, ...], device: torch.device,
           limit: "int | None" = DENSE_LIMIT) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The dense affine map of a run of affine layers, by pushing the standard basis through them in float64.

    :param layers: Affine layers, in order (none: the identity).
    :param in_shape: Their input sample shape.
    :param device: Where to compute.
    :param limit: Most entries of the matrix (``None``: no limit; CROWN bounds any size it is given).
    :return: ``(W, b)``: ``W`` ``(out, in)`` and ``b`` ``(out,)`` float64, with ``layers(x) = W flatten(x) + b``.
    :raises ValueError: When the matrix would exceed ``limit`` floats.
    """

    def apply(z: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            z = layer(z)
        return z.flatten(1)

    d = math.prod(in_shape)
    with torch.no_grad():
        offset = apply(torch.zeros((1,) + tuple(in_shape), dtype=_DTYPE, device=device))
        out = offset.shape[1]
        if limit is not None and d * out > limit:
            names = ", ".join(layer.name for layer in layers)
            raise ValueError(f"the affine layers {names} are too large to write as one dense {out} x {d} matrix")
        chunk = max(1, _CHUNK_FLOATS // max(out, d))
        eye = torch.eye(d, dtype=_DTYPE, device=device)
        columns = [
            apply(eye[start:start + chunk].reshape((-1,) + tuple(in_shape))) - offset for start in range(0, d, chunk)
        ]
    return torch.cat(columns).T.contiguous(), offset[0]


def pool_windows(pool: nn.Module, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
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


def _float64_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: t.detach().to(_DTYPE) if t.is_floating_point() else t.detach()
        for name, t in list(module.named_parameters()) + list(module.named_buffers())
    }


def _module_fn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's eval-mode map in float64, from a float64 copy of its tensors (the module is not touched)."""
    if isinstance(module, nn.Dropout):
        return lambda x: x
    state = _float64_state(module)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return lambda x: F.batch_norm(
            x, state["running_mean"], state["running_var"], state.get("weight"), state.get("bias"), False, 0.0,
            module.eps,
        )
    if not state:
        return module
    return lambda x: torch.func.functional_call(module, state, (x,))


def _refusal(module: nn.Module) -> str:
    """:return: Why a module of a supported type cannot be bounded in its current mode, or ``""``."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)) and module.training:
        return f"{type(module).__name__} in train mode"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.running_mean is None:
        return f"{type(module).__name__} without running statistics"
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.padding_mode != "zeros":
        return f"{type(module).__name__} with padding_mode={module.padding_mode!r}"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) and module.return_indices:
        return f"{type(module).__name__} with return_indices=True"
    return ""


def _kind_of_module(module: nn.Module) -> str | None:
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, _AFFINE_MODULES):
        return "affine"
    if isinstance(module, _ACTIVATION_MODULES):
        return "activation"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        return "maxpool"
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return "softmax"
    return None


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return None if meta is None or not hasattr(meta, "shape") else tuple(int(s) for s in meta.shape)


def _softmax_dim(node: torch.fx.Node, module: nn.Module | None) -> Any:
    if module is not None:
        return module.dim
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)


def _describe(node: torch.fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return f"{type(module).__name__} at {node.target!r}"
    what = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{what} at {node.name!r}"


def _calls(node: torch.fx.Node, functions: set[Any], methods: set[str]) -> bool:
    """Whether the node calls one of ``functions`` or one of the tensor ``methods``."""
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def _constant(arg: Any, root: nn.Module) -> "torch.Tensor | float | None":
    """:return: A ``get_attr`` node's tensor (a float64 copy) or a plain number; ``None`` for anything else."""
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        value = functools.reduce(getattr, str(arg.target).split("."), root)
        return value.detach().to(_DTYPE) if isinstance(value, torch.Tensor) else None
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    return None


def _arithmetic(node: torch.fx.Node, prev: torch.fx.Node, root: nn.Module) -> "Arithmetic | None":
    """:return: The stand-in of ``prev (op) c`` / ``c (op) prev`` with a constant ``c``, or ``None``."""
    op = _ARITHMETIC[node.target]
    if len(node.args) != 2 or set(node.kwargs) - ({"alpha"} if op in ("add", "sub") else set()):
        return None
    first, second = node.args
    if first is prev and second is not prev:
        const, swapped = _constant(second, root), False
    elif second is prev and first is not prev and op != "div":
        const, swapped = _constant(first, root), True
    else:
        return None
    alpha = node.kwargs.get("alpha", 1)
    if const is None or not isinstance(alpha, (int, float)):
        return None
    return Arithmetic(op, const, swapped, float(alpha))


def _layer(node: torch.fx.Node, prev: torch.fx.Node, root: nn.Module, in_shape: tuple[int, ...],
           out_shape: tuple[int, ...]) -> tuple["Layer | None", str]:
    """:return: The layer of a tensor node (``prev``: the node it follows), or ``None`` and why it is not supported."""
    module = root.get_submodule(str(node.target)) if node.op == "call_module" else None
    if node.op == "call_module":
        kind = _kind_of_module(module)
        if kind is None:
            why = _describe(node, module)
        else:
            refusal = _refusal(module)
            why = f"{refusal} at {node.target!r}" if refusal else ""
        stand_in = _Reshape(out_shape) if isinstance(module, (nn.Flatten, nn.Unflatten)) else module
    elif _calls(node, _RELU_FUNCTIONS, {"relu"}):
        kind, why, stand_in = "relu", "", nn.ReLU()
    elif node.op in ("call_function", "call_method") and node.target in _ACTIVATION_FUNCTIONS:
        kind, why, stand_in = "activation", "", _ACTIVATION_FUNCTIONS[node.target]()
    elif _calls(node, {F.leaky_relu}, {"leaky_relu"}):
        slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
        if isinstance(slope, (int, float)):
            kind, why, stand_in = "activation", "", nn.LeakyReLU(float(slope))
        else:
            kind, why, stand_in = None, _describe(node, None), None
    elif node.op in ("call_function", "call_method") and node.target in _ARITHMETIC:
        stand_in = _arithmetic(node, prev, root)
        kind = "affine"
        why = "" if stand_in is not None else f"{_describe(node, None)} (arithmetic without one constant operand)"
    elif _calls(node, _RESHAPE_FUNCTIONS, _RESHAPE_METHODS):
        kind, why, stand_in = "affine", "", _Reshape(out_shape)
    elif _calls(node, _SOFTMAX_FUNCTIONS, _SOFTMAX_METHODS):
        kind, why, stand_in = "softmax", "", nn.Identity()
    else:
        kind, why, stand_in = None, _describe(node, None), None
    if kind is None or why:
        return None, why
    if kind == "softmax" and not (len(out_shape) == 1 and _softmax_dim(node, module) in (None, 1, -1)):
        return None, f"{_describe(node, module)} (not over the classes)"
    fn = _module_fn(stand_in)
    name = str(node.target) if node.op == "call_module" else node.name
    return Layer(name, stand_in, kind, in_shape, out_shape, fn), ""


def _trace(view: ModelView, input_shape: tuple[int, ...]) -> tuple[list[Layer], list[str]]:
    """Trace the module and read its graph as a chain; run inside ``view.evaluating()``."""
    module = view.module
    if isinstance(module, torch.jit.ScriptModule):
        return [], ["a TorchScript module (pass the Python nn.Module)"]
    tracer = torch.fx.Tracer()
    if tracer.is_leaf_module(module, ""):
        module = nn.Sequential(module)  # a bare torch layer: traced as its one call
    try:
        graph = tracer.trace(module)
        traced = torch.fx.GraphModule(module, graph)
        with torch.no_grad():
            ShapeProp(traced).propagate(
                torch.zeros((_PROBE,) + tuple(input_shape), dtype=view.dtype, device=view.device)
            )
    except Exception as err:  # the user's forward may fail on proxies in any way: report it as unsupported
        return [], [f"a model torch.fx cannot trace ({type(err).__name__}: {err})"]
    layers = dict(module.named_modules())
    chain: list[Layer] = []
    bad: list[str] = []
    current: torch.fx.Node | None = None
    for node in graph.nodes:
        if node.op == "get_attr":  # a constant operand, read with the node that uses it
            continue
        if node.op == "placeholder":
            if current is not None:
                bad.append(f"a second input {node.name!r}")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                bad.append("an output that is not the last layer's")
            continue
        shape = _shape(node)
        if shape is None:
            if node.op == "call_method" and node.target in ("size", "dim") or node.target is operator.getitem:
                continue
            bad.append(_describe(node, layers.get(str(node.target))))
            continue
        inputs = [a for a in node.all_input_nodes if _shape(a) is not None and a.op != "get_attr"]
        if inputs != [current] or current is None:
            bad.append(f"{_describe(node, layers.get(str(node.target)))} (not a chain of layers)")
            current = node
            continue
        in_shape = _shape(current)
        if shape[0] != _PROBE or in_shape[0] != _PROBE:
            bad.append(f"{_describe(node, layers.get(str(node.target)))} (mixes samples)")
        else:
            layer, why = _layer(node, current, module, in_shape[1:], shape[1:])
            if layer is None:
                bad.append(why)
            else:
                chain.append(layer)
        current = node
    while chain and chain[-1].kind == "softmax":
        chain.pop()
    bad += [f"softmax at {layer.name!r} (before the last layer)" for layer in chain if layer.kind == "softmax"]
    return chain, bad


def read_chain(view: ModelView, input_shape: tuple[int, ...]) -> Chain:
    """
    Read the model (preprocessing included) as a chain of layers, in the mode the metrics run it
    (:meth:`ModelView.evaluating`; the user's modes and flags are restored).

    :param view: The model view.
    :param input_shape: Shape of one input sample.
    :return: The chain.
    :raises ValueError: When the model is not a supported chain; the message lists every unsupported layer.
    """
    input_shape = tuple(int(s) for s in input_shape)
    prefix: list[Layer] = []
    bad: list[str] = []
    if view.preprocess is not None:
        if view.affine_preprocess:
            pre = Preprocessing(view.preprocess)
            prefix.append(Layer("preprocessing", pre, "affine", input_shape, input_shape, pre))
        else:
            bad.append("the classifier's preprocessing (not a mean/std standardisation)")
    with view.evaluating():
        layers, refused = _trace(view, input_shape)
    bad += refused
    if bad:
        raise UnsupportedModelError(f"unsupported by the certified bounds: {'; '.join(bad)}")
    if not layers and not prefix:
        raise UnsupportedModelError("unsupported by the certified bounds: a model without layers")
    return Chain(tuple(prefix + layers), input_shape, view.device)


def _default_shape(module: nn.Module) -> tuple[int, ...]:
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError("input_shape is needed: the model declares none and has no nn.Linear to read it from")
    return (first.in_features,)


def _chain_of(model: "nn.Module | ModelView", input_shape: "tuple[int, ...] | None") -> Chain:
    view = model if isinstance(model, ModelView) else adapt(model)
    shape = input_shape or view.input_shape or _default_shape(view.module)
    return read_chain(view, tuple(shape))


def affine_relu_layers(
    model: "nn.Module | ModelView", input_shape: "tuple[int, ...] | None" = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """
    A ReLU network as its affine maps: ``f(x) = A_K(relu(A_{K-1}(... relu(A_1(flatten(x))))))`` with
    ``A_k(v) = W_k v + b_k``, every run of affine layers between two ReLUs (preprocessing, ``Linear``, convolutions,
    eval-mode batch norms, average pools, flattens, eval-mode dropouts) unfolded into one dense matrix.

    :param model: A ``torch.nn.Module`` or a :class:`~art_geometry.ModelView` (whose affine preprocessing is
                  folded into the first map).
    :param input_shape: Shape of one input sample; default: the view's ``input_shape``, else ``(in_features,)``
                        of the first ``nn.Linear``.
    :return: ``[(W_1, b_1), ..., (W_K, b_K)]``: ``W_k`` ``(out, in)`` and ``b_k`` ``(out,)`` float64 tensors on
             the model's device.
    :raises ValueError: For unsupported layers (listed), a non-ReLU activation or a max-pool (:func:`milp_layers`
                        reads max-pools).
    """
    return _chain_of(model, input_shape).affine_relu("affine_relu_layers")


def milp_layers(model: "nn.Module | ModelView", input_shape: "tuple[int, ...] | None" = None) -> list[Step]:
    """
    A network of affine layers, ReLUs and max-pools as the layer sequence of the exact MILP
    (:data:`art_geometry.bounds.milp.Layers`, read by :func:`~art_geometry.bounds.milp.exact_distance`): every run of
    affine layers between two nonlinear layers unfolded into one dense float64 ``(W, b)``, each ReLU as
    :data:`~art_geometry.bounds.milp.RELU`, each ``MaxPool1d`` / ``MaxPool2d`` as a
    :class:`~art_geometry.bounds.milp.MaxPool` of the flat input indices of its windows.

    :param model: A ``torch.nn.Module`` or a :class:`~art_geometry.ModelView` (whose affine preprocessing is
                  folded into the first map).
    :param input_shape: Shape of one input sample; default: the view's ``input_shape``, else ``(in_features,)``
                        of the first ``nn.Linear``.
    :return: The steps: ``(W, b)`` float64 numpy arrays, ``RELU`` and ``MaxPool``, the map to the logits last.
    :raises ValueError: For unsupported layers (listed), a non-ReLU activation or a max-pool with ``ceil_mode``.
    """
    return _chain_of(model, input_shape).milp_layers("milp_layers")

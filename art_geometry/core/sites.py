"""
Where a network applies ReLU: its activation *sites*, found by tracing (:mod:`art_geometry.core.activations` reads
the activations there).

**Sites.** The module is traced once with ``torch.fx`` (symbolic tracing: the forward runs on proxies, no data, no
copy of the weights); every ReLU application in the graph is a *site*, in execution order:

- an ``nn.ReLU`` module (``inplace`` or not) called once is named by its module name (``features.1``); one called
  ``n > 1`` times per forward (a shared ``self.relu``, as in torchvision's blocks) gives ``n`` sites named
  ``layer1.0.relu#0`` ... ``layer1.0.relu#{n-1}``, one per call;
- a call of ``torch.relu``, ``torch.relu_``, ``F.relu`` (``inplace`` or not), ``Tensor.relu`` or ``Tensor.relu_``
  is named by its fx node name (``relu``, ``relu_1``, ``relu_``, ...); a node name that is also a module's name
  gets a numeric suffix.

A model that cannot be traced (data-dependent control flow, ...) falls back, with a ``UserWarning``, to its
``nn.ReLU`` modules read by hooks (the calls of a module concatenated); functional calls are then not found.

**Other activations.** GELU, SiLU, ELU, Softplus, Tanh, ... are listed separately: the decision regions of the PRS
paper are sign patterns of ReLU pre-activations (within one, a ReLU network is affine), so asking for the default
ReLU sites of a network that has none is an error naming its activations, not a silent empty set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from art_geometry.core.modes import restoring

__all__ = ["Site", "Sites", "RELU_CALLS", "find_sites", "is_module_of"]

#: The ReLU callables as ``torch.fx`` records them (``call_function`` targets) and as a ``TorchFunctionMode`` sees
#: them (``F.relu_`` is ``torch.relu_``; ``Tensor.relu`` is the method descriptor).
_RELU_FUNCTIONS = frozenset({F.relu, torch.relu, torch.relu_})
_RELU_METHODS = frozenset({"relu", "relu_"})
RELU_CALLS = _RELU_FUNCTIONS | {torch.Tensor.relu, torch.Tensor.relu_}

#: Activation functions other than ReLU (lower-case module class names, function and method names).
_OTHER_ACTIVATIONS = frozenset({
    "gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "hardswish", "hardsigmoid", "leakyrelu",
    "leaky_relu", "prelu", "rrelu", "relu6", "hardtanh", "tanh", "sigmoid",
})


@dataclass(frozen=True)
class Site:
    """
    One ReLU application of the forward pass.

    :param name: Its layer name (``features.1``, ``layer1.0.relu#1``, ``relu_3``).
    :param module: The ``nn.ReLU`` module's name, or ``None`` for a functional call.
    :param call: Which call of the module (0-based), or ``None`` for a module called once or a functional call.
    :param index: Position among the functional calls of one forward (``-1`` for a module site).
    """

    name: str
    module: str | None
    call: int | None = None
    index: int = -1


@dataclass(frozen=True)
class Sites:
    """
    The activation sites of a model.

    :param relu: The ReLU sites, in execution order.
    :param others: Other activations found, as ``"GELU at 'act'"``.
    :param traced: Whether ``torch.fx`` traced the model (``False``: the hook fallback).
    :param calls: Calls per forward of each leaf module of the trace (empty when not traced).
    """

    relu: tuple[Site, ...]
    others: tuple[str, ...]
    traced: bool
    calls: dict[str, int]

    @property
    def functional(self) -> tuple[Site, ...]:
        """The sites of functional calls, in call order."""
        return tuple(s for s in self.relu if s.module is None)


def _is_relu_node(node: torch.fx.Node, layers: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(layers.get(str(node.target)), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def _other_activation(node: torch.fx.Node, layers: dict[str, nn.Module]) -> str | None:
    """:return: ``"GELU at 'act'"`` when the node applies a non-ReLU activation, else ``None``."""
    if node.op == "call_module":
        kind = type(layers.get(str(node.target))).__name__
        where = str(node.target)
    elif node.op == "call_function":
        kind, where = getattr(node.target, "__name__", ""), node.name
    elif node.op == "call_method":
        kind, where = str(node.target), node.name
    else:
        return None
    return f"{kind} at {where!r}" if kind.lower() in _OTHER_ACTIVATIONS else None


def _traced_sites(graph: torch.fx.Graph, layers: dict[str, nn.Module]) -> Sites:
    """:return: The sites of a traced graph, named as the module docstring says."""
    calls: dict[str, int] = {}
    order: list[tuple[str | None, int, str]] = []  # (module or None, call of the module, fx node name)
    others: list[str] = []
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
        if _is_relu_node(node, layers):
            module = str(node.target) if node.op == "call_module" else None
            order.append((module, calls.get(module, 0) - 1 if module else -1, node.name))
        elif (other := _other_activation(node, layers)) is not None:
            others.append(other)
    taken = set(layers) | {n.name for n in graph.nodes}
    sites: list[Site] = []
    functional = 0
    for module, call, node_name in order:
        if module is not None:
            twice = calls[module] > 1
            sites.append(Site(f"{module}#{call}" if twice else module, module, call if twice else None))
            continue
        name = node_name
        if name in layers:
            name = next(f"{node_name}_{i}" for i in range(1, len(taken) + 2) if f"{node_name}_{i}" not in taken)
            taken.add(name)
        sites.append(Site(name, None, None, functional))
        functional += 1
    return Sites(tuple(sites), tuple(others), True, calls)


def is_module_of(module: nn.Module, kind: type[nn.Module]) -> bool:
    """
    :return: Whether ``module`` is a ``kind``, or the TorchScript compilation of one (scripted or traced: its
             submodules are ``ScriptModule`` s that keep the class name as ``original_name``).
    """
    if isinstance(module, torch.jit.ScriptModule):
        return getattr(module, "original_name", None) == kind.__name__
    return isinstance(module, kind)


def _hook_sites(layers: dict[str, nn.Module]) -> Sites:
    """
    :return: The fallback sites: every ``nn.ReLU`` module (of a TorchScript module too, by its original class
             name), in registration order, its calls concatenated.
    """
    relu = tuple(Site(n, n) for n, m in layers.items() if n and is_module_of(m, nn.ReLU))
    others = tuple(
        f"{type(m).__name__} at {n!r}" for n, m in layers.items() if type(m).__name__.lower() in _OTHER_ACTIVATIONS
    )
    return Sites(relu, others, False, {})


def find_sites(module: nn.Module, layers: dict[str, nn.Module], eval_mode: bool) -> Sites:
    """
    :param module: The user's module (traced in eval mode unless ``eval_mode`` is ``False``, as the metrics run it;
                   modes and ``requires_grad`` flags restored after).
    :param layers: Its named submodules.
    :param eval_mode: Whether the metrics put it in eval mode (:class:`art_geometry.core.model.ModelView`).
    :return: The sites of the traced graph, or, for a TorchScript module or a model ``torch.fx`` cannot trace, the
             hook fallback (with a ``UserWarning`` for the latter).
    """
    if isinstance(module, torch.jit.ScriptModule):
        return _hook_sites(layers)
    try:
        with restoring(module, eval_mode=eval_mode, freeze=True):
            graph = torch.fx.Tracer().trace(module)
    except Exception as err:  # any failure of the user's forward on proxies: fall back to hooks
        warnings.warn(
            f"torch.fx cannot trace the model ({type(err).__name__}: {err}); its ReLU sites fall back to its "
            "nn.ReLU modules read by forward hooks (the calls of a module concatenated), and calls of "
            "torch.relu / F.relu / Tensor.relu are not found",
            UserWarning,
            stacklevel=4,
        )
        return _hook_sites(layers)
    return _traced_sites(graph, layers)

"""Which layers a region function reads: one named layer (default the input of the last ``nn.Linear``) or a list
(default every ReLU site), resolved against the model's modules and ReLU sites (:mod:`art_geometry.core.activations`).
"""

from __future__ import annotations

from typing import Any

from art_geometry.core.activations import Activations
from art_geometry.core.model import LayerRef


def _is_layer(value: Any) -> bool:
    """Whether an extra positional argument is the old positional ``layer`` (a name), not labels."""
    return isinstance(value, (str, LayerRef))


def _is_layers(value: Any) -> bool:
    """Whether an extra positional argument is the old positional ``layers`` (a list of names), not labels."""
    return isinstance(value, (list, tuple)) and all(_is_layer(v) for v in value)


def _layer_ref(acts: Activations, layer: Any) -> LayerRef:
    """
    :param layer: A layer name (module, ``module#k`` or ReLU site), a :class:`LayerRef`, or ``None`` for the input
                  of the last ``nn.Linear``.
    :return: The resolved reference.
    :raises ValueError: For anything else, or a name the model does not have (the message lists the names).
    """
    if layer is None:
        return acts.resolve(f"{acts.view.last_linear()}:input")
    if not _is_layer(layer):
        raise ValueError(f"layer must be a layer name such as 'features.3' or 'fc:input', got {layer!r}")
    return acts.resolve(layer)


def _relu_refs(acts: Activations, layers: Any) -> list[LayerRef]:
    """
    :param layers: Layer names, or ``None`` for every ReLU site (each call of an ``nn.ReLU`` module, each call of
                   ``torch.relu`` / ``F.relu`` / ``Tensor.relu``), in execution order.
    :return: The resolved references.
    :raises ValueError: For an empty or malformed list, a name the model does not have, or (default) a model with
                        no ReLU site (GELU, SiLU, ... networks: the message names their activations).
    """
    if layers is None:
        return acts.relu_refs()
    if not _is_layers(layers):
        raise ValueError(f"layers must be a list of layer names such as ['features.1', 'fc:input'], got {layers!r}")
    if len(layers) == 0:
        raise ValueError("layers is empty: name at least one layer")
    return [acts.resolve(spec) for spec in layers]

"""
Shared test helpers: the "nothing mutated" check applied to every public function, and small models with
closed-form answers.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn


def _module_of(classifier: Any) -> nn.Module:
    if isinstance(classifier, nn.Module):
        return classifier
    model = getattr(classifier, "model", None)
    if isinstance(model, nn.Module):
        return model
    from art_geometry.core.model import model_view

    return model_view(classifier).module


def _snapshot(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))


@contextlib.contextmanager
def assert_unchanged(classifier: Any, *arrays: Any) -> Iterator[None]:
    """
    Assert that the body leaves the model and the arrays exactly as they were: parameters and buffers
    bit-identical, every submodule's train/eval mode, every parameter's ``requires_grad`` and ``.grad``, and the
    contents, dtype and shape of each input array or tensor, and the global random states (Python's ``random``,
    numpy's and torch's).

    :param classifier: ART classifier, foolbox model or torch module.
    :param arrays: Inputs passed to the call under test.
    """
    module = _module_of(classifier)
    state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
    modes = {n: m.training for n, m in module.named_modules()}
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}
    copies = [_snapshot(a) for a in arrays]
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    yield
    assert random.getstate() == rng[0], "Python's global random state changed"
    assert np.array_equal(np.random.get_state()[1], rng[1]), "numpy's global random state changed"
    assert torch.equal(torch.random.get_rng_state(), rng[2]), "torch's global random state changed"
    after = module.state_dict(keep_vars=True)
    assert set(after) == set(state), "the model's state_dict keys changed"
    for k, v in state.items():
        assert torch.equal(after[k].detach(), v), f"model tensor {k!r} changed"
    assert {n: m.training for n, m in module.named_modules()} == modes, "train/eval mode changed"
    assert {n: p.requires_grad for n, p in module.named_parameters()} == flags, "requires_grad flags changed"
    for n, p in module.named_parameters():
        g = grads[n]
        assert (p.grad is None) == (g is None) and (g is None or torch.equal(p.grad, g)), f".grad of {n!r} changed"
    for i, (a, c) in enumerate(zip(arrays, copies)):
        if c is not None:
            assert _same(a, c), f"input array #{i} was modified"


class Linear(nn.Module):
    """A multi-class affine model ``f(x) = W flatten(x) + b``: its margins have closed forms."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_shape: tuple[int, ...]):
        super().__init__()
        self.input_shape = input_shape
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def random_linear(nb_classes: int, input_shape: tuple[int, ...], seed: int = 0, dtype=torch.float64) -> Linear:
    """A seeded random :class:`Linear` model in the given dtype."""
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(input_shape))
    w = torch.randn(nb_classes, d, generator=g, dtype=dtype)
    b = torch.randn(nb_classes, generator=g, dtype=dtype) * 0.1
    return Linear(w, b, input_shape).to(dtype)


def assert_round_trip(result: Any) -> None:
    """
    Assert that ``type(result).from_dict(result.to_dict())`` (through JSON) rebuilds the result field for field:
    arrays with their dtype, shape and values (NaN equal to NaN), other fields equal.

    :param result: A result object (:class:`art_geometry.core.results.ResultMixin`).
    """
    import dataclasses
    import json

    rebuilt = type(result).from_dict(json.loads(json.dumps(result.to_dict())))
    assert type(rebuilt) is type(result)
    for f in dataclasses.fields(result):
        a, b = getattr(result, f.name), getattr(rebuilt, f.name)
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and _same(a, b), f"field {f.name!r} changed in the round trip"
        else:
            assert a == b and type(a) is type(b), f"field {f.name!r} changed in the round trip: {a!r} != {b!r}"

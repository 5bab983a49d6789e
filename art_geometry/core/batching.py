"""
The one batching helper: iterate inputs (and their labels) in batches on the model's device, with an optional
progress bar. ``batch_size`` always counts samples.
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from art_geometry.core.model import ModelView

__all__ = ["Batch", "batches", "predict_logits", "activation_bytes", "memory_batch_size"]


class Batch(NamedTuple):
    """One batch: the samples' positions ``sl`` in the data, the inputs and (when given) the labels."""

    sl: slice
    x: torch.Tensor
    y: "torch.Tensor | None"


def batches(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    batch_size: int,
    *,
    labels: "np.ndarray | torch.Tensor | None" = None,
    order: "np.ndarray | torch.Tensor | None" = None,
    verbose: bool = False,
    desc: str = "",
) -> Iterator[Batch]:
    """
    Yield :class:`Batch` es covering ``x`` in order (or in the order of the indices ``order``); each batch is a new
    tensor on the model's device and dtype (``x`` itself is never written), labels as int64 on the same device.

    :param view: The model view (device, dtype).
    :param x: Inputs ``(N, ...)``, numpy (any stride) or torch.
    :param batch_size: Samples per batch.
    :param labels: ``(N,)`` class indices, or ``None``.
    :param order: A permutation of ``range(N)`` to visit the samples in (``sl`` then indexes ``order``).
    :param verbose: Show a tqdm progress bar.
    :param desc: Progress bar label.
    """
    n = len(x) if order is None else len(order)
    y_all = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not verbose, leave=False, unit="batch"):
        sl = slice(start, min(start + batch_size, n))
        idx = sl if order is None else _indices(order[sl])
        yb = None if y_all is None else y_all[idx].to(view.device)
        yield Batch(sl, view.to_tensor(x[idx]), yb)


def _indices(idx: "np.ndarray | torch.Tensor") -> np.ndarray:
    return idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)


def predict_logits(
    view: ModelView, x: "np.ndarray | torch.Tensor", batch_size: int, *, verbose: bool = False
) -> torch.Tensor:
    """
    :param view: The model view, already in :meth:`ModelView.evaluating`.
    :param x: Inputs ``(N, ...)``.
    :param batch_size: Samples per batch.
    :param verbose: Show a progress bar.
    :return: Logits ``(N, nb_classes)`` on the model's device.
    """
    with torch.no_grad():
        return torch.cat([view(b.x) for b in batches(view, x, batch_size, verbose=verbose, desc="predict")])


def activation_bytes(view: ModelView, sample_shape: Sequence[int]) -> int:
    """
    The bytes of the outputs of every leaf module in one forward pass of one (zero) sample: an estimate of what a
    retained autograd graph holds per sample (functional operations between modules are not counted). Runs in
    eval mode without gradients; the user's modes are restored. A TorchScript module (no forward hooks) is measured
    by the tensors autograd saves instead (:func:`_saved_bytes`).

    :param view: The model view.
    :param sample_shape: The shape of one sample.
    :return: Bytes per sample, at least the input's.
    """
    if isinstance(view.module, torch.jit.ScriptModule):
        return _saved_bytes(view, sample_shape)
    total = [0]

    def count(module: torch.nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in view.module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with view.evaluating(), torch.no_grad():
            view(torch.zeros((1, *sample_shape), device=view.device, dtype=view.dtype))
    finally:
        for h in handles:
            h.remove()
    return max(total[0], math.prod(sample_shape) * torch.finfo(view.dtype).bits // 8)


def _saved_bytes(view: ModelView, sample_shape: Sequence[int]) -> int:
    """
    :func:`activation_bytes` for a TorchScript module, which has no forward hooks: the bytes of the tensors
    autograd saves in one forward pass of one (zero) sample with gradients to the input (what the retained graph
    holds), counted by ``torch.autograd.graph.saved_tensors_hooks``; the user's modes and flags are restored.
    """
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    x = torch.zeros((1, *sample_shape), device=view.device, dtype=view.dtype, requires_grad=True)
    with view.evaluating(), torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        view(x)
    return max(total[0], x.numel() * x.element_size())


def memory_batch_size(per_sample_bytes: int, budget: int, cap: int) -> int:
    """
    :param per_sample_bytes: Memory one sample of a pass takes (its graph, its gradients).
    :param budget: Bytes one pass may take.
    :param cap: The largest batch (small models: larger batches are not faster on a CPU).
    :return: The most samples, between 1 and ``cap``, whose pass stays within ``budget``.
    """
    return max(1, min(cap, budget // max(per_sample_bytes, 1)))

"""
The one save/restore of a model's mutable flags: every submodule's ``training`` flag, every parameter's
``requires_grad`` and, optionally, its ``.grad``, recorded on entry and put back exactly on exit, even on error.

Used by :meth:`art_geometry.core.model.ModelView.evaluating`, by the attacks (ART's ``predict`` switches to eval
mode and its ``loss_gradient`` overwrites ``.grad``), by the trainers (ART's ``fit`` leaves the model in train
mode) and by the tracker.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["restoring"]


@contextlib.contextmanager
def restoring(
    *modules: nn.Module, grads: bool = False, eval_mode: bool = False, freeze: bool = False
) -> Iterator[None]:
    """
    Record the flags of ``modules`` (submodules and parameters shared between them counted once), optionally put
    them in eval mode and freeze their parameters for the body, and restore everything recorded on exit.

    :param modules: The modules (a wrapper and the module it wraps may both be given).
    :param grads: Also record each parameter's ``.grad`` (the same tensor object is put back, with its values).
    :param eval_mode: Put every submodule in eval mode for the body.
    :param freeze: Set every parameter's ``requires_grad`` to ``False`` for the body (only input gradients needed).
    """
    subs = list({id(m): m for module in modules for m in module.modules()}.values())
    params = list({id(p): p for module in modules for p in module.parameters()}.values())
    modes = [(m, m.training) for m in subs]
    flags = [(p, p.requires_grad) for p in params]
    saved = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in params] if grads else []
    try:
        if eval_mode:
            for module in modules:
                module.eval()
        if freeze:
            for p in params:
                p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)
        for p, grad, values in saved:
            if grad is not None and values is not None:
                with torch.no_grad():
                    grad.copy_(values)
            p.grad = grad

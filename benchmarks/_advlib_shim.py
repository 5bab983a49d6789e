"""
Benchmark-only import of adv-lib 0.2.8 (Rony et al.'s library of minimum-norm attacks).

adv-lib imports ``torchvision`` (for its LPIPS distance) and ``visdom`` (for its live-plot logger) when its attacks
are imported; neither is used by the attacks the benchmarks call, and torchvision cannot be imported beside this
project's torch build. :func:`load_attacks` puts empty stand-in modules for the two into ``sys.modules`` (only
where they are not imported already) and then imports ``adv_lib.attacks``. This module lives in ``benchmarks/``
and is never imported by the package.

Install: ``.venv/bin/pip install -c constraints.txt adv-lib==0.2.8 --no-deps`` (its other requirement, tqdm, is a
dependency of the project already).
"""

from __future__ import annotations

import sys
import types


def _stub(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name, "empty stand-in installed by benchmarks/_advlib_shim.py")
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def load_attacks() -> types.ModuleType:
    """
    :return: The ``adv_lib.attacks`` module, imported with ``torchvision`` and ``visdom`` stubbed (where they are
             not imported already).
    :raises ImportError: When adv-lib is not installed; the message says how to install it.
    """
    if "torchvision" not in sys.modules:
        models = _stub("torchvision.models")
        sys.modules["torchvision.models"] = models
        # a package (``__path__``), so ``from torchvision import models`` resolves to the stub above
        sys.modules["torchvision"] = _stub("torchvision", __path__=[], models=models)
    if "visdom" not in sys.modules:
        # adv_lib.utils.visdom_logger refers to visdom.Visdom only when a logger is built, which never happens here
        sys.modules["visdom"] = _stub("visdom", Visdom=type("Visdom", (), {}))
    try:
        from adv_lib import attacks
    except ImportError as error:
        raise ImportError(
            "the envelope benchmark needs adv-lib: .venv/bin/pip install -c constraints.txt adv-lib==0.2.8 --no-deps"
        ) from error
    return attacks

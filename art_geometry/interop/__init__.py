"""
Our margin algorithm as an attack of the three libraries researchers use, each imported only when asked for:

* :class:`DeepFoolMargin` (``art_geometry.interop.art``): an ART ``EvasionAttack``, usable in
  ``AdversarialTrainer`` and ``art.metrics.adversarial_accuracy(attack_crafter=...)``;
* :class:`DeepFoolMarginAttack` (``art_geometry.interop.foolbox``): a foolbox 3 ``MinimizationAttack``
  (``pip install art-geometry[foolbox]``);
* :class:`TorchattacksDeepFoolMargin` (``art_geometry.interop.torchattacks``): a torchattacks ``Attack``
  (``pip install art-geometry[torchattacks]``).

Importing ``art_geometry`` or this package imports neither foolbox nor torchattacks: the names are resolved on
first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DeepFoolMargin", "DeepFoolMarginAttack", "TorchattacksDeepFoolMargin"]

_WHERE = {
    "DeepFoolMargin": "art_geometry.interop.art",
    "DeepFoolMarginAttack": "art_geometry.interop.foolbox",
    "TorchattacksDeepFoolMargin": "art_geometry.interop.torchattacks",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

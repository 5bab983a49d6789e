"""
The one ``Norm`` type: an L_p norm on flattened samples (p in {1, 2, inf}) that knows its dual norm, the
steepest-ascent step of unit length, how to measure a batch, and how ART, foolbox and torchattacks spell it.

Every function that takes ``norm=`` parses it here, so ``2``, ``2.0``, ``"2"``, ``"l2"``, ``np.inf``, ``"inf"``,
``"linf"`` and a :class:`Norm` all mean the same thing everywhere, and a wrong value gets one message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = ["Norm", "L1", "L2", "LINF"]


@dataclass(frozen=True)
class Norm:
    """
    The L_p norm ``||v||_p`` of a flattened sample, for ``p`` in ``{1, 2, inf}``.

    The dual norm ``||w||_q`` with ``1/p + 1/q = 1`` gives DeepFool's distance to a linearised boundary,
    ``|f| / ||w||_q`` (Moosavi-Dezfooli et al., CVPR 2016, Eq. (8)-(10)), and :meth:`unit_step` the point of unit
    p-norm that maximises ``<w, r>``: ``w / ||w||_2`` for L2, ``sign(w)`` for L-inf, the largest coordinate for L1.

    :param p: 1.0, 2.0 or ``inf``.
    """

    p: float
    _names: ClassVar[dict[str, float]] = {
        "1": 1.0, "l1": 1.0, "2": 2.0, "l2": 2.0, "inf": math.inf, "linf": math.inf, "np.inf": math.inf,
    }

    @classmethod
    def parse(cls, value: Any, allowed: "tuple[Norm, ...] | None" = None, name: str = "norm") -> "Norm":
        """
        :param value: ``1``, ``2``, ``np.inf``, a string ``"1"``, ``"2"``, ``"inf"``, ``"l1"``, ``"l2"``,
                      ``"linf"``, or a :class:`Norm`.
        :param allowed: The norms the caller supports (default L2 and L-inf).
        :param name: The argument's name, for messages.
        :return: The norm.
        :raises ValueError: For anything else, naming the argument and the accepted values.
        """
        allowed = (L2, LINF) if allowed is None else allowed
        p = cls._order(value)
        if p is None or cls(p) not in allowed:
            names = ", ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must be one of {{{names}}} (or np.inf for inf), got {value!r}")
        return cls(p)

    @classmethod
    def _order(cls, value: Any) -> "float | None":
        if isinstance(value, Norm):
            return value.p
        if isinstance(value, str):
            return cls._names.get(value.strip().lower())
        if isinstance(value, bool):
            return None
        try:
            p = float(value)
        except (TypeError, ValueError):
            return None
        return p if p in (1.0, 2.0, math.inf) else None

    def __str__(self) -> str:
        return "inf" if self.p == math.inf else str(int(self.p))

    def __float__(self) -> float:
        return self.p

    @property
    def dual(self) -> "Norm":
        """The dual norm: L2 for L2, L1 for L-inf, L-inf for L1."""
        return {1.0: LINF, 2.0: L2, math.inf: L1}[self.p]

    def measure(self, v: torch.Tensor) -> torch.Tensor:
        """
        :param v: ``(B, ...)`` a batch.
        :return: ``(B,)`` the norm of each flattened sample.
        """
        flat = v.flatten(1)
        if self.p == math.inf:
            return flat.abs().amax(dim=1)
        return flat.abs().sum(dim=1) if self.p == 1.0 else flat.norm(dim=1)

    def measure_rows(self, w: torch.Tensor) -> torch.Tensor:
        """
        :param w: ``(B, K, ...)`` ``K`` vectors per sample.
        :return: ``(B, K)`` the norm of each.
        """
        return self.measure(w.reshape((-1,) + tuple(w.shape[2:]))).reshape(w.shape[0], w.shape[1])

    def unit_step(self, w: torch.Tensor, dual_norm: torch.Tensor) -> torch.Tensor:
        """
        The point ``r`` of unit p-norm maximising ``<w, r>`` (then ``<w, r> = ||w||_q``), per sample.

        :param w: ``(B, ...)`` gradients.
        :param dual_norm: ``(B,)`` ``||w||_q`` (``self.dual.measure(w)``, already computed by the caller); zero
                          rows give a zero step.
        :return: ``(B, ...)``.
        """
        if self.p == math.inf:
            return w.sign()
        shape = (-1,) + (1,) * (w.ndim - 1)
        if self.p == 2.0:
            return w / torch.where(dual_norm > 0, dual_norm, torch.ones_like(dual_norm)).reshape(shape)
        flat = w.flatten(1)
        top = flat.abs().argmax(dim=1, keepdim=True)
        out = torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign())
        return out.reshape(w.shape)

    @property
    def art(self) -> "int | str":
        """ART's spelling (``norm=`` of its attacks): ``1``, ``2`` or ``"inf"``."""
        return "inf" if self.p == math.inf else int(self.p)

    @property
    def torchattacks(self) -> str:
        """torchattacks' spelling (``Linf``, ``L2``, ``L1`` in its attack names and ``norm`` options)."""
        return "Linf" if self.p == math.inf else f"L{int(self.p)}"

    def foolbox(self) -> Any:
        """:return: foolbox 3's distance object (``foolbox.distances.l1``, ``l2`` or ``linf``); imports foolbox."""
        from foolbox import distances

        return {1.0: distances.l1, 2.0: distances.l2, math.inf: distances.linf}[self.p]

    def to_json(self) -> "float | str":
        """:return: ``1.0``, ``2.0`` or ``"inf"`` (JSON has no infinity)."""
        return "inf" if self.p == math.inf else self.p


L1 = Norm(1.0)
L2 = Norm(2.0)
LINF = Norm(math.inf)

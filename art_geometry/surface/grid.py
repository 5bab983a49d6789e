"""The square grid of plane coordinates shared by the input-space and the parameter-space surfaces."""

from __future__ import annotations

from typing import Any

import torch

from art_geometry.core.validation import check_int, check_number


def _check_grid(span: Any, resolution: Any) -> tuple[float, int]:
    """:return: ``span`` (the grid's half-width, ``> 0``) and ``resolution`` (points per axis, ``>= 2``), checked."""
    return check_number(span, "span", minimum=0.0, strict=True), check_int(resolution, "resolution", minimum=2)


def _grid(span: float, resolution: int) -> torch.Tensor:
    """:return: ``span * (2 i / (R - 1) - 1)`` in float64; exactly 0 in the middle for odd ``R``."""
    half = (resolution - 1) / 2
    return span * (torch.arange(resolution, dtype=torch.float64) - half) / half

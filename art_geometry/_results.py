"""
The shared behaviour of result objects: frozen dataclasses of per-sample numpy arrays and the parameters used,
with ``to_dict()`` (JSON-safe) and ``summary()``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["ResultMixin", "jsonable", "describe"]


def jsonable(value: Any) -> Any:
    """
    Convert numpy arrays and scalars, tuples and nested containers to JSON-safe Python values.

    Non-finite floats become the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (JSON has no literal for them).

    :param value: Any value.
    :return: The JSON-safe value.
    """
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.generic,)):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value))
    return value


def describe(values: np.ndarray) -> dict[str, float]:
    """
    Summary statistics of a 1-D sample of finite or infinite values.

    :param values: The sample.
    :return: ``n``, ``mean``, ``std_error`` (std / sqrt(n)), ``median``, ``p05``, ``p95``, ``min``, ``max``; NaN
             entries for an empty sample.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std_error": nan, "median": nan, "p05": nan, "p95": nan, "min": nan, "max": nan}
    with np.errstate(invalid="ignore"):
        return {
            "n": int(v.size),
            "mean": float(v.mean()),
            "std_error": float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0,
            "median": float(np.median(v)),
            "p05": float(np.percentile(v, 5)),
            "p95": float(np.percentile(v, 95)),
            "min": float(v.min()),
            "max": float(v.max()),
        }


class ResultMixin:
    """Mixed into every result dataclass: ``to_dict()`` over all fields, and a ``summary()`` to override."""

    def to_dict(self) -> dict[str, Any]:
        """:return: All fields, JSON-safe, plus ``summary``."""
        out = {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        out["summary"] = jsonable(self.summary())
        return out

    def summary(self) -> dict[str, Any]:
        """:return: The scalar figures of the result."""
        raise NotImplementedError

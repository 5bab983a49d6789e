"""
The one result protocol: frozen dataclasses of per-sample numpy arrays and the settings used, with
``summary()``, ``to_dict()`` / ``from_dict()`` (JSON-safe round trip), ``to_json()`` / ``from_json()`` and a short
``print(result)``; the per-sample arrays as columns (``to_columns()``), CSV (``to_csv()``), Parquet
(``to_parquet()``, with ``pyarrow``) or a pandas ``DataFrame`` (``to_frame()``, with ``pandas``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import typing
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ResultMixin", "columns_of", "describe", "jsonable", "write_csv", "write_parquet"]


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


def _restore(value: Any) -> Any:
    """The inverse of :func:`jsonable` for numbers: ``"inf"``, ``"-inf"`` and ``"nan"`` back to floats."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def _short(value: Any) -> str:
    """A figure for ``print(result)``: four significant digits, counts as integers."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _flatten(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if key == "params":
            continue
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple, np.ndarray)):
            rows.append((f"{prefix}{key}", value))
    return rows


def _axis_columns(name: str, array: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """
    :return: The columns of one array field: itself when it is ``(n,)``; ``name_j`` for column ``j`` of an
             ``(n, k)`` array and for row ``j`` of a ``(k, n)`` one; none for any other shape.
    """
    if array.ndim == 1 and len(array) == n:
        return {name: array}
    if array.ndim == 2 and array.shape[0] == n:
        return {f"{name}_{j}": array[:, j] for j in range(array.shape[1])}
    if array.ndim == 2 and array.shape[1] == n:
        return {f"{name}_{j}": array[j] for j in range(array.shape[0])}
    return {}


def columns_of(data: dict[str, Any]) -> dict[str, np.ndarray]:
    """
    The per-sample arrays of a result, from its :meth:`ResultMixin.to_dict` output (or that dict read back from a
    ``report.json``), as equal-length columns: an array field is per-sample when one of its axes has the result's
    ``summary()["n_samples"]`` entries (``(N,)`` is one column, ``(N, k)`` and ``(k, N)`` are ``k`` columns
    ``name_0 ... name_{k-1}``); list fields of ``N`` strings (e.g. the method per sample) are columns too. Images and
    other arrays with more axes are left out.

    :param data: A result dict (keys ``dtypes`` and ``summary`` among its fields).
    :return: Columns by name, in field order, each of length ``N``.
    :raises ValueError: When ``data`` is not a result dict.
    """
    if not isinstance(data, dict) or "dtypes" not in data or "n_samples" not in data.get("summary", {}):
        raise ValueError("data must be the to_dict() of a result (with 'dtypes' and 'summary.n_samples')")
    n = int(data["summary"]["n_samples"])
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if name in data["dtypes"] and value is not None:
            out.update(_axis_columns(name, np.asarray(_restore(value), dtype=data["dtypes"][name]), n))
        elif isinstance(value, list) and len(value) == n and all(isinstance(v, str) for v in value):
            out[name] = np.asarray(value, dtype=object)
    return out


def write_csv(columns: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """
    Write equal-length columns as a CSV file with a header row; floats with 17 significant digits (they read back
    bit-identical), non-finite ones as ``inf``, ``-inf``, ``nan`` (pandas reads those as floats).

    :param columns: Columns by name (e.g. :func:`columns_of`).
    :param path: The file to write (its folder is created).
    :return: The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def cell(v: Any) -> Any:
        return repr(float(v)) if isinstance(v, (float, np.floating)) else (int(v) if isinstance(v, np.integer) else v)

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        for row in zip(*columns.values()):
            writer.writerow([cell(v) for v in row])
    return path


def write_parquet(columns: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """
    Write equal-length columns as a Parquet file (needs ``pyarrow``: ``pip install art-geometry[export]``).

    :param columns: Columns by name (e.g. :func:`columns_of`).
    :param path: The file to write (its folder is created).
    :return: The path written.
    :raises ImportError: Without ``pyarrow``.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("Parquet export needs pyarrow: pip install 'art-geometry[export]'") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: (v.tolist() if v.dtype == object else v) for k, v in columns.items()})
    pq.write_table(table, path)
    return path


class ResultMixin:
    """
    The result protocol, mixed into every result dataclass: ``summary()`` (scalar figures; every family uses the
    keys ``n_samples`` and ``params``), ``to_dict()`` / ``from_dict()`` (a JSON-safe round trip, array dtypes
    kept), ``to_json()`` / ``from_json()``, the per-sample arrays as a table (``to_columns()``, ``to_csv()``,
    ``to_parquet()``, ``to_frame()``) and a short readable ``print(result)``.
    """

    def to_dict(self) -> dict[str, Any]:
        """:return: All fields, JSON-safe, plus ``summary`` and the ``dtypes`` of the array fields."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        out = {f.name: jsonable(getattr(self, f.name)) for f in fields}
        out["dtypes"] = {
            f.name: str(getattr(self, f.name).dtype) for f in fields if isinstance(getattr(self, f.name), np.ndarray)
        }
        out["summary"] = jsonable(self.summary())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """
        :param data: The output of :meth:`to_dict` (or its JSON, parsed).
        :return: An equal result object (arrays with their dtypes; nested results rebuilt).
        :raises ValueError: When a field is missing.
        """
        hints = typing.get_type_hints(cls)
        dtypes = data.get("dtypes", {})
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise ValueError(f"{cls.__name__}.from_dict: missing field {f.name!r}")
            value = data[f.name]
            hint = hints.get(f.name)
            if value is None:
                kwargs[f.name] = None
            elif f.name in dtypes:
                kwargs[f.name] = np.asarray(_restore(value), dtype=dtypes[f.name])
            elif isinstance(hint, type) and issubclass(hint, ResultMixin):
                kwargs[f.name] = hint.from_dict(value)
            elif hint is float:
                kwargs[f.name] = float(_restore(value))
            else:
                kwargs[f.name] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        """:return: :meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Any:
        """
        :param text: The output of :meth:`to_json`.
        :return: The result object.
        """
        return cls.from_dict(json.loads(text))

    def to_columns(self) -> dict[str, np.ndarray]:
        """
        :return: The per-sample arrays as equal-length columns, one row per sample (rule in :func:`columns_of`):
                 e.g. ``margins``, ``success``, ``predictions``, ``labels``, ``correct`` of a margin result.
        """
        return columns_of(self.to_dict())

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """
        :param path: The CSV file to write, one row per sample (``pandas.read_csv(path)`` reads it back).
        :return: The path written.
        """
        return write_csv(self.to_columns(), path)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """
        :param path: The Parquet file to write, one row per sample.
        :return: The path written.
        :raises ImportError: Without ``pyarrow``.
        """
        return write_parquet(self.to_columns(), path)

    def to_frame(self) -> Any:
        """
        :return: The per-sample columns as a ``pandas.DataFrame``.
        :raises ImportError: Without ``pandas``.
        """
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_frame needs pandas: pip install 'art-geometry[export]'") from err
        return pd.DataFrame(self.to_columns())

    def summary(self) -> dict[str, Any]:
        """:return: The scalar figures of the result."""
        raise NotImplementedError

    def __str__(self) -> str:
        summary = self.summary()
        rows = _flatten(summary)
        head = f"{type(self).__name__}(" + ", ".join(f"{k}={_short(v)}" for k, v in rows[:12])
        more = f", ... {len(rows) - 12} more in summary()" if len(rows) > 12 else ""
        return head + more + ")"

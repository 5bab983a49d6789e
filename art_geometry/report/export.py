"""
Per-sample export of a report: every result of ``report.json`` (a dict with ``dtypes`` and ``summary``, as
:meth:`art_geometry.core.results.ResultMixin.to_dict` writes it) becomes one table, one row per sample, written as
CSV and, when ``pyarrow`` is importable, Parquet, under ``samples/<section>/<model>/<result>.csv``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from art_geometry.core.results import columns_of, write_csv, write_parquet

__all__ = ["export_samples", "has_parquet", "result_tables"]


def has_parquet() -> bool:
    """:return: Whether ``pyarrow`` is importable (Parquet files are written beside the CSV files)."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _is_result(value: Any) -> bool:
    return isinstance(value, dict) and "dtypes" in value and "n_samples" in value.get("summary", {})


def result_tables(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """
    :param data: A section's data (nested dicts).
    :param path: Keys leading to ``data``.
    :return: ``(keys, columns)`` for every result dict inside ``data`` with at least one per-sample column.
    """
    if _is_result(data):
        columns = columns_of(data)
        if columns:
            yield path, columns
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from result_tables(value, path + (str(key),))


def _slug(text: str) -> str:
    """:return: ``text`` as a file-name part: lower case, runs of other characters than ``[a-z0-9]`` as ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def export_samples(report: dict[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    """
    Write the per-sample tables of every section.

    :param report: The report (``sections`` as :func:`~art_geometry.report.build_report` returns them).
    :param out_dir: The report's folder; files go under ``out_dir / "samples"``.
    :return: One entry per table: ``section``, ``path`` (the keys inside the section's data), ``csv`` and
             ``parquet`` (file paths relative to ``out_dir``; ``parquet`` is ``None`` without ``pyarrow``),
             ``rows`` and ``columns``.
    """
    parquet = has_parquet()
    entries = []
    for key, section in report["sections"].items():
        for path, columns in result_tables(section["data"]):
            stem = Path("samples", _slug(key), *(_slug(p) for p in path))
            csv_path = write_csv(columns, out_dir / stem.with_suffix(".csv"))
            pq_path = write_parquet(columns, out_dir / stem.with_suffix(".parquet")) if parquet else None
            entries.append({
                "section": key,
                "path": list(path),
                "csv": csv_path.relative_to(out_dir).as_posix(),
                "parquet": None if pq_path is None else pq_path.relative_to(out_dir).as_posix(),
                "rows": len(next(iter(columns.values()))),
                "columns": list(columns),
            })
    return entries

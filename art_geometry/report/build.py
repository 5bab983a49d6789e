"""
Runs the report's sections and writes ``report.json`` (versioned schema) and a self-contained ``report.html``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from art_geometry._results import jsonable
from art_geometry.report.base import ReportContext, Section, table_html

__all__ = ["SCHEMA_VERSION", "build_report", "write_report"]

#: Version of the ``report.json`` layout: ``{"schema_version", "meta", "sections": {key: {"title", "seconds",
#: "data"}}}``. Bump the major part when a key is removed or changes meaning.
SCHEMA_VERSION = "1.0"

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:90%}
th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}h2{border-bottom:2px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:90%}
"""


def build_report(ctx: ReportContext, sections: Sequence[Section]) -> dict[str, Any]:
    """
    :param ctx: The report context.
    :param sections: The sections to compute, in order.
    :return: The report as a JSON-safe dict.
    """
    from art_geometry import __version__

    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "meta": {
            "art_geometry": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "data": ctx.data.name,
            "n_train": len(ctx.data.x_train),
            "n_test": len(ctx.data.x_test),
            "models": list(ctx.models),
            "seed": ctx.seed,
        },
        "sections": {},
    }
    for section in sections:
        start = time.perf_counter()
        data = section.compute(ctx)
        out["sections"][section.key] = {
            "title": section.title,
            "seconds": round(time.perf_counter() - start, 3),
            "data": jsonable(data),
        }
    return out


def _summary_rows(report: dict[str, Any], sections: Sequence[Section]) -> list[tuple[str, str, str]]:
    rows = []
    for section in sections:
        if section.key in report["sections"]:
            rows += section.summary_rows(report["sections"][section.key]["data"])
    return rows


def write_report(
    ctx: ReportContext, sections: Sequence[Section], out_dir: "str | Path"
) -> tuple[Path, Path, list[tuple[str, str, str]]]:
    """
    Compute the sections, write ``report.json`` and ``report.html`` to ``out_dir``.

    :param ctx: The report context.
    :param sections: The sections, in order.
    :param out_dir: Output folder (created).
    :return: Paths of the JSON and HTML files, and the summary rows ``(model, metric, value)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(ctx, sections)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=1))
    rows = _summary_rows(report, sections)
    meta = report["meta"]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>art-geometry report</title>"
        f"<style>{_CSS}</style></head><body><h1>art-geometry report</h1>",
        f"<p class='meta'>data: {html.escape(meta['data'])} ({meta['n_train']} train / {meta['n_test']} test) · "
        f"models: {html.escape(', '.join(meta['models']))} · art-geometry {meta['art_geometry']} · "
        f"torch {meta['torch']} · {meta['created']} · schema {SCHEMA_VERSION}</p>",
        "<h2>Summary</h2>",
        table_html(["model", "metric", "value"], [list(r) for r in rows]),
    ]
    for section in sections:
        entry = report["sections"][section.key]
        parts.append(f"<h2>{html.escape(section.title)}</h2><p class='meta'>computed in {entry['seconds']:.1f} s</p>")
        parts.append(section.render(entry["data"], ctx))
    parts.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(parts))
    return json_path, html_path, rows

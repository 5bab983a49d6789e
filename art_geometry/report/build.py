"""
Runs the report's sections and writes ``report.json`` (layout fixed by the versioned JSON Schema shipped beside
this module, :mod:`art_geometry.report.schema`), the per-sample tables (:mod:`art_geometry.report.export`) and a
self-contained ``report.html`` rendered from the package's Jinja2 templates.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from art_geometry.core.results import jsonable
from art_geometry.core.version import __version__
from art_geometry.report.base import ReportContext, Section
from art_geometry.report.export import export_samples
from art_geometry.report.leaderboard import highlights, leaderboard_columns, model_records
from art_geometry.report.resume import ReportCheckpoint, models_hash, report_settings
from art_geometry.report.schema import SCHEMA_VERSION
from art_geometry.report.templating import render
from art_geometry.sweep.distributed import world
from art_geometry.sweep.loop import SweepOptions

__all__ = ["SCHEMA_VERSION", "build_report", "render_html", "write_report"]


def build_report(
    ctx: ReportContext, sections: Sequence[Section], checkpoint: "ReportCheckpoint | None" = None
) -> dict[str, Any]:
    """
    :param ctx: The report context.
    :param sections: The sections to compute, in order.
    :param checkpoint: Where finished sections are kept; a section already there (computed on the same models) is
                       loaded instead of computed (:mod:`art_geometry.report.resume`).
    :return: The report as a JSON-safe dict: ``schema_version``, ``meta``, ``models`` (one leaderboard record per
             model) and ``sections`` (``{key: {"title", "seconds", "data"}}``).
    """
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
        "models": [],
        "sections": {},
    }
    hashes = models_hash(ctx.models) if checkpoint is not None else {}
    for section in sections:
        keep = checkpoint is not None and section.resumable
        entry = checkpoint.section(section.key, hashes) if keep else None
        if entry is None:
            start = time.perf_counter()
            data = section.compute(ctx)
            entry = {"title": section.title, "seconds": round(time.perf_counter() - start, 3), "data": jsonable(data)}
            if keep:
                checkpoint.save_section(section.key, hashes, entry)
        out["sections"][section.key] = entry
    out["models"] = jsonable(model_records(ctx, sections, out))
    return out


def _summary_rows(report: dict[str, Any], sections: Sequence[Section]) -> list[tuple[str, str, str]]:
    rows = []
    for section in sections:
        if section.key in report["sections"]:
            rows += section.summary_rows(report["sections"][section.key]["data"])
    return rows


def render_html(report: dict[str, Any], ctx: ReportContext, sections: Sequence[Section]) -> str:
    """
    :param report: What :func:`build_report` returned (with ``exports`` when the tables were written).
    :param ctx: The report context.
    :param sections: The sections computed.
    :return: The page: the leaderboard and its one-line answers, the comparison figures (every model on one axis),
             the gallery and side-by-side surfaces, then each section's per-model detail, folded.
    """
    panels = []
    details = []
    for section in sections:
        if section.key not in report["sections"]:
            continue
        entry = report["sections"][section.key]
        panels += section.panels(entry["data"], ctx)
        body = section.render(entry["data"], ctx)
        details.append({"title": section.title, "seconds": entry["seconds"], "body": body})
    records = report["models"]
    return render(
        "report.html.j2", meta=report["meta"], schema_version=report["schema_version"], records=records,
        columns=leaderboard_columns(records), highlights=highlights(records),
        compare=[p for p in panels if p.group == "compare"], gallery=[p for p in panels if p.group == "gallery"],
        details=details, exports=report.get("exports", []),
    )


def write_report(
    ctx: ReportContext,
    sections: Sequence[Section],
    out_dir: str | Path,
    checkpoint: "ReportCheckpoint | str | os.PathLike[str] | None" = None,
) -> tuple[Path, Path, list[tuple[str, str, str]]]:
    """
    Compute the sections, write ``report.json``, the per-sample tables under ``samples/`` and ``report.html`` to
    ``out_dir``. Under a ``torch.distributed`` process group every rank computes (the per-sample families shard
    their samples over the ranks and return the whole result on each) and rank 0 alone writes the files.

    :param ctx: The report context.
    :param sections: The sections, in order.
    :param out_dir: Output folder (created by rank 0).
    :param checkpoint: A directory (or an open :class:`~art_geometry.report.resume.ReportCheckpoint`) keeping each
                       finished section, so that a rerun after an interruption computes only the unfinished ones
                       and writes the same report; a directory holding a report of other settings (data, seed,
                       ``n_samples``, ``batch_size``) or other models is refused.
    :return: Paths of the JSON and HTML files, and the summary rows ``(model, metric (sample set), value)``.
    """
    out_dir = Path(out_dir)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    if checkpoint is not None and not isinstance(checkpoint, ReportCheckpoint):
        checkpoint = ReportCheckpoint(SweepOptions.build(checkpoint=checkpoint).checkpoint, report_settings(
            ctx.data, seed=ctx.seed, n_samples=ctx.n_samples, batch_size=ctx.batch_size))
    report = build_report(ctx, sections, checkpoint)
    rows = _summary_rows(report, sections)
    if world()[0] != 0:
        return json_path, html_path, rows
    out_dir.mkdir(parents=True, exist_ok=True)
    report["exports"] = export_samples(report, out_dir)
    json_path.write_text(json.dumps(report, indent=1))
    html_path.write_text(render_html(report, ctx, sections))
    return json_path, html_path, rows

"""
The Training section of the report: renders :class:`art_geometry.training.GeometryTracker` histories given in
``ctx.extras["training"]`` (one history — the dict, the tracker itself, or the path of its JSON file — or a
mapping of model names to such histories, as ``art-geometry report --demo`` gives): per model, a per-epoch table,
the margins over epochs (margins paper, Figs. 1-2), PRS ratio and robust accuracy over epochs (PRS paper, Fig. 5)
and the correct/incorrect transitions. The section trains nothing: without a history it says so.
"""

from __future__ import annotations

import os
from typing import Any

from art_geometry.core.settings import AttackSettings
from art_geometry.plots.training import plot_history_comparison, plot_margin_curves, plot_prs_curves, plot_transitions
from art_geometry.report.base import Image, Panel, ReportContext, Section, figure_html, figure_uri
from art_geometry.report.templating import render
from art_geometry.training import GeometryTracker

__all__ = ["TrainingSection"]

_COLUMNS = (
    ("train accuracy", ("train", "accuracy")),
    ("test accuracy", ("test", "accuracy")),
    ("robust accuracy", ("test", "robust_accuracy")),
    ("PRS ratio (tracker's train subset)", ("train", "prs_ratio")),
    ("inclusion ratio (tracker's test subset)", ("test", "inclusion_ratio")),
)


def _is_history(value: Any) -> bool:
    return isinstance(value, dict) and {"config", "epochs", "transitions"} <= set(value)


def _history(value: Any) -> dict[str, Any]:
    if isinstance(value, GeometryTracker):
        return value.history
    if isinstance(value, (str, os.PathLike)):
        return GeometryTracker.from_json(value)
    if _is_history(value):
        return value
    raise TypeError(
        "ctx.extras['training'] must be a GeometryTracker, its history dict or the path of its JSON file (or a "
        f"dict of those by model name), got {type(value).__name__}"
    )


def _histories(value: Any) -> dict[str, dict[str, Any]]:
    """:return: Histories by name; a single history is named ``"training"``."""
    if isinstance(value, dict) and not _is_history(value):
        return {str(name): _history(h) for name, h in value.items()}
    return {"training": _history(value)}


def _cell(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return "-"
        value = value[key]
    return value


def _median_margin(record: dict[str, Any], subset: str, norm: str) -> Any:
    return _cell(record, (subset, "margins", norm, "median"))


class TrainingSection(Section):
    """Geometry over training, from a tracker history in ``ctx.extras["training"]``."""

    key = "training"
    title = "Geometry over training"
    resumable = False

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        if "training" not in ctx.extras:
            return {"available": False}
        return {"available": True, "histories": _histories(ctx.extras["training"])}

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        histories = data["histories"] if data.get("available") else {}
        return render("training.html.j2", available=bool(data.get("available")),
                      histories=[(name, _render_history(h)) for name, h in histories.items()])

    def panels(self, data: dict[str, Any], ctx: ReportContext) -> list[Panel]:
        """:return: Test accuracy, robust accuracy and median test margins over epochs, every model on one axis."""
        if not data.get("available"):
            return []
        histories = {name: h for name, h in data["histories"].items() if h["epochs"]}
        if not histories:
            return []
        first = next(iter(histories.values()))
        n_test = len(first["config"]["test_indices"])
        attack = AttackSettings.from_dict(first["config"]["attack"]).describe()
        quantities = [(("test", "accuracy"), "test accuracy"), (("test", "robust_accuracy"), "robust accuracy")]
        quantities += [(("test", "margins", norm, "median"), f"median {norm} margin (test)")
                       for norm in first["epochs"][0]["test"].get("margins", {})]
        images = tuple(
            Image(figure_uri(plot_history_comparison(histories, path, label)), f"{label} over epochs")
            for path, label in quantities
        )
        return [Panel(
            "Training curves",
            f"Measured during training by the tracker on its own subset of {n_test} test samples (not the "
            f"samples of the leaderboard), every model on one axis; robust accuracy under {attack}.",
            images,
            "per tracked epoch: accuracy, robust accuracy and the median DeepFool margin of the tracker's subset "
            "(margins paper, Figs. 1-2; PRS paper, Fig. 5)",
        )]

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        if not data.get("available"):
            return []
        rows = []
        for name, h in data["histories"].items():
            if not h["epochs"]:
                continue
            last = h["epochs"][-1]
            for label, path in _COLUMNS:
                value = _cell(last, path)
                if value != "-":
                    rows.append((name, f"{label} (epoch {last['epoch']})", f"{float(value):.4g}"))
        return rows


def _render_history(h: dict[str, Any]) -> str:
    """:return: The table and figures of one history."""
    records = h["epochs"]
    header = ["epoch"] + [c for c, _ in _COLUMNS] + ["median L2 margin (test)", "median L-inf margin (test)"]
    rows = [
        [r["epoch"]]
        + [_cell(r, path) for _, path in _COLUMNS]
        + [_median_margin(r, "test", "l2"), _median_margin(r, "test", "linf")]
        for r in records
    ]
    figures = []
    if records and "margins" in records[0]["train"]:
        for norm in records[0]["train"]["margins"]:
            figures.append(figure_html(plot_margin_curves(h, norm), f"{norm} margins over epochs"))
    if records:
        figures.append(figure_html(plot_prs_curves(h), "PRS ratio and robust accuracy over epochs"))
    if h["transitions"]:
        figures.append(figure_html(plot_transitions(h, "test"), "correct/incorrect transitions"))
    cfg = h["config"]
    return render(
        "training_history.html.j2", n_epochs=len(records), n_train=len(cfg["train_indices"]),
        n_test=len(cfg["test_indices"]), seed=cfg["seed"], attack=AttackSettings.from_dict(cfg["attack"]).describe(),
        header=header, rows=rows, figures=figures,
    )

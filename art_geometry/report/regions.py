"""
The Regions section of the report: PRS ratio of train and test sets, inclusion ratio, layer-wise PRS, final-layer
similarity and feature sparsity, per model (PRS paper). The per-sample arrays (region ids, predictions, inclusion)
are kept in ``report.json`` for the CSV export, except the layer-wise region ids.
"""

from __future__ import annotations

from typing import Any

import torch

from art_geometry.core.model import module_of
from art_geometry.core.results import jsonable
from art_geometry.plots.regions import plot_layerwise_prs, plot_similarity
from art_geometry.regions import (
    feature_sparsity,
    final_layer_similarity,
    inclusion_ratio,
    layerwise_prs,
    populated_region_set,
)
from art_geometry.report.base import Image, Metric, Panel, ReportContext, Section, figure_html, figure_uri
from art_geometry.report.templating import render

__all__ = ["RegionsSection"]


class RegionsSection(Section):
    """PRS metrics for every model of the report, on the whole train and test splits."""

    key = "regions"
    title = "Decision regions (populated region set)"

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        d = ctx.data
        opts = {"batch_size": ctx.batch_size, "verbose": ctx.verbose}
        for name, clf in ctx.models.items():
            if isinstance(module_of(clf), torch.jit.ScriptModule):
                out[name] = {"skipped": "TorchScript module: layer activations cannot be hooked"}
                continue
            train = populated_region_set(clf, d.x_train, **opts)
            out[name] = {
                "layer": train.layer,
                "prs_train": train.to_dict(),
                "prs_test": populated_region_set(clf, d.x_test, **opts).to_dict(),
                "inclusion": inclusion_ratio(clf, d.x_train, d.x_test, **opts).to_dict(),
                "layerwise": layerwise_prs(clf, d.x_train, **opts).to_dict(),
                "similarity": final_layer_similarity(clf).to_dict(),
                "sparsity": feature_sparsity(clf, d.x_test, **opts).to_dict(),
            }
            del out[name]["layerwise"]["region_ids"]
            del out[name]["layerwise"]["dtypes"]["region_ids"]
        return jsonable(out)

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        computed = {name: m for name, m in data.items() if "skipped" not in m}
        skipped = {name: m["skipped"] for name, m in data.items() if "skipped" in m}
        rows = [
            [
                name,
                m["layer"],
                m["prs_train"]["ratio"],
                m["prs_train"]["n_regions"],
                m["prs_test"]["ratio"],
                m["inclusion"]["ratio"],
                m["similarity"]["mean_off_diagonal"],
                m["sparsity"]["mean"],
            ]
            for name, m in computed.items()
        ]
        similarity = (figure_html(plot_similarity({n: m["similarity"]["matrix"] for n, m in computed.items()}),
                                  "final-layer cosine similarity") if computed else "")
        return render("regions.html.j2", rows=rows, skipped=skipped, similarity=similarity,
                      n_train=len(ctx.data.x_train), n_test=len(ctx.data.x_test))

    def metrics(self, data: dict[str, Any]) -> dict[str, list[Metric]]:
        """:return: PRS ratio of the train and test splits and the inclusion ratio of every model."""
        out = {}
        for name, m in data.items():
            if "skipped" in m:
                continue
            n_train, n_test = m["prs_train"]["n_samples"], m["prs_test"]["n_samples"]
            out[name] = [
                Metric("prs_ratio_train", "PRS ratio", m["prs_train"]["ratio"], f"train, all {n_train}",
                       "distinct activation patterns of the last ReLU layer / samples (PRS paper, Def. 3)"),
                Metric("prs_ratio_test", "PRS ratio", m["prs_test"]["ratio"], f"test, all {n_test}",
                       "distinct activation patterns of the last ReLU layer / samples (PRS paper, Def. 3)"),
                Metric("inclusion_ratio", "inclusion ratio", m["inclusion"]["ratio"],
                       f"test, all {n_test}, in train regions",
                       "fraction of test samples whose activation region holds a training sample (PRS paper)"),
            ]
        return out

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        """:return: The metrics, and "skipped" for the models whose layers cannot be hooked."""
        rows = super().summary_rows(data)
        return rows + [(name, "regions", "skipped") for name, m in data.items() if "skipped" in m]

    def panels(self, data: dict[str, Any], ctx: ReportContext) -> list[Panel]:
        """:return: The layer-wise PRS ratio of every model on one axis."""
        ratios = {name: m["layerwise"]["ratios"] for name, m in data.items() if "skipped" not in m}
        if not ratios:
            return []
        n = len(ctx.data.x_train)
        return [Panel(
            "PRS ratio per layer",
            f"How many distinct activation patterns the {n} training samples produce at each ReLU layer, as a "
            "fraction of the samples: low = many samples share a region (large regions, the PRS paper's "
            "robust-leaning regime).",
            (Image(figure_uri(plot_layerwise_prs(ratios)), "layer-wise PRS ratio of every model"),),
            "PRS ratio at layer l = |{sign pattern of the ReLU inputs of layer l}| / N (PRS paper, Fig. 2a)",
        )]

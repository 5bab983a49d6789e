"""
The Regions section of the report: PRS ratio of train and test sets, inclusion ratio, layer-wise PRS, final-layer
similarity and feature sparsity, per model (PRS paper).
"""

from __future__ import annotations

import html
from typing import Any

import torch

from art_geometry._model import module_of
from art_geometry._results import jsonable
from art_geometry.plots.regions import plot_layerwise_prs, plot_similarity
from art_geometry.regions import (
    feature_sparsity,
    final_layer_similarity,
    inclusion_ratio,
    layerwise_prs,
    populated_region_set,
)
from art_geometry.report.base import ReportContext, Section, figure_html, table_html

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
                "prs_train": train.summary(),
                "prs_test": populated_region_set(clf, d.x_test, **opts).summary(),
                "inclusion": inclusion_ratio(clf, d.x_train, d.x_test, **opts).summary(),
                "layerwise": layerwise_prs(clf, d.x_train, **opts).to_dict(),
                "similarity": final_layer_similarity(clf).to_dict(),
                "sparsity": feature_sparsity(clf, d.x_test, **opts).summary(),
            }
            del out[name]["layerwise"]["region_ids"]
        return jsonable(out)

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        computed = {name: m for name, m in data.items() if "skipped" not in m}
        skipped = "".join(f"<p>{html.escape(name)}: skipped ({html.escape(m['skipped'])})</p>"
                          for name, m in data.items() if "skipped" in m)
        if not computed:
            return skipped
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
        table = table_html(
            ["model", "layer", "PRS ratio (train)", "regions (train)", "PRS ratio (test)", "inclusion ratio",
             "final-layer similarity", "feature sparsity"],
            rows,
        )
        ratios = {name: m["layerwise"]["ratios"] for name, m in computed.items()}
        matrices = {name: m["similarity"]["matrix"] for name, m in computed.items()}
        return (
            skipped
            + "<p>PRS ratio = distinct sign patterns at the layer / number of samples; inclusion ratio = fraction of "
            "test samples whose region holds a training sample.</p>"
            + table
            + figure_html(plot_layerwise_prs(ratios), "layer-wise PRS ratio")
            + figure_html(plot_similarity(matrices), "final-layer cosine similarity")
        )

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        rows = []
        for name, m in data.items():
            if "skipped" in m:
                rows.append((name, "regions", "skipped"))
                continue
            rows.append((name, "PRS ratio (train)", f"{m['prs_train']['ratio']:.4f}"))
            rows.append((name, "inclusion ratio", f"{m['inclusion']['ratio']:.4f}"))
        return rows


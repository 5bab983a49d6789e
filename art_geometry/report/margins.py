"""
The Margins section of the report: per model, the L2 and L-inf DeepFool margins of a test subset (correctly vs
incorrectly classified samples) and the L2 margin distribution along diagonal DCT blocks, low to high frequency
("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020, Fig. 2).
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from art_geometry._results import jsonable
from art_geometry._settings import DeepFoolSettings
from art_geometry.bounds import margin_bounds
from art_geometry.margins import MarginResult, SubspaceMarginResult, deepfool_margins, subspace_margins
from art_geometry.plots.margins import plot_margin_histogram, plot_subspace_margins
from art_geometry.report.base import ReportContext, Section, figure_html, table_html
from art_geometry.subspaces import dct_subspaces

__all__ = ["MarginsSection", "dct_blocks_for"]

_NORMS = (("l2", 2.0), ("linf", float("inf")))


def dct_blocks_for(image_shape: tuple[int, ...]) -> tuple[int, int]:
    """
    Block size and stride of the DCT subspaces for an image size: the paper's ``K = 8, T = 1`` from 16 x 16 up
    (21 blocks on 28 x 28), ``K = 2, T = 1`` for smaller images (7 blocks on 8 x 8 digits); the stride grows so
    that there are at most about 21 blocks.

    :param image_shape: ``(C, H, W)``.
    :return: ``(block_size, stride)``.
    """
    side = min(image_shape[-2:])
    k = 8 if side >= 16 else 2
    return k, max(1, math.ceil((side - k) / 20))


class MarginsSection(Section):
    """
    DeepFool margins for every model: at most :attr:`max_samples` test samples for the L2 and L-inf margins,
    :attr:`dct_samples` for the DCT-subspace sweep (images only).
    """

    key = "margins"
    title = "Margins"
    #: Samples of the report's test subset used for the L2 and L-inf margins.
    max_samples = 200
    #: Samples used for the DCT-subspace margins.
    dct_samples = 50
    #: Method of the certified lower bounds beside the margins (:func:`art_geometry.margin_bounds`): the
    #: Lipschitz bound is valid for any model and costs one forward pass; "auto" is tighter (MILP / CROWN) but CROWN
    #: costs about a second per sample for a small CNN on a CPU.
    bounds_method = "lipschitz"

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        x_all, y_all = ctx.test_subset()
        x, y = x_all[: self.max_samples], y_all[: self.max_samples]
        opts = {"batch_size": ctx.batch_size, "verbose": ctx.verbose, "seed": ctx.seed}
        out: dict[str, Any] = {}
        for name, clf in ctx.models.items():
            entry: dict[str, Any] = {"n_samples": len(x)}
            for key, p in _NORMS:
                res = deepfool_margins(clf, x, y, norm=p, **opts)
                entry[key] = res.to_dict()
                bracket = margin_bounds(
                    clf, x, y, norm=p, method=self.bounds_method, deepfool=DeepFoolSettings(norm=p, seed=ctx.seed),
                    batch_size=ctx.batch_size, verbose=ctx.verbose,
                )
                entry[f"{key}_bracket"] = bracket.to_dict()
            if x.ndim == 4:
                k, t = dct_blocks_for(x.shape[1:])
                subs = dct_subspaces(x.shape[1:], block_size=k, stride=t)
                sub = subspace_margins(
                    clf, x[: self.dct_samples], y[: self.dct_samples], subspaces=subs, norm=2, **opts
                )
                entry["dct"] = {
                    **sub.to_dict(),
                    "block_size": k,
                    "stride": t,
                    "median": [float(np.median(m[s])) if s.any() else float("nan")
                               for m, s in zip(sub.margins, sub.success)],
                }
            out[name] = entry
        return jsonable(out)

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        rows = []
        for name, m in data.items():
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                s = m[key]["summary"]
                b = m[f"{key}_bracket"]["summary"]
                rows.append([
                    name, label, s["median"], s["correct"]["median"], s["incorrect"]["median"],
                    s["correct"]["n"], s["incorrect"]["n"], s["n_failed"], b["lower_median"], b["ratio_median"],
                ])
        parts = [
            "<p>DeepFool distance from each test sample to the boundary of the region the model predicts "
            "(batched DeepFool, crossing refined by bisection); medians over the successful samples. Beside it, the "
            f"bracket: a certified lower bound of the same distance ({html.escape(self.bounds_method)} method of "
            "<code>margin_bounds</code>: no adversarial point lies closer), its median and the median of "
            "lower / upper per sample (1 = the boundary is pinned down).</p>",
            table_html(["model", "norm", "median", "median (correct)", "median (incorrect)", "n correct",
                        "n incorrect", "failed", "certified lower (median)", "lower / upper (median)"], rows),
        ]
        for name, m in data.items():
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                fig = plot_margin_histogram(MarginResult.from_dict(m[key]))
                fig.axes[0].set_title(f"{name}: {label} margins", fontsize=9)
                parts.append(figure_html(fig, f"{name} {label} margin histogram"))
            if "dct" in m:
                d = m["dct"]
                fig = plot_subspace_margins(SubspaceMarginResult.from_dict(d))
                fig.axes[0].set_title(
                    f"{name}: L2 margin along DCT blocks {d['block_size']}x{d['block_size']} "
                    f"(stride {d['stride']}), low to high frequency", fontsize=9)
                parts.append(figure_html(fig, f"{name} DCT subspace margins"))
        return "".join(parts)

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        rows = []
        for name, m in data.items():
            rows.append((name, "median L2 margin", f"{m['l2']['summary']['median']:.4g}"))
            rows.append((name, "median L-inf margin", f"{m['linf']['summary']['median']:.4g}"))
        return rows

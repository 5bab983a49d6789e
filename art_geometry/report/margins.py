"""
The Margins section of the report: per model, the L2 and L-inf DeepFool margins of a test subset (correctly vs
incorrectly classified samples) with their certified brackets, the clean and PGD robust accuracy of the same
samples, an adversarial gallery of the first few, and the L2 margin distribution along diagonal DCT blocks, low to
high frequency ("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020, Fig. 2).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from art_geometry.bounds import UnsupportedModelError, margin_bounds
from art_geometry.core.model import model_view
from art_geometry.core.results import jsonable
from art_geometry.core.settings import AttackSettings, DeepFoolSettings
from art_geometry.margins import MarginResult, SubspaceMarginResult, deepfool_margins, subspace_margins
from art_geometry.plots.gallery import plot_adversarial_gallery
from art_geometry.plots.margins import (
    plot_margin_distributions,
    plot_margin_histogram,
    plot_subspace_margins,
    plot_subspace_medians,
)
from art_geometry.report.base import Image, Metric, Panel, ReportContext, Section, figure_html, figure_uri
from art_geometry.report.templating import render
from art_geometry.robustness import robust_accuracy
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


def _gallery(clf: Any, x: np.ndarray, result: MarginResult, n: int) -> dict[str, Any]:
    """
    :param clf: The model.
    :param x: The samples of ``result``.
    :param result: Their L2 margins, with the perturbations.
    :param n: How many to keep.
    :return: The first ``n`` samples, their DeepFool perturbations and the predicted class of ``x + delta``.
    """
    pert = np.asarray(result.perturbations[:n], dtype=np.float32)
    view = model_view(clf, x[:n])
    adv = x[:n] + np.nan_to_num(pert, nan=0.0, posinf=0.0, neginf=0.0)
    with view.evaluating(), torch.no_grad():
        adv_pred = view(view.to_tensor(adv)).argmax(1).cpu().numpy()
    return {
        "x": x[:n],
        "perturbations": pert,
        "labels": result.labels[:n],
        "predictions": result.predictions[:n],
        "adversarial_predictions": adv_pred,
        "margins": result.margins[:n],
    }


class MarginsSection(Section):
    """
    DeepFool margins for every model: at most :attr:`max_samples` test samples for the L2 and L-inf margins, their
    certified brackets and the robust accuracy under :attr:`attack`; :attr:`gallery_samples` of them in the
    adversarial gallery and :attr:`dct_samples` in the DCT-subspace sweep (images only).
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
    #: The attack of the robust accuracy (on the same samples as the margins); ``ctx.extras["margins"]["attack"]``
    #: (an :class:`AttackSettings` or its ``to_dict()``) replaces it. The demo's PGD training budget by default.
    attack = AttackSettings(attack="pgd", eps=0.1, max_iter=10)
    #: Samples shown in the adversarial gallery of each model (images only).
    gallery_samples = 4

    def _attack(self, ctx: ReportContext) -> AttackSettings:
        value = ctx.extras.get(self.key, {}).get("attack", self.attack)
        settings = value if isinstance(value, AttackSettings) else AttackSettings.from_dict(value)
        return AttackSettings.build(settings, {"seed": ctx.seed}) if settings.seed is not None else settings

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        x_all, y_all = ctx.test_subset()
        x, y = x_all[: self.max_samples], y_all[: self.max_samples]
        opts = {"batch_size": ctx.batch_size, "verbose": ctx.verbose, "seed": ctx.seed}
        attack = self._attack(ctx)
        out: dict[str, Any] = {}
        for name, clf in ctx.models.items():
            entry: dict[str, Any] = {"n_samples": len(x)}
            for key, p in _NORMS:
                res = deepfool_margins(clf, x, y, norm=p, return_perturbations=key == "l2" and x.ndim == 4, **opts)
                if res.perturbations is not None:
                    entry["gallery"] = _gallery(clf, x, res, self.gallery_samples)
                entry[key] = {**res.to_dict(), "perturbations": None}
                entry[key]["dtypes"].pop("perturbations", None)
                try:
                    bracket = margin_bounds(
                        clf, x, y, norm=p, method=self.bounds_method,
                        deepfool=DeepFoolSettings(norm=p, seed=ctx.seed), batch_size=ctx.batch_size,
                        verbose=ctx.verbose,
                    )
                except UnsupportedModelError as err:  # shown as a note: the margins stand without their bracket
                    entry[f"{key}_bracket"] = {"skipped": str(err)}
                else:
                    entry[f"{key}_bracket"] = bracket.to_dict()
            entry["robustness"] = robust_accuracy(
                clf, x, y, settings=attack, batch_size=ctx.batch_size, verbose=ctx.verbose
            ).to_dict()
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
        models = []
        for name, m in data.items():
            figures = []
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                fig = plot_margin_histogram(MarginResult.from_dict(m[key]))
                fig.axes[0].set_title(f"{name}: {label} margins", fontsize=9)
                figures.append(figure_html(fig, f"{name} {label} margin histogram"))
            if "dct" in m:
                d = m["dct"]
                fig = plot_subspace_margins(SubspaceMarginResult.from_dict(d))
                fig.axes[0].set_title(
                    f"{name}: L2 margin along DCT blocks {d['block_size']}x{d['block_size']} "
                    f"(stride {d['stride']}), low to high frequency", fontsize=9)
                figures.append(figure_html(fig, f"{name} DCT subspace margins"))
            rows, notes = [], []
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                s, b = m[key]["summary"], _bracket_summary(m[f"{key}_bracket"])
                rows.append([
                    label, s["median"], s["correct"]["median"], s["incorrect"]["median"], s["correct"]["n"],
                    s["incorrect"]["n"], s["n_failed"], b["lower_median"], b["ratio_median"],
                ])
                if "skipped" in m[f"{key}_bracket"]:
                    notes.append(f"{label} bracket skipped: {m[f'{key}_bracket']['skipped']}")
            models.append({"name": name, "rows": rows, "figures": figures, "notes": notes})
        return render("margins.html.j2", models=models, bounds_method=self.bounds_method)

    def metrics(self, data: dict[str, Any]) -> dict[str, list[Metric]]:
        """:return: Clean and robust accuracy, median margins and certified lower bounds of every model."""
        out = {}
        for name, m in data.items():
            samples = f"test subset, {m['n_samples']}"
            r = m["robustness"]["summary"]
            attack = _attack_of(m["robustness"]).describe()
            metrics = [
                Metric("clean_accuracy", "clean accuracy", r["accuracy"], samples, "fraction predicted correctly"),
                Metric("robust_accuracy", "robust accuracy", r["robust_accuracy"], samples,
                       f"fraction predicted correctly with and without {attack} run by ART (Madry et al. 2018)"),
            ]
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                metrics += [
                    Metric(f"margin_{key}_median", f"median {label} margin", _number(m[key]["summary"]["median"]),
                           samples, f"median over the successful samples of the {label} DeepFool distance to "
                           "the boundary (an upper bound of the true distance)"),
                    Metric(f"margin_{key}_lower_median", f"median certified {label} lower bound",
                           _number(_bracket_summary(m[f"{key}_bracket"])["lower_median"]), samples,
                           f"median of a certified lower bound of the {label} distance ({self.bounds_method} "
                           "method of margin_bounds): no adversarial point lies closer"),
                ]
            out[name] = metrics
        return out

    def record(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """:return: Threat model, budget, attack, clean and robust accuracy of every model (RobustBench keys)."""
        out = {}
        for name, m in data.items():
            r = m["robustness"]
            out[name] = {
                "threat_model": "Linf" if float(r["norm"]) == float("inf") else f"L{float(r['norm']):g}",
                "eps": r["eps"],
                "attack": _attack_of(r).describe(),
                "clean_accuracy": r["summary"]["accuracy"],
                "robust_accuracy": r["summary"]["robust_accuracy"],
                "n_samples": m["n_samples"],
            }
        return out

    def panels(self, data: dict[str, Any], ctx: ReportContext) -> list[Panel]:
        """:return: Margin CDFs per norm, DCT medians (every model on one axis) and each model's gallery."""
        panels = []
        n = next(iter(data.values()))["n_samples"] if data else 0
        for key, label in (("l2", "L2"), ("linf", "L-inf")):
            fig = plot_margin_distributions({name: MarginResult.from_dict(m[key]) for name, m in data.items()})
            panels.append(Panel(
                f"{label} margin distributions",
                f"For each model, the fraction of the {n} test samples whose decision boundary lies within an "
                f"{label} distance r: the further right a curve, the more robust the model.",
                (Image(figure_uri(fig), f"{label} margin CDFs of every model"),),
                "F(r) = #{i : ||delta_i|| <= r} / N, delta_i the DeepFool perturbation of sample i "
                "(Moosavi-Dezfooli et al. 2016); failures never counted",
            ))
        dct = {name: SubspaceMarginResult.from_dict(m["dct"]) for name, m in data.items() if "dct" in m}
        if dct:
            fig = plot_subspace_medians(dct)
            panels.append(Panel(
                "Margins along frequency bands",
                "Median L2 distance to the boundary when the perturbation may only use one block of DCT "
                "frequencies, from low (left) to high (right); band: 25th to 75th percentile.",
                (Image(figure_uri(fig), "DCT subspace medians of every model"),),
                "margin in subspace S = min ||delta|| with delta in span(S) that changes the prediction (subspace "
                "DeepFool, Ortiz-Jimenez et al. 2020, Fig. 2)",
            ))
        for name, m in data.items():
            if "gallery" in m:
                g = m["gallery"]
                fig = plot_adversarial_gallery(
                    np.asarray(g["x"]), np.asarray(g["perturbations"], dtype=float), g["labels"],
                    g["predictions"], g["adversarial_predictions"], [float(v) for v in g["margins"]], title=name)
                panels.append(Panel(
                    name, "Test samples, the smallest L2 change DeepFool found (stretched to be visible), and the "
                    "changed input with the class the model now predicts.",
                    (Image(figure_uri(fig), f"{name} adversarial gallery"),),
                    "x' = x + delta, delta the refined DeepFool perturbation; shown: (delta / max|delta| + 1) / 2",
                    group="gallery",
                ))
        return panels


def _attack_of(robustness: dict[str, Any]) -> AttackSettings:
    """:return: The attack settings recorded in a robustness result dict (its ``params`` less the batch size)."""
    return AttackSettings.from_dict({k: robustness["params"][k] for k in AttackSettings.field_names()})


def _bracket_summary(bracket: dict[str, Any]) -> dict[str, Any]:
    """:return: A bracket's summary; for one skipped (a model the bounds cannot read) no lower bound and no ratio."""
    return {"lower_median": "nan", "ratio_median": "nan"} if "skipped" in bracket else bracket["summary"]


def _number(value: Any) -> float | None:
    """:return: A JSON number as a float, ``None`` for NaN (``"nan"``)."""
    v = float(value)
    return None if math.isnan(v) else v

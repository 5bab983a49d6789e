"""
The Margins section of the report: per model, the L2 and L-inf DeepFool margins of a test subset (correctly vs
incorrectly classified samples) with their certified brackets (``margin_bounds``, ``method="auto"`` within a stated
budget per sample), the clean and PGD robust accuracy of the same samples and its bracket (certified <= true <=
DeepFool, PGD), an adversarial gallery of the first few, and the L2 margin distribution along diagonal DCT blocks,
low to high frequency ("Hold me tight!", Ortiz-Jimenez et al., NeurIPS 2020, Fig. 2).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from art_geometry.bounds import (
    MarginBoundsResult,
    RobustAccuracyBoundsResult,
    UnsupportedModelError,
    margin_bounds,
    robust_accuracy_bounds,
)
from art_geometry.core.model import model_view
from art_geometry.core.results import jsonable
from art_geometry.core.settings import AttackSettings, DeepFoolSettings
from art_geometry.margins import MarginResult, SubspaceMarginResult, deepfool_margins, subspace_margins
from art_geometry.plots.bounds import plot_robust_accuracy_bounds
from art_geometry.plots.gallery import plot_adversarial_gallery
from art_geometry.plots.margins import (
    plot_margin_distributions,
    plot_margin_histogram,
    plot_subspace_margins,
    plot_subspace_medians,
)
from art_geometry.report.base import Image, Metric, Panel, ReportContext, Section, figure_html, figure_uri
from art_geometry.report.templating import render
from art_geometry.robustness import RobustnessResult, robust_accuracy
from art_geometry.subspaces import dct_subspaces

__all__ = ["MarginsSection", "dct_blocks_for"]

_NORMS = (("l2", 2.0), ("linf", float("inf")))
_LABELS = {"l2": "L2", "linf": "L-inf"}


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
    certified brackets (:attr:`bounds_method` within :attr:`bounds_budget` seconds per sample), the robust accuracy
    under :attr:`attack` and its bracket in the attack's norm (certified and DeepFool robust accuracy over budgets,
    the attack at :attr:`attack_eps_multiples` of its budget); :attr:`gallery_samples` of them in the adversarial
    gallery and :attr:`dct_samples` in the DCT-subspace sweep (images only).

    What ``margin_bounds`` warns about (e.g. ``"auto"`` leaving CROWN out: over the budget, or a layer it does not
    support) is caught and kept as a note of the model (``data[model]["bounds_notes"]``), shown in the page.
    """

    key = "margins"
    title = "Margins"
    #: Samples of the report's test subset used for the L2 and L-inf margins.
    max_samples = 200
    #: Samples used for the DCT-subspace margins.
    dct_samples = 50
    #: Method of the certified lower bounds beside the margins (:func:`art_geometry.margin_bounds`): "auto" takes,
    #: per sample, the largest certified value of the Lipschitz bound (always), the MILP (where its estimated cost fits
    #: :attr:`bounds_budget`) and CROWN (where its estimated cost fits it); "lipschitz" is the cheapest (one forward
    #: pass a sample).
    bounds_method = "auto"
    #: Seconds per sample "auto" may give a method (``BoundsSettings.budget``): the MILP of a sample stops after it,
    #: and a method estimated to cost more is left out (with a note). On the digits SmallCNN CROWN is estimated at
    #: 1.3 s (L-inf) and 1.8 s (L2) per sample and takes 0.27 s and 0.57 s (``benchmarks/bench_bounds.py``): L-inf
    #: gets CROWN, L2 the Lipschitz bound. Per model and norm the bounds cost at most about twice
    #: ``bounds_budget * max_samples``, and much less where "auto" keeps the Lipschitz bound.
    bounds_budget = 1.5
    #: Measure the DeepFool end of the brackets inside the classifier's ``clip_values`` (when it declares them and
    #: the samples lie inside): the threat model of the attack (ART clips into them), so that the bracket of robust
    #: accuracy holds PGD's point (certified <= PGD and DeepFool-in-the-box bounds the same quantity).
    bounds_box = True
    #: The attack of the robust accuracy (on the same samples as the margins); ``ctx.extras["margins"]["attack"]``
    #: (an :class:`AttackSettings` or its ``to_dict()``) replaces it. The demo's PGD training budget by default.
    attack = AttackSettings(attack="pgd", eps=0.1, max_iter=10)
    #: Samples shown in the adversarial gallery of each model (images only).
    gallery_samples = 4
    #: Budgets, as multiples of ``attack.eps``, at which the attack also runs for the robust-accuracy figure (the
    #: attack at ``attack.eps`` itself is the leaderboard's): its points between the certified and DeepFool curves.
    attack_eps_multiples = (0.5, 2.0)
    #: Points of the budget grid of the robust-accuracy curves, from 0 to past the largest DeepFool margin.
    bracket_points = 65

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
            brackets: dict[str, MarginBoundsResult] = {}
            notes: dict[str, list[str]] = {}
            box = self._box(clf, x)
            for key, p in _NORMS:
                res = deepfool_margins(clf, x, y, norm=p, return_perturbations=key == "l2" and x.ndim == 4, **opts)
                if res.perturbations is not None:
                    entry["gallery"] = _gallery(clf, x, res, self.gallery_samples)
                entry[key] = {**res.to_dict(), "perturbations": None}
                entry[key]["dtypes"].pop("perturbations", None)
                with _notes(notes.setdefault(key, [])):
                    try:
                        brackets[key] = margin_bounds(
                            clf, x, y, norm=p, method=self.bounds_method, budget=self.bounds_budget,
                            deepfool=DeepFoolSettings(norm=p, seed=ctx.seed, box=box),
                            batch_size=ctx.batch_size, verbose=ctx.verbose,
                        )
                    except UnsupportedModelError as err:  # shown as a note: the margins stand without their bracket
                        entry[f"{key}_bracket"] = {"skipped": str(err)}
                    else:
                        entry[f"{key}_bracket"] = brackets[key].to_dict()
                if key in brackets and set(brackets[key].method) == {"none"}:  # "auto" could read nothing (warned)
                    why = brackets.pop(key).params.get("unsupported") or "no certified bound for this model"
                    entry[f"{key}_bracket"] = {"skipped": why}
            robustness = robust_accuracy(clf, x, y, settings=attack, batch_size=ctx.batch_size, verbose=ctx.verbose)
            entry["robustness"] = robustness.to_dict()
            with _notes(notes.setdefault("accuracy", [])):
                entry["accuracy"] = self._accuracy(clf, x, y, attack, brackets, robustness, ctx)
            entry["bounds_notes"] = {k: v for k, v in notes.items() if v}
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

    def _box(self, clf: Any, x: np.ndarray) -> bool:
        """:return: Whether the brackets' DeepFool runs inside ``clip_values`` (:attr:`bounds_box`)."""
        clip = model_view(clf, x[:1]).clip_values
        return bool(self.bounds_box and clip is not None and clip[0] <= float(x.min()) and float(x.max()) <= clip[1])

    def _accuracy(self, clf: Any, x: np.ndarray, y: np.ndarray, attack: AttackSettings,
                  brackets: dict[str, MarginBoundsResult], robustness: RobustnessResult,
                  ctx: ReportContext) -> dict[str, Any]:
        """
        :return: The robust-accuracy bracket in the attack's norm (:func:`art_geometry.robust_accuracy_bounds`) from
                 that norm's margin bracket, with the attack at ``attack.eps`` (``robustness``) and at
                 :attr:`attack_eps_multiples` of it, as a result dict; ``{"skipped": why}`` without a bracket.
        """
        key = {2.0: "l2", float("inf"): "linf"}.get(attack.norm.p)
        if key is None:
            return {"skipped": f"no margin bracket in the attack's norm {attack.norm}: the brackets are L2 and L-inf"}
        if key not in brackets:
            return {"skipped": f"no {_LABELS[key]} bracket for this model"}
        bounds = brackets[key]
        results = [robustness] + [
            robust_accuracy(clf, x, y, settings=AttackSettings.build(attack, {"eps": f * attack.eps}),
                            batch_size=ctx.batch_size, verbose=ctx.verbose)
            for f in self.attack_eps_multiples if f * attack.eps != attack.eps
        ]
        finite = bounds.upper[bounds.correct & np.isfinite(bounds.upper)]
        top = max(float(finite.max()) if finite.size else 0.0, max(r.eps for r in results)) * 1.1 or 1.0
        grid = np.unique(np.concatenate([np.linspace(0.0, top, self.bracket_points), [r.eps for r in results]]))
        try:
            found = robust_accuracy_bounds(clf, x, y, eps=grid, bounds=bounds, attacks=results,
                                           batch_size=ctx.batch_size)
        except ValueError as err:  # e.g. the attack's clean predictions differ from the bracket's
            return {"skipped": str(err)}
        return found.to_dict()

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
                    _methods(b.get("methods", {})),
                ])
                if "skipped" in m[f"{key}_bracket"]:
                    notes.append(f"{label} bracket skipped: {m[f'{key}_bracket']['skipped']}")
            accuracy = m.get("accuracy", {"skipped": "not computed"})
            if "skipped" in accuracy:
                notes.append(f"robust-accuracy bracket skipped: {accuracy['skipped']}")
                bracket_rows = []
            else:
                res = RobustAccuracyBoundsResult.from_dict(accuracy)
                bracket_rows = [[_norm_name(res.norm), a["eps"], res.clean_accuracy, a["certified"], a["attack"],
                                 a["accuracy"], a["deepfool"], a["empirical"], a["violations"]]
                                for a in res.attacks()]
            for key, messages in m.get("bounds_notes", {}).items():
                where = _LABELS.get(key, "robust-accuracy")
                notes += [f"{where} bracket: {message}" for message in messages]
            models.append({"name": name, "rows": rows, "figures": figures, "notes": notes,
                           "bracket_rows": bracket_rows})
        return render("margins.html.j2", models=models, bounds_method=self.bounds_method,
                      bounds_budget=self.bounds_budget)

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
            method = f"margin_bounds, method={self.bounds_method!r}, budget {self.bounds_budget:g} s per sample"
            for key, label in (("l2", "L2"), ("linf", "L-inf")):
                bracket = _bracket_summary(m[f"{key}_bracket"])
                metrics += [
                    Metric(f"margin_{key}_median", f"median {label} margin", _number(m[key]["summary"]["median"]),
                           samples, f"median over the successful samples of the {label} DeepFool distance to "
                           "the boundary (an upper bound of the true distance)"),
                    Metric(f"margin_{key}_lower_median", f"median certified {label} lower bound",
                           _number(bracket["lower_median"]), samples,
                           f"median of a certified lower bound of the {label} distance ({method}): no adversarial "
                           "point lies closer"),
                    Metric(f"margin_{key}_ratio_median", f"median {label} lower / upper",
                           _number(bracket["ratio_median"]), samples,
                           f"median over the samples of certified lower bound / DeepFool distance ({label}, {method}): "
                           "1 where the boundary is pinned down"),
                ]
            metrics += self._accuracy_metrics(m, samples, attack, method)
            out[name] = metrics
        return out

    def _accuracy_metrics(self, m: dict[str, Any], samples: str, attack: str, method: str) -> list[Metric]:
        """:return: The certified and DeepFool robust accuracy at the attack's budget (``None`` without them)."""
        accuracy = m.get("accuracy", {"skipped": ""})
        settings = _attack_of(m["robustness"])
        label, eps = _norm_name(settings.norm.p), settings.eps
        found = [] if "skipped" in accuracy else RobustAccuracyBoundsResult.from_dict(accuracy).attacks()
        at = next((a for a in found if a["eps"] == eps), {})
        return [
            Metric("robust_accuracy_certified", "certified robust accuracy", at.get("certified"), samples,
                   f"fraction predicted correctly whose certified {label} lower bound exceeds eps={eps:g} ({method}): "
                   f"a lower bound of the robust accuracy that {attack} bounds from above"),
            Metric("robust_accuracy_deepfool", "DeepFool robust accuracy", at.get("deepfool"), samples,
                   f"fraction predicted correctly whose {label} DeepFool distance to the boundary exceeds eps={eps:g}: "
                   f"an upper bound of the robust accuracy, like {attack}'s"),
        ]

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
        panels += self._accuracy_panels(data)
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

    def _accuracy_panels(self, data: dict[str, Any]) -> list[Panel]:
        """:return: The robust-accuracy brackets of the models that have one, on one axis (none when none has)."""
        found = {name: RobustAccuracyBoundsResult.from_dict(m["accuracy"]) for name, m in data.items()
                 if "skipped" not in m.get("accuracy", {"skipped": ""})}
        if not found:
            return []
        first = next(iter(data.values()))
        n = first["n_samples"]
        missing = [name for name in data if name not in found]
        left_out = f" Not shown (no bracket, see their notes): {', '.join(missing)}." if missing else ""
        attack = _attack_of(first["robustness"]).describe().split(" eps=")[0]
        norm = _norm_name(next(iter(found.values())).norm)
        box = all(r.params.get("bounds", {}).get("box") is not None for r in found.values())
        where = "inside the valid input range, as the attack's" if box else "in all of R^D"
        fig = plot_robust_accuracy_bounds(found)
        return [Panel(
            "Robust-accuracy brackets",
            f"For each model, the fraction of the {n} test samples that are certified robust (solid: certified "
            f"{norm} lower bound above the budget) and that DeepFool does not break (dashed: DeepFool distance above "
            f"the budget, measured {where}), with {attack}'s robust accuracy at a few budgets (points): the true "
            f"robust accuracy lies in the shaded band, at or below the points.{left_out}",
            (Image(figure_uri(fig), f"{norm} robust-accuracy brackets of every model"),),
            "certified(eps) = #{i : correct_i, lower_i > eps} / N <= robust accuracy(eps) <= "
            "min(#{i : correct_i, upper_i > eps} / N, attack(eps)); lower from margin_bounds "
            f"(method={self.bounds_method!r}), upper the DeepFool distance (Moosavi-Dezfooli et al. 2016)",
        )]


@contextlib.contextmanager
def _notes(into: list[str]) -> Iterator[None]:
    """
    Keep the text of every ``UserWarning`` raised inside (``margin_bounds`` naming a method "auto" left out, ...) in
    ``into``, once each, instead of showing it; raise every other warning again as it came.

    :param into: Where the messages go.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, UserWarning):
            if str(w.message) not in into:
                into.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _methods(counts: dict[str, Any]) -> str:
    """:return: The samples per method of a bracket, e.g. ``"milp 15, lipschitz 5"`` (most first), or ``"-"``."""
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), item[0]))
    return ", ".join(f"{k} {int(v)}" for k, v in ranked) or "-"


def _norm_name(p: Any) -> str:
    """:return: ``"L-inf"``, ``"L2"`` or ``"L1"``."""
    return "L-inf" if float(p) == float("inf") else f"L{float(p):g}"


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

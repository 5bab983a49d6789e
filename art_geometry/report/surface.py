"""
The "Decision surface" report section (Yu et al. 2019): random and adversarial decision surfaces of a few test
samples per model as contour maps, and a table of Jacobian and Hessian statistics per model.

Options through ``ctx.extras["surface"]``: ``n_show`` (samples drawn, default 3), ``resolution`` (default 31),
``span`` (default half the median l2 norm of the drawn samples), ``n_jacobian`` (default 50), ``n_hessian``
(default 5), ``k`` (Hessian eigenvalues, default 5). Networks with ReLU layers get the cross-entropy Hessian
(``of="loss"``): their decision-function Hessian is zero almost everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from art_geometry.core.model import model_view
from art_geometry.core.results import jsonable
from art_geometry.indicators import hessian_eigenvalues, jacobian_stats
from art_geometry.report.base import Image, Metric, Panel, ReportContext, Section, figure_html, figure_uri
from art_geometry.report.templating import render
from art_geometry.surface import SurfaceResult, decision_surface

__all__ = ["SurfaceSection"]

_SURFACE_KINDS = ("random", "adversarial")


def _rebuild(d: dict[str, Any]) -> SurfaceResult:
    fields = {f.name: d[f.name] for f in dataclasses.fields(SurfaceResult)}
    for name in ("coords", "decision", "loss", "alpha", "beta", "boundary", "labels"):
        fields[name] = np.asarray(fields[name])
    return SurfaceResult(**fields)


class SurfaceSection(Section):
    """Decision surfaces (random and adversarial planes) and Jacobian/Hessian statistics per model."""

    key = "surface"
    title = "Decision surface"

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        """
        :param ctx: The report context.
        :return: Per model: the two surfaces (``SurfaceResult.to_dict()``), the Jacobian result without the
                 gradients themselves (per-sample norms, sparsity, summary) and the Hessian result.
        """
        opts = ctx.extras.get(self.key, {})
        x, y = ctx.test_subset()
        n_show = min(int(opts.get("n_show", 3)), len(x))
        shown, labels = x[:n_show], y[:n_show]
        span = float(opts.get("span", 0.5 * np.median(np.linalg.norm(shown.reshape(n_show, -1), axis=1))))
        resolution = int(opts.get("resolution", 31))
        n_jac = min(int(opts.get("n_jacobian", 50)), len(x))
        n_hes = min(int(opts.get("n_hessian", 5)), len(x))
        k = min(int(opts.get("k", 5)), int(np.prod(x.shape[1:])))
        out: dict[str, Any] = {"span": span, "resolution": resolution, "models": {}}
        for name, clf in ctx.models.items():
            of = "loss" if model_view(clf, x[:1]).relu_layers() else "decision"
            surfaces = {
                kind: decision_surface(
                    clf, shown, labels, directions=kind, span=span, resolution=resolution, seed=ctx.seed,
                    batch_size=max(ctx.batch_size, resolution * resolution), verbose=ctx.verbose,
                ).to_dict()
                for kind in _SURFACE_KINDS
            }
            jac = jacobian_stats(clf, x[:n_jac], y[:n_jac], batch_size=ctx.batch_size, verbose=ctx.verbose)
            hes = hessian_eigenvalues(
                clf, x[:n_hes], y[:n_hes], k=k, of=of, seed=ctx.seed, batch_size=n_hes, verbose=ctx.verbose
            )
            jacobian = jac.to_dict()
            del jacobian["gradients"], jacobian["dtypes"]["gradients"]
            out["models"][name] = {"surfaces": surfaces, "jacobian": jacobian, "hessian": hes.to_dict()}
        return jsonable(out)

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        """
        :param data: What :meth:`compute` returned.
        :param ctx: The report context.
        :return: Contour maps (one figure per model and kind of plane, folded) and the statistics table.
        """
        import matplotlib.pyplot as plt

        from art_geometry.plots.surface import plot_surface_contour

        models, rows = [], []
        for name, m in data["models"].items():
            figures = []
            for kind in _SURFACE_KINDS:
                result = _rebuild(m["surfaces"][kind])
                n = len(result.labels)
                fig, axes = plt.subplots(1, n, figsize=(5 * n, 4.2), squeeze=False, layout="constrained")
                for i, ax in enumerate(axes[0]):
                    plot_surface_contour(result, i, ax=ax)
                fig.suptitle(f"{name}: {kind} planes")
                figures.append(figure_html(fig, f"{name} {kind} decision surfaces"))
            models.append({"name": name, "figures": figures})
            js, hs = m["jacobian"]["summary"], m["hessian"]["summary"]
            rows.append([
                name, js["l1"]["mean"], js["l2"]["mean"], js["sparsity"]["mean"],
                f"{m['hessian']['of']}", hs["max_abs"]["mean"], hs["l1"]["mean"], hs["sparsity"]["mean"],
            ])
        return render("surface.html.j2", models=models, rows=rows)

    def metrics(self, data: dict[str, Any]) -> dict[str, list[Metric]]:
        """:return: The mean Jacobian l1 norm and the mean top Hessian eigenvalue magnitude of every model."""
        out = {}
        for name, m in data["models"].items():
            js, hs = m["jacobian"]["summary"], m["hessian"]["summary"]
            of = m["hessian"]["of"]
            out[name] = [
                Metric("jacobian_l1_mean", "mean Jacobian l1", js["l1"]["mean"], f"test subset, {js['n_samples']}",
                       "mean over samples of ||grad_x L||_1, L = Z_t - max_{i != t} Z_i (Yu et al. 2019, eq. 4)"),
                Metric("hessian_top_eigenvalue", f"mean top |eigenvalue| of the {of} Hessian",
                       hs["max_abs"]["mean"], f"test subset, {hs['n_samples']}",
                       f"mean over samples of max_i |lambda_i| of the input Hessian of the {of} (Yu et al. 2019, "
                       "eq. 6)"),
            ]
        return out

    def panels(self, data: dict[str, Any], ctx: ReportContext) -> list[Panel]:
        """:return: For each shown sample and kind of plane, the surfaces of every model side by side."""
        from art_geometry.plots.surface import plot_surface_comparison

        if not data["models"]:
            return []
        panels = []
        for kind in _SURFACE_KINDS:
            results = {name: _rebuild(m["surfaces"][kind]) for name, m in data["models"].items()}
            n = len(next(iter(results.values())).labels)
            images = tuple(
                Image(figure_uri(plot_surface_comparison(results, i)), f"{kind} decision surfaces of sample {i}")
                for i in range(n)
            )
            same = ("the same random plane for every model" if kind == "random"
                    else "each model's own adversarial direction")
            panels.append(Panel(
                f"Decision surfaces, {kind} planes",
                f"The same {n} test samples (star) for every model, {same}: blue where the true class wins, red "
                "where another does, black line = the decision boundary. A wider blue area around the star means "
                "a larger change is needed to flip the prediction.",
                images,
                "L(x + a u + b v) = Z_t - max_{i != t} Z_i on the plane of u, v (Yu et al. 2019, Fig. 3-6); "
                "adversarial planes: v = sign(grad_x cross-entropy), u random and orthogonal",
                group="gallery",
                full_width=True,
            ))
        return panels

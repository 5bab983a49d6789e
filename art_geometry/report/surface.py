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

from art_geometry._model import model_view
from art_geometry._results import jsonable
from art_geometry.indicators import hessian_eigenvalues, jacobian_stats
from art_geometry.report.base import ReportContext, Section, figure_html, table_html
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
        :return: Per model: the two surfaces (``SurfaceResult.to_dict()``), the Jacobian summary and per-sample l1,
                 the Hessian summary and which Hessian was used.
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
            out["models"][name] = {
                "surfaces": surfaces,
                "jacobian": {"summary": jac.summary(), "l1": jac.l1, "l2": jac.l2, "sparsity": jac.sparsity},
                "hessian": {"of": of, "summary": hes.summary(), "eigenvalues": hes.eigenvalues},
            }
        return jsonable(out)

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        """
        :param data: What :meth:`compute` returned.
        :param ctx: The report context.
        :return: Contour maps (one figure per model and kind of plane) and the statistics table.
        """
        from art_geometry.plots.surface import plot_surface_contour
        import matplotlib.pyplot as plt

        parts = [
            "<p>Decision function L = Z_t - max_{i != t} Z_i on planes around test samples (Yu et al. 2019); "
            "black line: L = 0, star: the sample. Random planes: two orthonormal random directions; adversarial "
            "planes: beta = sign of the cross-entropy gradient, alpha random and orthogonal.</p>"
        ]
        rows = []
        for name, m in data["models"].items():
            for kind in _SURFACE_KINDS:
                result = _rebuild(m["surfaces"][kind])
                n = len(result.labels)
                fig, axes = plt.subplots(1, n, figsize=(5 * n, 4.2), squeeze=False, layout="constrained")
                for i, ax in enumerate(axes[0]):
                    plot_surface_contour(result, i, ax=ax)
                fig.suptitle(f"{name}: {kind} planes")
                parts.append(figure_html(fig, f"{name} {kind} decision surfaces"))
            js, hs = m["jacobian"]["summary"], m["hessian"]["summary"]
            rows.append([
                name, js["l1"]["mean"], js["l2"]["mean"], js["sparsity"]["mean"],
                f"{m['hessian']['of']}", hs["max_abs"]["mean"], hs["l1"]["mean"], hs["sparsity"]["mean"],
            ])
        parts.append(table_html(
            ["model", "mean ||J||_1", "mean ||J||_2", "J sparsity", "Hessian of", "mean max|lambda|",
             "mean top-k l1", "eig. sparsity"],
            rows,
        ))
        return "\n".join(parts)

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        """:return: The mean Jacobian l1 norm per model."""
        return [
            (name, "mean Jacobian l1", f"{m['jacobian']['summary']['l1']['mean']:.4g}")
            for name, m in data["models"].items()
        ]

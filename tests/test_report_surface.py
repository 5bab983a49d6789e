import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from art_geometry.plots.surface import (
    plot_surface_3d,
    plot_surface_comparison,
    plot_surface_contour,
)
from art_geometry.report.base import ReportContext
from art_geometry.report.surface import SurfaceSection
from art_geometry.surface import decision_surface
from tests.helpers import assert_unchanged, random_linear


def test_section_compute_render_summary(trained_cnn, digits):
    ctx = ReportContext(models={"cnn": trained_cnn}, data=digits, n_samples=6, batch_size=64, verbose=False,
                        extras={"surface": {"n_show": 2, "resolution": 7, "n_jacobian": 6, "n_hessian": 2, "k": 3}})
    section = SurfaceSection()
    with assert_unchanged(trained_cnn, digits.x_test):
        data = section.compute(ctx)
    json.dumps(data)
    m = data["models"]["cnn"]
    assert m["hessian"]["of"] == "loss"
    assert np.array(m["surfaces"]["random"]["decision"]).shape == (2, 7, 7)
    assert len(m["jacobian"]["l1"]) == 6
    html = section.render(data, ctx)
    assert html.count("<img") == 2 and "<table>" in html
    rows = section.summary_rows(data)
    assert rows == [
        ("cnn", "mean Jacobian l1 (test subset, 6)", f"{np.mean(m['jacobian']['l1']):.4g}"),
        ("cnn", "mean top |eigenvalue| of the loss Hessian (test subset, 2)",
         f"{np.mean(np.abs(np.asarray(m['hessian']['eigenvalues'])[:, 0])):.4g}"),
    ]
    assert "gradients" not in m["jacobian"]
    panels = section.panels(data, ctx)
    assert [p.title for p in panels] == ["Decision surfaces, random planes", "Decision surfaces, adversarial planes"]
    assert all(len(p.images) == 2 for p in panels)
    assert section.key == "surface" and section.title == "Decision surface"


def test_random_planes_are_the_same_for_every_model(trained_cnn, digits):
    """The side-by-side surfaces compare models on one plane: the random directions depend on the seed only."""
    other = random_linear(10, (1, 8, 8), seed=1, dtype=torch.float32)
    x = digits.x_test[:2]
    a = decision_surface(trained_cnn, x, digits.y_test[:2], span=1.0, resolution=5, seed=3)
    b = decision_surface(other, x, digits.y_test[:2], span=1.0, resolution=5, seed=3)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.beta, b.beta)


def test_plots_return_figures():
    model = random_linear(3, (4,), seed=0)
    x = np.random.default_rng(0).normal(size=(2, 4))
    res = decision_surface(model, x, span=3.0, resolution=9)
    adv = decision_surface(model, x, directions="adversarial", span=3.0, resolution=9)
    for fig in (plot_surface_contour(res, 1), plot_surface_contour(adv, 0, surface="loss"), plot_surface_3d(res),
                plot_surface_comparison({"natural": res, "robust": adv})):
        assert fig.axes
        matplotlib.pyplot.close(fig)
    with pytest.raises(IndexError, match="out of range"):
        plot_surface_contour(res, 2)
    with pytest.raises(ValueError, match="surface must be"):
        plot_surface_3d(res, surface="margin")


def test_decision_colours_centred_on_the_boundary_and_shared_across_models():
    model = random_linear(3, (4,), seed=0)
    x = np.random.default_rng(0).normal(size=(1, 4))
    small = decision_surface(model, x, span=1.0, resolution=9)
    large = decision_surface(model, x, span=4.0, resolution=9)
    fig = plot_surface_comparison({"small": small, "large": large})
    norms = [ax.collections[0].norm for ax in fig.axes[:2]]
    assert norms[0] is norms[1]
    half = float(np.abs(large.decision[0]).max())
    assert norms[0](0.0) == pytest.approx(0.5) and norms[0].vmax == pytest.approx(half)
    assert norms[0].vmin == pytest.approx(-half)
    matplotlib.pyplot.close(fig)

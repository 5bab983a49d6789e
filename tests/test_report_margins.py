import json

import numpy as np
import pytest
import torch

from art_geometry.datasets import MLP, Dataset, make_classifier, train_classifier
from art_geometry.margins import deepfool_margins, subspace_margins
from art_geometry.plots.margins import (
    plot_margin_distributions,
    plot_margin_histogram,
    plot_subspace_margins,
    plot_subspace_medians,
)
from art_geometry.report.base import ReportContext
from art_geometry.report.margins import MarginsSection, dct_blocks_for
from art_geometry.subspaces import dct_subspaces
from tests.helpers import assert_unchanged


@pytest.fixture(scope="module")
def small(digits):
    torch.manual_seed(0)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    train_classifier(clf, digits.x_train[:600], digits.y_train[:600], nb_epochs=3, seed=0)
    data = Dataset(digits.x_train[:100], digits.y_train[:100], digits.x_test[:40], digits.y_test[:40], "digits-mini")
    return clf, data


def test_dct_block_choice():
    assert dct_blocks_for((1, 8, 8)) == (2, 1)
    assert dct_blocks_for((1, 28, 28)) == (8, 1)
    k, t = dct_blocks_for((3, 224, 224))
    assert k == 8 and (224 - k) // t + 1 <= 21


def test_plots_draw_the_right_artists(small):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clf, data = small
    x, y = data.x_test[:12], data.y_test[:12]
    sub = subspace_margins(clf, x, y, subspaces=dct_subspaces((1, 8, 8), block_size=2))
    fig = plot_subspace_margins(sub)
    ax = fig.axes[0]
    assert len(ax.collections) == 1 and len(ax.lines) == 1
    assert len(ax.collections[0].get_offsets()) == int(sub.success.sum())
    medians = [np.median(m[ok]) for m, ok in zip(sub.margins, sub.success)]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), medians)
    assert len(ax.get_xticks()) == 7
    plt.close(fig)

    res = deepfool_margins(clf, x, y)
    fig, ax = plt.subplots()
    assert plot_margin_histogram(res, bins=10, ax=ax) is fig
    groups = int(res.correct.any()) + int((~res.correct).any())
    assert len(ax.patches) == groups
    plt.close(fig)
    only_correct = deepfool_margins(clf, x, res.predictions)
    fig = plot_margin_histogram(only_correct)
    assert len(fig.axes[0].patches) == 1
    plt.close(fig)


def test_section_computes_and_renders(small):
    import matplotlib

    matplotlib.use("Agg")
    clf, data = small
    section = MarginsSection()
    section.max_samples, section.dct_samples = 20, 6
    ctx = ReportContext(models={"mlp": clf}, data=data, n_samples=30, verbose=False)
    with assert_unchanged(clf, data.x_test):
        out = section.compute(ctx)
    json.dumps(out)
    m = out["mlp"]
    assert m["n_samples"] == 20 and len(m["l2"]["margins"]) == 20
    assert np.asarray(m["dct"]["margins"], dtype=object).shape == (7, 6)
    x, y = ctx.test_subset()
    expected = deepfool_margins(clf, x[:20], y[:20], norm=np.inf).summary()["median"]
    assert m["linf"]["summary"]["median"] == pytest.approx(expected)
    html = section.render(out, ctx)
    assert html.count("<img") == 3 and "<table>" in html and "L-inf" in html
    rows = section.summary_rows(out)
    assert [r[1] for r in rows] == [
        "clean accuracy (test subset, 20)", "robust accuracy (test subset, 20)", "median L2 margin (test subset, 20)",
        "median certified L2 lower bound (test subset, 20)", "median L-inf margin (test subset, 20)",
        "median certified L-inf lower bound (test subset, 20)",
    ]
    # robust accuracy: ART's PGD on the same samples, as robust_accuracy computes it
    from art_geometry import robust_accuracy

    rob = robust_accuracy(clf, x[:20], y[:20], settings=MarginsSection.attack)
    assert m["robustness"]["summary"]["robust_accuracy"] == pytest.approx(rob.robust_accuracy)
    record = section.record(out)["mlp"]
    assert record["threat_model"] == "Linf" and record["eps"] == 0.1
    assert record["clean_accuracy"] == pytest.approx(float(np.mean(m["l2"]["correct"])))
    # the gallery: x + delta is adversarial where DeepFool succeeded, delta's norm is the margin
    g = m["gallery"]
    assert np.asarray(g["x"]).shape == (4, 1, 8, 8) and m["l2"]["perturbations"] is None
    ok = np.asarray(m["l2"]["success"][:4], dtype=bool)
    assert (np.asarray(g["adversarial_predictions"])[ok] != np.asarray(g["predictions"])[ok]).all()
    norms = np.linalg.norm(np.asarray(g["perturbations"], dtype=float).reshape(4, -1), axis=1)
    np.testing.assert_allclose(norms[ok], np.asarray(g["margins"], dtype=float)[ok], rtol=1e-4)
    panels = section.panels(out, ctx)
    assert [p.title for p in panels] == ["L2 margin distributions", "L-inf margin distributions",
                                         "Margins along frequency bands", "mlp"]
    assert [p.group for p in panels].count("gallery") == 1


def test_overlaid_margin_plots_draw_one_line_per_model(small):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clf, data = small
    x, y = data.x_test[:10], data.y_test[:10]
    res = deepfool_margins(clf, x, y)
    fig = plot_margin_distributions({"a": res, "b": res})
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    # the empirical CDF: reaches the fraction of successful samples at the largest margin
    ys = ax.lines[0].get_ydata()
    assert ys[-1] == pytest.approx(res.success.mean()) and (np.diff(ys) >= 0).all()
    np.testing.assert_allclose(np.sort(ax.lines[0].get_xdata()[1:]), np.sort(res.margins[res.success]))
    plt.close(fig)
    sub = subspace_margins(clf, x, y, subspaces=dct_subspaces((1, 8, 8), block_size=2))
    fig = plot_subspace_medians({"a": sub})
    expected = [np.median(m[ok]) for m, ok in zip(sub.margins, sub.success)]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), expected)
    plt.close(fig)
    with pytest.raises(ValueError, match="results is empty"):
        plot_margin_distributions({})

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
        "median certified L2 lower bound (test subset, 20)", "median L2 lower / upper (test subset, 20)",
        "median L-inf margin (test subset, 20)", "median certified L-inf lower bound (test subset, 20)",
        "median L-inf lower / upper (test subset, 20)", "certified robust accuracy (test subset, 20)",
        "DeepFool robust accuracy (test subset, 20)",
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
                                         "Robust-accuracy brackets", "Margins along frequency bands", "mlp"]
    assert [p.group for p in panels].count("gallery") == 1
    _check_brackets(section, out, html, x[:20], y[:20], clf)


def _check_brackets(section, out, html, x, y, clf):
    """The brackets of the section: "auto" within the budget, the robust-accuracy bracket holds PGD's points."""
    import warnings

    from art_geometry import DeepFoolSettings, RobustAccuracyBoundsResult, margin_bounds

    m = out["mlp"]
    for key in ("l2", "linf"):
        b = m[f"{key}_bracket"]
        assert b["params"]["method"] == "auto" and b["params"]["budget"] == section.bounds_budget
        assert b["params"]["box"] == [0.0, 1.0]  # the ART classifier declares clip_values: DeepFool inside them
        counts = b["summary"]["methods"]
        assert sum(counts.values()) == 20 and ", ".join(f"{k} {v}" for k, v in sorted(
            counts.items(), key=lambda kv: (-kv[1], kv[0]))) in html
    # the same bracket as margin_bounds computes it (whichever methods "auto" picks), warnings aside
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = margin_bounds(clf, x, y, norm="inf", method="auto", budget=section.bounds_budget,
                              deepfool=DeepFoolSettings(norm="inf", box=True))
    np.testing.assert_allclose(m["linf_bracket"]["upper"], again.upper)
    acc = RobustAccuracyBoundsResult.from_dict(m["accuracy"])
    np.testing.assert_array_equal(acc.lower, np.asarray(m["linf_bracket"]["lower"], dtype=float))
    assert acc.attack_eps.tolist() == [0.05, 0.1, 0.2] and acc.attack_correct.shape == (3, 20)
    rob = m["robustness"]["summary"]["robust_accuracy"]
    assert acc.attack_accuracy[1] == rob
    for a in acc.attacks():  # soundness: no PGD point below the certified curve, per sample and in fraction
        assert a["violations"] == 0 and a["certified"] <= a["empirical"] <= min(a["accuracy"], a["deepfool"])
    metrics = {mm.key: mm.value for mm in section.metrics(out)["mlp"]}
    at = acc.attacks()[1]
    assert metrics["robust_accuracy_certified"] == at["certified"] <= rob
    assert metrics["robust_accuracy_deepfool"] == at["deepfool"]
    assert metrics["margin_linf_ratio_median"] == pytest.approx(m["linf_bracket"]["summary"]["ratio_median"])
    assert (np.diff(acc.certified) <= 0).all() and acc.eps[0] == 0 and acc.certified[0] <= acc.clean_accuracy
    assert "attack&#39;s robust accuracy" in html and "violations" in html


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


def test_bounds_warnings_become_notes_and_others_pass_through(small, monkeypatch):
    """margin_bounds' UserWarnings (e.g. "auto" leaving CROWN out) are kept as notes; no warning leaks."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import art_geometry.report.margins as margins

    real = margins.margin_bounds

    def noisy(*args, **kwargs):
        warnings.warn("margin_bounds(method='auto'): CROWN is not used (a test)", UserWarning, stacklevel=2)
        warnings.warn("margin_bounds(method='auto'): CROWN is not used (a test)", UserWarning, stacklevel=2)
        warnings.warn("a third-party deprecation", FutureWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(margins, "margin_bounds", noisy)
    clf, data = small
    section = MarginsSection()
    section.max_samples, section.dct_samples, section.attack_eps_multiples = 6, 2, ()
    ctx = ReportContext(models={"mlp": clf}, data=data, n_samples=6, verbose=False)
    with pytest.warns(FutureWarning, match="third-party") as record:
        out = section.compute(ctx)
    assert not [w for w in record if issubclass(w.category, UserWarning)]
    notes = out["mlp"]["bounds_notes"]
    assert notes == {"l2": ["margin_bounds(method='auto'): CROWN is not used (a test)"],
                     "linf": ["margin_bounds(method='auto'): CROWN is not used (a test)"]}
    html = section.render(out, ctx)
    assert "L-inf bracket: margin_bounds(method=&#39;auto&#39;): CROWN is not used (a test)" in html
    assert out["mlp"]["accuracy"]["attack_eps"] == [0.1]


def test_margins_data_follows_the_schema(small):
    """The margins section's data against the report schema's margins_model; damaged copies fail."""
    import copy

    jsonschema = pytest.importorskip("jsonschema")
    import matplotlib

    matplotlib.use("Agg")
    from art_geometry.report import SCHEMA_VERSION, report_schema

    clf, data = small
    section = MarginsSection()
    section.max_samples, section.dct_samples, section.attack_eps_multiples = 6, 2, ()
    ctx = ReportContext(models={"mlp": clf}, data=data, verbose=False)
    out = json.loads(json.dumps(section.compute(ctx)))
    schema = report_schema()
    assert SCHEMA_VERSION == "2.1" and report_schema("2.0")["properties"]["schema_version"]["const"] == "2.0"
    model = {"$defs": schema["$defs"], "$ref": "#/$defs/margins_model"}
    validator = jsonschema.Draft202012Validator(model)
    validator.validate(out["mlp"])
    validator.validate({**out["mlp"], "accuracy": {"skipped": "no L1 bracket"}, "linf_bracket": {"skipped": "x"}})
    for damage in (
        lambda m: m.pop("accuracy"),
        lambda m: m.pop("bounds_notes"),
        lambda m: m["accuracy"].update(certified=[1.5]),
        lambda m: m["accuracy"]["summary"]["attacks"][0].update(violations=-1),
        lambda m: m["accuracy"].pop("attack_eps"),
        lambda m: m["linf_bracket"].pop("method"),
        lambda m: m["bounds_notes"].update(l2="not a list"),
    ):
        broken = copy.deepcopy(out["mlp"])
        damage(broken)
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)
    # a model without a bracket is left out of the overlaid figure, and named in its caption
    two = {"mlp": out["mlp"], "other": {**out["mlp"], "accuracy": {"skipped": "no L-inf bracket"}}}
    (panel,) = [p for p in section.panels(two, ctx) if p.title == "Robust-accuracy brackets"]
    assert panel.caption.endswith("Not shown (no bracket, see their notes): other.")
    assert "inside the valid input range" in panel.caption
    assert "robust-accuracy bracket skipped: no L-inf bracket" in section.render(two, ctx)

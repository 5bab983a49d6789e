import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from art_geometry.datasets import MLP, make_classifier
from art_geometry.tracking import GeometryTracker, fit_tracked, transitions
from art_geometry.training import JacobianRegularizedTrainer
from tests.helpers import assert_unchanged

FAST = dict(n_train=30, n_test=30, margin_options=dict(max_iter=8, restarts=0, refine=False, candidates=3), pgd_iter=3)


def _clf(seed=0):
    torch.manual_seed(seed)
    return make_classifier(MLP((1, 8, 8), (32,)), (1, 8, 8), 10, lr=1e-2)


def test_transitions_counts():
    before = np.array([1, 1, 0, 0, 1], dtype=bool)
    after = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert transitions(before, after) == {
        "correct->correct": 2, "correct->incorrect": 1, "incorrect->correct": 1, "incorrect->incorrect": 1,
    }


def test_tracker_with_jacobian_trainer(digits, tmp_path):
    clf = _clf()
    x, y = digits.x_train[:400], digits.y_train[:400]
    tracker = GeometryTracker(x, y, digits.x_test, digits.y_test, epochs=[0, 2], **FAST)
    JacobianRegularizedTrainer(clf, c=0.01).fit(x, y, batch_size=100, nb_epochs=3, callbacks=[tracker], verbose=False)
    h = tracker.history
    assert [r["epoch"] for r in h["epochs"]] == [0, 2]
    last = h["epochs"][-1]
    x_te = digits.x_test[np.array(h["config"]["test_indices"])]
    y_te = digits.y_test[np.array(h["config"]["test_indices"])]
    acc = float((clf.predict(x_te).argmax(1) == y_te).mean())
    assert last["test"]["accuracy"] == pytest.approx(acc)
    assert set(last["test"]) >= {"prs_ratio", "n_regions", "inclusion_ratio", "margins", "robust_accuracy"}
    assert set(last["test"]["margins"]) == {"l2", "linf"}
    assert last["test"]["margins"]["l2"]["correct"]["n"] + last["test"]["margins"]["l2"]["incorrect"]["n"] <= 30
    assert 0 <= last["test"]["robust_accuracy"] <= last["test"]["accuracy"]
    assert last["logs"]["loss"] > 0
    (move,) = h["transitions"]
    assert (move["from"], move["to"]) == (0, 2)
    for s in ("train", "test"):
        counts = move[s]
        assert sum(counts.values()) == 30
        now = np.array(last[s]["correct"])
        assert counts["correct->correct"] + counts["incorrect->correct"] == now.sum()
    path = tmp_path / "history.json"
    tracker.to_json(path)
    assert GeometryTracker.from_json(path) == json.loads(json.dumps(h))
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="not a GeometryTracker history"):
        GeometryTracker.from_json(tmp_path / "bad.json")

    from art_geometry.plots.training import plot_margin_curves, plot_prs_curves, plot_transitions

    for fig in (plot_margin_curves(h, "linf", "mean"), plot_prs_curves(h), plot_transitions(h, "train")):
        assert fig.axes
        matplotlib.pyplot.close(fig)
    # two trainings on shared panels, and every plot onto given axes
    fig = plot_margin_curves(h, "l2", label="natural")
    assert plot_margin_curves(h, "l2", axes=fig.axes[:2], label="adversarial", linestyle="--") is fig
    assert len(fig.axes[0].lines) == 6
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"natural: all", "adversarial: incorrect"} <= legend
    matplotlib.pyplot.close(fig)
    fig, axes = matplotlib.pyplot.subplots(1, 2)
    assert plot_prs_curves(h, ax=axes[0]) is fig and plot_transitions(h, ax=axes[1]) is fig
    assert len(axes[1].patches) == 4
    matplotlib.pyplot.close(fig)

    from art_geometry.report.base import ReportContext
    from art_geometry.report.training import TrainingSection

    section = TrainingSection()
    ctx = ReportContext(models={}, data=digits, extras={"training": str(path)})
    data = section.compute(ctx)
    page = section.render(data, ctx)
    assert page.count("<img") == 4 and page.count("<tr>") == 3
    assert ("training", "test accuracy (epoch 2)", f"{last['test']['accuracy']:.4g}") in section.summary_rows(data)
    both = ReportContext(models={}, data=digits, extras={"training": {"m1": h, "m2": str(path)}})
    data2 = section.compute(both)
    page2 = section.render(data2, both)
    assert page2.count("<h3>") == 2 and page2.count("<img") == 8 and page2.count("<tr>") == 6
    rows = section.summary_rows(data2)
    assert {r[0] for r in rows} == {"m1", "m2"}
    assert ("m2", "test accuracy (epoch 2)", f"{last['test']['accuracy']:.4g}") in rows
    empty = ReportContext(models={}, data=digits)
    assert "No training history" in section.render(section.compute(empty), empty)
    with pytest.raises(TypeError, match="GeometryTracker"):
        section.compute(ReportContext(models={}, data=digits, extras={"training": 3}))


def test_fit_tracked_natural_and_adversarial(digits):
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer

    x, y = digits.x_train[:256], digits.y_train[:256]
    clf = _clf()
    clf.model.eval()
    np_state = np.random.get_state()[1].copy()
    tracker = GeometryTracker(x, y, digits.x_test, digits.y_test, metrics=("accuracy", "regions"), **FAST)
    hist = fit_tracked(clf, x, y, 2, 64, tracker, seed=0)
    assert len(hist["epochs"]) == 2 and len(hist["transitions"]) == 1
    assert not clf.model.training and np.array_equal(np.random.get_state()[1], np_state)
    assert "margins" not in hist["epochs"][0]["test"]

    clf2 = _clf()
    pgd = ProjectedGradientDescent(clf2, eps=0.1, eps_step=0.05, max_iter=2, verbose=False)
    trainer = AdversarialTrainer(clf2, pgd, ratio=0.5)
    tracker2 = GeometryTracker(x, y, digits.x_test, digits.y_test, metrics=("accuracy", "robustness"), **FAST)
    hist2 = fit_tracked(clf2, x, y, 1, 128, tracker2, seed=0, trainer=trainer)
    assert 0 <= hist2["epochs"][0]["test"]["robust_accuracy"] <= hist2["epochs"][0]["test"]["accuracy"]
    with pytest.raises(ValueError, match="another classifier"):
        fit_tracked(clf, x, y, 1, 128, tracker2, trainer=trainer)


def test_evaluate_leaves_model_and_inputs_untouched(digits):
    clf = _clf()
    clf.model.train()
    x_tr, y_tr = digits.x_train[:100].copy(), digits.y_train[:100].copy()
    tracker = GeometryTracker(x_tr, y_tr, digits.x_test, digits.y_test, metrics=("accuracy", "regions"), **FAST)
    with assert_unchanged(clf, x_tr, y_tr):
        tracker.evaluate(clf, 0)
    clf.model.eval()
    other = GeometryTracker(x_tr, y_tr, digits.x_test, digits.y_test, metrics=("accuracy",), **FAST)
    assert other.config["test_indices"] == tracker.config["test_indices"], "subsets depend on the seed only"


def test_bad_input(digits):
    d = (digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="unknown metrics"):
        GeometryTracker(*d, metrics=("accuracy", "loss"))
    with pytest.raises(ValueError, match="margin norms"):
        GeometryTracker(*d, norms=(1,))
    with pytest.raises(ValueError, match="pgd_eps"):
        GeometryTracker(*d, pgd_eps=-1)
    with pytest.raises(ValueError, match="n_train"):
        GeometryTracker(*d, n_train=0)

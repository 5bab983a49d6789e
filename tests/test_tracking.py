import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from art_geometry import AttackSettings
from art_geometry.datasets import MLP, make_classifier
from art_geometry.training import GeometryTracker, JacobianRegularizedTrainer, fit_tracked, transitions
from tests.helpers import assert_unchanged

FAST = dict(
    n_train=30, n_test=30, margin_options=dict(max_iter=8, restarts=0, refine=False, candidates=3),
    attack_settings=AttackSettings(eps=0.1, max_iter=3),
)


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
    hist = fit_tracked(clf, x, y, nb_epochs=2, batch_size=64, tracker=tracker, seed=0)
    assert len(hist["epochs"]) == 2 and len(hist["transitions"]) == 1
    assert not clf.model.training and np.array_equal(np.random.get_state()[1], np_state)
    assert "margins" not in hist["epochs"][0]["test"]

    clf2 = _clf()
    pgd = ProjectedGradientDescent(clf2, eps=0.1, eps_step=0.05, max_iter=2, verbose=False)
    trainer = AdversarialTrainer(clf2, pgd, ratio=0.5)
    tracker2 = GeometryTracker(x, y, digits.x_test, digits.y_test, metrics=("accuracy", "robustness"), **FAST)
    hist2 = fit_tracked(clf2, x, y, nb_epochs=1, batch_size=128, tracker=tracker2, seed=0, trainer=trainer)
    assert 0 <= hist2["epochs"][0]["test"]["robust_accuracy"] <= hist2["epochs"][0]["test"]["accuracy"]
    with pytest.raises(ValueError, match="another classifier"):
        fit_tracked(clf, x, y, nb_epochs=1, batch_size=128, tracker=tracker2, trainer=trainer)


def _weights(clf):
    return torch.cat([p.detach().flatten() for p in clf.model.parameters()])


def test_fit_tracked_old_positional_form_warns_and_matches(digits):
    x, y = digits.x_train[:128], digits.y_train[:128]
    runs = []
    for legacy in (False, True):
        clf = _clf()
        tracker = GeometryTracker(x, y, digits.x_test, digits.y_test, metrics=("accuracy",), **FAST)
        if legacy:
            with pytest.warns(DeprecationWarning, match="nb_epochs=..., batch_size=..., tracker=..., seed=..."):
                hist = fit_tracked(clf, x, y, 2, 32, tracker, 3)
        else:
            hist = fit_tracked(clf, x, y, nb_epochs=2, batch_size=32, tracker=tracker, seed=3)
        runs.append((_weights(clf), [r["train"]["accuracy"] for r in hist["epochs"]]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


def test_fit_tracked_converts_inputs_and_leaves_them_untouched(digits):
    x, y = digits.x_train[:128].copy(), digits.y_train[:128].copy()
    reference = _clf()
    fit_tracked(reference, x, y, nb_epochs=1, batch_size=32, seed=1,
                tracker=GeometryTracker(x, y, x, y, metrics=("accuracy",), epochs=[], **FAST))
    forms = {
        "float64": x.astype(np.float64),
        "negative strides": np.ascontiguousarray(x[::-1])[::-1],
        "tensor": torch.from_numpy(x.copy()),
        "one-hot labels": x,
    }
    for name, xf in forms.items():
        yf = np.eye(10, dtype=np.float32)[y] if name == "one-hot labels" else y
        clf = _clf()
        tracker = GeometryTracker(x, y, x, y, metrics=("accuracy",), epochs=[], **FAST)
        with assert_unchanged(torch.nn.Identity(), xf, yf):
            fit_tracked(clf, xf, yf, nb_epochs=1, batch_size=32, tracker=tracker, seed=1)
        assert torch.equal(_weights(clf), _weights(reference)), name


def test_fit_tracked_bad_inputs_raise_before_training(digits):
    x, y = digits.x_train[:64], digits.y_train[:64]
    clf = _clf()
    tracker = GeometryTracker(x, y, x, y, metrics=("accuracy",), **FAST)
    nan = x.copy()
    nan[3, 0, 2, 2] = np.nan
    cases = [
        ((nan, y), ValueError, "x contains NaN"),
        ((x, y[:-1]), ValueError, "y labels 63 samples but x holds 64"),
        ((x, np.full_like(y, 10)), ValueError, "y holds labels in \\[10, 10\\], out of range for 10 classes"),
        ((x, -np.ones_like(y)), ValueError, "out of range"),
        ((x[:, :, :7], y), ValueError, "x has samples of shape"),
        ((x.tolist(), y), TypeError, "x must be a numpy array"),
    ]
    for (xb, yb), error, words in cases:
        with assert_unchanged(clf, *(a for a in (xb, yb) if isinstance(a, np.ndarray))):
            with pytest.raises(error, match=words):
                fit_tracked(clf, xb, yb, nb_epochs=1, batch_size=32, tracker=tracker)
    assert tracker.history["epochs"] == []
    for option, value in (("nb_epochs", 0), ("batch_size", 2.5), ("seed", -1)):
        with pytest.raises(ValueError, match=option):
            fit_tracked(clf, x, y, **{"nb_epochs": 1, "batch_size": 32, "tracker": tracker, option: value})
    with pytest.raises(TypeError, match="GeometryTracker"):
        fit_tracked(clf, x, y, nb_epochs=1, batch_size=32, tracker=object())
    with pytest.raises(TypeError, match="ART PyTorchClassifier"):
        fit_tracked(clf.model, x, y, nb_epochs=1, batch_size=32, tracker=tracker)


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
    with pytest.raises(ValueError, match="pgd_eps"), pytest.warns(DeprecationWarning):
        GeometryTracker(*d, pgd_eps=-1)
    with pytest.raises(ValueError, match="n_train"):
        GeometryTracker(*d, n_train=0)
    with pytest.raises(ValueError, match="seed"):
        GeometryTracker(*d, seed=-1)
    with pytest.raises(TypeError, match="unknown option"):
        GeometryTracker(*d, margin_options={"iterations": 3})
    with pytest.raises(ValueError, match="margin_options must not set norm"):
        GeometryTracker(*d, margin_options={"norm": 2})
    with pytest.raises(ValueError, match="eps"):
        GeometryTracker(*d, attack_settings=AttackSettings(eps=-1))


def test_tracker_data_checked_with_argument_names(digits):
    x, y, xt, yt = digits.x_train[:50], digits.y_train[:50], digits.x_test[:50], digits.y_test[:50]
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x_train contains NaN"):
        GeometryTracker(nan, y, xt, yt)
    with pytest.raises(ValueError, match="y_train labels 49 samples"):
        GeometryTracker(x, y[:-1], xt, yt)
    with pytest.raises(ValueError, match="y_test"):
        GeometryTracker(x, y, xt, yt - 1 - yt.max())
    with pytest.raises(TypeError, match="x_test"):
        GeometryTracker(x, y, xt.tolist(), yt)
    # labels in range are only known with the model: checked (naming the subset) at the first evaluation
    tracker = GeometryTracker(x, y, xt, np.full_like(yt, 12), metrics=("accuracy",), **FAST)
    with pytest.raises(ValueError, match="y_test holds labels in \\[12, 12\\]"):
        tracker.evaluate(_clf(), 0)
    wrong = GeometryTracker(x[:, :, :7], y, xt[:, :, :7], yt, metrics=("accuracy",), **FAST)
    with pytest.raises(ValueError, match="x_train has samples of shape"):
        wrong.evaluate(_clf(), 0)


def test_tracker_pgd_options_deprecated_and_equal_to_settings(digits):
    x, y = digits.x_train[:60], digits.y_train[:60]
    d = (x, y, digits.x_test[:60], digits.y_test[:60])
    with pytest.warns(DeprecationWarning, match="attack_settings=AttackSettings"):
        old = GeometryTracker(*d, pgd_eps=0.05, pgd_iter=2, metrics=("accuracy", "robustness"), n_test=20)
    settings = AttackSettings(eps=0.05, max_iter=2)
    new = GeometryTracker(*d, attack_settings=settings, metrics=("accuracy", "robustness"), n_test=20)
    assert old.config == new.config and new.config["pgd_eps"] == 0.05 and new.config["attack"]["max_iter"] == 2
    clf = _clf()
    assert old.evaluate(clf, 0)["test"] == new.evaluate(clf, 0)["test"]
    with pytest.raises(TypeError, match="not both"):
        GeometryTracker(*d, pgd_eps=0.05, attack_settings=AttackSettings())


def test_tracker_records_margin_brackets_on_request():
    from art_geometry import BoundsSettings
    from art_geometry.datasets import MLP, load_digits, make_classifier
    from art_geometry.training import GeometryTracker

    data = load_digits()
    torch.manual_seed(0)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    tracker = GeometryTracker(data.x_train, data.y_train, data.x_test, data.y_test, n_train=12, n_test=12,
                              metrics=("margins", "brackets"), bounds_settings=BoundsSettings(method="lipschitz"))
    record = tracker.evaluate(clf, 0)
    for subset in ("train", "test"):
        for key in ("l2", "linf"):
            b = record[subset]["brackets"][key]
            assert b["n_samples"] == 12 and b["methods"] == {"lipschitz": 12}
            # certified below the DeepFool margin, and not trivially zero on a random MLP
            assert 0 < b["lower_median"] <= b["upper_median"]
            assert b["upper_median"] == pytest.approx(record[subset]["margins"][key]["median"], rel=1e-9)
    assert tracker.config["bounds"]["method"] == "lipschitz"

"""
Brackets of robust accuracy (art_geometry.bounds.accuracy): exact on affine models, monotone, equal to the clean
accuracy at eps = 0, never above an attack on trained networks (the soundness check of the certified bounds), the
same from a supplied MarginBoundsResult as recomputed, and bad arguments named.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from art_geometry import (
    AttackSettings,
    RobustAccuracyBoundsResult,
    margin_bounds,
    robust_accuracy,
    robust_accuracy_bounds,
    robustness_curve,
)
from art_geometry.datasets import MLP, make_classifier, train_classifier
from tests.helpers import assert_round_trip, assert_unchanged, random_linear

SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def linear():
    """A random affine model (float64) and 40 samples; labels: the predictions with every fifth one changed."""
    model = random_linear(5, SHAPE, seed=3).eval()
    x = np.random.default_rng(1).uniform(size=(40,) + SHAPE)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    y = pred.copy()
    y[::5] = (y[::5] + 1) % 5
    return model, x, y, pred


def _exact_distances(model, x: np.ndarray, pred: np.ndarray, dual: float) -> np.ndarray:
    """Closed form of an affine model: ``min_j (z_pred - z_j) / ||w_pred - w_j||_dual``."""
    w = model.fc.weight.detach().numpy()
    z = x.reshape(len(x), -1) @ w.T + model.fc.bias.detach().numpy()
    out = np.full(len(x), np.inf)
    for i, p in enumerate(pred):
        for j in range(w.shape[0]):
            if j != p:
                out[i] = min(out[i], (z[i, p] - z[i, j]) / np.linalg.norm(w[p] - w[j], ord=dual))
    return out


@pytest.mark.parametrize("norm, dual, method", [("inf", 1, "milp"), (2, 2, "lipschitz")])
def test_affine_model_certified_equals_deepfool_between_distances(linear, norm, dual, method):
    model, x, y, pred = linear
    d = _exact_distances(model, x, pred, dual)
    s = np.sort(d)
    # budgets away from every sample's distance: between consecutive ones, below the smallest, above the largest
    eps = np.concatenate([[0.0, s[0] / 2], (s[:-1] + s[1:]) / 2, [s[-1] * 1.5]])
    eps = eps[np.concatenate([[True], np.diff(eps) > 0])]
    with assert_unchanged(model, x, y):
        res = robust_accuracy_bounds(model, x, y, eps=eps, norm=norm, method=method)
    correct = pred == y
    np.testing.assert_allclose(res.lower, d, rtol=1e-4)
    np.testing.assert_array_equal(res.certified, res.deepfool)
    expected = (correct[None, :] & (d[None, :] > eps[:, None])).mean(axis=1)
    np.testing.assert_array_equal(res.certified, expected)
    assert res.certified[0] == res.clean_accuracy == pytest.approx(0.8)
    assert res.deepfool[-1] == 0.0 and res.norm == float(norm)
    assert_round_trip(res)


@pytest.fixture(scope="module")
def mlp(digits):
    """A ReLU MLP 64-16-10 trained on digits (the MILP is exact and fast on it), and 30 test samples."""
    torch.manual_seed(0)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    train_classifier(clf, digits.x_train, digits.y_train, nb_epochs=3, seed=0)
    return clf, digits.x_test[:30], digits.y_test[:30]


def test_curves_are_monotone_and_start_at_clean_accuracy(mlp):
    clf, x, y = mlp
    eps = np.linspace(0.0, 0.3, 31)
    res = robust_accuracy_bounds(clf, x, y, eps=eps, norm="inf", method="milp")
    assert (np.diff(res.certified) <= 0).all() and (np.diff(res.deepfool) <= 0).all()
    assert (res.certified <= res.deepfool).all()
    assert (res.lower[res.correct] > 0).all() and (res.upper[res.correct] > 0).all()
    assert res.certified[0] == res.deepfool[0] == res.clean_accuracy == pytest.approx(np.mean(res.correct))
    # the comparison is strict: a sample is not certified at its own radius, and is just below it
    r = float(res.lower[np.nonzero(res.correct)[0][0]])
    at, below = res.at(r), res.at(np.nextafter(r, 0.0))
    assert below["certified"] - at["certified"] == pytest.approx((res.correct & (res.lower == r)).sum() / len(x))
    k = 12
    assert res.at(float(eps[k])) == {"eps": eps[k], "certified": res.certified[k], "deepfool": res.deepfool[k]}
    summary = res.summary()
    assert summary["n_samples"] == 30 and summary["eps"] == eps.tolist() and summary["attacks"] == []
    assert res.attack_correct is None and res.attack_eps.shape == (0,)
    assert_round_trip(res)


def _no_violations(res: RobustAccuracyBoundsResult) -> None:
    """Certified <= every attack, per sample and per budget; the attacks' empirical bound above the certified."""
    assert res.attack_correct is not None
    for a, row in zip(res.attacks(), res.attack_correct):
        certified = res.correct & (res.lower > a["eps"])
        assert not (certified & ~row).any(), f"{a['attack']} broke a certified sample at eps={a['eps']}"
        assert a["violations"] == 0
        assert a["certified"] <= a["empirical"] <= min(a["accuracy"], a["deepfool"])


def test_exact_bounds_never_above_pgd(mlp):
    """With exact distances (MILP), certified is the true robust accuracy in R^D: no PGD point lies below it."""
    clf, x, y = mlp
    curve = robustness_curve(clf, x, y, eps_values=[0.0, 0.01, 0.02, 0.05, 0.1], norm="inf", max_iter=20)
    single = robust_accuracy(clf, x, y, settings=AttackSettings(eps=0.03, max_iter=20))
    res = robust_accuracy_bounds(clf, x, y, eps=np.linspace(0, 0.2, 21), norm="inf", method="milp",
                                 attacks=[curve, single])
    np.testing.assert_array_equal(res.attack_eps, [0.0, 0.01, 0.02, 0.03, 0.05, 0.1])
    np.testing.assert_allclose(res.attack_accuracy[[0, 1, 2, 4, 5]], curve.robust_accuracy)
    assert res.attack_accuracy[3] == single.robust_accuracy
    assert (res.attack_accuracy >= np.array([res.at(e)["certified"] for e in res.attack_eps])).all()
    assert res.attack_accuracy[0] == res.clean_accuracy
    _no_violations(res)
    assert [a["attack"] for a in res.attacks()] == ["pgd"] * 6
    assert_round_trip(res)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_any_method_auto_picks_stays_below_pgd_on_a_cnn(trained_cnn, digits, norm):
    """Soundness whatever "auto" certifies with (Lipschitz, CROWN, MILP): PGD never breaks a certified sample."""
    x, y = digits.x_test[:16], digits.y_test[:16]
    budgets = [0.005, 0.02, 0.05] if norm == "inf" else [0.05, 0.2, 0.5]
    attacks = [robust_accuracy(trained_cnn, x, y, settings=AttackSettings(eps=e, norm=norm, max_iter=20))
               for e in budgets]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = robust_accuracy_bounds(trained_cnn, x, y, eps=np.linspace(0, 1, 11), norm=norm, attacks=attacks)
    assert all(issubclass(w.category, UserWarning) and "margin_bounds" in str(w.message) for w in caught)
    _no_violations(res)
    assert (res.certified <= res.deepfool).all()


def test_supplied_bounds_give_the_same_curves(mlp):
    clf, x, y = mlp
    pgd = robust_accuracy(clf, x, y, settings=AttackSettings(eps=0.05))
    bounds = margin_bounds(clf, x, y, norm="inf", method="lipschitz")
    eps = [0.0, 0.01, 0.05, 0.1]
    with assert_unchanged(clf, x, y):
        given = robust_accuracy_bounds(clf, x, y, eps=eps, bounds=bounds, attacks=pgd)
    again = robust_accuracy_bounds(clf, x, y, eps=eps, norm="inf", method="lipschitz", attacks=pgd)
    for f in ("eps", "certified", "deepfool", "lower", "upper", "correct", "attack_eps", "attack_accuracy",
              "attack_correct"):
        np.testing.assert_array_equal(getattr(given, f), getattr(again, f), err_msg=f)
    np.testing.assert_array_equal(given.lower, bounds.lower)
    # without y the bounds' labels are used; a norm given must be the bounds' norm
    no_y = robust_accuracy_bounds(clf, x, eps=eps, bounds=bounds, norm="inf")
    np.testing.assert_array_equal(no_y.certified, given.certified)
    with pytest.raises(ValueError, match="norm=2 but bounds"):
        robust_accuracy_bounds(clf, x, y, eps=eps, bounds=bounds, norm=2)
    with pytest.raises(ValueError, match="bounds holds 30 samples but x holds 29"):
        robust_accuracy_bounds(clf, x[1:], y[1:], eps=eps, bounds=bounds)
    with pytest.raises(ValueError, match="bounds was not computed with this classifier"):
        robust_accuracy_bounds(clf, x[::-1].copy(), y[::-1].copy(), eps=eps, bounds=bounds)
    with pytest.raises(ValueError, match="bounds was computed with other labels"):
        robust_accuracy_bounds(clf, x, (y + 1) % 10, eps=eps, bounds=bounds)
    with pytest.raises(ValueError, match="bounds is given, so method, options"):
        robust_accuracy_bounds(clf, x, y, eps=eps, bounds=bounds, method="milp", budget=1.0)
    with pytest.raises(TypeError, match="bounds must be a MarginBoundsResult"):
        robust_accuracy_bounds(clf, x, y, eps=eps, bounds=bounds.to_dict())


@pytest.mark.parametrize("eps, words", [
    (-0.1, "eps must be a finite number >= 0"),
    (float("nan"), "eps must be a finite number"),
    (float("inf"), "eps must be a finite number"),
    ("a", "eps must be"),
    ([0.1, 0.05], r"eps must be increasing: eps\[1\] = 0.05 follows eps\[0\] = 0.1"),
    ([0.0, 0.1, 0.1], r"eps must be increasing"),
    ([0.0, float("nan")], r"eps\[1\] must be a finite number"),
    ([0.0, -1.0], r"eps\[1\] must be a finite number >= 0"),
    ([], "eps is empty"),
    (np.zeros((2, 2)), "eps must be a number or a 1-D sequence"),
])
def test_bad_budgets_are_named(linear, eps, words):
    model, x, y, _ = linear
    with assert_unchanged(model, x, y), pytest.raises(ValueError, match=words):
        robust_accuracy_bounds(model, x, y, eps=eps, method="lipschitz")


def test_budget_forms(linear):
    model, x, y, _ = linear
    bounds = margin_bounds(model, x, y, norm="inf", method="lipschitz")
    base = robust_accuracy_bounds(model, x, y, eps=[0.0, 0.1], bounds=bounds)
    for form in ((0.0, 0.1), np.array([0.0, 0.1], dtype=np.float32), torch.tensor([0.0, 0.1])):
        np.testing.assert_array_equal(robust_accuracy_bounds(model, x, y, eps=form, bounds=bounds).certified,
                                      base.certified)
    one = robust_accuracy_bounds(model, x, y, eps=np.float64(0.1), bounds=bounds)
    assert one.eps.shape == (1,) and one.certified[0] == base.certified[1]
    assert robust_accuracy_bounds(model, x, y, eps=0, bounds=bounds).eps.tolist() == [0.0]


def test_bad_arguments_are_named(mlp):
    clf, x, y = mlp
    pgd = robust_accuracy(clf, x, y, settings=AttackSettings(eps=0.05, max_iter=2))
    l2 = robust_accuracy(clf, x, y, settings=AttackSettings(eps=0.5, norm=2, max_iter=2))
    bounds = margin_bounds(clf, x, y, norm="inf", method="lipschitz")
    cases = [
        (dict(norm=3), ValueError, "norm must be one of"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(verbose="yes"), ValueError, "verbose"),
        (dict(attacks=l2), ValueError, r"attacks\[0\] was measured in norm 2, the bounds in norm inf"),
        (dict(attacks=[pgd, "pgd"]), TypeError, r"attacks\[1\] must be a RobustnessResult"),
        (dict(attacks=dataclasses.replace(pgd, labels=(pgd.labels + 1) % 10)), ValueError,
         r"attacks\[0\] has other labels"),
        (dict(attacks=dataclasses.replace(pgd, clean_correct=~pgd.clean_correct)), ValueError,
         r"attacks\[0\] disagrees with the bounds on which samples are classified correctly \(30 of 30\)"),
        (dict(attacks=dataclasses.replace(pgd, eps=float("nan"))), ValueError, r"attacks\[0\] has no budget"),
        (dict(attacks=dataclasses.replace(pgd, adv_correct=pgd.adv_correct[:5])), ValueError,
         r"attacks\[0\] holds 5 samples but x holds 30"),
        (dict(method="nope"), ValueError, "method must be one of"),
    ]
    for kwargs, error, words in cases:
        options = {"bounds": bounds} if "method" not in kwargs else {}
        with assert_unchanged(clf, x, y), pytest.raises(error, match=words):
            robust_accuracy_bounds(clf, x, y, eps=[0.0, 0.05], **options, **kwargs)


def test_an_attack_below_the_certified_curve_is_reported(mlp):
    """A sample certified at a budget but broken there means an unsound bound: the function says so."""
    clf, x, y = mlp
    bounds = margin_bounds(clf, x, y, norm="inf", method="lipschitz")
    certified = int((bounds.correct & (bounds.lower > 1e-6)).sum())
    assert certified > 0
    clean = robust_accuracy(clf, x, y, settings=AttackSettings(eps=0.0))
    broken = dataclasses.replace(clean, eps=1e-6, adv_correct=np.zeros_like(clean.adv_correct))  # breaks them all
    with pytest.warns(UserWarning, match=rf"pgd at eps=1e-06 broke {certified} sample\(s\) certified robust"):
        res = robust_accuracy_bounds(clf, x, y, eps=[0.0], bounds=bounds, attacks=broken)
    assert res.attacks()[0]["violations"] == certified


def test_figure_draws_both_curves_and_the_attack_points(mlp):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from art_geometry.plots.bounds import plot_robust_accuracy_bounds

    clf, x, y = mlp
    pgd = [robust_accuracy(clf, x, y, settings=AttackSettings(eps=e, max_iter=2)) for e in (0.02, 0.05)]
    res = robust_accuracy_bounds(clf, x, y, eps=np.linspace(0, 0.2, 9), norm="inf", method="lipschitz",
                                 attacks=pgd)
    without = robust_accuracy_bounds(clf, x, y, eps=[0.0, 0.1], bounds=margin_bounds(clf, x, y, norm="inf",
                                                                                      method="lipschitz"))
    fig = plot_robust_accuracy_bounds({"a": res, "b": without})
    ax = fig.axes[0]
    assert len(ax.lines) == 5  # per model certified and DeepFool, and the attack points of "a"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), res.certified)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), res.deepfool)
    np.testing.assert_array_equal(ax.lines[2].get_xdata(), [0.02, 0.05])
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), res.attack_accuracy)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b", "certified (lower bound)", "DeepFool (upper bound)", "pgd (upper bound)"]
    plt.close(fig)
    with pytest.raises(ValueError, match="results is empty"):
        plot_robust_accuracy_bounds({})
    l2 = dataclasses.replace(without, norm=2.0)
    with pytest.raises(ValueError, match="mixes the norms"):
        plot_robust_accuracy_bounds({"a": res, "b": l2})

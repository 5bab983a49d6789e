import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.datasets import make_classifier
from art_geometry.robustness import (
    ATTACKS,
    art_classifier,
    inclusion_robustness,
    robust_accuracy,
    robustness_curve,
    torch_module,
    zero_gradient_analysis,
)
from tests.helpers import assert_unchanged, random_linear


@pytest.fixture(scope="module")
def subset(digits):
    return digits.x_test[:64].copy(), digits.y_test[:64].copy()


def _states():
    return np.random.get_state()[1].copy(), torch.get_rng_state().clone()


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd"])
def test_eps_zero_gives_clean_accuracy(trained_cnn, subset, attack):
    x, y = subset
    res = robust_accuracy(trained_cnn, x, y, attack=attack, eps=0.0)
    acc = (trained_cnn.predict(x).argmax(1) == y).mean()
    assert res.accuracy == acc and res.robust_accuracy == acc
    assert not res.success.any() and np.all(res.perturbation_norm == 0)


def test_fgsm_on_linear_two_class_model_matches_closed_form():
    model = random_linear(2, (6,), seed=3, dtype=torch.float32)
    clf = make_classifier(model, (6,), 2, clip_values=None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    w = (model.fc.weight[0] - model.fc.weight[1]).detach().double().numpy()
    b = float((model.fc.bias[0] - model.fc.bias[1]).detach())
    f = x.astype(np.float64) @ w + b
    y = rng.integers(0, 2, size=400)
    correct = (f > 0) == (y == 0)
    margin = np.abs(f) / np.abs(w).sum()
    for eps in (0.05, 0.2, 0.5):
        keep = np.abs(margin - eps) > 1e-4
        res = robust_accuracy(clf, x[keep], y[keep], attack="fgsm", eps=eps, norm=np.inf)
        expected = (correct & (margin > eps))[keep]
        assert np.array_equal(res.adv_correct, expected)
        assert res.robust_accuracy == pytest.approx(expected.mean())
        moved = res.perturbation_norm[res.clean_correct]
        assert np.allclose(moved, eps, rtol=1e-5)


def test_art_and_torchattacks_instances(trained_cnn, subset):
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent

    x, y = subset
    art_pgd = ProjectedGradientDescent(trained_cnn, eps=0.2, eps_step=0.05, max_iter=5, verbose=False)
    r1 = robust_accuracy(trained_cnn, x, y, attack=art_pgd)
    ta = torchattacks.PGD(torch_module(trained_cnn), eps=0.2, alpha=0.05, steps=5)
    r2 = robust_accuracy(trained_cnn, x, y, attack=ta)
    named = robust_accuracy(trained_cnn, x, y, attack="pgd", eps=0.2, eps_step=0.05, max_iter=5)
    for r in (r1, r2, named):
        assert r.robust_accuracy < r.accuracy
        assert np.all(r.perturbation_norm <= 0.2 + 1e-5)
    assert r1.attack == "ProjectedGradientDescent" and r2.attack == "PGD"
    assert abs(r1.robust_accuracy - named.robust_accuracy) <= 0.1
    assert abs(r2.robust_accuracy - named.robust_accuracy) <= 0.1


def test_seed_reproducible_rng_and_model_untouched(trained_cnn, subset):
    x, y = subset
    model = trained_cnn.model
    model.train()
    model.features[0].weight.grad = torch.ones_like(model.features[0].weight)
    try:
        np_before, torch_before = _states()
        x_t = torch.from_numpy(x.copy())
        with assert_unchanged(trained_cnn, x, y, x_t):
            a = robust_accuracy(trained_cnn, x, y, attack="pgd", eps=0.1, seed=1, return_adversarial=True)
            b = robust_accuracy(trained_cnn, x_t, y, attack="pgd", eps=0.1, seed=1, return_adversarial=True)
            c = robust_accuracy(trained_cnn, x, y, attack="pgd", eps=0.1, seed=2, return_adversarial=True)
        np_after, torch_after = _states()
        assert np.array_equal(np_before, np_after) and torch.equal(torch_before, torch_after)
        assert np.array_equal(a.x_adv, b.x_adv) and not np.array_equal(a.x_adv, c.x_adv)
    finally:
        model.eval()
        model.features[0].weight.grad = None


def test_plain_module_is_wrapped_with_warning(trained_cnn, subset):
    x, y = subset
    with pytest.warns(UserWarning, match="clip_values=\\(0, 1\\)"):
        plain = robust_accuracy(trained_cnn.model, x, y, attack="fgsm", eps=0.1)
    art = robust_accuracy(trained_cnn, x, y, attack="fgsm", eps=0.1)
    assert np.array_equal(plain.adv_correct, art.adv_correct)
    with pytest.warns(UserWarning):
        assert art_classifier(trained_cnn.model, x).nb_classes == 10
    assert art_classifier(trained_cnn) is trained_cnn


def test_curve_monotone_and_matches_single_calls(trained_cnn, subset):
    x, y = subset
    curve = robustness_curve(trained_cnn, x, y, attack="bim", eps_values=[0.0, 0.05, 0.2], max_iter=5)
    assert curve.robust_accuracy[0] == curve.accuracy
    assert np.all(np.diff(curve.robust_accuracy) <= 0)
    single = robust_accuracy(trained_cnn, x, y, attack="bim", eps=0.05, max_iter=5)
    assert np.array_equal(curve.adv_correct[1], single.adv_correct)
    assert curve.to_dict()["summary"]["eps"] == [0.0, 0.05, 0.2]


def test_curve_from_an_attack_factory_equals_the_named_attack(trained_cnn, subset):
    from art.attacks.evasion import FastGradientMethod

    x, y = subset
    eps_values = [0.0, 0.05, 0.2]
    calls = []

    def factory(eps):
        calls.append(eps)
        return FastGradientMethod(trained_cnn, eps=eps, eps_step=eps, batch_size=128)

    with assert_unchanged(trained_cnn, x, y):
        curve = robustness_curve(trained_cnn, x, y, attack=factory, eps_values=eps_values)
    named = robustness_curve(trained_cnn, x, y, attack="fgsm", eps_values=eps_values)
    assert calls == [0.05, 0.2]
    assert np.array_equal(curve.adv_correct, named.adv_correct) and curve.attack == "FastGradientMethod"
    assert curve.robust_accuracy[0] == curve.accuracy
    with pytest.raises(TypeError, match="factory"):
        robustness_curve(trained_cnn, x, y, attack=factory(0.1))
    with pytest.raises(TypeError, match="factory"):
        robustness_curve(trained_cnn, x, y, attack=3)


def test_inclusion_groups(trained_cnn, subset, digits, monkeypatch):
    import art_geometry.regions as regions

    x, y = subset
    mask = np.arange(len(x)) % 3 == 0

    class Fake:
        included = mask
        layer = "fake"

    monkeypatch.setattr(regions, "inclusion_ratio", lambda *a, **k: Fake())
    res = inclusion_robustness(trained_cnn, digits.x_train[:100], x, y, attack="fgsm", eps=0.1)
    ref = robust_accuracy(trained_cnn, x, y, attack="fgsm", eps=0.1)
    s = res.summary()
    assert s["inclusion"]["n"] == mask.sum() and s["exclusion"]["n"] == (~mask).sum()
    assert s["inclusion"]["robust_accuracy"] == pytest.approx(ref.adv_correct[mask].mean())
    assert s["exclusion"]["robust_accuracy"] == pytest.approx(ref.adv_correct[~mask].mean())


def test_inclusion_with_real_regions(trained_cnn, subset, digits):
    x, y = subset
    res = inclusion_robustness(trained_cnn, digits.x_train[:200], x, y, attack="fgsm", eps=0.1)
    assert res.included.shape == (len(x),) and res.included.dtype == bool


def test_zero_gradient_analysis_on_saturated_linear_model():
    model = random_linear(3, (4,), seed=0, dtype=torch.float32)
    with torch.no_grad():
        model.fc.weight.mul_(200.0)
    x = np.random.default_rng(1).uniform(0, 1, size=(50, 4)).astype(np.float32)
    clf = make_classifier(model, (4,), 3)
    y = clf.predict(x).argmax(1)
    res = zero_gradient_analysis(clf, x, y, attack="fgsm", eps=1e-3, tol=0.0)
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xt), torch.from_numpy(y), reduction="sum")
    (g,) = torch.autograd.grad(loss, xt)
    assert np.allclose(res.grad_norm, g.abs().amax(dim=1).numpy())
    assert np.array_equal(res.zero_gradient, (g.abs().amax(dim=1) == 0).numpy())
    assert res.zero_gradient.any()
    failed = res.failed
    assert res.fraction == pytest.approx((res.zero_gradient & failed).sum() / failed.sum())


def test_bad_input(trained_cnn, subset):
    x, y = subset
    with pytest.raises(ValueError, match="known attacks: fgsm, bim, pgd, autoattack"):
        robust_accuracy(trained_cnn, x, y, attack="cw")
    with pytest.raises(ValueError, match="eps must be non-negative"):
        robust_accuracy(trained_cnn, x, y, attack="fgsm", eps=-0.1)
    with pytest.raises(ValueError, match="norm must be one of"):
        robust_accuracy(trained_cnn, x, y, attack="bim", eps=0.1, norm=2)
    with pytest.raises(TypeError, match="ART EvasionAttack or a torchattacks Attack"):
        robust_accuracy(trained_cnn, x, y, attack=object())
    with pytest.raises(TypeError, match="named attack"):
        robustness_curve(trained_cnn, x, y, attack=object())
    with pytest.raises(ValueError, match="labels 63 samples"):
        robust_accuracy(trained_cnn, x, y[:63], attack="fgsm", eps=0.1)
    assert set(ATTACKS) == {"fgsm", "bim", "pgd", "autoattack"}


def test_autoattack_runs_when_available(trained_cnn, subset):
    pytest.importorskip("multiprocess")
    from art.attacks.evasion import AutoAttack, ProjectedGradientDescent

    x, y = subset
    attack = AutoAttack(
        trained_cnn, eps=0.2, attacks=[ProjectedGradientDescent(trained_cnn, eps=0.2, eps_step=0.05, max_iter=3,
                                                                verbose=False)]
    )
    res = robust_accuracy(trained_cnn, x[:16], y[:16], attack=attack)
    assert res.robust_accuracy <= res.accuracy

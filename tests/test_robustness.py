import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry import AttackSettings, Norm
from art_geometry.datasets import make_classifier
from art_geometry.robustness import (
    ATTACKS,
    InclusionRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
    ZeroGradientResult,
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


def test_float64_plain_module_under_art_attacks_matches_closed_form():
    # ART's attacks feed float32 tensors: the wrapper casts them to the module's dtype
    model = random_linear(2, (6,), seed=3, dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.3, 0.7, size=(300, 6))
    w = (model.fc.weight[0] - model.fc.weight[1]).detach().numpy()
    f = x @ w + float((model.fc.bias[0] - model.fc.bias[1]).detach())
    y = rng.integers(0, 2, size=300)
    margin = np.abs(f) / np.abs(w).sum()
    for eps in (0.05, 0.2):
        keep = np.abs(margin - eps) > 1e-4
        with pytest.warns(UserWarning, match="clip_values"):
            res = robust_accuracy(model, x[keep], y[keep], attack="fgsm", eps=eps, norm=np.inf)
        assert np.array_equal(res.adv_correct, (((f > 0) == (y == 0)) & (margin > eps))[keep])


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
    from art_geometry.regions import prs

    x, y = subset
    mask = np.arange(len(x)) % 3 == 0

    class Fake:
        included = mask
        layer = "fake"

    monkeypatch.setattr(prs, "_inclusion", lambda *a, **k: Fake())
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
    with pytest.raises(ValueError, match="attack must be one of the known attacks: fgsm, bim, pgd, autoattack"):
        robust_accuracy(trained_cnn, x, y, attack="cw")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
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


BAD_SETTINGS = [
    ({"attack": "cw"}, "attack"),
    ({"attack": "PGD-20"}, "attack"),
    ({"attack": ""}, "attack"),
    ({"attack": "bim", "norm": 2}, "norm"),
    ({"norm": 3}, "norm"),
    ({"norm": "l3"}, "norm"),
    ({"norm": None}, "norm"),
    ({"eps": -0.1}, "eps"),
    ({"eps": float("nan")}, "eps"),
    ({"eps": float("inf")}, "eps"),
    ({"eps": "0.1"}, "eps"),
    ({"eps_step": 0.0}, "eps_step"),
    ({"eps_step": -1}, "eps_step"),
    ({"max_iter": 0}, "max_iter"),
    ({"max_iter": 2.5}, "max_iter"),
    ({"seed": -1}, "seed"),
    ({"seed": "a"}, "seed"),
    ({"seed": 1.5}, "seed"),
]


@pytest.mark.parametrize("options, name", BAD_SETTINGS)
def test_bad_settings_name_the_argument(trained_cnn, subset, options, name):
    x, y = subset
    with pytest.raises(ValueError, match=name):
        AttackSettings(**options)
    for fn in (robust_accuracy, robustness_curve, zero_gradient_analysis):
        with assert_unchanged(trained_cnn, x, y), pytest.raises(ValueError, match=name):
            fn(trained_cnn, x, y, **options)
    with pytest.raises(ValueError, match=name):
        inclusion_robustness(trained_cnn, x, x, y, **options)


@pytest.mark.parametrize("eps_values", [0.1, "0.1", [], (), [0.1, -0.2], [0.1, float("nan")], [0.1, "a"],
                                        np.zeros((2, 2)), None])
def test_bad_eps_values_name_the_argument(trained_cnn, subset, eps_values):
    x, y = subset
    with assert_unchanged(trained_cnn, x, y), pytest.raises(ValueError, match="eps_values"):
        robustness_curve(trained_cnn, x, y, attack="fgsm", eps_values=eps_values)


def test_bad_options_and_labels(trained_cnn, subset):
    x, y = subset
    with pytest.raises(TypeError, match="unknown option"):
        robust_accuracy(trained_cnn, x, y, steps=3)
    with pytest.raises(TypeError, match="AttackSettings"):
        robust_accuracy(trained_cnn, x, y, settings={"eps": 0.1})
    for fn in (robust_accuracy, robustness_curve, zero_gradient_analysis):
        with pytest.raises(ValueError, match="y is required"):
            fn(trained_cnn, x)
        with pytest.raises(ValueError, match="batch_size"):
            fn(trained_cnn, x, y, batch_size=0)
        with pytest.raises(ValueError, match="verbose"):
            fn(trained_cnn, x, y, verbose="yes")
    with pytest.raises(ValueError, match="y_test is required"):
        inclusion_robustness(trained_cnn, x, x)
    with pytest.raises(ValueError, match="x_train contains NaN"):
        inclusion_robustness(trained_cnn, np.full_like(x, np.nan), x, y)
    with pytest.raises(ValueError, match="return_adversarial"):
        robust_accuracy(trained_cnn, x, y, return_adversarial=1)
    for tol in (-1.0, float("nan"), "0"):
        with pytest.raises(ValueError, match="tol"):
            zero_gradient_analysis(trained_cnn, x, y, attack="fgsm", eps=0.1, tol=tol)
    from art.attacks.evasion import FastGradientMethod

    with pytest.raises(ValueError, match="targeted"):
        robust_accuracy(trained_cnn, x, y, attack=FastGradientMethod(trained_cnn, eps=0.1, targeted=True))
    with pytest.raises(TypeError, match="ART EvasionAttack or a torchattacks Attack"):
        robustness_curve(trained_cnn, x, y, attack=lambda eps: "fgsm", eps_values=[0.0, 0.1])


def test_settings_object_equals_keyword_options(trained_cnn, subset):
    x, y = subset
    settings = AttackSettings(attack="pgd", eps=0.1, norm=2, eps_step=0.03, max_iter=4, seed=5)
    a = robust_accuracy(trained_cnn, x, y, settings=settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        b = robust_accuracy(trained_cnn, x, y, attack="pgd", eps=0.1, norm=2, eps_step=0.03, max_iter=4, seed=5)
    assert np.array_equal(a.adv_pred, b.adv_pred) and np.array_equal(a.perturbation_norm, b.perturbation_norm)
    assert a.params == b.params == {**settings.to_dict(), "batch_size": 128}
    assert a.params["norm"] == 2.0 and a.norm == 2.0 and a.attack == "pgd" and a.eps == 0.1
    assert np.all(a.perturbation_norm <= 0.1 + 1e-5)
    # keyword options override the settings object; the attack name overrides its attack
    c = robust_accuracy(trained_cnn, x, y, settings=settings, attack="FGSM", eps=0.05, norm=np.inf)
    assert c.params == {**settings.to_dict(), "attack": "fgsm", "eps": 0.05, "norm": "inf", "batch_size": 128}
    assert np.allclose(c.perturbation_norm[c.perturbation_norm > 0], 0.05, rtol=1e-5)
    assert AttackSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert AttackSettings(attack="fgsm", eps=0.2).step == 0.2 and AttackSettings(eps=0.2, max_iter=5).step == 0.1
    assert AttackSettings(norm="l2").norm == Norm(2.0)


def test_seed_none_draws_and_records_a_seed(trained_cnn, subset):
    x, y = subset
    a = robust_accuracy(trained_cnn, x, y, eps=0.1, max_iter=3, seed=None, return_adversarial=True)
    b = robust_accuracy(trained_cnn, x, y, eps=0.1, max_iter=3, seed=None)
    assert isinstance(a.params["seed"], int) and a.params["seed"] != b.params["seed"]
    again = robust_accuracy(trained_cnn, x, y, eps=0.1, max_iter=3, seed=a.params["seed"], return_adversarial=True)
    assert np.array_equal(again.x_adv, a.x_adv)
    curve = robustness_curve(trained_cnn, x, y, attack="pgd", eps_values=[0.05, 0.1], max_iter=3, seed=None)
    seed = curve.params["seed"]
    single = robust_accuracy(trained_cnn, x, y, eps=0.1, max_iter=3, seed=seed)
    assert isinstance(seed, int) and np.array_equal(curve.adv_correct[1], single.adv_correct)
    assert "eps" not in curve.params and curve.params["max_iter"] == 3


class _Net(nn.Module):
    """A small CNN with BatchNorm and Dropout, so that a changed mode or RNG state changes the outputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).flatten(1)))


def _calls(clf, x, y, x_train):
    import torchattacks
    from art.attacks.evasion import FastGradientMethod

    return {
        "named": lambda: robust_accuracy(clf, x, y, attack="pgd", eps=0.1, max_iter=2, seed=None),
        "art instance": lambda: robust_accuracy(clf, x, y, attack=FastGradientMethod(clf, eps=0.1)),
        "torchattacks": lambda: robust_accuracy(clf, x, y, attack=torchattacks.FGSM(torch_module(clf), eps=0.1)),
        "curve": lambda: robustness_curve(clf, x, y, attack="bim", eps_values=[0.0, 0.1], max_iter=2),
        "curve factory": lambda: robustness_curve(
            clf, x, y, attack=lambda e: FastGradientMethod(clf, eps=e), eps_values=[0.0, 0.1]
        ),
        "inclusion": lambda: inclusion_robustness(clf, x_train, x, y, attack="fgsm", eps=0.1),
        "zero gradient": lambda: zero_gradient_analysis(clf, x, y, attack="fgsm", eps=0.1),
    }


@pytest.mark.parametrize(
    "call", ["named", "art instance", "torchattacks", "curve", "curve factory", "inclusion", "zero gradient"]
)
def test_public_functions_leave_model_inputs_and_rng_untouched(digits, call):
    clf = make_classifier(_Net(), (1, 8, 8), 10)
    model = clf.model
    model.train()
    model.conv.weight.grad = torch.ones_like(model.conv.weight)
    model.fc.bias.requires_grad_(False)
    model.bn.eval()
    x = np.ascontiguousarray(digits.x_test[:24][::-1])[::-1]
    y, x_train = digits.y_test[:24].copy(), digits.x_train[:40].copy()
    with assert_unchanged(clf, x, y, x_train):
        _calls(clf, x, y, x_train)[call]()
    assert model.training and not model.bn.training and model.drop.training


def _assert_same(a, b):
    assert type(a) is type(b)
    assert a.to_dict() == b.to_dict()
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and np.array_equal(other, value, equal_nan=True), name
        elif hasattr(value, "to_dict"):
            _assert_same(value, other)
        elif isinstance(value, float) and np.isnan(value):
            assert np.isnan(other), name
        else:
            assert other == value, name


def test_results_round_trip_and_summaries(trained_cnn, subset, digits):
    x, y = subset
    from art.attacks.evasion import FastGradientMethod

    results = [
        robust_accuracy(trained_cnn, x, y, attack="fgsm", eps=0.1, return_adversarial=True),
        robust_accuracy(trained_cnn, x, y, attack=FastGradientMethod(trained_cnn, eps=0.1)),
        robustness_curve(trained_cnn, x, y, attack="fgsm", eps_values=[0.0, 0.1]),
        inclusion_robustness(trained_cnn, digits.x_train[:100], x, y, attack="fgsm", eps=0.1),
        zero_gradient_analysis(trained_cnn, x, y, attack="fgsm", eps=0.1),
    ]
    kinds = (RobustnessResult, RobustnessResult, RobustnessCurve, InclusionRobustnessResult, ZeroGradientResult)
    for res, kind in zip(results, kinds):
        assert isinstance(res, kind)
        back = kind.from_dict(res.to_dict())
        _assert_same(res, back)
        _assert_same(res, kind.from_json(res.to_json()))
        summary = res.summary()
        assert summary["n_samples"] == len(x) and isinstance(summary["params"], dict)
        assert summary["params"]["batch_size"] == 128
        json.dumps(res.to_dict())
        assert type(res).__name__ in str(res)
    assert isinstance(InclusionRobustnessResult.from_dict(results[3].to_dict()).robustness, RobustnessResult)
    named, instance = results[0], results[1]
    assert named.summary()["n"] == len(x) and {"accuracy", "robust_accuracy", "success_rate"} <= set(named.summary())
    assert np.isnan(instance.eps) and instance.params == {"attack": "FastGradientMethod", "norm": "inf", "seed": 0,
                                                          "batch_size": 128}
    assert results[3].summary()["params"]["layer"] == results[3].layer
    assert results[4].summary()["params"]["tol"] == 1e-12


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


def test_restoring_puts_back_modes_flags_and_grads_even_on_error():
    from art_geometry.core.modes import restoring

    inner = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2))
    outer = nn.Sequential(inner, nn.ReLU())
    outer.train()
    inner[1].eval()
    inner[2].bias.requires_grad_(False)
    grad = torch.full_like(inner[0].weight, 3.0)
    inner[0].weight.grad = grad
    with pytest.raises(RuntimeError, match="inside"):
        with restoring(outer, inner, grads=True, eval_mode=True, freeze=True):
            assert not any(m.training for m in outer.modules())
            assert not any(p.requires_grad for p in outer.parameters())
            inner[0].weight.grad.zero_()
            inner[0].bias.grad = torch.ones_like(inner[0].bias)
            outer.train()
            raise RuntimeError("inside")
    assert outer.training and inner.training and not inner[1].training and outer[1].training
    assert [p.requires_grad for p in outer.parameters()] == [True, True, True, False]
    assert inner[0].weight.grad is grad and torch.equal(grad, torch.full_like(grad, 3.0))
    assert inner[0].bias.grad is None
    # without grads=True the gradients are the body's to change (a trainer's optimizer steps)
    with restoring(outer):
        inner[0].bias.grad = torch.ones_like(inner[0].bias)
        outer.eval()
    assert outer.training and inner[0].bias.grad is not None


def test_attack_instance_ignores_the_named_attack_budget(trained_cnn, subset):
    from art.attacks.evasion import FastGradientMethod

    x, y = subset
    attack = FastGradientMethod(trained_cnn, eps=0.1, norm=2)
    plain = robust_accuracy(trained_cnn, x, y, attack=attack)
    with_options = robust_accuracy(trained_cnn, x, y, attack=attack, eps=0.3, max_iter=3, seed=4)
    assert np.array_equal(plain.adv_pred, with_options.adv_pred)
    assert with_options.params == {"attack": "FastGradientMethod", "norm": 2.0, "seed": 4, "batch_size": 128}
    # measured in the instance's own L2 norm (clipping to the valid box only shortens the step)
    assert plain.norm == 2.0 and np.all(plain.perturbation_norm <= 0.1 + 1e-5)
    assert plain.perturbation_norm.max() > 0.09


def test_our_torchattacks_wrapper_is_recognised_as_a_torchattacks_attack():
    from art_geometry.interop import TorchattacksDeepFoolMargin
    from art_geometry.robustness.attacks import is_torchattacks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    attack = TorchattacksDeepFoolMargin(model)
    assert is_torchattacks(attack) and not is_torchattacks(model)
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    y = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    res = robust_accuracy(model, x, y, attack=attack, norm=2)
    # DeepFool crosses the boundary of every correctly classified sample: robust accuracy 0
    assert res.accuracy == 1.0 and res.robust_accuracy == 0.0 and res.attack == "TorchattacksDeepFoolMargin"

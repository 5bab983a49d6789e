import sys
import warnings

import numpy as np
import pytest
import torch

from art_geometry._rng import seeded
from art_geometry.datasets import MLP, make_classifier, train_classifier
from tests.helpers import assert_unchanged, random_linear


def closed_form(model, x: np.ndarray, p: float) -> np.ndarray:
    """Distance from x to the boundary of its predicted region for an affine model, in the dual norm of p."""
    w = model.fc.weight.detach().double().numpy()
    b = model.fc.bias.detach().double().numpy()
    z = x.reshape(len(x), -1).astype(np.float64) @ w.T + b
    c = z.argmax(1)
    diff_w = w[None, :, :] - w[c][:, None, :]
    dual = np.abs(diff_w).sum(-1) if p == np.inf else np.linalg.norm(diff_w, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = (z[np.arange(len(x)), c][:, None] - z) / dual
    dist[np.arange(len(x)), c] = np.inf
    return dist.min(1)


def distances(x_adv, x, p):
    d = np.asarray(x_adv, dtype=np.float64).reshape(len(x), -1) - np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return np.abs(d).max(1) if p == np.inf else np.linalg.norm(d, axis=1)


@pytest.fixture(scope="module")
def linear():
    model = random_linear(4, (1, 4, 4), seed=3)
    x = np.random.default_rng(0).random((12, 1, 4, 4))
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return model, x, pred


@pytest.fixture(scope="module")
def tiny_digits(digits):
    torch.manual_seed(1)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    return train_classifier(clf, digits.x_train, digits.y_train, nb_epochs=8, seed=1)


def test_importing_the_package_does_not_import_optional_libraries():
    import subprocess

    code = "import sys, art_geometry, art_geometry.interop; print('foolbox' in sys.modules, 'torchattacks' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("norm", [2, np.inf])
def test_art_attack_reaches_the_closed_form_distance(linear, norm):
    from art_geometry.interop import DeepFoolMargin

    model, x, pred = linear
    clf = make_classifier(model, (1, 4, 4), 4, clip_values=None)
    attack = DeepFoolMargin(clf, norm=norm)
    with assert_unchanged(clf, x):
        x_adv = attack.generate(x)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    with torch.no_grad():
        assert (model(torch.from_numpy(x_adv)).argmax(1).numpy() != pred).all()
    np.testing.assert_allclose(distances(x_adv, x, norm), closed_form(model, x, norm), rtol=1e-4)
    np.testing.assert_allclose(attack.last_result.margins, closed_form(model, x, norm), rtol=1e-4)


def test_art_attack_params_are_checked(linear):
    from art_geometry.interop import DeepFoolMargin

    clf = make_classifier(linear[0], (1, 4, 4), 4, clip_values=None)
    with pytest.raises(ValueError, match="norm must be one of"):
        DeepFoolMargin(clf, norm=1)
    with pytest.raises(ValueError, match="candidates must be at least 2"):
        DeepFoolMargin(clf, candidates=1)
    attack = DeepFoolMargin(clf)
    with pytest.raises(ValueError, match="overshoot"):
        attack.set_params(overshoot=-1.0)
    with pytest.raises(ValueError, match="refine must be a bool"):
        DeepFoolMargin(clf).set_params(refine="yes")


def test_art_attack_in_adversarial_accuracy(tiny_digits, digits):
    from art.metrics import adversarial_accuracy

    from art_geometry.interop import DeepFoolMargin

    x, y = digits.x_test[:60], digits.y_test[:60]
    attack = DeepFoolMargin(tiny_digits)
    with assert_unchanged(tiny_digits, x, y):
        acc = adversarial_accuracy(tiny_digits, x, y, attack_crafter=attack)
    assert attack.last_result.success.all()
    assert acc == 0.0
    clean = (tiny_digits.predict(x).argmax(1) == y).mean()
    assert clean > 0.5


def test_art_attack_in_adversarial_trainer(digits):
    from art.defences.trainer import AdversarialTrainer

    from art_geometry.interop import DeepFoolMargin

    torch.manual_seed(2)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    before = [p.detach().clone() for p in clf.model.parameters()]
    attack = DeepFoolMargin(clf, max_iter=20, restarts=0)
    trainer = AdversarialTrainer(clf, attacks=attack, ratio=0.5)
    with seeded(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(digits.x_train[:128], digits.y_train[:128], nb_epochs=1, batch_size=64)
    assert attack.last_result is not None and len(attack.last_result.margins) == 32
    assert any(not torch.equal(a, b) for a, b in zip(before, clf.model.parameters()))


def test_foolbox_attack_format_and_distances(linear):
    import foolbox as fb

    from art_geometry.interop import DeepFoolMarginAttack

    model, x, pred = linear
    fmodel = fb.PyTorchModel(model, bounds=(-100.0, 100.0))
    xt, yt = torch.from_numpy(x), torch.from_numpy(pred)
    labels = yt.clone()
    labels[0] = (labels[0] + 1) % 4  # a misclassified sample: already adversarial, returned as is
    attack = DeepFoolMarginAttack(norm=np.inf)
    with assert_unchanged(model, xt, labels):
        raw, clipped, success = attack(fmodel, xt, labels, epsilons=None)
    assert isinstance(raw, torch.Tensor) and raw.shape == xt.shape and raw.dtype == xt.dtype
    assert torch.equal(raw, clipped) and success.dtype == torch.bool and bool(success.all())
    assert torch.equal(raw[0], xt[0])
    np.testing.assert_allclose(distances(raw[1:], x[1:], np.inf), closed_form(model, x[1:], np.inf), rtol=1e-4)
    raws, clippeds, successes = attack(fmodel, xt, yt, epsilons=[1e-6, 10.0])
    assert len(raws) == 2 and len(clippeds) == 2 and successes.shape == (2, len(x))
    assert not bool(successes[0].any()) and bool(successes[1].all())
    with pytest.raises(ValueError, match="untargeted"):
        attack.run(fmodel, xt, fb.criteria.TargetedMisclassification(yt))


def test_torchattacks_attack_returns_adversarial_images(linear):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    model, x, pred = linear
    xt, yt = torch.from_numpy(x), torch.from_numpy(pred)
    attack = TorchattacksDeepFoolMargin(model, norm=2, box=False)
    with assert_unchanged(model, xt, yt):
        adv = attack(xt, yt)
    assert adv.shape == xt.shape and adv.dtype == xt.dtype
    with torch.no_grad():
        assert (model(adv).argmax(1) != yt).all()
    np.testing.assert_allclose(distances(adv, x, 2), closed_form(model, x, 2), rtol=1e-4)
    boxed = TorchattacksDeepFoolMargin(model, norm=2)(xt, yt)
    assert float(boxed.min()) >= 0.0 and float(boxed.max()) <= 1.0


def test_torchattacks_normalization_is_honoured(linear):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    model, x, _ = linear
    mean, std = 0.5, 0.25
    xt = torch.from_numpy(x)
    normalized = (xt - mean) / std  # what the user feeds, and what the model expects
    with torch.no_grad():
        labels = model(normalized).argmax(1)
    attack = TorchattacksDeepFoolMargin(model, norm=2, box=False)
    attack.set_normalization_used(mean=[mean], std=[std])
    adv = attack(normalized, labels)
    with torch.no_grad():
        assert (model(adv).argmax(1) != labels).all()
    # the attack works on unnormalised images: distances there are the closed form of the composed model
    scaled = random_linear(4, (1, 4, 4), seed=3)
    with torch.no_grad():
        scaled.fc.weight.div_(std)
        scaled.fc.bias.sub_(scaled.fc.weight.sum(1) * mean)
    np.testing.assert_allclose(distances(adv * std + mean, x, 2), closed_form(scaled, x, 2), rtol=1e-4)

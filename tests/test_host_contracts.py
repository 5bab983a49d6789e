"""
The host libraries' contracts, checked with their own tests adapted to our attacks (origin noted on each): what a
foolbox, ART or torchattacks user's code relies on must hold for our wrappers as for the libraries' own attacks.
"""

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.core.validation import OutOfBoundsError
from art_geometry.datasets import MLP, SmallCNN, make_classifier, train_classifier


def _models() -> dict[str, nn.Module]:
    """Three models, as foolbox's fixture gives three: affine, an MLP and a CNN with max-pooling."""
    torch.manual_seed(0)
    return {
        "linear": nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval(),
        "mlp": MLP((1, 8, 8), hidden=(32,)).eval(),
        "cnn": SmallCNN((1, 8, 8)).eval(),
    }


@pytest.fixture(scope="module")
def trained(digits):
    """A SmallCNN trained on digits, as an ART classifier with clip_values (0, 1), and 40 test samples."""
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN((1, 8, 8)), (1, 8, 8), 10)
    train_classifier(clf, digits.x_train, digits.y_train, nb_epochs=3, batch_size=64, seed=0)
    return clf, digits.x_test[:40], digits.y_test[:40]


# --- foolbox 3.3: tests/test_attacks_base.py::test_model_bounds, with DeepFoolMarginAttack for InversionAttack ---


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn"])
def test_foolbox_model_bounds(name, digits):
    import foolbox as fb

    from art_geometry.interop import DeepFoolMarginAttack

    fmodel = fb.PyTorchModel(_models()[name], bounds=(0, 1))
    x, y = torch.as_tensor(digits.x_test[:8]), torch.as_tensor(digits.y_test[:8])
    attack = DeepFoolMarginAttack()
    with pytest.raises(AssertionError):
        attack.run(fmodel, x * 0.0 - 0.1, y)
    with pytest.raises(AssertionError):
        attack.run(fmodel, x * 0.0 + 1.1, y)
    # the same error is a ValueError naming the argument and the bounds, and __call__ raises it too
    with pytest.raises(ValueError, match=r"inputs has values in \[1.1, 1.1\], outside the model's bounds \[0, 1\]"):
        attack(fmodel, x * 0.0 + 1.1, y, epsilons=None)
    raw, clipped, success = attack(fmodel, x, y, epsilons=None)  # inside the bounds: foolbox's output format
    assert raw.shape == x.shape and clipped.shape == x.shape and success.shape == (len(x),)


def test_out_of_bounds_error_is_both_value_and_assertion_error():
    assert issubclass(OutOfBoundsError, ValueError) and issubclass(OutOfBoundsError, AssertionError)


# --- ART 1.20: art/metrics/metrics.py empirical_robustness (it calls set_params(minimal=True), then generate) ---


def test_art_set_params_minimal(trained):
    from art_geometry.interop import DeepFoolMargin

    clf, _, _ = trained
    attack = DeepFoolMargin(clf)
    assert attack.minimal is True and "minimal" in attack.attack_params
    attack.set_params(minimal=True)
    with pytest.raises(ValueError, match="minimal=False: DeepFoolMargin finds minimal perturbations"):
        attack.set_params(minimal=False)
    with pytest.raises(ValueError, match="minimal must be True or False"):
        attack.set_params(minimal="yes")


@pytest.mark.parametrize("norm", [2, np.inf])
def test_art_empirical_robustness_with_the_attack_registered(trained, monkeypatch, norm):
    from art.metrics import metrics

    from art_geometry.interop import DeepFoolMargin

    clf, x, _ = trained
    monkeypatch.setitem(metrics.SUPPORTED_METHODS, "deepfool_margin", {"class": DeepFoolMargin,
                                                                      "params": {"norm": norm}})
    got = metrics.empirical_robustness(clf, x, "deepfool_margin")
    # ART's definition, from our own margins: the mean of ||r||_p / ||x||_p over the samples the attack moved
    attack = DeepFoolMargin(clf, norm=norm)
    attack.generate(x)
    res = attack.last_result
    moved = res.success & (res.margins > 0)
    flat = x.reshape(len(x), -1)
    expected = np.mean(res.margins[moved] / np.linalg.norm(flat[moved], ord=norm, axis=1))
    assert got == pytest.approx(expected, rel=1e-3)
    assert 0 < got < 1


def test_art_attack_norm_reads_as_arts_attacks_spell_it(trained):
    from art_geometry.interop import DeepFoolMargin

    clf, _, _ = trained
    assert DeepFoolMargin(clf).norm == 2.0
    assert DeepFoolMargin(clf, norm="inf").norm == np.inf
    attack = DeepFoolMargin(clf)
    attack.set_params(norm="linf")
    assert attack.norm == np.inf and attack.settings.norm.p == np.inf


# --- torchattacks 3.5: code_coverage/test_atks.py::test_atks_on_cifar10, on digits instead of RobustBench ---


@torch.no_grad()
def test_torchattacks_attack_on_digits(trained):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    clf, x, y = trained
    model = clf.model
    images, labels = torch.as_tensor(x), torch.as_tensor(y)

    def accuracy(inputs: torch.Tensor) -> float:
        return float((model(inputs).argmax(1) == labels).float().mean())

    atk = TorchattacksDeepFoolMargin(model)
    with torch.enable_grad():
        adv_images = atk(images, labels)
    clean_acc, robust_acc = accuracy(images), accuracy(adv_images)
    assert clean_acc >= robust_acc and robust_acc == 0.0  # a minimal attack that succeeds on every sample
    assert "targeted" not in atk.supported_mode
    with pytest.raises(ValueError, match="[Tt]argeted"):
        atk.set_mode_targeted_random(quiet=True)


def test_torchattacks_images_must_be_in_the_unit_box(trained):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    clf, x, y = trained
    for box in (True, False):  # torchattacks' input range holds whatever the box setting
        atk = TorchattacksDeepFoolMargin(clf.model, box=box)
        with pytest.raises(ValueError, match=r"images has values in \[.*\], outside torchattacks' input range"):
            atk(torch.as_tensor(x) * 2 - 0.5, torch.as_tensor(y))


def test_torchattacks_attack_refuses_an_art_classifier(trained):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    clf, _, _ = trained
    with pytest.raises(TypeError, match="model must be a torch.nn.Module .*pass classifier.model"):
        TorchattacksDeepFoolMargin(clf)

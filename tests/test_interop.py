import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry import DeepFoolSettings, deepfool_margins
from art_geometry.core.norms import LINF
from art_geometry.core.rng import seeded
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


def predict(module: nn.Module, x) -> np.ndarray:
    """The module's predictions on ``x`` (numpy or tensor), cast to the module's dtype."""
    dtype = next(module.parameters()).dtype
    xt = torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x
    with torch.no_grad():
        return module(xt.to(dtype)).argmax(1).numpy()


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


@pytest.fixture(scope="module")
def ten_classes():
    """A float64 affine model with 10 classes under foolbox, inputs in its bounds [0, 1] and their predictions."""
    import foolbox as fb

    model = random_linear(10, (1, 4, 4), seed=5).eval()
    x = torch.from_numpy(np.random.default_rng(1).random((6, 1, 4, 4)))
    with torch.no_grad():
        pred = model(x).argmax(1)
    return fb.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu"), x, pred


def test_importing_the_package_does_not_import_optional_libraries():
    import subprocess

    code = "import sys, art_geometry, art_geometry.interop; print('foolbox' in sys.modules, 'torchattacks' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# --- ART -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [2, np.inf])
def test_art_attack_reaches_the_closed_form_distance(linear, norm):
    from art_geometry.interop import DeepFoolMargin

    model, x, pred = linear
    clf = make_classifier(model, (1, 4, 4), 4, clip_values=None)
    attack = DeepFoolMargin(clf, norm=norm)
    assert attack.settings.box is False  # no clip_values: nothing to clip into
    with assert_unchanged(clf, x):
        x_adv = attack.generate(x)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert attack.last_result.success.all()
    assert (predict(model, x_adv) != pred).all()
    np.testing.assert_allclose(distances(x_adv, x, norm), closed_form(model, x, norm), rtol=1e-4)
    np.testing.assert_allclose(attack.last_result.margins, closed_form(model, x, norm), rtol=1e-4)


def test_art_attack_clips_into_clip_values_by_default(tiny_digits, digits):
    from art_geometry.interop import DeepFoolMargin

    x = digits.x_test[:40]  # digits hold many exact 0s and 1s: the box matters
    attack = DeepFoolMargin(tiny_digits, candidates=4, max_iter=30)
    assert attack.settings.box is True and attack.box is True
    with assert_unchanged(tiny_digits, x):
        x_adv = attack.generate(x)
    lo, hi = tiny_digits.clip_values
    assert x_adv.dtype == np.float32 and x_adv.min() >= lo and x_adv.max() <= hi
    ok = attack.last_result.success
    assert ok.mean() > 0.9
    pred = attack.last_result.predictions
    assert (predict(tiny_digits.model, x_adv)[ok] != pred[ok]).all()
    assert np.array_equal(x_adv[~ok], x[~ok].astype(np.float32))
    # box=False keeps the unclipped margins available: never larger than the clipped ones
    free = DeepFoolMargin(tiny_digits, candidates=4, max_iter=30, box=False)
    free.generate(x)
    both = ok & free.last_result.success
    assert (free.last_result.margins[both] <= attack.last_result.margins[both] * (1 + 1e-6)).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float16, np.float64])
def test_art_attack_returns_adversarial_float32_for_any_input_dtype(dtype):
    from art_geometry.interop import DeepFoolMargin

    model = random_linear(4, (1, 4, 4), seed=7, dtype=torch.float32)
    clf = make_classifier(model, (1, 4, 4), 4, clip_values=(0.0, 255.0))
    x = np.random.default_rng(2).integers(0, 256, size=(16, 1, 4, 4)).astype(dtype)
    attack = DeepFoolMargin(clf)
    with assert_unchanged(clf, x):
        x_adv = attack.generate(x)
    assert x_adv.dtype == np.float32  # ART_NUMPY_DTYPE, never cast back to the input's dtype
    assert x_adv.min() >= 0.0 and x_adv.max() <= 255.0
    ok = attack.last_result.success
    assert ok.all()
    assert (predict(model, x_adv) != attack.last_result.predictions).all()


def test_art_attack_float32_points_are_adversarial_for_a_float64_model(linear):
    from art_geometry.interop import DeepFoolMargin

    # the refined points lie within 2^-32 of the crossing, in float64: rounding them to float32 may make them
    # clean; the attack moves those outwards, so every reported success is adversarial as returned
    model, x, pred = linear
    clf = make_classifier(model, (1, 4, 4), 4, clip_values=(0.0, 1.0))
    attack = DeepFoolMargin(clf, refine_steps=50)
    x_adv = attack.generate(x)
    ok = attack.last_result.success
    assert ok.all() and x_adv.dtype == np.float32
    assert (predict(model, x_adv) != pred).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_art_attack_params_and_set_params_validate_through_the_settings(linear):
    from art_geometry.interop import DeepFoolMargin

    clf = make_classifier(linear[0], (1, 4, 4), 4, clip_values=None)
    attack = DeepFoolMargin(clf)
    assert attack.attack_params == [*DeepFoolSettings.field_names(), "batch_size", "verbose", "minimal"]
    with pytest.raises(ValueError, match="norm must be one of"):
        DeepFoolMargin(clf, norm=1)
    with pytest.raises(ValueError, match=r"candidates must be an integer in \[2"):
        DeepFoolMargin(clf, candidates=1)
    with pytest.raises(TypeError, match="unknown option"):
        DeepFoolMargin(clf, step=3)
    with pytest.raises(ValueError, match="overshoot"):
        attack.set_params(overshoot=-1.0)
    with pytest.raises(ValueError, match="refine must be True or False"):
        DeepFoolMargin(clf).set_params(refine="yes")
    with pytest.raises(ValueError, match="clip_values"):
        DeepFoolMargin(clf).set_params(box=True)
    with pytest.raises(ValueError, match="batch_size"):
        DeepFoolMargin(clf).set_params(batch_size=0)
    with pytest.raises(ValueError, match="cannot be set"):
        DeepFoolMargin(clf).set_params(epsilon=0.1)
    attack = DeepFoolMargin(clf)
    attack.set_params(norm="inf", candidates=3, verbose=False)
    assert attack.settings == DeepFoolSettings(norm=LINF, candidates=3)
    given = DeepFoolSettings(norm=LINF, restarts=0)
    assert DeepFoolMargin(clf, given, candidates=3).settings == DeepFoolSettings(norm=LINF, restarts=0, candidates=3)


def test_art_attack_old_positional_form_warns(linear):
    from art_geometry.interop import DeepFoolMargin

    clf = make_classifier(linear[0], (1, 4, 4), 4, clip_values=None)
    with pytest.warns(DeprecationWarning, match="norm=..."):
        attack = DeepFoolMargin(clf, np.inf, 3)
    assert attack.settings.norm == LINF and attack.settings.candidates == 3


def test_art_attack_refuses_unsupported_estimators_at_construction(digits):
    from art.defences.preprocessor import FeatureSqueezing
    from art.estimators.classification import SklearnClassifier
    from art.exceptions import EstimatorError
    from sklearn.linear_model import LogisticRegression

    from art_geometry.interop import DeepFoolMargin

    x, y = digits.x_train[:100].reshape(100, -1), digits.y_train[:100]
    sk = SklearnClassifier(LogisticRegression(max_iter=1000).fit(x, y), clip_values=(0.0, 1.0))
    with pytest.raises(EstimatorError, match="DeepFoolMargin requires an estimator derived from .*PyTorchClassifier"):
        DeepFoolMargin(sk)
    clf = make_classifier(MLP((1, 8, 8), hidden=(8,)), (1, 8, 8), 10)
    clf_squeezed = type(clf)(
        model=clf.model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0),
        preprocessing_defences=FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=4),
    )
    with pytest.raises(ValueError, match="FeatureSqueezing.*not differentiable"):
        DeepFoolMargin(clf_squeezed)


def test_art_attack_in_adversarial_accuracy(tiny_digits, digits):
    from art.metrics import adversarial_accuracy

    from art_geometry.interop import DeepFoolMargin

    x, y = digits.x_test[:60], digits.y_test[:60]
    attack = DeepFoolMargin(tiny_digits)
    # ART's own predict draws from torch's global generator: seeded() gives that state back
    with assert_unchanged(tiny_digits, x, y), seeded(0):
        acc = adversarial_accuracy(tiny_digits, x, y, attack_crafter=attack)
    assert attack.last_result.success.all()
    assert acc == 0.0
    clean = (tiny_digits.predict(x).argmax(1) == y).mean()
    assert clean > 0.5


def test_art_attack_in_adversarial_trainer_trains_on_images_in_range(digits, monkeypatch):
    from art.defences.trainer import AdversarialTrainer

    from art_geometry.interop import DeepFoolMargin

    torch.manual_seed(2)
    clf = make_classifier(MLP((1, 8, 8), hidden=(16,)), (1, 8, 8), 10)
    before = [p.detach().clone() for p in clf.model.parameters()]
    trained: list[np.ndarray] = []
    fit = clf.fit

    def recording_fit(x, y, **kwargs):
        trained.append(np.array(x))
        return fit(x, y, **kwargs)

    monkeypatch.setattr(clf, "fit", recording_fit)
    attack = DeepFoolMargin(clf, max_iter=20, restarts=0)
    trainer = AdversarialTrainer(clf, attacks=attack, ratio=0.5)
    x_train, y_train = digits.x_train[:128], digits.y_train[:128]
    with seeded(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(x_train, y_train, nb_epochs=1, batch_size=64)
    assert attack.last_result is not None and len(attack.last_result.margins) == 32
    assert len(trained) == 2
    images = np.concatenate(trained)
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    # half of each batch was replaced by adversarial points, which are not training images
    originals = {row.tobytes() for row in x_train}
    assert sum(row.tobytes() not in originals for row in images) >= 32
    assert any(not torch.equal(a, b) for a, b in zip(before, clf.model.parameters()))


# --- foolbox ---------------------------------------------------------------------------------------------------


def test_foolbox_attack_format_and_distances(linear):
    import foolbox as fb

    from art_geometry.interop import DeepFoolMarginAttack

    model, x, pred = linear
    fmodel = fb.PyTorchModel(model.eval(), bounds=(-100.0, 100.0), device="cpu")
    xt, yt = torch.from_numpy(x), torch.from_numpy(pred)
    labels = yt.clone()
    labels[0] = (labels[0] + 1) % 4  # a misclassified sample: already adversarial, returned as is
    attack = DeepFoolMarginAttack(norm=np.inf)
    assert attack.settings.box is True and attack.distance is fb.distances.linf
    with assert_unchanged(model, xt, labels):
        raw, clipped, success = attack(fmodel, xt, labels, epsilons=None)
    assert isinstance(raw, torch.Tensor) and raw.shape == xt.shape and raw.dtype == xt.dtype == torch.float64
    assert torch.equal(raw, clipped) and success.dtype == torch.bool and bool(success.all())
    assert torch.equal(raw[0], xt[0])
    np.testing.assert_allclose(distances(raw[1:], x[1:], np.inf), closed_form(model, x[1:], np.inf), rtol=1e-4)
    raws, clippeds, successes = attack(fmodel, xt, yt, epsilons=[1e-6, 10.0])
    assert len(raws) == 2 and len(clippeds) == 2 and successes.shape == (2, len(x))
    assert not bool(successes[0].any()) and bool(successes[1].all())
    with pytest.raises(ValueError, match="unsupported criterion.*untargeted"):
        attack.run(fmodel, xt, fb.criteria.TargetedMisclassification(yt))
    with pytest.raises(TypeError, match="unexpected keyword argument 'steps'"):
        attack.run(fmodel, xt, yt, steps=3)


def _nan(x, y):
    x = x.clone()
    x[1, 0, 2, 2] = float("nan")
    return x, y


def _inf(x, y):
    x = x.clone()
    x[0, 0, 0, 0] = float("inf")
    return x, y


def _above(x, y):
    return x + 0.5, y


def _below(x, y):
    return x - 0.5, y


def _integer(x, y):
    return (x * 255).to(torch.uint8), y


def _label_10(x, y):
    y = y.clone()
    y[2] = 10
    return x, y


def _label_minus_1(x, y):
    y = y.clone()
    y[0] = -1
    return x, y


def _short(x, y):
    return x, y[:-1]


def _float_labels(x, y):
    return x, y.double()


def _one_hot(x, y):
    return x, torch.nn.functional.one_hot(y, 10)


@pytest.mark.parametrize(
    "corrupt, error, message",
    [
        (_nan, ValueError, "inputs contains NaN or inf"),
        (_inf, ValueError, "inputs contains NaN or inf"),
        (_above, ValueError, r"inputs has values in \[.*\], outside the model's bounds \[0, 1\]"),
        (_below, ValueError, r"inputs has values in \[.*\], outside the model's bounds \[0, 1\]"),
        (_integer, TypeError, "inputs must be floating point, got dtype torch.uint8"),
        (_label_10, ValueError, r"labels holds labels in \[.*, 10\], out of range for 10 classes"),
        (_label_minus_1, ValueError, r"labels holds labels in \[-1, .*\], out of range for 10 classes"),
        (_short, ValueError, r"labels must have shape \(6,\).*got \(5,\)"),
        (_float_labels, TypeError, "labels must hold integer class indices, got dtype torch.float64"),
        (_one_hot, ValueError, r"labels must have shape \(6,\).*got \(6, 10\)"),
    ],
)
def test_foolbox_attack_refuses_bad_inputs_with_messages(ten_classes, corrupt, error, message):
    from art_geometry.interop import DeepFoolMarginAttack

    fmodel, x, pred = ten_classes
    images, labels = corrupt(x, pred)
    with pytest.raises(error, match=message):
        DeepFoolMarginAttack()(fmodel, images, labels, epsilons=None)


def test_foolbox_attack_keeps_the_input_dtype(ten_classes):
    import foolbox as fb

    from art_geometry.interop import DeepFoolMarginAttack

    fmodel, x, pred = ten_classes
    attack = DeepFoolMarginAttack()
    raw, _, success = attack(fmodel, x, pred, epsilons=None)  # float64 images, float64 model
    assert raw.dtype == torch.float64 and bool(success.all())
    model32 = random_linear(10, (1, 4, 4), seed=5, dtype=torch.float32).eval()
    fmodel32 = fb.PyTorchModel(model32, bounds=(0.0, 1.0), device="cpu")
    x32 = x.float()
    raw32, _, success32 = attack(fmodel32, x32, pred, epsilons=None)
    assert raw32.dtype == torch.float32 and bool(success32.all())
    # run() casts float64 images for a float32 model and answers in float64 ...
    adv = attack.run(fmodel32, x, pred)
    assert adv.dtype == torch.float64 and (predict(model32, adv) != pred.numpy()).all()
    # ... but foolbox's __call__ evaluates the model on the images as given: a message instead of its RuntimeError
    with pytest.raises(TypeError, match=r"inputs are torch.float64 but the model computes in torch.float32"):
        attack(fmodel32, x, pred, epsilons=None)


# --- torchattacks ----------------------------------------------------------------------------------------------


def test_torchattacks_attack_returns_adversarial_images(linear):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    model, x, pred = linear
    xt, yt = torch.from_numpy(x), torch.from_numpy(pred)
    attack = TorchattacksDeepFoolMargin(model, norm=2, box=False)
    with assert_unchanged(model, xt, yt):
        adv = attack(xt, yt)
    assert adv.shape == xt.shape and adv.dtype == xt.dtype
    assert (predict(model, adv) != pred).all()
    np.testing.assert_allclose(distances(adv, x, 2), closed_form(model, x, 2), rtol=1e-4)
    boxed = TorchattacksDeepFoolMargin(model, norm=2)
    assert boxed.settings.box is True
    adv = boxed(xt, yt)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_torchattacks_attack_refuses_numpy_images_and_bad_labels(linear):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    model, x, pred = linear
    xt, yt = torch.from_numpy(x), torch.from_numpy(pred)
    attack = TorchattacksDeepFoolMargin(model)
    with pytest.raises(TypeError, match="images must be a torch.Tensor, got numpy.ndarray"):
        attack(x, yt)
    with pytest.raises(TypeError, match="images must be floating point"):
        attack((xt * 255).to(torch.uint8), yt)
    bad = yt.clone()
    bad[0] = 4
    with pytest.raises(ValueError, match="out of range for 4 classes"):
        attack(xt, bad)
    with pytest.raises(ValueError, match=r"labels must have shape \(12,\)"):
        attack(xt, yt[:5])
    with pytest.raises(TypeError, match="labels must hold integer class indices, got dtype torch.float32"):
        attack(xt, yt.float())
    with pytest.raises(TypeError, match="labels must be a numpy array, torch tensor or list of class indices"):
        attack(xt, None)
    with pytest.raises(ValueError, match="batch_size"):
        TorchattacksDeepFoolMargin(model, batch_size=0)
    with pytest.warns(DeprecationWarning, match="norm=..."):
        assert TorchattacksDeepFoolMargin(model, np.inf).settings.norm == LINF


class _ModeRecorder(nn.Module):
    """Records, at every forward pass, the training flags of itself, its batch norm and its dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(p=0.0)  # identity, but its flag shows
        self.fc = nn.Linear(16, 4)
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, self.bn.training, self.drop.training))
        return self.fc(self.drop(self.bn(x.flatten(1))))


@pytest.mark.parametrize(
    "mode, expected",
    [
        (None, (False, False, False)),  # torchattacks' default: eval
        (dict(model_training=True), (True, False, False)),  # batch norm and dropout kept in eval
        (dict(model_training=True, dropout_training=True), (True, False, True)),
    ],
)
def test_torchattacks_attack_runs_the_model_in_the_modes_torchattacks_sets(mode, expected):
    from art_geometry.interop import TorchattacksDeepFoolMargin

    torch.manual_seed(0)
    model = _ModeRecorder().train()
    xt = torch.rand(8, 1, 4, 4)
    with torch.no_grad():
        yt = model.eval()(xt).argmax(1)
    model.train()
    attack = TorchattacksDeepFoolMargin(model, max_iter=10)
    if mode is not None:
        attack.set_model_training_mode(**mode)
    model.seen.clear()
    with assert_unchanged(model, xt, yt):  # given in train mode: torchattacks puts it back in train mode
        attack(xt, yt)
    assert model.seen and set(model.seen) == {expected}


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
    assert (predict(model, adv) != labels.numpy()).all()
    # the attack works on unnormalised images: distances there are the closed form of the composed model
    scaled = random_linear(4, (1, 4, 4), seed=3)
    with torch.no_grad():
        scaled.fc.weight.div_(std)
        scaled.fc.bias.sub_(scaled.fc.weight.sum(1) * mean)
    np.testing.assert_allclose(distances(adv * std + mean, x, 2), closed_form(scaled, x, 2), rtol=1e-4)


# --- the three wrappers measure what deepfool_margins measures --------------------------------------------------


def test_wrappers_margins_equal_deepfool_margins_with_the_same_settings(tiny_digits, digits, ten_classes):
    from art_geometry.interop import DeepFoolMargin, DeepFoolMarginAttack, TorchattacksDeepFoolMargin

    x = digits.x_test[:24]
    art_attack = DeepFoolMargin(tiny_digits, candidates=4, max_iter=30, restarts=1)
    art_attack.generate(x)
    ref = deepfool_margins(tiny_digits, x, settings=art_attack.settings)
    assert art_attack.settings.box is True
    np.testing.assert_array_equal(art_attack.last_result.margins, ref.margins)
    np.testing.assert_array_equal(art_attack.last_result.success, ref.success)

    fmodel, xt, pred = ten_classes
    fb_attack = DeepFoolMarginAttack(candidates=3, norm=np.inf)
    raw, _, _ = fb_attack(fmodel, xt, pred, epsilons=None)
    ref = deepfool_margins(fmodel, xt, settings=fb_attack.settings)
    assert fb_attack.settings.box is True and ref.success.all()
    np.testing.assert_allclose(distances(raw, xt, np.inf), ref.margins, rtol=1e-9)

    ta_attack = TorchattacksDeepFoolMargin(random_linear(10, (1, 4, 4), seed=5), candidates=3)
    adv = ta_attack(xt, pred)
    ref = deepfool_margins(fmodel, xt, settings=ta_attack.settings)  # the same model, bounds [0, 1]
    assert ta_attack.settings.box is True and ref.success.all()
    np.testing.assert_allclose(distances(adv, xt, 2), ref.margins, rtol=1e-9)

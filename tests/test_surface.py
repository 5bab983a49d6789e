import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.surface import decision_function, decision_surface, parameter_loss_surface
from tests.helpers import assert_round_trip, assert_unchanged, random_linear


@pytest.fixture
def linear():
    model = random_linear(4, (2, 3), seed=1)
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    return model, x


def _closed_form(model, x, y):
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    z = x.reshape(len(x), -1) @ w.T + b
    t = z[np.arange(len(z)), y]
    others = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z)
    return t - others.max(1)


def test_decision_function_closed_form(linear):
    model, x = linear
    y = np.array([0, 1, 2, 3, 0])
    with assert_unchanged(model, x, y):
        values = decision_function(model, x, y, batch_size=2)
        pred = decision_function(model, x)
    np.testing.assert_allclose(values, _closed_form(model, x, y), rtol=1e-12)
    assert np.all(pred >= 0)
    np.testing.assert_allclose(decision_function(model, torch.as_tensor(x), y), values, rtol=1e-12)


@pytest.mark.parametrize("directions,objective", [("random", "ce"), ("adversarial", "ce"),
                                                  ("adversarial", "least_likely"), ("adversarial", "cw")])
def test_surface_centre_directions_and_grid(linear, directions, objective):
    model, x = linear
    y = np.array([0, 1, 2, 3, 0])
    with assert_unchanged(model, x, y):
        res = decision_surface(model, x, y, directions=directions, adversarial_loss=objective, span=2.0,
                               resolution=9, batch_size=7)
    assert res.decision.shape == res.loss.shape == res.boundary.shape == (5, 9, 9)
    assert res.coords[4] == 0.0
    np.testing.assert_allclose(res.decision[:, 4, 4], _closed_form(model, x, y), rtol=1e-12)
    a, b = res.alpha.reshape(5, -1), res.beta.reshape(5, -1)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose((a * b).sum(1), 0, atol=1e-12)
    # grid convention: [n, i, j] is x + coords[j] alpha + coords[i] beta
    point = x + res.coords[1] * res.alpha + res.coords[7] * res.beta
    np.testing.assert_allclose(res.decision[:, 7, 1], _closed_form(model, point, y), rtol=1e-10)
    z = point.reshape(5, -1) @ model.fc.weight.detach().numpy().T + model.fc.bias.detach().numpy()
    ce = -(z[np.arange(5), y] - np.log(np.exp(z).sum(1)))
    np.testing.assert_allclose(res.loss[:, 7, 1], ce, rtol=1e-10)
    assert res.to_dict()["summary"]["resolution"] == 9


def test_adversarial_direction_is_sign_gradient(linear):
    model, x = linear
    y = np.array([0, 1, 2, 3, 0])
    res = decision_surface(model, x, y, directions="adversarial", adversarial_loss="cw", resolution=3)
    w = model.fc.weight.detach().numpy()
    z = x.reshape(5, -1) @ w.T + model.fc.bias.detach().numpy()
    m = np.where(np.eye(4, dtype=bool)[y], -np.inf, z).argmax(1)
    expected = np.sign(w[m] - w[y]) / np.sqrt(6)
    np.testing.assert_allclose(res.beta.reshape(5, -1), expected, atol=1e-12)
    # along beta the C&W margin falls: L decreases with the beta coordinate at alpha = 0
    assert np.all(np.diff(res.decision[:, :, 1], axis=1) < 0)


def test_boundary_mask_marks_sign_changes(linear):
    model, x = linear
    res = decision_surface(model, x, span=20.0, resolution=21, seed=3)
    pos = res.decision > 0
    flips = (pos[:, 1:, :] != pos[:, :-1, :])
    assert np.all(res.boundary[:, 1:, :][flips]) and np.all(res.boundary[:, :-1, :][flips])
    interior = ~res.boundary
    assert interior.any() and res.boundary.any()
    nb = np.pad(pos, ((0, 0), (1, 1), (1, 1)), mode="edge")
    same = (nb[:, :-2, 1:-1] == pos) & (nb[:, 2:, 1:-1] == pos) & (nb[:, 1:-1, :-2] == pos) & (nb[:, 1:-1, 2:] == pos)
    np.testing.assert_array_equal(res.boundary, ~same)


def test_seed_and_batch_size_invariance(linear):
    model, x = linear
    a = decision_surface(model, x, resolution=5, seed=4, batch_size=3)
    b = decision_surface(model, x, resolution=5, seed=4, batch_size=1000)
    c = decision_surface(model, x, resolution=5, seed=5)
    np.testing.assert_allclose(a.decision, b.decision, rtol=1e-12)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert not np.allclose(a.alpha, c.alpha)
    state = torch.random.get_rng_state()
    decision_surface(model, x, resolution=3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_surface_with_art_classifier(trained_cnn, digits):
    x, y = digits.x_test[:2], digits.y_test[:2]
    with assert_unchanged(trained_cnn, x, y):
        res = decision_surface(trained_cnn, x, y, directions="adversarial", span=0.5, resolution=5)
    np.testing.assert_allclose(res.decision[:, 2, 2], decision_function(trained_cnn, x, y), rtol=1e-5)
    assert res.alpha.shape == x.shape


def test_bad_inputs(linear, trained_cnn, digits):
    model, x = linear
    with pytest.raises(ValueError, match=r"resolution must be an integer in \[2, inf\]"):
        decision_surface(model, x, resolution=1)
    with pytest.raises(ValueError, match="span must be a finite number > 0"):
        decision_surface(model, x, span=0.0)
    with pytest.raises(ValueError, match="span must be a finite number > 0"):
        parameter_loss_surface(model, x, np.zeros(5, dtype=np.int64), span=-1.0)
    with pytest.raises(ValueError, match="directions must be"):
        decision_surface(model, x, directions="dct")
    with pytest.raises(ValueError, match="adversarial_loss must be"):
        decision_surface(model, x, directions="adversarial", adversarial_loss="pgd")
    with pytest.raises(ValueError, match="NaN"):
        decision_surface(model, np.full_like(x, np.inf))
    with pytest.raises(ValueError, match="out of range"):
        decision_function(model, x, np.array([0, 1, 2, 4, 0]))
    with pytest.raises(ValueError, match="labels 2 samples"):
        decision_surface(model, x, np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        decision_surface(trained_cnn, digits.x_test[:0])
    with pytest.raises(ValueError, match="input_shape"):
        decision_function(trained_cnn, digits.x_test[:2, :, :5])


class _Flaky(nn.Module):
    """A small conv net whose forward raises on its third call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 6 * 6, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("injected failure")
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_parameter_surface_restores_weights_even_on_error():
    torch.manual_seed(0)
    model = _Flaky()
    model.train()
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    with assert_unchanged(model, x, y):
        with pytest.raises(RuntimeError, match="injected"):
            parameter_loss_surface(model, x, y, resolution=3)
    model.calls = -10**9
    with assert_unchanged(model, x, y):
        res = parameter_loss_surface(model, x, y, span=0.5, resolution=5, batch_size=4)
    assert res.loss.shape == res.accuracy.shape == (5, 5)
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(x))
    centre = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y)).item()
    np.testing.assert_allclose(res.loss[2, 2], centre, rtol=1e-5)
    assert not np.allclose(res.loss, centre)
    assert res.summary()["centre_loss"] == pytest.approx(centre, rel=1e-5)


def test_parameter_surface_filter_normalised_bias_free():
    # a model with only a bias: the direction is zero, so the surface is flat at the centre loss
    class BiasOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.5, -0.5], dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :2] + self.bias

    model = BiasOnly()
    x = np.random.default_rng(0).normal(size=(4, 3))
    y = np.array([0, 1, 0, 1])
    res = parameter_loss_surface(model, x, y, resolution=3)
    np.testing.assert_allclose(res.loss, res.loss[1, 1], rtol=1e-12)


def test_parameter_surface_linear_closed_form(linear):
    model, x = linear
    y = np.array([0, 1, 2, 3, 0])
    res = parameter_loss_surface(model, x, y, span=1.0, resolution=3, seed=2)
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()

    def ce(weight):
        z = x.reshape(5, -1) @ weight.T + b
        return np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(5), y])

    # the two directions: seeded Gaussians shaped like the weight, each row rescaled to the norm of w's row;
    # the bias gets none (no draw)
    gen = torch.Generator().manual_seed(2)
    delta, eta = (
        d * np.linalg.norm(w, axis=1, keepdims=True) / np.linalg.norm(d, axis=1, keepdims=True)
        for d in (torch.randn(w.shape, generator=gen, dtype=torch.float64).numpy() for _ in range(2))
    )
    np.testing.assert_allclose(res.loss[1, 1], ce(w), rtol=1e-12)
    np.testing.assert_allclose(res.loss[0, 2], ce(w + delta - eta), rtol=1e-10)
    np.testing.assert_allclose(res.loss[2, 0], ce(w - delta + eta), rtol=1e-10)


def test_surface_plain_conv_module_keeps_sample_shape(digits):
    from art_geometry.datasets import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8)).eval()
    x = digits.x_test[:2]
    with assert_unchanged(model, x):
        res = decision_surface(
            model, x, span=1.0, resolution=3, directions="adversarial", adversarial_loss="least_likely"
        )
    np.testing.assert_allclose(res.decision[:, 1, 1], decision_function(model, x), rtol=1e-5, atol=1e-6)


def test_results_round_trip_and_summary_keys(linear):
    model, x = linear
    y = np.array([0, 1, 2, 3, 0])
    surface = decision_surface(model, x, y, directions="adversarial", resolution=5, seed=3)
    params = parameter_loss_surface(model, x, y, resolution=3, seed=1)
    for res in (surface, params):
        assert_round_trip(res)
        assert res.summary()["n_samples"] == 5
    assert surface.summary()["params"] == {
        "directions": "adversarial", "adversarial_loss": "ce", "span": 1.0, "resolution": 5, "seed": 3,
        "batch_size": 4096,
    }
    assert params.summary()["params"] == {"span": 1.0, "resolution": 3, "seed": 1, "batch_size": 256}


def test_seed_none_draws_a_recorded_seed(linear):
    model, x = linear
    state = torch.random.get_rng_state()
    a = decision_surface(model, x, resolution=3, seed=None)
    b = decision_surface(model, x, resolution=3, seed=None)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.seed == a.params["seed"] and isinstance(a.seed, int) and a.seed >= 0 and a.seed != b.seed
    np.testing.assert_array_equal(decision_surface(model, x, resolution=3, seed=a.seed).alpha, a.alpha)
    p = parameter_loss_surface(model, x, np.zeros(5, dtype=np.int64), resolution=3, seed=None)
    again = parameter_loss_surface(model, x, np.zeros(5, dtype=np.int64), resolution=3, seed=p.seed)
    np.testing.assert_array_equal(p.loss, again.loss)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"span": "a"}, "span"),
        ({"span": float("inf")}, "span"),
        ({"resolution": 4.0}, "resolution"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"verbose": 1}, "verbose"),
        ({"directions": None}, "directions"),
        ({"adversarial_loss": 3}, "adversarial_loss"),
    ],
)
def test_bad_options_name_the_option(linear, options, name):
    model, x = linear
    y = np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match=name):
        decision_surface(model, x, y, **options)
    if name in ("span", "resolution", "seed", "batch_size", "verbose"):
        with pytest.raises(ValueError, match=name):
            parameter_loss_surface(model, x, y, **options)
    if name in ("batch_size", "verbose"):
        with pytest.raises(ValueError, match=name):
            decision_function(model, x, y, **options)


def test_parameter_surface_requires_labels(linear):
    model, x = linear
    with pytest.raises(ValueError, match="y is required"):
        parameter_loss_surface(model, x)


def test_strided_readonly_and_integer_inputs(trained_cnn, digits):
    x, y = digits.x_test[:4], digits.y_test[:4]
    flipped = np.ascontiguousarray(x[::-1])
    frozen = x.copy()
    frozen.setflags(write=False)
    options = {"directions": "adversarial", "span": 0.5, "resolution": 3, "batch_size": 5}
    ref = decision_surface(trained_cnn, flipped, y[::-1], **options)
    for variant in (x[::-1], frozen[::-1]):
        res = decision_surface(trained_cnn, variant, y[::-1], **options)
        np.testing.assert_array_equal(res.decision, ref.decision)
        np.testing.assert_array_equal(res.beta, ref.beta)
    np.testing.assert_array_equal(decision_function(trained_cnn, x[::-1]), decision_function(trained_cnn, flipped))
    np.testing.assert_array_equal(
        parameter_loss_surface(trained_cnn, frozen[::-1], y[::-1], resolution=3).loss,
        parameter_loss_surface(trained_cnn, flipped, y[::-1], resolution=3).loss,
    )
    pixels = np.round(x * 16).astype(np.int64)
    np.testing.assert_array_equal(
        decision_function(trained_cnn, pixels, y), decision_function(trained_cnn, pixels.astype(np.float32), y)
    )
    with pytest.raises(TypeError, match="real numbers"):
        decision_surface(trained_cnn, x > 0.5)
    with pytest.raises(TypeError, match="real numbers"):
        parameter_loss_surface(trained_cnn, x > 0.5, y)


def test_probability_outputs_warn_once_per_call():
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    y = np.zeros(6, dtype=np.int64)
    calls = [
        lambda: decision_function(model, x, batch_size=4),
        lambda: decision_surface(model, x, directions="adversarial", resolution=3, batch_size=4),
        lambda: parameter_loss_surface(model, x, y, resolution=3, batch_size=4),
    ]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert sum("probabilities" in str(w.message) for w in caught) == 1

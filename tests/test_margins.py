import copy
import json

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from art_geometry import DeepFoolSettings
from art_geometry.core.model import ModelView
from art_geometry.datasets import make_classifier
from art_geometry.margins import MarginResult, deepfool_margins, margin_metric, subspace_margins
from art_geometry.margins.gap import _gap, _storable
from art_geometry.margins.refine import _refine_crossing
from art_geometry.subspaces import dct_subspaces, direction, random_subspace
from tests.helpers import Linear, assert_unchanged, random_linear

SHAPE = (1, 8, 8)


def linear_setup(nb_classes=5, n=24, seed=1):
    model = random_linear(nb_classes, SHAPE, seed=seed)
    x = np.random.default_rng(seed).uniform(0, 1, size=(n,) + SHAPE)
    return model, x


def exact_margins(model: Linear, x: np.ndarray, ord: float = 2, proj: np.ndarray | None = None) -> np.ndarray:
    """min over j != k of |z_k - z_j| / ||P (w_k - w_j)||, k the predicted class, P the projector (or I)."""
    w = model.fc.weight.detach().numpy()
    b = model.fc.bias.detach().numpy()
    z = x.reshape(len(x), -1) @ w.T + b
    k = z.argmax(axis=1)
    out = np.full(len(x), np.inf)
    for j in range(w.shape[0]):
        dw = w[k] - w[j]
        if proj is not None:
            dw = dw @ proj.T
        norm = np.linalg.norm(dw, ord=ord, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.abs(z[np.arange(len(x)), k] - z[:, j]) / norm
        out = np.where((j != k) & (norm > 0), np.minimum(out, d), out)
    return out


def dense_dct_projector(n: int, start: int, size: int) -> np.ndarray:
    c = scipy.fft.dct(np.eye(n), norm="ortho", axis=0)
    b = np.kron(c, c)
    mask = np.zeros((n, n))
    mask[start : start + size, start : start + size] = 1
    return b.T @ np.diag(mask.ravel()) @ b


def is_adversarial(model: nn.Module, x: np.ndarray, pert: np.ndarray, pred: np.ndarray) -> np.ndarray:
    params = list(model.parameters())
    dtype = params[0].dtype if params else torch.float32
    with torch.no_grad():
        z = model(torch.as_tensor(x + pert.astype(np.float64), dtype=dtype))
    return z.argmax(1).numpy() != pred


@pytest.mark.parametrize("norm,ord", [(2, 2), (np.inf, 1)])
def test_linear_exact_margins(norm, ord):
    model, x = linear_setup()
    res = deepfool_margins(model, x, norm=norm, candidates=5, return_perturbations=True)
    assert res.success.all()
    np.testing.assert_allclose(res.margins, exact_margins(model, x, ord), rtol=1e-4)
    # the reported margin is the norm of the returned perturbation, which is adversarial
    flat = res.perturbations.reshape(len(x), -1).astype(np.float64)
    measured = np.linalg.norm(flat, axis=1) if norm == 2 else np.abs(flat).max(axis=1)
    np.testing.assert_allclose(measured, res.margins, rtol=1e-5)
    assert is_adversarial(model, x, res.perturbations, res.predictions).all()


def test_linear_without_refine_overshoots():
    model, x = linear_setup()
    exact = exact_margins(model, x)
    res = deepfool_margins(model, x, candidates=5, refine=False)
    assert (res.margins >= exact).all()
    np.testing.assert_allclose(res.margins, 1.02 * (exact + 1e-4), rtol=1e-6)
    assert (res.iterations == 1).all()


@pytest.mark.parametrize("start,size", [(0, 4), (2, 3), (4, 4)])
def test_linear_exact_margins_in_dct_subspace(start, size):
    model, x = linear_setup()
    sub = [s for s in dct_subspaces(SHAPE, block_size=size, stride=1) if s.start == start][0]
    p = dense_dct_projector(8, start, size)
    res = deepfool_margins(model, x, subspace=sub, candidates=5, return_perturbations=True)
    assert res.success.all() and res.subspace == sub.name
    np.testing.assert_allclose(res.margins, exact_margins(model, x, 2, p), rtol=1e-4)
    flat = res.perturbations.reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(flat @ p.T, flat, atol=1e-6)
    assert is_adversarial(model, x, res.perturbations, res.predictions).all()


def test_linf_in_subspace_stays_in_subspace():
    model, x = linear_setup()
    sub = dct_subspaces(SHAPE, block_size=4, stride=2)[1]
    p = dense_dct_projector(8, 2, 4)
    res = deepfool_margins(model, x, norm="inf", subspace=sub, candidates=5, return_perturbations=True)
    assert res.success.all()
    flat = res.perturbations.reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(flat @ p.T, flat, atol=1e-6)
    # the L-inf distance inside S is at least the unconstrained one
    assert (res.margins >= exact_margins(model, x, 1) * (1 - 1e-6)).all()


def test_subspace_margins_equal_one_at_a_time():
    model, x = linear_setup(n=10)
    for subs in (dct_subspaces(SHAPE, block_size=4, stride=2), [random_subspace(SHAPE, 6, seed=s) for s in range(2)]):
        res = subspace_margins(model, x, subspaces=subs, candidates=5, batch_size=8)
        assert res.margins.shape == (len(subs), 10) and res.names == [s.name for s in subs]
        for j, s in enumerate(subs):
            single = deepfool_margins(model, x, subspace=s, candidates=5)
            np.testing.assert_allclose(res.margins[j], single.margins, rtol=1e-9)
        assert set(res.summary()["subspaces"]) == set(res.names) and res.summary()["n_samples"] == 10


def test_default_batch_follows_the_memory_of_a_pass():
    from art_geometry.core.batching import activation_bytes
    from art_geometry.margins.plan import _BATCH, _PASS_BYTES, _SUBSPACE_BATCH, _default_batch_size

    # 21 subspaces x 3 copies x 9 candidate gradients x 150,528 floats x 4 bytes = 341 MB a sample: 3 fit 1 GiB
    assert _default_batch_size((3, 224, 224), 21, 10, 0, 64) == _PASS_BYTES // (21 * 3 * 9 * 150528 * 4) == 3
    # a graph of 100 MB a row leaves room for 7 samples of one row
    assert _default_batch_size((3, 224, 224), 1, 10, 10**8, 128) == _PASS_BYTES // (10**8 + 3 * 9 * 150528 * 4)
    assert _default_batch_size((1, 28, 28), 21, 10, 40_000, 64) == 64
    assert _default_batch_size((3, 2000, 2000), 21, 10, 0, 64) == 1
    # the probe counts the leaf modules' outputs (here fc's 5 float64), at least the input's bytes (64 float64);
    # a convolution's output counts in full
    model, x = linear_setup(n=10)
    view = ModelView(model, 5, SHAPE, None, torch.device("cpu"), torch.float64)
    assert activation_bytes(view, SHAPE) == 64 * 8
    conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 5)).double()
    view = ModelView(conv, 5, SHAPE, None, torch.device("cpu"), torch.float64)
    assert activation_bytes(view, SHAPE) == (3 * 16 * 64 + 5) * 8
    subs = dct_subspaces(SHAPE, block_size=4, stride=2)
    res = subspace_margins(model, x, subspaces=subs, candidates=5)
    assert res.params["batch_size"] == _SUBSPACE_BATCH
    np.testing.assert_allclose(res.margins, subspace_margins(model, x, subspaces=subs, candidates=5,
                                                             batch_size=3).margins, rtol=1e-9)
    plain = deepfool_margins(model, x)
    assert plain.params["batch_size"] == _BATCH
    np.testing.assert_array_equal(plain.margins, deepfool_margins(model, x, batch_size=128).margins)


def orthogonal_failure_setup():
    """Every class has the same weight on pixel 0, so no perturbation along e_0 changes the prediction."""
    model = random_linear(4, SHAPE, seed=2)
    with torch.no_grad():
        model.fc.weight[:, 0] = 0.7
    x = np.random.default_rng(0).uniform(0, 1, size=(6,) + SHAPE)
    e0 = np.zeros(SHAPE)
    e0[0, 0, 0] = 1
    return model, x, direction(e0)


def test_failure_is_reported_with_inf_and_counted():
    model, x, sub = orthogonal_failure_setup()
    res = deepfool_margins(model, x, subspace=sub, max_iter=3, restarts=2, return_perturbations=True)
    assert not res.success.any() and np.isinf(res.margins).all()
    assert (res.iterations == 3 * 3).all()
    assert (res.perturbations == 0).all()
    summary = res.summary()
    assert summary["n_failed"] == 6 and summary["success_rate"] == 0.0 and summary["n"] == 0
    json.dumps(res.to_dict())
    sres = subspace_margins(model, x, subspaces=[sub, random_subspace(SHAPE, 3)], max_iter=3, restarts=0)
    assert not sres.success[0].any() and sres.success[1].all()


def test_box_failure_and_box_respected():
    w = torch.zeros(3, 64, dtype=torch.float64)
    w[1, :] = 1.0
    w[2, :] = -1.0
    b = torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64)
    clf = make_classifier(Linear(w, b, SHAPE).double(), SHAPE, 3, clip_values=(0.0, 1.0))
    x = np.random.default_rng(0).uniform(0, 1, size=(4,) + SHAPE)
    # class 0 wins everywhere inside [0, 1]^64: the boundary is outside the box
    boxed = deepfool_margins(clf, x, box=True, max_iter=5, restarts=1)
    assert not boxed.success.any() and boxed.summary()["n_failed"] == 4
    free = deepfool_margins(clf, x, box=False)
    assert free.success.all() and np.isfinite(free.margins).all()
    model, xs = linear_setup()
    clf2 = make_classifier(model, SHAPE, 5, clip_values=(0.0, 1.0))
    res = deepfool_margins(clf2, xs, norm="inf", box=True, return_perturbations=True)
    adv = xs + res.perturbations.astype(np.float64)
    assert adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6
    assert is_adversarial(model, xs, res.perturbations, res.predictions)[res.success].all()


def test_restart_recovers_failure_and_is_seeded():
    """A ReLU kink: at x = 0 the gradient of f = relu(x_0) vanishes, so DeepFool cannot move without noise."""

    class Kink(nn.Module):
        def forward(self, x):
            s = torch.relu(x.flatten(1)[:, :1] - 0.01)
            return torch.cat([torch.zeros_like(s), s - 1e-3], dim=1)

    x = np.zeros((3,) + SHAPE)
    stuck = deepfool_margins(Kink(), x, restarts=0, max_iter=5)
    assert not stuck.success.any()
    a = deepfool_margins(Kink(), x, restarts=3, restart_noise=0.05, max_iter=5, seed=1, return_perturbations=True)
    b = deepfool_margins(Kink(), x, restarts=3, restart_noise=0.05, max_iter=5, seed=1, batch_size=1)
    assert a.success.any()
    np.testing.assert_array_equal(a.margins, b.margins)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    assert (a.iterations[a.success] >= 5).all() and (a.iterations[~a.success] == 5 * 4).all()
    assert is_adversarial(Kink(), x, a.perturbations, a.predictions)[a.success].all()


def test_margin_from_predicted_region_labels_only_split():
    model, x = linear_setup()
    pred = deepfool_margins(model, x, candidates=5).predictions
    y = pred.copy()
    y[:5] = (y[:5] + 1) % 5
    with_y = deepfool_margins(model, x, y, candidates=5)
    without = deepfool_margins(model, x, candidates=5)
    np.testing.assert_array_equal(with_y.margins, without.margins)
    np.testing.assert_array_equal(with_y.correct, np.arange(len(x)) >= 5)
    s = with_y.summary()
    assert s["correct"]["n"] == len(x) - 5 and s["incorrect"]["n"] == 5
    np.testing.assert_allclose(s["incorrect"]["median"], np.median(with_y.margins[:5]))
    assert without.correct.all()


@pytest.fixture(scope="module")
def cnn_samples(digits):
    return digits.x_test[:40], digits.y_test[:40]


@pytest.mark.parametrize("norm", [2, "inf"])
def test_trained_cnn(trained_cnn, cnn_samples, norm):
    x, y = cnn_samples
    refined = deepfool_margins(trained_cnn, x, y, norm=norm, return_perturbations=True)
    raw = deepfool_margins(trained_cnn, x, y, norm=norm, refine=False)
    assert isinstance(refined, MarginResult)
    assert refined.success.all() and np.isfinite(refined.margins).all() and (refined.margins > 0).all()
    assert (refined.margins <= raw.margins).all()
    assert refined.perturbations.dtype == np.float32 and refined.perturbations.shape == x.shape
    with torch.no_grad():
        z = trained_cnn.model(torch.as_tensor(x + refined.perturbations))
    assert (z.argmax(1).numpy() != refined.predictions).all()


def test_batch_size_seed_and_tensor_input(trained_cnn, cnn_samples):
    x, y = cnn_samples
    a = deepfool_margins(trained_cnn, x, y, batch_size=128, seed=3)
    b = deepfool_margins(trained_cnn, x, y, batch_size=7, seed=3)
    c = deepfool_margins(trained_cnn, torch.as_tensor(x), torch.as_tensor(y), batch_size=128, seed=3)
    # float32: a conv over a batch of another size takes another kernel path (round-off ~1e-7), which the final
    # linearised DeepFool step can amplify to ~1e-4 relative; float64 below is batch-size invariant exactly
    np.testing.assert_allclose(a.margins, b.margins, rtol=1e-3)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.margins, c.margins)
    np.testing.assert_array_equal(a.margins, deepfool_margins(trained_cnn, x, y, batch_size=128, seed=3).margins)
    np.testing.assert_allclose(margin_metric(trained_cnn, x, norm=2, batch_size=7, seed=3), a.margins, rtol=1e-3)


@pytest.mark.parametrize("norm", [2, "inf"])
def test_batch_size_invariance_in_float64(trained_cnn, cnn_samples, norm):
    model = copy.deepcopy(trained_cnn.model).double().eval()
    x = cnn_samples[0].astype(np.float64)
    a = deepfool_margins(model, x, norm=norm, batch_size=128, seed=3)
    b = deepfool_margins(model, x, norm=norm, batch_size=7, seed=3)
    np.testing.assert_allclose(a.margins, b.margins, rtol=1e-9)


def test_subspace_margins_on_cnn_match_single(trained_cnn, cnn_samples):
    x = cnn_samples[0][:8]
    subs = dct_subspaces(SHAPE, block_size=4, stride=2)
    res = subspace_margins(trained_cnn, x, subspaces=subs, batch_size=64)
    for j, s in enumerate(subs):
        np.testing.assert_allclose(res.margins[j], deepfool_margins(trained_cnn, x, subspace=s).margins, rtol=1e-4)


def test_nothing_mutated(trained_cnn, cnn_samples):
    x, y = cnn_samples[0][:6], cnn_samples[1][:6]
    xt = torch.as_tensor(x)
    trained_cnn.model.train()
    try:
        with assert_unchanged(trained_cnn, x, y):
            deepfool_margins(trained_cnn, x, y, norm="inf")
        with assert_unchanged(trained_cnn, xt):
            deepfool_margins(trained_cnn, xt, subspace=dct_subspaces(SHAPE, block_size=4)[0])
        with assert_unchanged(trained_cnn, x, y):
            subspace_margins(trained_cnn, x, subspaces=dct_subspaces(SHAPE, block_size=4, stride=4), y=y)
        with assert_unchanged(trained_cnn, x):
            margin_metric(trained_cnn, x)
    finally:
        trained_cnn.model.eval()
    model, xl = linear_setup(n=4)
    with assert_unchanged(model, xl):
        with torch.no_grad():
            deepfool_margins(model, xl)


def test_bad_inputs(trained_cnn, cnn_samples):
    x, y = cnn_samples[0][:4], cnn_samples[1][:4]
    with pytest.raises(ValueError, match="subspace .* shape"):
        deepfool_margins(trained_cnn, x, subspace=dct_subspaces((1, 6, 6), block_size=4)[0])
    with pytest.raises(ValueError, match="shape"):
        subspace_margins(trained_cnn, x, subspaces=dct_subspaces((1, 6, 6), block_size=4))
    with pytest.raises(ValueError, match="norm"):
        deepfool_margins(trained_cnn, x, norm=1)
    with pytest.raises(ValueError, match="at least 2"):
        deepfool_margins(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), x)
    with pytest.raises(ValueError, match="input_shape"):
        deepfool_margins(trained_cnn, x[:, :, :4])
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        deepfool_margins(trained_cnn, bad)
    with pytest.raises(ValueError, match="empty"):
        deepfool_margins(trained_cnn, x[:0])
    with pytest.raises(ValueError, match="out of range"):
        deepfool_margins(trained_cnn, x, y + 10)
    with pytest.raises(ValueError, match="candidates"):
        deepfool_margins(trained_cnn, x, candidates=1)
    with pytest.raises(ValueError, match="restarts"):
        deepfool_margins(trained_cnn, x, restarts=-1)
    with pytest.raises(ValueError, match="clip_values"):
        deepfool_margins(random_linear(3, SHAPE), x.astype(np.float64), box=True)
    with pytest.raises(TypeError, match="unknown option"):
        subspace_margins(trained_cnn, x, subspaces=dct_subspaces(SHAPE, block_size=4), return_perturbations=True)
    with pytest.raises(TypeError, match="Subspace"):
        deepfool_margins(trained_cnn, x, subspace=np.eye(64))


def _restarting_setup():
    """A float64 ReLU MLP and samples where one DeepFool iteration often fails, so the restarts decide."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5)).double().eval()
    x = np.random.default_rng(5).uniform(0, 1, size=(12,) + SHAPE)
    return model, x


@settings(max_examples=8, deadline=None)
@given(st.permutations(range(12)))
def test_margins_do_not_depend_on_input_order_with_restarts(order):
    model, x = _restarting_setup()
    order = np.asarray(order)
    opts = {"max_iter": 1, "restarts": 3, "restart_noise": 0.05, "seed": 11, "refine": False}
    a = deepfool_margins(model, x, **opts)
    assert (a.iterations > 1).any()  # restarts did run
    b = deepfool_margins(model, x[order], **opts)
    np.testing.assert_allclose(b.margins, a.margins[order], rtol=1e-9)
    np.testing.assert_array_equal(b.success, a.success[order])


@settings(max_examples=6, deadline=None)
@given(st.integers(min_value=1, max_value=13))
def test_margins_do_not_depend_on_batch_size_with_restarts(batch_size):
    model, x = _restarting_setup()
    opts = {"max_iter": 1, "restarts": 3, "restart_noise": 0.05, "seed": 11}
    a = deepfool_margins(model, x, **opts)
    b = deepfool_margins(model, x, batch_size=batch_size, **opts)
    np.testing.assert_allclose(b.margins, a.margins, rtol=1e-9)


def test_old_positional_forms_warn_and_agree():
    model, x = linear_setup(n=5)
    subs = dct_subspaces(SHAPE, block_size=4, stride=4)
    with pytest.warns(DeprecationWarning, match="subspaces=..."):
        old = subspace_margins(model, x, subs)
    np.testing.assert_array_equal(old.margins, subspace_margins(model, x, subspaces=subs).margins)
    with pytest.warns(DeprecationWarning, match="norm=..."):
        old_metric = margin_metric(model, x, "inf")
    np.testing.assert_array_equal(old_metric, margin_metric(model, x, norm="inf"))


def test_settings_object_and_overrides():
    model, x = linear_setup(n=5)
    fast = DeepFoolSettings(candidates=3, refine=False)
    a = deepfool_margins(model, x, settings=fast, norm="inf")
    b = deepfool_margins(model, x, candidates=3, refine=False, norm="inf")
    np.testing.assert_array_equal(a.margins, b.margins)
    assert a.params["candidates"] == 3 and a.params["norm"] == "inf"
    assert DeepFoolSettings.from_dict({k: a.params[k] for k in DeepFoolSettings.field_names()}) == fast.build(
        fast, {"norm": "inf"}
    )
    again = MarginResult.from_json(a.to_json())
    np.testing.assert_array_equal(again.margins, a.margins)
    assert again.params == a.params and str(a).startswith("MarginResult(n_samples=5")
    with pytest.raises(TypeError, match="settings must be a DeepFoolSettings"):
        deepfool_margins(model, x, settings={"candidates": 3})


class CubicGap(nn.Module):
    """Two classes with ``Z_1 - Z_0 = s + a s^3 - c`` for inputs ``(s, c)``: a gap curved along ``s``."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        s, c = x[:, 0], x[:, 1]
        return torch.stack([torch.zeros_like(s), s + self.a * s**3 - c], dim=1)


@pytest.mark.parametrize("steps", [10, 20, 40])
@pytest.mark.parametrize("curvature, passes", [(0.01, 4), (1.0, 7)])
def test_refinement_finds_the_root_of_a_curved_gap_in_few_passes(steps, curvature, passes):
    # on the segment from (0, c) to (1, c) the gap is t + a t^3 - c, with root t* where t* + a t*^3 = c
    t_star = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    model = CubicGap(curvature)
    view = ModelView(model, 2, (2,), None, torch.device("cpu"), torch.float64)
    x0 = torch.stack([torch.zeros_like(t_star), t_star + curvature * t_star**3], dim=1)
    pert = torch.stack([torch.ones_like(t_star), torch.zeros_like(t_star)], dim=1)
    pred = torch.zeros(19, dtype=torch.long)
    gaps = (_gap(view, x0, pred)[1], _gap(view, x0 + pert, pred)[1])
    model.calls.clear()
    hi = _refine_crossing(view, x0, pert, pred, gaps, steps)
    calls = len(model.calls)
    # the returned point (the perturbation stored in float32) is adversarial, and at most the precision past t*
    # that float32 perturbations resolve
    assert bool(_gap(view, x0 + _storable(hi[:, None] * pert), pred)[0].all())
    assert float(((hi - t_star) / t_star).min()) >= -(2.0**-24)
    assert float(((hi - t_star) / t_star).max()) <= max(2.0**-steps, 8 * 2.0**-23)
    # a bisection to 2^-20 needs ~20 passes; the secant + Newton search a few
    assert calls <= passes

"""
Certified lower bounds (``margin_bounds``): closed forms on linear models, a brute-force grid on a two-input ReLU
net, validity against every adversarial point found, the certified layer norms, and the bad inputs.
"""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import art_geometry as ag
from art_geometry import L1, L2, LINF, BoundsSettings, DeepFoolSettings, deepfool_margins, margin_bounds
from art_geometry.core.model import ModelView, adapt
from art_geometry.bounds import MarginBoundsResult
from art_geometry.bounds import lipschitz as lip
from art_geometry.bounds._network import affine_relu_layers, read_chain, unfold
from art_geometry.bounds.crown import crown_cost
from art_geometry.bounds.milp import exact_distance
from art_geometry.datasets import make_classifier
from tests.helpers import assert_round_trip, assert_unchanged, random_linear

SHAPE = (1, 4, 4)


def closed_form(w: np.ndarray, b: np.ndarray, x: np.ndarray, dual: float) -> np.ndarray:
    """Distance of each sample of an affine model to its predicted region's boundary, in the norm dual to ``dual``."""
    z = x.reshape(len(x), -1) @ w.T + b
    k = z.argmax(axis=1)
    out = np.full(len(x), np.inf)
    for j in range(w.shape[0]):
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (z[np.arange(len(x)), k] - z[:, j]) / np.linalg.norm(w[k] - w[j], ord=dual, axis=1)
        out = np.where(j != k, np.minimum(out, d), out)
    return out


@pytest.fixture(scope="module")
def linear_case():
    model = random_linear(5, SHAPE, seed=3)
    x = np.random.default_rng(3).uniform(0, 1, size=(10,) + SHAPE)
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    return model, x, w, b


def tiny_relu(seed: int = 0, classes: int = 3) -> nn.Sequential:
    """A two-input ReLU net 2-8-8-classes with unit Gaussian weights: several regions near the origin."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, classes)).double()
    with torch.no_grad():
        for layer in net[::2]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return net.eval()


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 5),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
    return net.eval()


def random_search_distances(model: nn.Module, x: np.ndarray, norm, n_dirs: int = 64, seed: int = 0) -> np.ndarray:
    """
    The shortest adversarial point found along random directions (unit in ``norm``), by doubling then bisecting
    the first class change on each ray: every value is the distance of a verified adversarial point.
    """
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    xt = torch.as_tensor(x, dtype=dtype)
    with torch.no_grad():
        pred = model(xt).argmax(1)
        u = torch.randn((n_dirs,) + tuple(xt.shape[1:]), generator=g, dtype=dtype)
        u = u / norm.measure(u).reshape((-1,) + (1,) * (u.ndim - 1))
        best = np.full(len(x), np.inf)
        for i in range(len(x)):
            lo, hi = torch.zeros(n_dirs, dtype=dtype), torch.full((n_dirs,), 0.05, dtype=dtype)
            for _ in range(12):
                adv = model(xt[i] + hi.reshape((-1,) + (1,) * (u.ndim - 1)) * u).argmax(1) != pred[i]
                hi = torch.where(adv, hi, hi * 2)
            adv = model(xt[i] + hi.reshape((-1,) + (1,) * (u.ndim - 1)) * u).argmax(1) != pred[i]
            for _ in range(30):
                mid = (lo + hi) / 2
                m_adv = model(xt[i] + mid.reshape((-1,) + (1,) * (u.ndim - 1)) * u).argmax(1) != pred[i]
                lo, hi = torch.where(m_adv, lo, mid), torch.where(m_adv, mid, hi)
            if adv.any():
                best[i] = float(hi[adv].min())
    return best


# --- closed forms on linear models -------------------------------------------------------------------------


@pytest.mark.parametrize("norm, dual", [(np.inf, 1), (1, np.inf)])
def test_milp_is_exact_on_linear_models(linear_case, norm, dual):
    model, x, w, b = linear_case
    exact = closed_form(w, b, x, dual)
    res = margin_bounds(model, x, norm=norm, method="milp")
    assert set(res.method) == {"milp"} and set(res.status) == {"exact"}
    np.testing.assert_allclose(res.lower, exact, rtol=1e-5, atol=1e-7)
    assert np.all(res.lower <= res.upper)
    if norm == np.inf:  # DeepFool is exact on affine models (for L1 the L2 point is measured in L1)
        np.testing.assert_allclose(res.upper, exact, rtol=1e-5)


@pytest.mark.parametrize("norm, dual", [(2, 2), (np.inf, 1), (1, np.inf)])
def test_lipschitz_row_difference_rule_is_exact_on_linear_models(linear_case, norm, dual):
    model, x, w, b = linear_case
    exact = closed_form(w, b, x, dual)
    res = margin_bounds(model, x, norm=norm, method="lipschitz")
    # ||w_pred - w_j||_q, not 2 max_k ||w_k||_q: exact up to the 1e-6 safety inflation
    np.testing.assert_allclose(res.lower, exact, rtol=2e-6)
    assert np.all(res.lower <= exact)


@pytest.mark.parametrize("norm, dual", [(2, 2), (np.inf, 1)])
def test_crown_is_exact_on_linear_models(linear_case, norm, dual):
    model, x, w, b = linear_case
    exact = closed_form(w, b, x, dual)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = margin_bounds(model, x, norm=norm, method="crown")
    assert np.all(res.lower <= exact * (1 + 1e-9)) and np.all(res.lower >= exact * (1 - 2e-3))


def test_preprocessing_is_folded(linear_case):
    model, x, w, b = linear_case
    from art.estimators.classification import PyTorchClassifier

    mean, std = 0.3, 0.5
    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=5,
                            preprocessing=(mean, std))
    m32, s32 = float(np.float32(mean)), float(np.float32(std))  # ART standardises with float32 constants
    exact = closed_form(w / s32, b - (w * m32 / s32).sum(1), x, 1)
    for method in ("milp", "lipschitz"):
        res = margin_bounds(clf, x, norm=np.inf, method=method)
        # HiGHS's feasibility tolerance (1e-7 on a constraint row) shows near the boundary
        np.testing.assert_allclose(res.lower, exact, rtol=1e-5, atol=1e-7)


def test_non_affine_preprocessing_is_refused(linear_case):
    model, x, _, _ = linear_case
    view = adapt(model)
    odd = ModelView(module=model, nb_classes=5, input_shape=SHAPE, clip_values=None, device=view.device,
                    dtype=view.dtype, preprocess=lambda t: t ** 3, _layers=dict(model.named_modules()))
    with pytest.raises(ValueError, match="preprocessing"):
        margin_bounds(odd, x, method="lipschitz")


# --- a two-input ReLU net against a grid --------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_case():
    model = tiny_relu(5)
    g = np.linspace(-2.5, 2.5, 1001)
    grid = torch.from_numpy(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    with torch.no_grad():
        labels = model(grid).argmax(1).numpy()
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(8, 2))
    return model, x, grid.numpy(), labels, g[1] - g[0]


@pytest.mark.parametrize("norm, order", [(np.inf, np.inf), (1, 1)])
def test_milp_matches_a_grid_search_and_lipschitz_stays_below(grid_case, norm, order):
    model, x, grid, labels, step = grid_case
    res = margin_bounds(model, x, norm=norm, method="milp")
    lips = margin_bounds(model, x, norm=norm, method="lipschitz")
    assert set(res.status) == {"exact"}
    for i in range(len(x)):
        other = labels != res.predictions[i]
        d_grid = np.linalg.norm(grid[other] - x[i], ord=order, axis=1).min()
        # every grid point of another class is at least the exact distance away; one lies within ~ a cell of it
        assert res.lower[i] <= d_grid + 1e-9
        assert d_grid - res.lower[i] <= 2 * step
        assert lips.lower[i] <= res.lower[i] * (1 + 1e-9)


def test_auto_uses_the_milp_on_small_relu_nets(grid_case):
    model, x, _, _, _ = grid_case
    res = margin_bounds(model, x, norm=np.inf)
    exact = margin_bounds(model, x, norm=np.inf, method="milp")
    assert set(res.method) == {"milp"} and set(res.status) == {"exact"}
    np.testing.assert_allclose(res.lower, exact.lower)


def test_milp_inside_the_clip_box_bounds_the_boxed_distance(linear_case):
    model, x, w, b = linear_case
    clf = make_classifier(model, SHAPE, 5, clip_values=(0.0, 1.0))
    boxed = DeepFoolSettings(norm=np.inf, box=True)
    res = margin_bounds(clf, x, norm=np.inf, method="milp", deepfool=boxed)
    assert res.params["box"] == [0.0, 1.0]
    # the distance inside the box is at least the distance in R^D, at most the boxed DeepFool point's
    assert np.all(res.lower >= closed_form(w, b, x, 1) * (1 - 1e-5)) and np.all(res.lower <= res.upper)


def test_exact_distance_time_limit_reports_a_dual_bound(grid_case):
    model, x, _, _, _ = grid_case
    layers = affine_relu_layers(model)
    pred = int(model(torch.from_numpy(x[:1])).argmax())
    exact, status = exact_distance(layers, x[0], pred, 2.0)
    assert status == "exact"
    lower, status = exact_distance(layers, x[0], pred, 2.0, time_limit=1e-9)
    assert status == "time_limit" and 0.0 <= lower <= exact


# --- validity: the lower bound never passes an adversarial point --------------------------------------------


@pytest.mark.parametrize("norm", [L1, L2, LINF])
def test_lower_bounds_never_exceed_any_adversarial_point_found(norm):
    model = small_cnn(1)
    x = np.random.default_rng(1).uniform(0, 1, size=(6, 1, 8, 8))
    res = margin_bounds(model, x, norm=norm, method="lipschitz")
    searched = random_search_distances(model, x, norm)
    assert np.all(res.lower <= res.upper) and np.all(res.lower <= searched)
    assert np.all(res.lower > 0)
    net = tiny_relu(2, classes=4)
    xs = np.random.default_rng(2).uniform(-1, 1, size=(6, 2))
    searched = random_search_distances(net, xs, norm)
    methods = ["lipschitz"] + (["milp"] if norm != L2 else []) + (["crown", "alpha-crown"] if norm != L1 else [])
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = margin_bounds(net, xs, norm=norm, method=method)
        assert np.all(out.lower <= out.upper) and np.all(out.lower <= searched * (1 + 1e-9)), method


def test_per_layer_norms_are_certified_when_runs_are_too_large_to_write_densely(monkeypatch):
    model = small_cnn(2)
    x = np.random.default_rng(2).uniform(0, 1, size=(4, 1, 8, 8))
    dense = margin_bounds(model, x, norm=2, method="lipschitz")
    monkeypatch.setattr(lip, "DENSE_LIMIT", 16)
    layered = margin_bounds(model, x, norm=2, method="lipschitz")
    assert np.all(layered.lower <= dense.lower * (1 + 1e-9)) and np.all(layered.lower > 0)


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(3, 5, 3, padding=1), (3, 7, 6)),
    (nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (4, 9, 8)),
    (nn.Conv2d(2, 3, 3, padding="same"), (2, 5, 5)),
    (nn.Conv1d(2, 3, 3, padding=1, stride=2), (2, 9)),
    (nn.AvgPool2d(3, stride=2, padding=1), (2, 7, 7)),
    (nn.AdaptiveAvgPool2d(3), (2, 7, 7)),
])
def test_layer_norms_bound_the_exact_operator_norms(module, shape):
    layer = read_chain(adapt(module.eval()), shape).layers[0]
    w, _ = unfold([layer], shape, torch.device("cpu"))
    for norm in (L1, L2, LINF):
        exact = lip._dense_norm(w, norm)
        bound = lip._layer_norm(layer, norm, torch.device("cpu"))
        assert bound >= exact * (1 - 1e-9)
        if norm != L2:  # the absolute row and column sums are exact
            assert bound == pytest.approx(exact, rel=1e-9)


def test_final_softmax_does_not_change_the_bound(linear_case):
    model, x, _, _ = linear_case
    with_softmax = nn.Sequential(model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities"):
        a = margin_bounds(with_softmax, x, norm=np.inf, method="lipschitz")
    b = margin_bounds(model, x, norm=np.inf, method="lipschitz")
    np.testing.assert_allclose(a.lower, b.lower, rtol=1e-12)


# --- the network reader ---------------------------------------------------------------------------------------


def test_affine_relu_layers_fold_batch_norm_and_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(6, 3))
    with torch.no_grad():
        model[2].running_mean.uniform_(-1, 1)
        model[2].running_var.uniform_(0.5, 2)
    model.train()
    x = torch.rand(5, *SHAPE)
    with assert_unchanged(model, x):
        layers = affine_relu_layers(model, SHAPE)
    assert [tuple(w.shape) for w, _ in layers] == [(6, 16), (3, 6)]
    h = torch.relu(x.flatten(1).double() @ layers[0][0].T + layers[0][1]) @ layers[1][0].T + layers[1][1]
    with torch.no_grad():
        expected = model.eval()(x).double()
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-6)


class _Constants(nn.Module):
    """A forward of functions and arithmetic with constants: ``2 (relu(W1 x) - shift)``, ``tanh``, ``leaky_relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.register_buffer("shift", torch.linspace(-1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (F.relu(self.fc1(torch.flatten(x, 1))) - self.shift) * 2.0
        h = F.leaky_relu(torch.tanh(self.fc2(1.0 - h) / 3.0), 0.2)
        return self.fc3(h)


def test_arithmetic_with_constants_is_read_as_affine_layers():
    torch.manual_seed(0)
    model = _Constants().double()
    x = torch.rand(6, *SHAPE, dtype=torch.float64)
    chain = read_chain(adapt(model), SHAPE)
    kinds = [(layer.kind, type(layer.module).__name__) for layer in chain.layers]
    assert kinds == [("affine", "_Reshape"), ("affine", "Linear"), ("relu", "ReLU"), ("affine", "Arithmetic"),
                     ("affine", "Arithmetic"), ("affine", "Arithmetic"), ("affine", "Linear"),
                     ("affine", "Arithmetic"), ("activation", "Tanh"), ("activation", "LeakyReLU"),
                     ("affine", "Linear")]
    with torch.no_grad():
        torch.testing.assert_close(chain(x), model(x), rtol=1e-12, atol=1e-12)
    # each constant's operator norm bounds its dense one exactly (elementwise maps)
    for layer in chain.layers:
        if layer.kind == "affine" and type(layer.module).__name__ == "Arithmetic":
            w, _ = unfold([layer], layer.in_shape, torch.device("cpu"))
            for norm in (L1, L2, LINF):
                assert lip._layer_norm(layer, norm, torch.device("cpu")) == pytest.approx(lip._dense_norm(w, norm))
    res = margin_bounds(model, x.numpy(), norm=2, method="lipschitz")
    df = deepfool_margins(model, x.numpy(), norm=2)
    assert np.all(res.lower > 0) and np.all(res.lower <= df.margins)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        return self.fc2(torch.relu(self.fc1(h)) + h)


def test_unsupported_layers_are_listed_and_auto_falls_back():
    x = np.random.default_rng(0).uniform(0, 1, size=(3,) + SHAPE)
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="GELU"):
        margin_bounds(gelu, x, method="lipschitz")
    with pytest.raises(ValueError, match="not a chain"):
        margin_bounds(_Residual(), x, method="lipschitz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = margin_bounds(_Residual(), x)
    assert any("no certified bound" in str(w.message) for w in caught)
    assert set(res.method) == {"none"} and set(res.status) == {"failed"} and np.all(res.lower == 0)


def test_milp_refuses_other_activations_and_l2():
    x = np.random.default_rng(0).uniform(0, 1, size=(3,) + SHAPE)
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="non-ReLU activation Tanh.*method='milp' needs ReLU networks"):
        margin_bounds(tanh, x, norm=np.inf, method="milp")
    pool = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="MaxPool2d with ceil_mode=True at '0'"):
        margin_bounds(pool, x, norm=np.inf, method="milp")
    with pytest.raises(ValueError, match="method='milp' supports norm=inf and norm=1; for L2 use 'crown' or "
                                         "'lipschitz'"):
        margin_bounds(tanh, x, norm=2, method="milp")
    # "auto" takes what fits: the Lipschitz bound (and CROWN where it applies), no MILP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = margin_bounds(tanh, x, norm=np.inf)
    assert "milp" not in res.method


def test_auto_falls_back_to_lipschitz_where_crown_cannot_read_the_model():
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Flatten(), nn.Linear(4, 3))
    x = np.random.default_rng(0).random((4, 1, 4, 4), dtype=np.float32)
    with pytest.warns(UserWarning, match=r"CROWN is not used \(CROWN bounds: .*ceil_mode.*\); the Lipschitz bound"):
        res = margin_bounds(model, x, norm=2)
    assert set(res.method) == {"lipschitz"}


# --- options, results, state -----------------------------------------------------------------------------------


@pytest.mark.parametrize("options, word", [
    ({"time_limit": 0}, "time_limit"), ({"time_limit": -1.0}, "time_limit"), ({"budget": 0}, "budget"),
    ({"method": "exact"}, "method"), ({"crown_steps": 0}, "crown_steps"), ({"norm": 3}, "norm"),
])
def test_bad_options(linear_case, options, word):
    model, x, _, _ = linear_case
    with assert_unchanged(model, x):
        with pytest.raises(ValueError, match=word):
            margin_bounds(model, x, **options)


def test_deepfool_settings_must_fit_the_norm(linear_case):
    model, x, _, _ = linear_case
    with pytest.raises(ValueError, match="deepfool has norm=inf but norm=2"):
        margin_bounds(model, x, norm=2, deepfool=DeepFoolSettings(norm=np.inf))
    with pytest.raises(ValueError, match="norm=1 needs norm=2"):
        margin_bounds(model, x, norm=1, deepfool=DeepFoolSettings(norm=np.inf))
    with pytest.raises(TypeError, match="deepfool must be a DeepFoolSettings"):
        margin_bounds(model, x, deepfool={"norm": 2})
    res = margin_bounds(model, x, norm=np.inf, method="lipschitz", deepfool=DeepFoolSettings(norm="linf", seed=4))
    assert res.params["deepfool"]["seed"] == 4 and res.params["norm"] == "inf"


def test_settings_object_and_method_argument(linear_case):
    model, x, _, _ = linear_case
    fixed = BoundsSettings(method="milp", time_limit=5.0)
    res = margin_bounds(model, x, norm=np.inf, settings=fixed)
    assert set(res.method) == {"milp"} and res.params["time_limit"] == 5.0
    res = margin_bounds(model, x, norm=np.inf, settings=fixed, method="lipschitz")
    assert set(res.method) == {"lipschitz"}
    assert BoundsSettings.from_dict(fixed.to_dict()) == fixed


def test_result_round_trip_summary_and_nothing_mutated(grid_case):
    _, x, _, _, _ = grid_case
    y = np.zeros(len(x), dtype=np.int64)
    clf = make_classifier(nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.2),
                                        nn.Linear(6, 3)), (2,), 3, clip_values=None)
    clf.model.train()
    with assert_unchanged(clf, x, y):
        res = margin_bounds(clf, x, y, norm=np.inf)
    assert clf.model.training
    assert isinstance(res, MarginBoundsResult) and np.all(res.lower <= res.upper)
    assert_round_trip(res)
    summary = res.summary()
    assert summary["n_samples"] == len(x) and sum(summary["methods"].values()) == len(x)
    assert {"ratio_median", "ratio_p10", "status", "seconds", "params"} <= set(summary)
    assert "deepfool" in summary["seconds"] and math.isfinite(summary["ratio_median"])
    assert "MarginBoundsResult(n_samples=8" in str(res)
    np.testing.assert_array_equal(res.correct, res.predictions == y)


def test_exported():
    assert {"margin_bounds", "MarginBoundsResult", "BoundsSettings"} <= set(ag.__all__)


def test_auto_picks_the_tightest_crown_within_budget_and_says_so():
    model = small_cnn()
    x = np.random.default_rng(3).random((3, 1, 8, 8), dtype=np.float32)
    free = margin_bounds(model, x, norm="inf", method="lipschitz")
    cost = crown_cost(adapt(model), torch.as_tensor(x), torch.as_tensor(free.predictions),
                      torch.as_tensor(free.upper), LINF)
    steps = BoundsSettings().crown_steps
    assert 0 < cost.seconds(steps) < cost.seconds(steps, BoundsSettings().alpha_steps)
    with pytest.warns(UserWarning, match="CROWN is not used .* over budget"):
        res = margin_bounds(model, x, norm="inf", budget=cost.seconds(steps) / 100)
    assert set(res.method) == {"lipschitz"}
    assert set(res.params["estimated_seconds"]) == {"crown", "alpha-crown"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        roomy = margin_bounds(model, x, norm="inf", budget=cost.seconds(steps, 20) * 100)
    assert "alpha-crown" in roomy.method and (roomy.lower >= res.lower - 1e-12).all()

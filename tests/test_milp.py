"""
The exact MILP (``art_geometry.bounds.milp``) with max-pools: closed forms on constructed networks, the layer
sequence read from a model, random conv-ReLU-max-pool nets checked against DeepFool, against a search inside the
certified ball and against an independent encoding of the max-pool by ReLUs, tighter given bounds, and the layers
it refuses.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry import deepfool_margins, margin_bounds
from art_geometry.bounds._network import affine_relu_layers, milp_layers
from art_geometry.bounds.milp import (
    RELU, MaxPool, as_steps, exact_distance, forward, interval_bounds, unstable_relus,
)
from art_geometry.core.norms import L1, LINF

CNN_SHAPE = (1, 6, 6)


def _fill(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.6 if p.ndim > 1 else 0.2))
    return net.eval()


def small_cnn(seed: int, pool: "nn.Module | None" = None, relu_first: bool = True) -> nn.Sequential:
    """conv(1 -> 2, 3x3) - ReLU - max-pool (default 2x2) - linear 18 -> 3, on 1x6x6 inputs."""
    pool = nn.MaxPool2d(2) if pool is None else pool
    conv = nn.Conv2d(1, 2, 3, padding=1)
    body = [conv, nn.ReLU(), pool] if relu_first else [conv, pool, nn.ReLU()]
    with torch.no_grad():
        size = pool(torch.zeros(1, 2, 6, 6)).numel()
    return _fill(nn.Sequential(*body, nn.Flatten(), nn.Linear(size, 3)).double(), seed)


def cnn_case(seed: int, n: int = 3):
    model = small_cnn(seed)
    x = np.random.default_rng(seed).uniform(0, 1, size=(n,) + CNN_SHAPE)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return model, x, pred


def pool_as_relus(layers: list, n_in: int) -> list:
    """
    The steps with every max-pool rewritten as ReLUs, ``max(a, b) = b + relu(a - b)`` with ``b = relu(b) - relu(-b)``,
    pairing each window's values in rounds (a tournament): a network of affine maps and ReLUs only, whose MILP
    encodes the maximum with ReLU binaries instead of the max-pool's selection binaries.
    """
    out, size = [], n_in
    for step in as_steps(layers):
        if isinstance(step, tuple):
            out.append(step)
            size = step[0].shape[0]
            continue
        if isinstance(step, str):
            out.append(RELU)
            continue
        windows = step.windows
        assert (windows >= 0).all(), "the rewrite is written for pools without padding"
        values = np.zeros((windows.size, size))  # each value: a linear map of the current vector
        values[np.arange(windows.size), windows.ravel()] = 1.0
        groups = [list(range(o * windows.shape[1], (o + 1) * windows.shape[1])) for o in range(len(windows))]
        while max(len(g) for g in groups) > 1:
            features, combine, new_groups = [], [], []
            for group in groups:
                new = []
                for a, b in zip(group[::2], group[1::2]):
                    k = len(features)
                    features += [values[a] - values[b], values[b], -values[b]]
                    combine.append({k: 1.0, k + 1: 1.0, k + 2: -1.0})
                    new.append(len(combine) - 1)
                if len(group) % 2:
                    k = len(features)
                    features += [values[group[-1]], -values[group[-1]]]
                    combine.append({k: 1.0, k + 1: -1.0})
                    new.append(len(combine) - 1)
                new_groups.append(new)
            f = np.array(features)
            out += [(f, np.zeros(len(f))), RELU]
            values = np.zeros((len(combine), len(f)))
            for row, terms in enumerate(combine):
                for col, v in terms.items():
                    values[row, col] = v
            groups = new_groups
        pooled = values[[g[0] for g in groups]]
        out.append((pooled, np.zeros(len(pooled))))
        size = len(pooled)
    return as_steps(out)


def _margin(model: nn.Module, x: np.ndarray, pred: int) -> float:
    with torch.no_grad():
        z = model(torch.from_numpy(x[None]).double())[0]
    others = torch.cat([z[:pred], z[pred + 1:]])
    return float(z[pred] - others.max())


# --- the layer sequence -----------------------------------------------------------------------------------------


def test_as_steps_inserts_relus_composes_maps_and_checks():
    w1, b1, w2, b2 = np.ones((3, 2)), np.zeros(3), np.ones((1, 3)), np.ones(1)
    steps = as_steps([(w1, b1), (w2, b2)])
    assert steps[1] is RELU and len(steps) == 3  # plain pairs: a ReLU between consecutive maps
    pool = MaxPool(np.array([[0, 1], [2, -1]]))
    steps = as_steps([(w1, b1), (2 * np.eye(3), np.ones(3)), pool, (np.ones((1, 2)), np.zeros(1))])
    assert len(steps) == 3 and steps[1] is pool
    np.testing.assert_array_equal(steps[0][0], 2 * w1)  # explicit steps: consecutive maps composed
    np.testing.assert_array_equal(steps[0][1], np.ones(3))
    with pytest.raises(ValueError, match="end with the affine map"):
        as_steps([(w1, b1), RELU])
    with pytest.raises(ValueError, match="unknown layer step"):
        as_steps([(w1, b1), "tanh", (w2, b2)])
    with pytest.raises(ValueError, match="input in every window"):
        MaxPool(np.array([[-1, -1]]))


@pytest.mark.parametrize("pool, relu_first", [
    (nn.MaxPool2d(2), True),
    (nn.MaxPool2d(3, stride=2, padding=1), True),
    (nn.MaxPool2d((2, 3), stride=1, dilation=(2, 1)), False),
])
def test_milp_layers_reproduce_the_model(pool, relu_first):
    model = small_cnn(0, pool, relu_first)
    steps = milp_layers(model, CNN_SHAPE)
    assert sum(isinstance(s, MaxPool) for s in steps) == 1 and sum(s is RELU for s in steps) == 1
    x = np.random.default_rng(0).uniform(-1, 1, size=(4,) + CNN_SHAPE)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.stack([forward(steps, xi.ravel()) for xi in x])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_interval_bounds_and_binaries_of_a_max_pool():
    x = np.array([0.0, 0.5, 3.0])
    # windows {0, 1}: both may be the max; {0, 2} and {1, 2}: x_2 >= 2 > u of the other; {0, pad}: one input
    steps = [MaxPool(np.array([[0, 1], [0, 2], [1, 2], [0, -1]])), RELU, (np.ones((1, 4)), np.zeros(1))]
    (l0, u0), (l1, u1) = interval_bounds(steps, x, 1.0, LINF)
    np.testing.assert_allclose(l0, [-1, -0.5, 2])
    np.testing.assert_allclose(u0, [1, 1.5, 4])
    np.testing.assert_allclose(l1, [-0.5, 2, 2, -1])
    np.testing.assert_allclose(u1, [1.5, 4, 4, 1])
    # two selection binaries for {0, 1}, two unstable ReLUs after it (windows {0, 1} and {0, pad})
    assert unstable_relus(steps, x, 1.0, LINF) == 4
    assert unstable_relus(steps, x, 1.0, LINF, pre_bounds=[None, (np.zeros(4), u1)]) == 2
    # inputs tied at the largest lower bound: one of them is the maximum, no binary
    assert unstable_relus([MaxPool(np.array([[0, 1]])), (np.ones((1, 1)), np.zeros(1))], np.zeros(2), 0.0, LINF) == 0


# --- closed forms -----------------------------------------------------------------------------------------------


def _halfspaces(a: np.ndarray, c: np.ndarray, x: np.ndarray, dual: float) -> float:
    """The distance from ``x`` to ``{a_k x >= c_k for some k}`` (``a_k x < c_k`` at ``x``)."""
    return float(np.min((c - a @ x) / np.linalg.norm(a, ord=dual, axis=1)))


@pytest.mark.parametrize("norm, dual", [(LINF, 1), (L1, np.inf)])
def test_max_of_two_affine_maps(norm, dual):
    # logits (max(a_1 x + b_1, a_2 x + b_2), 0): the other class is the union of two half-spaces
    d = 5
    model = nn.Sequential(nn.Linear(d, 2), nn.Unflatten(1, (1, 2)), nn.MaxPool1d(2), nn.Flatten(),
                          nn.Linear(1, 2)).double()
    _fill(model, 1)
    with torch.no_grad():
        model[4].weight.copy_(torch.tensor([[1.0], [0.0]]))
        model[4].bias.zero_()
    a, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    steps = milp_layers(model, (d,))
    assert [type(s).__name__ for s in steps] == ["tuple", "MaxPool", "tuple"]
    rng, checked = np.random.default_rng(1), 0
    for x in rng.normal(size=(40, d)):
        if (a @ x + b).max() >= -0.05:
            continue
        exact = _halfspaces(a, -b, x, dual)
        value, status, point = exact_distance(steps, x, 1, 2 * exact + 0.1, norm=norm, return_point=True)
        assert status == "exact" and value == pytest.approx(exact, rel=1e-6, abs=1e-8)
        assert (a @ point + b).max() >= -1e-6
        checked += 1
    assert checked >= 5
    # the same maximum of the input's coordinates, the pool reading the input itself
    x = np.array([-0.3, -0.7, 0.2])
    pool_first = [MaxPool(np.array([[0, 1]])), (np.array([[1.0], [0.0]]), np.zeros(2))]
    assert exact_distance(pool_first, x, 1, 1.0, norm=norm)[0] == pytest.approx(0.3, abs=1e-5)  # both norms


@pytest.mark.parametrize("norm, dual", [(LINF, 1), (L1, np.inf)])
def test_overlapping_padded_max_pool_over_relus(norm, dual):
    # logits (pool outputs of relu(A x + b) over windows of 3 with padding, t): the prediction is the constant t
    # until some unit reaches t, so the distance is that to the union of {a_k x + b_k >= t}
    d, t = 4, 1.0
    model = nn.Sequential(nn.Linear(d, 4), nn.Unflatten(1, (1, 4)), nn.ReLU(), nn.MaxPool1d(3, stride=1, padding=1),
                          nn.Flatten(), nn.Linear(4, 5)).double()
    _fill(model, 2)
    with torch.no_grad():
        model[5].weight.copy_(torch.cat([torch.eye(4), torch.zeros(1, 4)]).double())
        model[5].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, t]))
    a, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    steps = milp_layers(model, (d,))
    assert (steps[2].windows == -1).any()  # the padding
    checked = 0
    for x in np.random.default_rng(2).normal(size=(30, d)):
        if (a @ x + b).max() >= t - 0.05:
            continue
        exact = _halfspaces(a, t - b, x, dual)
        value, status = exact_distance(steps, x, 4, 2 * exact + 0.1, norm=norm)
        assert status == "exact" and value == pytest.approx(exact, rel=1e-6, abs=1e-8)
        checked += 1
    assert checked >= 5


# --- random conv-ReLU-max-pool nets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_distances():
    """Per seed: the model, samples, predictions, DeepFool margins and the MILP's (distance, status, point)."""
    cases = []
    for seed in (1, 3):
        model, x, pred = cnn_case(seed)
        df = deepfool_margins(model, x, norm=np.inf, return_perturbations=True)
        steps = milp_layers(model, CNN_SHAPE)
        found = [exact_distance(steps, xi.ravel(), int(p), 1.5 * m, return_point=True, time_limit=20)
                 for xi, p, m in zip(x, pred, df.margins)]
        cases.append((model, x, pred, df, steps, found))
    return cases


def test_cnn_distance_is_at_most_deepfool_and_attained(cnn_distances):
    undecided = 0
    for model, x, pred, df, steps, found in cnn_distances:
        assert df.success.all()
        for xi, p, m, (value, status, point) in zip(x, pred, df.margins, found):
            _, (l, u) = interval_bounds(steps, xi.ravel(), 1.5 * m, LINF)
            lw, uw = l[steps[2].windows], u[steps[2].windows]
            undecided += int(((uw > lw.max(1, keepdims=True)).sum(1) >= 1).sum())  # windows that need binaries
            assert status == "exact" and 0 < value <= m * (1 + 1e-6)
            # the optimum is a point of another class at that distance, to the solver's tolerances (1e-7 on a
            # row, scaled: up to ~6e-7 seen on the norm rows)
            assert np.abs(point - xi.ravel()).max() <= value + 2e-6
            assert _margin(model, point.reshape(CNN_SHAPE), int(p)) <= 1e-6
    assert undecided >= 20  # the max-pools' selection binaries are exercised


def test_nothing_of_another_class_inside_the_cnn_distance(cnn_distances):
    g = torch.Generator().manual_seed(0)
    for model, x, pred, _, _, found in cnn_distances:
        for xi, p, (value, _, _) in zip(x, pred, found):
            r = 0.999 * value
            x0 = torch.from_numpy(xi[None]).double()
            noise = torch.rand((4000,) + CNN_SHAPE, generator=g, dtype=torch.float64) * 2 - 1
            corners = torch.sign(torch.randn((4000,) + CNN_SHAPE, generator=g, dtype=torch.float64))
            with torch.no_grad():
                assert (model(x0 + r * torch.cat([noise, corners])).argmax(1) == int(p)).all()
            # projected gradient ascent on the best other logit minus the predicted one, from random starts
            delta = (r * (torch.rand((32,) + CNN_SHAPE, generator=g, dtype=torch.float64) * 2 - 1)).requires_grad_()
            for _ in range(60):
                z = model(x0 + delta)
                gap = torch.cat([z[:, :p], z[:, p + 1:]], 1).max(1).values - z[:, p]
                (grad,) = torch.autograd.grad(gap.sum(), delta)
                with torch.no_grad():
                    delta += 0.1 * r * grad.sign()
                    delta.clamp_(-r, r)
            with torch.no_grad():
                assert (model(x0 + delta).argmax(1) == int(p)).all()


@pytest.mark.parametrize("norm, case, samples", [(LINF, 1, [0, 1, 2]), (L1, 0, [1])])
def test_cnn_max_pool_matches_its_relu_rewrite(cnn_distances, norm, case, samples):
    model, x, pred, df, steps, found = cnn_distances[case]
    relus = pool_as_relus(steps, int(np.prod(CNN_SHAPE)))
    assert not any(isinstance(s, MaxPool) for s in relus)
    if norm == L1:  # the L1 length of the verified L2 DeepFool point bounds the L1 distance
        l2 = deepfool_margins(model, x, norm=2, return_perturbations=True)
        radii = 1.01 * np.abs(l2.perturbations.reshape(len(x), -1)).sum(1)
    else:
        radii = 1.5 * df.margins
    for i in samples:
        xi = x[i].ravel()
        np.testing.assert_allclose(forward(relus, xi), forward(steps, xi), rtol=1e-12, atol=1e-12)
        pooled, status = exact_distance(steps, xi, int(pred[i]), radii[i], norm=norm, time_limit=20)
        rewritten, status_relu = exact_distance(relus, xi, int(pred[i]), radii[i], norm=norm, time_limit=20)
        assert status == status_relu == "exact" and pooled < radii[i]
        # HiGHS's feasibility tolerance on the norm rows (1e-7 scaled) separates the encodings by up to ~5e-7
        assert pooled == pytest.approx(rewritten, rel=1e-6, abs=1e-6)
        if norm == LINF:
            assert pooled == pytest.approx(found[i][0], rel=1e-9)


def test_tighter_given_bounds_keep_the_distance(cnn_distances):
    _, x, pred, df, steps, found = cnn_distances[0]
    xi, p, radius, exact = x[0].ravel(), int(pred[0]), 1.5 * df.margins[0], found[0][0]
    # bounds over the ball of the exact radius hold where the optimum is, and are tighter than over T
    tight = interval_bounds(steps, xi, exact * (1 + 1e-6), LINF)
    assert unstable_relus(steps, xi, radius, LINF, pre_bounds=tight) <= unstable_relus(steps, xi, radius, LINF)
    value, status = exact_distance(steps, xi, p, radius, pre_bounds=tight)
    assert status == "exact" and value == pytest.approx(exact, rel=1e-6)
    # bounds that miss the interval bounds altogether are wrong there: the interval bounds are kept
    wrong = [(l + 1e3, u + 1e3) for l, u in interval_bounds(steps, xi, radius, LINF)]
    assert interval_bounds(steps, xi, radius, LINF, pre_bounds=wrong)[0][0] == pytest.approx(
        interval_bounds(steps, xi, radius, LINF)[0][0])
    assert exact_distance(steps, xi, p, radius, pre_bounds=[None, None])[0] == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="one entry per nonlinear step"):
        exact_distance(steps, xi, p, radius, pre_bounds=[None])


def test_time_limit_reports_a_dual_bound_with_max_pools(cnn_distances):
    _, x, pred, df, steps, found = cnn_distances[1]
    lower, status = exact_distance(steps, x[0].ravel(), int(pred[0]), 1.5 * df.margins[0], time_limit=1e-9)
    assert status == "time_limit" and 0.0 <= lower <= found[0][0]


def test_margin_bounds_milp_on_a_cnn_with_max_pool():
    model, x, _ = cnn_case(3)
    res = margin_bounds(model, x, norm=np.inf, method="milp", time_limit=20)
    assert set(res.method) == {"milp"} and set(res.status) == {"exact"}
    assert np.all(res.lower > 0) and np.all(res.lower <= res.upper)
    steps = milp_layers(model, CNN_SHAPE)
    for xi, p, lower, upper in zip(x, res.predictions, res.lower, res.upper):
        direct = exact_distance(steps, xi.ravel(), int(p), upper * (1 + 1e-6))[0]
        assert lower == pytest.approx(min(direct, upper), rel=1e-9)


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.Sigmoid(), nn.LeakyReLU(0.1)])
def test_milp_refuses_other_activations_naming_the_layer(activation):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), activation, nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(18, 3)).eval()
    x = np.random.default_rng(0).uniform(0, 1, size=(2,) + CNN_SHAPE)
    name = type(activation).__name__
    with pytest.raises(ValueError, match=f"non-ReLU activation {name} at '1': method='milp' needs ReLU networks; "
                                         "method='crown' and method='lipschitz' support it"):
        margin_bounds(model, x, norm=np.inf, method="milp")


def test_milp_refuses_ceil_mode_and_affine_relu_layers_refuses_max_pools():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, ceil_mode=True), nn.Flatten(),
                          nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).uniform(0, 1, size=(2,) + CNN_SHAPE)
    with pytest.raises(ValueError, match="MaxPool2d with ceil_mode=True at '2': method='milp' needs max-pools "
                                         "without ceil_mode; method='lipschitz' supports it"):
        margin_bounds(model, x, norm=np.inf, method="milp")
    with pytest.raises(ValueError, match="ceil_mode=True at '2': milp_layers"):
        milp_layers(model, CNN_SHAPE)
    with pytest.raises(ValueError, match="MaxPool2d at '2': affine_relu_layers needs networks of affine layers and "
                                         "ReLUs"):
        affine_relu_layers(small_cnn(0), CNN_SHAPE)
    assert math.isfinite(margin_bounds(model, x, norm=np.inf, method="lipschitz").lower.sum())

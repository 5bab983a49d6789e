"""
CROWN / alpha-CROWN radii (art_geometry.bounds.crown on art_geometry.bounds.propagation): exact on affine models,
below exact distances (closed forms, grids, the MILP) elsewhere, equal to bound-propagation's CROWN on MLPs.
"""

import math
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from art_geometry import deepfool_margins
from art_geometry.bounds._network import milp_layers, read_chain
from art_geometry.bounds.crown import crown_cost, crown_radii, crown_supported
from art_geometry.bounds.milp import exact_distance
from art_geometry.bounds.propagation import Propagation
from art_geometry.core.model import adapt, probe
from art_geometry.core.norms import L1, L2, LINF
from tests.helpers import assert_unchanged


def _view(model, x):
    return probe(adapt(model), x)[0]


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _differences_at(view, x, pred, radius=0.0):
    """The propagation's lower bounds of ``Z_pred - Z_j`` over balls of ``radius`` (``(B, C)``, inf at pred)."""
    prop = Propagation(read_chain(view, tuple(x.shape[1:])), LINF)
    flat = x.flatten(1).double()
    r = torch.full((len(x),), float(radius), dtype=torch.float64)
    with torch.no_grad():
        value, size = prop.margins(flat, pred, prop.relax(flat, r))
    return (value - r * size).T.scatter(1, pred[:, None], math.inf)


def _same_function(view, x):
    """At radius 0 every relaxation is exact: the bounds are the model's logit differences."""
    with view.evaluating(), torch.no_grad():
        logits = view(x).double()
    pred = logits.argmax(1)
    want = (logits.gather(1, pred[:, None]) - logits).scatter(1, pred[:, None], math.inf)
    np.testing.assert_allclose(_differences_at(view, x, pred).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def _affine_distance(weight, bias, x, q):
    """Exact distance of each sample to the boundary of its region under ``z = W x + b``, dual norm ``q``."""
    z = x.flatten(1) @ weight.T + bias
    pred = z.argmax(1)
    gap = z.gather(1, pred[:, None]) - z
    span = (weight[pred][:, None, :] - weight[None]).norm(p=q, dim=2)
    dist = torch.where(span > 0, gap / span, torch.full_like(gap, np.inf))
    dist = dist.scatter(1, pred[:, None], np.inf)
    return dist.min(1).values.numpy(), pred


@pytest.mark.parametrize("alpha_steps", [0, 3])
@pytest.mark.parametrize("norm, q", [(LINF, 1), (L2, 2)])
def test_affine_model_radius_is_the_exact_distance(norm, q, alpha_steps):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.randn(16, 3, 4, dtype=torch.float64)
    exact, pred = _affine_distance(model[1].weight.detach(), model[1].bias.detach(), x, q)
    upper = torch.as_tensor(exact * 1.5)
    upper[::3] = np.inf  # DeepFool failed there: the bracket grows by doubling first
    view = _view(model, x)
    radii, status = crown_radii(view, x, pred, norm, upper, steps=60, rtol=1e-6, alpha_steps=alpha_steps)
    assert radii.dtype == np.float64 and (status == "bound").all()
    assert np.all(radii <= exact * (1 + 1e-9))
    np.testing.assert_allclose(radii, exact, rtol=1e-5)


def test_one_relu_network_closed_form():
    """``Z = (relu(x_0), 1/2)``: class 0 beyond ``x_0 = 1/2``; from ``x_0 = 2`` the distance is 3/2 in every norm."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, 0.5]))
    x = torch.tensor([[2.0, 0.3], [3.0, -1.0]], dtype=torch.float64)
    pred = _predict(model, x)
    assert pred.tolist() == [0, 0]
    for norm in (LINF, L2):
        radii, _ = crown_radii(_view(model, x), x, pred, norm, torch.full((2,), 10.0), steps=80, rtol=1e-9)
        np.testing.assert_allclose(radii, [1.5, 2.5], rtol=1e-6)


def test_art_standardisation_is_folded_into_the_bound():
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 3))
    mean, std = 0.5, 0.25
    clf = PyTorchClassifier(model, nn.CrossEntropyLoss(), (5,), 3, preprocessing=(mean, std), clip_values=(0, 1))
    x = torch.rand(10, 5)
    view = _view(clf, x)
    assert view.affine_preprocess and crown_supported(view, x.shape[1:]) == (True, "")
    w = model[0].weight.detach().double() / std
    b = model[0].bias.detach().double() - w.sum(1) * mean
    exact, pred = _affine_distance(w, b, x.double(), 1)
    radii, status = crown_radii(view, view.to_tensor(x), pred, LINF, torch.as_tensor(exact * 2), steps=60, rtol=1e-6)
    assert (status == "bound").all()
    np.testing.assert_allclose(radii, exact, rtol=1e-4)


def _grid_distances(model, x, pred, lim=3.0, n=601):
    """Distances (L-inf, L2) of each sample to the nearest grid point of another region: >= the exact ones."""
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    labels = _predict(model, grid.to(next(model.parameters()).dtype))
    out = np.full((2, len(x)), np.inf)
    for i in range(len(x)):
        other = grid[labels != pred[i]] - x[i].double()
        if len(other):
            out[0, i] = other.abs().amax(1).min().item()
            out[1, i] = other.norm(dim=1).min().item()
    return out


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh, nn.Sigmoid])
def test_mlp_radius_is_below_the_exact_distance_and_alpha_is_tighter(activation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 3))
    model = model.double()
    x = torch.rand(25, 2, dtype=torch.float64) * 2 - 1
    pred = _predict(model, x)
    grid = _grid_distances(model, x, pred)
    view = _view(model, x)
    _same_function(view, x)
    for norm, exact in ((LINF, grid[0]), (L2, grid[1])):
        radii, status = crown_radii(view, x, pred, norm, torch.as_tensor(exact), rtol=1e-4, steps=30)
        assert (status == "bound").all() and np.all(radii > 0)
        assert np.all(radii <= exact)
        if activation is nn.ReLU:
            tight, _ = crown_radii(view, x, pred, norm, torch.as_tensor(exact), rtol=1e-4, steps=30, alpha_steps=20)
            assert np.all(tight <= exact) and np.all(tight >= radii * (1 - 2e-4))
            assert np.median(tight / radii) > 1.0


def _bp_crown_lower(model, x, pred, eps):
    """bound-propagation's CROWN (adaptive ReLU lower lines) of the logit differences over the L-inf boxes."""
    bp = pytest.importorskip("bound_propagation")
    bounded = bp.BoundModelFactory(adaptive_relu=True).build(model)
    eye = torch.eye(model[-1].out_features, dtype=torch.float64)
    spec = eye[pred].unsqueeze(1) - eye.unsqueeze(0)
    region = bp.HyperRectangle(x - eps[:, None], x + eps[:, None])
    with torch.no_grad():
        bounded.propagate_size(x.shape[1])
        bounded.crown_relax(region)
        try:
            out = bounded.crown_backward(bp.LinearBounds(region, (spec, torch.zeros_like(spec[..., 0])), None), False)
        finally:
            bounded.clear_relaxation()
    return out.concretize().lower.scatter(1, pred[:, None], math.inf)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script:DeprecationWarning")
def test_crown_equals_bound_propagation_on_mlps():
    torch.manual_seed(0)
    for widths in ((6, 12, 10, 4), (10, 32, 32, 5)):
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1]).double()
        x = torch.randn(20, widths[0], dtype=torch.float64)
        pred = _predict(model, x)
        for eps in (0.05, 0.3):
            r = torch.full((20,), eps, dtype=torch.float64)
            theirs = _bp_crown_lower(model, x, pred, r)
            ours = _differences_at(_view(model, x), x, pred, eps)
            finite = torch.isfinite(theirs)
            # intersecting CROWN's intermediate bounds with interval bounds only ever tightens them
            assert torch.all(ours[finite] >= theirs[finite] - 1e-9)
            np.testing.assert_allclose(ours[finite].numpy(), theirs[finite].numpy(), rtol=1e-5, atol=1e-5)


def test_conv_net_is_bounded_below_deepfool_and_left_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10)
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train()  # the eval-mode function is bounded, the modes restored
    x = torch.rand(12, 1, 8, 8)
    view = _view(model, x)
    assert crown_supported(view, x.shape[1:]) == (True, "")
    _same_function(view, x)
    df = deepfool_margins(model, x.numpy(), norm="inf")
    pred, upper = torch.as_tensor(df.predictions), torch.as_tensor(df.margins)
    with assert_unchanged(model, x, pred, upper):
        radii, status = crown_radii(view, x, pred, LINF, upper, batch_size=5)
        tight, _ = crown_radii(view, x, pred, LINF, upper, batch_size=5, alpha_steps=5)
    assert (status == "bound").all() and np.all(radii > 0)
    assert np.all(radii <= df.margins) and np.all(tight <= df.margins)
    assert model.training and model[1].training


def _pool_cnn(seed, pool=None):
    torch.manual_seed(seed)
    pool = pool or nn.MaxPool2d(2)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(3)).double()


def test_max_pool_layouts_are_exact_at_radius_zero():
    x = torch.rand(6, 1, 6, 6, dtype=torch.float64)
    for pool in (nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d((2, 3), dilation=(1, 2)),
                 nn.MaxPool2d(1, stride=2)):
        model = _pool_cnn(0, pool)
        model(x)
        _same_function(_view(model, x), x)
    conv1d = nn.Sequential(nn.Flatten(1, 2), nn.Conv1d(6, 2, 3), nn.MaxPool1d(3, padding=1), nn.Flatten(),
                           nn.LazyLinear(2)).double()
    conv1d(x)
    _same_function(_view(conv1d, x), x)
    before_relu = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).double()
    before_relu(x)
    _same_function(_view(before_relu, x), x)


@pytest.mark.parametrize("seed", [0, 1])
def test_max_pool_cnn_radius_is_below_the_milp_distance(seed):
    model = _pool_cnn(seed)
    x = torch.rand(8, 1, 4, 4, dtype=torch.float64) * 4 - 2
    model(x)
    view = _view(model, x)
    df = deepfool_margins(model, x.numpy(), norm="inf")
    pred, upper = torch.as_tensor(df.predictions), torch.as_tensor(df.margins)
    radii, status = crown_radii(view, x, pred, LINF, upper)
    tight, _ = crown_radii(view, x, pred, LINF, upper, alpha_steps=10)
    steps = milp_layers(model, (1, 4, 4))
    assert np.isfinite(df.margins).sum() >= 4
    for i in np.nonzero(np.isfinite(df.margins))[0]:
        exact, how = exact_distance(steps, x[i].flatten().numpy(), int(pred[i]), float(upper[i]) * (1 + 1e-6),
                                    norm=LINF)
        assert how == "exact"
        assert 0 < radii[i] <= exact * (1 + 1e-9) and tight[i] <= exact * (1 + 1e-9)
    assert np.all(tight >= radii * (1 - 2e-2))


def test_certified_balls_hold_against_a_restarted_attack():
    """PGD with 64 restarts inside each certified L-inf / L2 ball never leaves the predicted class."""
    model = _pool_cnn(2)
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    model(x)
    view = _view(model, x)
    gen = torch.Generator().manual_seed(0)
    for norm in (LINF, L2):
        df = deepfool_margins(model, x.numpy(), norm=norm)
        pred = torch.as_tensor(df.predictions)
        radii, _ = crown_radii(view, x, pred, norm, torch.as_tensor(df.margins), alpha_steps=5)
        for i in range(len(x)):
            r = float(radii[i]) * (1 - 1e-9)
            start = torch.randn((64,) + x.shape[1:], dtype=torch.float64, generator=gen)
            scale = start.flatten(1).norm(dim=1)[:, None, None, None]
            delta = start.sign() * r if norm == LINF else start / scale * r
            for _ in range(40):
                delta.requires_grad_(True)
                z = model(x[i:i + 1] + delta)
                gap = z[:, pred[i]] - z.scatter(1, torch.full((64, 1), int(pred[i])), -math.inf).amax(1)
                assert torch.all(gap > -1e-9), "a point of another class inside the certified ball"
                (grad,) = torch.autograd.grad(gap.sum(), delta)
                with torch.no_grad():
                    if norm == LINF:
                        delta = (delta - r / 4 * grad.sign()).clamp(-r, r)
                    else:
                        step = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-300)[:, None, None, None]
                        delta = delta - r / 4 * step
                        delta = delta * (r / delta.flatten(1).norm(dim=1).clamp(min=r))[:, None, None, None]


def test_batched_and_per_sample_radii_are_equal():
    model = _pool_cnn(3)
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    model(x)
    view = _view(model, x)
    df = deepfool_margins(model, x.numpy(), norm="inf")
    pred, upper = torch.as_tensor(df.predictions), torch.as_tensor(df.margins)
    for alpha_steps in (0, 4):
        batched, _ = crown_radii(view, x, pred, LINF, upper, alpha_steps=alpha_steps)
        single, _ = crown_radii(view, x, pred, LINF, upper, alpha_steps=alpha_steps, batch_size=1)
        np.testing.assert_allclose(batched, single, rtol=1e-9)


class _Functional(nn.Module):
    """A forward written with functions, a constant shift and a scale: still a chain of layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.register_buffer("shift", torch.linspace(-1, 1, 8))

    def forward(self, x):
        h = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2((h - self.shift) * 2.0)


def test_forward_read_as_a_chain():
    torch.manual_seed(0)
    model = _Functional()
    x = torch.randn(5, 2, 3)
    view = _view(model, x)
    assert crown_supported(view, x.shape[1:]) == (True, "")
    _same_function(view, x)


def test_unsupported_models_are_named():
    cases = [
        (nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)), "GELU at '1'"),
        (nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 3)), "SiLU at '1'"),
        (nn.Sequential(nn.Unflatten(1, (1, 4)), nn.MaxPool1d(3, ceil_mode=True), nn.Flatten()),
         "at '1' (ceil_mode; method='lipschitz' supports it)"),
    ]
    x = torch.randn(3, 4)
    for model, name in cases:
        ok, why = crown_supported(_view(model, x), x.shape[1:])
        assert not ok and name in why
        with pytest.raises(ValueError, match=re.escape(name)):
            crown_radii(_view(model, x), x, _predict(model, x), LINF, torch.ones(3))

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x

    ok, why = crown_supported(_view(Skip(), x), x.shape[1:])
    assert not ok and "chain" in why

    norm_model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    view = replace(_view(norm_model, x), eval_mode=False)
    ok, why = crown_supported(view, x.shape[1:])
    assert not ok and "BatchNorm1d in train mode at '1'" in why
    assert norm_model.training and norm_model[1].training

    ok, why = crown_supported(replace(_view(cases[0][0], x), preprocess=torch.tanh, affine_preprocess=False),
                              x.shape[1:])
    assert not ok and "preprocessing" in why


def test_failed_and_bad_options():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    view = _view(model, x)
    pred = _predict(model, x)
    wrong = (pred + 1) % 3
    radii, status = crown_radii(view, x, wrong, LINF, torch.full((4,), np.inf))
    assert np.all(radii == 0) and (status == "failed").all()
    radii, status = crown_radii(view, x, pred, LINF, torch.zeros(4))
    assert np.all(radii == 0) and (status == "failed").all()
    for option, value in (("steps", 0), ("rtol", 0.0), ("alpha_steps", -1), ("alpha_lr", 0.0), ("batch_size", 0)):
        with pytest.raises(ValueError, match=option):
            crown_radii(view, x, pred, LINF, torch.ones(4), **{option: value})
    with pytest.raises(ValueError, match="norms 2 and inf"):
        crown_radii(view, x, pred, L1, torch.ones(4))


def test_no_bound_propagation_needed_at_run_time(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(2, 3)
    monkeypatch.setitem(sys.modules, "bound_propagation", None)
    radii, _ = crown_radii(_view(model, x), x, _predict(model, x), LINF, torch.ones(2))
    assert radii.shape == (2,)


def test_cost_is_estimated_from_interval_bounds_without_a_backward_pass():
    model = _pool_cnn(0)
    x = torch.rand(9, 1, 6, 6, dtype=torch.float64)
    model(x)
    view = _view(model, x)
    pred = _predict(model, x)
    cost = crown_cost(view, x, pred, torch.full((9,), 0.5), LINF)
    assert cost.samples == 4 and cost.relax > 0 and cost.final > 0
    assert crown_cost(view, x, pred, torch.full((9,), 2.0), LINF).relax > cost.relax  # larger balls: more passes
    assert crown_cost(view, x, pred, torch.zeros(9), LINF).relax == 0  # no ball: nothing undecided
    assert cost.seconds(10, 20) == pytest.approx(10 * (cost.relax + 51 * cost.final))
    assert cost.seconds(10) < cost.seconds(10, 20)


def test_leaky_relu_and_final_softmax():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.1), nn.Linear(16, 3)).double()
    x = torch.rand(20, 2, dtype=torch.float64) * 2 - 1
    view = _view(model, x)
    _same_function(view, x)
    pred = _predict(model, x)
    exact = _grid_distances(model, x, pred)[0]
    radii, status = crown_radii(view, x, pred, LINF, torch.as_tensor(exact))
    assert (status == "bound").all() and np.all(radii <= exact)
    tight, _ = crown_radii(view, x, pred, LINF, torch.as_tensor(exact), alpha_steps=10)
    assert np.all(tight <= exact)
    soft = _view(nn.Sequential(model, nn.Softmax(dim=1)), x)
    again, _ = crown_radii(soft, x, pred, LINF, torch.as_tensor(exact))
    np.testing.assert_array_equal(again, radii)
    steep = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(2.0), nn.Linear(16, 3)).double()
    _same_function(_view(steep, x), x)
    radii, _ = crown_radii(_view(steep, x), x, _predict(steep, x), LINF,
                           torch.as_tensor(_grid_distances(steep, x, _predict(steep, x))[0]), alpha_steps=5)
    assert np.all(radii <= _grid_distances(steep, x, _predict(steep, x))[0])
    ok, why = crown_supported(_view(nn.Sequential(nn.Linear(2, 4), nn.Softmax(dim=1), nn.Linear(4, 3)), x.float()),
                              x.shape[1:])
    assert not ok and "(before the last layer)" in why

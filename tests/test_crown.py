"""CROWN-certified radii (art_geometry.bounds.crown): exact on affine models, below the exact distance elsewhere."""

import re
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("bound_propagation", reason="CROWN bounds need bound-propagation: pip install art-geometry[bounds]")

from art_geometry import deepfool_margins
from art_geometry.core.model import adapt, probe
from art_geometry.core.norms import L1, L2, LINF
from art_geometry.bounds import crown
from art_geometry.bounds.crown import crown_radii, crown_supported
from tests.helpers import assert_unchanged


def _view(model, x):
    return probe(adapt(model), x)[0]


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _same_function(view, x):
    """The bound network computes the model's logits."""
    with view.evaluating(), torch.no_grad():
        net = crown._bound_network(crown._chain(view, tuple(x.shape[1:]))[0])
        got = net(x.flatten(1).double())
        want = view(x).double()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def _affine_distance(weight, bias, x, q):
    """Exact distance of each sample to the boundary of its region under ``z = W x + b``, dual norm ``q``."""
    z = x.flatten(1) @ weight.T + bias
    pred = z.argmax(1)
    gap = z.gather(1, pred[:, None]) - z
    span = (weight[pred][:, None, :] - weight[None]).norm(p=q, dim=2)
    dist = torch.where(span > 0, gap / span, torch.full_like(gap, np.inf))
    dist = dist.scatter(1, pred[:, None], np.inf)
    return dist.min(1).values.numpy(), pred


@pytest.mark.parametrize("norm, q", [(LINF, 1), (L2, 2)])
def test_affine_model_radius_is_the_exact_distance(norm, q):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.randn(16, 3, 4, dtype=torch.float64)
    exact, pred = _affine_distance(model[1].weight.detach(), model[1].bias.detach(), x, q)
    upper = torch.as_tensor(exact * 1.5)
    upper[::3] = np.inf  # DeepFool failed there: the bracket grows by doubling first
    view = _view(model, x)
    radii, status = crown_radii(view, x, pred, norm, upper, steps=60, rtol=1e-6)
    assert radii.dtype == np.float64 and (status == "bound").all()
    assert np.all(radii <= exact * (1 + 1e-9))
    np.testing.assert_allclose(radii, exact, rtol=1e-5)


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


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
def test_mlp_radius_is_below_the_exact_distance_and_positive(activation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 3))
    model = model.double()
    x = torch.rand(25, 2, dtype=torch.float64) * 2 - 1
    pred = _predict(model, x)
    grid = _grid_distances(model, x, pred)
    view = _view(model, x)
    for norm, exact in ((LINF, grid[0]), (L2, grid[1])):
        radii, status = crown_radii(view, x, pred, norm, torch.as_tensor(exact))
        assert (status == "bound").all() and np.all(radii > 0)
        assert np.all(radii <= exact)
        print(f"{activation.__name__} L{norm}: median certified / exact {np.median(radii / exact):.3f}")


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
    assert (status == "bound").all() and np.all(radii > 0)
    assert np.all(radii <= df.margins)


def test_max_pool_is_a_tournament_of_relus():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3)
    ).double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    view = _view(model, x)
    assert crown_supported(view, x.shape[1:]) == (True, "")
    _same_function(view, x)
    for other in (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten()),
        nn.Sequential(nn.MaxPool2d(1, stride=2), nn.Flatten(), nn.Linear(16, 2)),
        nn.Sequential(nn.Flatten(1, 2), nn.Conv1d(8, 2, 3), nn.MaxPool1d(3, padding=1), nn.Flatten()),
    ):
        _same_function(_view(other.double(), x), x)
    for norm in (L2, LINF):
        df = deepfool_margins(model, x.numpy(), norm=norm)
        radii, status = crown_radii(view, x, torch.as_tensor(df.predictions), norm, torch.as_tensor(df.margins))
        assert (status == "bound").all() and np.all(radii <= df.margins)


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


def test_bounding_differences_is_tighter_than_bounding_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).double()
    x = torch.randn(50, 10, dtype=torch.float64)
    pred = _predict(model, x)
    view = _view(model, x)
    with view.evaluating(), torch.no_grad():
        net = crown._bound_network(crown._chain(view, (10,))[0])
        bound = crown._factory(crown._bound_propagation())().build(net)
        for norm in (LINF, L2):
            eps = torch.full((50,), 0.05 if norm == LINF else 0.15, dtype=torch.float64)
            joint = crown._difference_lower(bound, x, pred, eps, norm, 5)
            logits = bound.crown(crown._region(x, eps, norm)).concretize()
            apart = logits.lower.gather(1, pred[:, None]) - logits.upper
            apart = apart.scatter(1, pred[:, None], np.inf)
            assert torch.all(joint >= apart - 1e-9)
            finite = torch.isfinite(joint)
            gain = (joint - apart)[finite]
            print(f"L{norm}: difference bounds exceed logit-interval bounds by {gain.mean().item():.3f} on average")
            assert gain.mean() > 0


def test_unsupported_models_are_named():
    cases = [
        (nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)), "GELU at '1'"),
        (nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 3)), "SiLU at '1'"),
        (nn.Sequential(nn.Unflatten(1, (1, 4)), nn.MaxPool1d(3, ceil_mode=True), nn.Flatten()),
         "at '1' (ceil_mode)"),
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
    with pytest.raises(ValueError, match="steps"):
        crown_radii(view, x, pred, LINF, torch.ones(4), steps=0)
    with pytest.raises(ValueError, match="rtol"):
        crown_radii(view, x, pred, LINF, torch.ones(4), rtol=0.0)
    with pytest.raises(ValueError, match="norms 2 and inf"):
        crown_radii(view, x, pred, L1, torch.ones(4))


def test_missing_package_names_the_extra(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 2))
    x = torch.randn(2, 3)
    monkeypatch.setitem(sys.modules, "bound_propagation", None)
    with pytest.raises(ImportError, match=r"art-geometry\[bounds\]"):
        crown_radii(_view(model, x), x, _predict(model, x), LINF, torch.ones(2))


def test_timing_mlp_64_24_24_10():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 10))
    x = torch.rand(40, 64)
    df = deepfool_margins(model, x.numpy(), norm="inf")
    view = _view(model, x)
    start = time.perf_counter()
    radii, _ = crown_radii(view, x, torch.as_tensor(df.predictions), LINF, torch.as_tensor(df.margins))
    elapsed = time.perf_counter() - start
    print(f"CROWN radii of 40 samples, 64-24-24-10 MLP: {elapsed:.2f} s, "
          f"median certified / DeepFool {np.median(radii / df.margins):.3f}")
    assert np.all(radii <= df.margins)


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
    soft = _view(nn.Sequential(model, nn.Softmax(dim=1)), x)
    again, _ = crown_radii(soft, x, pred, LINF, torch.as_tensor(exact))
    np.testing.assert_array_equal(again, radii)
    ok, why = crown_supported(_view(nn.Sequential(nn.Linear(2, 4), nn.Softmax(dim=1), nn.Linear(4, 3)), x.float()),
                              x.shape[1:])
    assert not ok and "(before the last layer)" in why

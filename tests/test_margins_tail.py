"""
The boundary stage of ``deepfool_margins`` (``boundary_steps``): exact on closed forms (affine models, in R^D and
in a DCT subspace), never below the exact L-inf distance of small ReLU nets (mixed-integer programs) nor below
a brute-force grid's L2 distance, never longer than plain DeepFool, every returned point adversarial and inside
the box, and the setting validated.
"""

import itertools

import numpy as np
import pytest
import scipy.fft
import torch
from torch import nn

from art_geometry import DeepFoolSettings
from art_geometry.bounds.milp import exact_distance
from art_geometry.datasets import make_classifier
from art_geometry.margins import deepfool_margins
from art_geometry.subspaces import dct_subspaces
from tests.helpers import random_linear

SHAPE = (1, 6, 6)
#: Steps of the boundary stage in the tests on ReLU nets.
STAGE = 20


def affine_distances(w: np.ndarray, b: np.ndarray, x: np.ndarray, dual: float, proj: np.ndarray | None = None):
    """``min_{j != k} (z_k - z_j) / ||P (w_k - w_j)||_dual``, ``k`` the predicted class, ``P`` a projector or I."""
    z = x.reshape(len(x), -1) @ w.T + b
    k = z.argmax(axis=1)
    out = np.full(len(x), np.inf)
    for j in range(w.shape[0]):
        dw = w[k] - w[j] if proj is None else (w[k] - w[j]) @ proj.T
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (z[np.arange(len(x)), k] - z[:, j]) / np.linalg.norm(dw, ord=dual, axis=1)
        out = np.where(j != k, np.minimum(out, d), out)
    return out


def relu_mlp(seed: int, sizes: tuple[int, ...]) -> nn.Sequential:
    """A ReLU MLP with seeded Gaussian weights (variance 1 / fan-in), in float64."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layer = nn.Linear(fan_in, fan_out).double()
        with torch.no_grad():
            layer.weight.copy_(torch.randn((fan_out, fan_in), generator=g, dtype=torch.float64) / fan_in**0.5)
            layer.bias.copy_(0.1 * torch.randn(fan_out, generator=g, dtype=torch.float64))
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def adversarial(model: nn.Module, x: np.ndarray, pert: np.ndarray, pred: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x + pert.astype(np.float64))).argmax(1).numpy() != pred


def measured(pert: np.ndarray, norm: float) -> np.ndarray:
    flat = pert.reshape(len(pert), -1).astype(np.float64)
    return np.linalg.norm(flat, axis=1) if norm == 2 else np.abs(flat).max(axis=1)


@pytest.mark.parametrize("norm, dual", [(2, 2), (np.inf, 1)])
@pytest.mark.parametrize("steps", [1, 3])
def test_affine_margins_stay_exact(norm, dual, steps):
    model = random_linear(6, SHAPE, seed=4)
    x = np.random.default_rng(4).uniform(0, 1, size=(16,) + SHAPE)
    exact = affine_distances(model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy(), x, dual)
    res = deepfool_margins(model, x, norm=norm, boundary_steps=steps, return_perturbations=True)
    assert res.success.all()
    assert (res.margins >= exact * (1 - 1e-6)).all()
    np.testing.assert_allclose(res.margins, exact, rtol=1e-5)
    assert adversarial(model, x, res.perturbations, res.predictions).all()
    np.testing.assert_allclose(measured(res.perturbations, norm), res.margins, rtol=1e-6)


def dct_block(start: int, size: int):
    """The DCT block subspace of ``SHAPE`` starting at ``(start, start)`` and its dense projector."""
    sub = next(s for s in dct_subspaces(SHAPE, block_size=size, stride=1) if s.start == start)
    c = scipy.fft.dct(np.eye(SHAPE[1]), norm="ortho", axis=0)
    basis = np.kron(c, c)
    mask = np.zeros(SHAPE[1:])
    mask[start : start + size, start : start + size] = 1
    return sub, basis.T @ np.diag(mask.ravel()) @ basis


def test_affine_margins_stay_exact_in_a_dct_subspace():
    model = random_linear(5, SHAPE, seed=2)
    x = np.random.default_rng(2).uniform(0, 1, size=(12,) + SHAPE)
    sub, proj = dct_block(1, 3)
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    res = deepfool_margins(model, x, subspace=sub, boundary_steps=2, return_perturbations=True)
    assert res.success.all()
    np.testing.assert_allclose(res.margins, affine_distances(w, b, x, 2, proj), rtol=1e-5)
    flat = res.perturbations.reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(flat @ proj.T, flat, atol=1e-6)


@pytest.mark.parametrize("norm", [2, np.inf])
def test_relu_net_in_a_dct_subspace_stays_in_it_and_gets_closer(norm):
    model = nn.Sequential(nn.Flatten(), relu_mlp(5, (36, 24, 24, 4)))
    x = np.random.default_rng(5).uniform(0, 1, size=(12,) + SHAPE)
    sub, proj = dct_block(0, 4)
    plain = deepfool_margins(model, x, norm=norm, subspace=sub)
    staged = deepfool_margins(model, x, norm=norm, subspace=sub, boundary_steps=STAGE, return_perturbations=True)
    assert staged.success.all()
    flat = staged.perturbations.reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(flat @ proj.T, flat, atol=1e-6)
    assert (staged.margins <= plain.margins).all() and (staged.margins < plain.margins * (1 - 1e-3)).any()
    assert adversarial(model, x, staged.perturbations, staged.predictions).all()


@pytest.fixture(scope="module")
def milp_case():
    """A 5-10-10-3 ReLU MLP, 12 Gaussian samples, plain DeepFool and the stage's L-inf margins and the MILP's."""
    model = relu_mlp(2, (5, 10, 10, 3))
    x = np.random.default_rng(2).normal(size=(12, 5))
    plain = deepfool_margins(model, x, norm=np.inf)
    staged = deepfool_margins(model, x, norm=np.inf, boundary_steps=STAGE, return_perturbations=True)
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in model if isinstance(m, nn.Linear)]
    exact = np.array([
        exact_distance(layers, x[i], int(plain.predictions[i]), 1.5 * plain.margins[i])[0] for i in range(len(x))
    ])
    return model, x, plain, staged, exact


def test_never_below_the_exact_linf_distance_and_tighter_than_deepfool(milp_case):
    model, x, plain, staged, exact = milp_case
    assert staged.success.all() and plain.success.all()
    assert (staged.margins >= exact * (1 - 1e-6)).all()
    assert (staged.margins <= plain.margins).all()
    assert adversarial(model, x, staged.perturbations, staged.predictions).all()
    # on these random nets plain DeepFool's median is several percent above exact; the stage closes most of it
    r_plain, r_staged = plain.margins / exact, staged.margins / exact
    assert np.median(r_plain) > 1.02
    assert np.median(r_staged) < 1.01
    assert (r_staged < r_plain * (1 - 1e-3)).sum() >= len(x) // 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_below_a_grid_search_in_l2(seed):
    """On a 2-input ReLU net, every grid point of another class is at least the exact L2 distance away, and one
    lies within a cell diagonal of it: the stage's margin is at least the grid's minus one diagonal."""
    model = relu_mlp(seed, (2, 8, 8, 3))
    g = np.linspace(-3, 3, 601)
    grid = torch.from_numpy(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    with torch.no_grad():
        labels = model(grid).argmax(1).numpy()
    x = np.random.default_rng(seed).uniform(-1, 1, size=(10, 2))
    plain = deepfool_margins(model, x)
    staged = deepfool_margins(model, x, boundary_steps=STAGE, return_perturbations=True)
    cell = np.sqrt(2) * (g[1] - g[0])
    for i in np.nonzero(staged.success)[0]:
        d_grid = np.linalg.norm(grid.numpy()[labels != staged.predictions[i]] - x[i], axis=1).min()
        assert staged.margins[i] >= d_grid - cell
    assert (staged.margins <= plain.margins).all()
    assert adversarial(model, x, staged.perturbations, staged.predictions)[staged.success].all()


def test_box_is_respected():
    model = relu_mlp(3, (36, 16, 5))
    net = nn.Sequential(nn.Flatten(), model)
    clf = make_classifier(net, SHAPE, 5, clip_values=(0.0, 1.0))
    x = np.random.default_rng(3).uniform(0, 1, size=(12,) + SHAPE)
    options = {"norm": np.inf, "box": True, "restarts": 0}
    res = deepfool_margins(clf, x, boundary_steps=2, return_perturbations=True, **options)
    plain = deepfool_margins(clf, x, **options)
    adv = x + res.perturbations.astype(np.float64)
    assert res.success.any()
    assert (adv >= -1e-7).all() and (adv <= 1 + 1e-7).all()
    assert (res.margins[res.success] <= plain.margins[res.success]).all()


def test_setting_is_validated_and_recorded():
    assert DeepFoolSettings().boundary_steps == 0
    assert "boundary_steps=2" in DeepFoolSettings(boundary_steps=2).describe()
    with pytest.raises(ValueError, match="boundary_steps"):
        DeepFoolSettings(boundary_steps=-1)
    with pytest.raises(ValueError, match="boundary_steps"):
        DeepFoolSettings(boundary_steps=1.5)
    model = random_linear(3, SHAPE, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, size=(2,) + SHAPE)
    assert deepfool_margins(model, x, boundary_steps=2).params["boundary_steps"] == 2

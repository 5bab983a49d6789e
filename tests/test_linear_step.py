"""DeepFool's step inside a box: the exact minimiser of the linearised problem, against scipy and closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

from art_geometry.margins.step import _l2_in_box, _linf_in_box, box_step, free_step
from art_geometry.core.norms import L2, LINF
from art_geometry.datasets import make_classifier
from art_geometry.margins import deepfool_margins
from tests.helpers import Linear


def _rows(seed: int = 0, r: int = 40, d: int = 12):
    """Rows with zero gradient coordinates, points on both faces of [0, 1]^d, feasible and infeasible gains."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(r, d, generator=g, dtype=torch.float64)
    w[:, :2] = 0
    x = torch.rand(r, d, generator=g, dtype=torch.float64)
    x[:, 3], x[:, 4] = 1.0, 0.0
    lower, upper = -x, 1 - x
    reach = torch.where(w > 0, upper, lower).mul(w).sum(dim=1)
    gain = reach * 1.2 * torch.rand(r, generator=g, dtype=torch.float64)
    return w, lower, upper, gain, reach


def _scipy_l2(w, lo, hi, gain):
    res = minimize(lambda v: v @ v, np.zeros(len(w)), jac=lambda v: 2 * v, bounds=list(zip(lo, hi)), method="SLSQP",
                   constraints=[{"type": "eq", "fun": lambda v: w @ v - gain, "jac": lambda v: w}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    return math.sqrt(res.fun)


def _scipy_linf(w, lo, hi, gain):
    d = len(w)
    ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
    res = linprog(np.r_[np.zeros(d), 1.0], A_ub=ub, b_ub=np.zeros(2 * d), A_eq=np.r_[w, 0.0][None], b_eq=[gain],
                  bounds=list(zip(lo, hi)) + [(0, None)])
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("solve, measure, reference", [
    (_l2_in_box, lambda r: r.norm(), _scipy_l2),
    (_linf_in_box, lambda r: r.abs().max(), _scipy_linf),
])
def test_solver_is_the_constrained_minimiser(solve, measure, reference):
    w, lower, upper, gain, reach = _rows()
    r = solve(w, lower, upper, gain)
    feasible = gain <= reach
    assert feasible.any() and (~feasible).any()
    assert torch.isnan(r[~feasible]).all() and not torch.isnan(r[feasible]).any()
    for i in feasible.nonzero()[:, 0].tolist():
        ri = r[i]
        assert float(w[i] @ ri) == pytest.approx(float(gain[i]), rel=1e-12)
        assert (ri >= lower[i] - 1e-15).all() and (ri <= upper[i] + 1e-15).all()
        exact = reference(w[i].numpy(), lower[i].numpy(), upper[i].numpy(), float(gain[i]))
        assert float(measure(ri)) == pytest.approx(exact, rel=1e-7)


@pytest.mark.parametrize("norm", [L2, LINF])
def test_box_step_is_the_free_step_where_the_box_does_not_bind(norm):
    g = torch.Generator().manual_seed(1)
    f = -torch.rand(6, 4, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4, 3, 5, generator=g, dtype=torch.float64)
    x = torch.rand(6, 3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(box_step(f, w, x, (-1e6, 1e6), norm), free_step(f, w, norm), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("norm", [L2, LINF])
def test_box_step_reaches_the_nearest_boundary_inside_the_box(norm):
    """Two candidates: the nearer one in R^D leaves the box, the other is reachable inside it."""
    x = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    # candidate 0: f = -0.1 along -e0 (needs x_0 < 0: outside); candidate 1: f = -0.3 along +e1
    w = torch.tensor([[[-1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    f = torch.tensor([[-0.1, -0.3]], dtype=torch.float64)
    r = box_step(f, w, x, (0.0, 1.0), norm)
    torch.testing.assert_close(r, torch.tensor([[0.0, 0.3 + 1e-4]], dtype=torch.float64))
    assert free_step(f, w, norm)[0, 0] < 0


def _binary_in_box(seed: int = 0):
    """``z = (0, <w, x> + b)`` on [0, 1]^64 with samples of class 0, several coordinates on the faces of the box."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, generator=g, dtype=torch.float64)
    weight = torch.stack([torch.zeros_like(w), w])
    bias = torch.tensor([0.0, float(-w.clamp(min=0).sum()) * 0.6], dtype=torch.float64)
    model = Linear(weight, bias, (64,)).double()
    x = torch.rand(30, 64, generator=g, dtype=torch.float64)
    x[:, :8] = (w[:8] < 0).to(torch.float64)
    x = x[(x @ w + bias[1]) < 0]
    return model, x.numpy(), w.numpy(), float(bias[1])


def _exact_in_box(x, w, b, norm):
    """The distance inside [0, 1]^D to ``<w, y> + b = 0`` by bisection on the multiplier (independent of the
    breakpoint solver): ``phi(lam)`` is nondecreasing."""
    gain = -(x @ w + b)
    lo_room, hi_room = -x, 1 - x
    if norm == 2:
        def point(lam):
            return np.clip(lam * w, lo_room, hi_room)
    else:
        def point(lam):
            return np.sign(w) * np.minimum(lam, np.where(w > 0, hi_room, -lo_room))
    a, c = 0.0, 1e3
    for _ in range(200):
        m = (a + c) / 2
        a, c = (m, c) if w @ point(m) < gain else (a, m)
    r = point(c)
    return np.linalg.norm(r) if norm == 2 else np.abs(r).max()


@pytest.mark.parametrize("norm", [2, np.inf])
def test_boxed_deepfool_takes_one_step_on_an_affine_model(norm):
    """On an affine model the in-box step lands past the boundary in one iteration; the refined margin is at
    least the exact in-box distance and within the overshoot of it."""
    model, x, w, b = _binary_in_box()
    clf = make_classifier(model, (64,), 2, clip_values=(0.0, 1.0))
    res = deepfool_margins(clf, x, norm=norm, box=True, restarts=0, return_perturbations=True)
    assert res.success.all() and (res.iterations == 1).all()
    adv = x + res.perturbations.astype(np.float64)
    assert adv.min() >= 0 and adv.max() <= 1
    exact = np.array([_exact_in_box(xi, w, b, norm) for xi in x])
    free = np.abs(x @ w + b) / np.linalg.norm(w, ord=2 if norm == 2 else 1)
    assert (exact > free * 1.01).any(), "the box must bind for some samples"
    assert (res.margins >= exact * (1 - 1e-6)).all()
    assert (res.margins <= exact * 1.021).all()

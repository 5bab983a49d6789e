import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry import HessianSettings
from art_geometry.datasets import MLP
from art_geometry.indicators import hessian_eigenvalues, jacobian_stats, robustness_indicator
from art_geometry.surface import decision_function
from tests.helpers import assert_round_trip, assert_unchanged, random_linear


class Quadratic(nn.Module):
    """Two logits with ``Z_0 - Z_1 = 1/2 x^T A x + b^T x + c``: ``L`` for target 0 is that quadratic."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, c: float, input_shape: tuple[int, ...]):
        super().__init__()
        self.input_shape = input_shape
        self.a = nn.Parameter(a.clone())
        self.b = nn.Parameter(b.clone())
        self.c = nn.Parameter(torch.tensor(c, dtype=a.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)
        q = 0.5 * torch.einsum("nd,de,ne->n", v, self.a, v) + v @ self.b + self.c
        return torch.stack([0.5 * q, -0.5 * q], dim=1)


def _quadratic(d: int = 12, seed: int = 0) -> tuple[Quadratic, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    a = (m + m.T) / 2
    b = torch.randn(d, generator=g, dtype=torch.float64)
    return Quadratic(a, b, 0.3, (1, 3, 4)), a.numpy()


def _by_magnitude(v: np.ndarray) -> np.ndarray:
    return v[np.argsort(-np.abs(v), kind="stable")]


@pytest.fixture
def quad():
    model, a = _quadratic()
    x = np.random.default_rng(1).normal(size=(3, 1, 3, 4))
    return model, a, x


def test_hessian_topk_and_full_equal_eig_a(quad):
    model, a, x = quad
    y = np.zeros(3, dtype=np.int64)
    expected = _by_magnitude(np.linalg.eigvalsh(a))
    with assert_unchanged(model, x, y):
        top = hessian_eigenvalues(model, x, y, k=5)
        full = hessian_eigenvalues(model, x, y, full=True)
    np.testing.assert_allclose(top.eigenvalues, np.tile(expected[:5], (3, 1)), atol=1e-5)
    np.testing.assert_allclose(full.eigenvalues, np.tile(expected, (3, 1)), atol=1e-5)
    np.testing.assert_allclose(full.l1, np.abs(expected).sum(), rtol=1e-10)
    assert top.eigenvalues.shape == (3, 5) and full.n_products == 12


def test_hessian_all_k_equals_full_spectrum(quad):
    model, a, x = quad
    top = hessian_eigenvalues(model, x, np.zeros(3, dtype=np.int64), k=12, batch_size=2, seed=5)
    np.testing.assert_allclose(top.eigenvalues[0], _by_magnitude(np.linalg.eigvalsh(a)), atol=1e-5)


def test_hessian_repeated_eigenvalues_found_by_restarts():
    a = torch.diag(torch.tensor([3.0, 3.0, 3.0, -1.0, 0.0, 0.0], dtype=torch.float64))
    model = Quadratic(a, torch.ones(6, dtype=torch.float64), 0.0, (6,))
    x = np.zeros((2, 6))
    res = hessian_eigenvalues(model, x, np.zeros(2, dtype=np.int64), k=4)
    np.testing.assert_allclose(res.eigenvalues, [[3, 3, 3, -1]] * 2, atol=1e-8)


def test_jacobian_matches_finite_differences(quad):
    model, a, x = quad
    y = np.zeros(3, dtype=np.int64)
    with assert_unchanged(model, x, y):
        res = jacobian_stats(model, x, y, threshold=0.5)
    flat = x.reshape(3, -1)
    h = 1e-6
    fd = np.empty_like(flat)
    for i in range(flat.shape[1]):
        e = np.zeros(flat.shape[1])
        e[i] = h
        up = decision_function(model, (flat + e).reshape(x.shape), y)
        down = decision_function(model, (flat - e).reshape(x.shape), y)
        fd[:, i] = (up - down) / (2 * h)
    np.testing.assert_allclose(res.gradients.reshape(3, -1), fd, atol=1e-7)
    closed = flat @ a + model.b.detach().numpy()
    np.testing.assert_allclose(res.gradients.reshape(3, -1), closed, atol=1e-10)
    np.testing.assert_allclose(res.l1, np.abs(closed).sum(1), rtol=1e-10)
    np.testing.assert_allclose(res.sparsity, (np.abs(closed) < 0.5).mean(1))
    assert res.gradients.shape == x.shape


def test_relu_decision_hessian_warns_loss_hessian_nonzero(digits):
    torch.manual_seed(0)
    model = MLP((1, 8, 8), hidden=(32,)).double().eval()
    x = digits.x_test[:3].astype(np.float64)
    with assert_unchanged(model, x):
        with pytest.warns(UserWarning, match="piecewise linear"):
            dec = hessian_eigenvalues(model, x, k=3)
        loss = hessian_eigenvalues(model, x, k=12, of="loss")
    assert np.all(dec.eigenvalues == 0) and np.all(dec.sparsity == 1)
    assert np.all(loss.max_abs > 1e-8)
    # softmax curvature J^T (diag p - p p^T) J of a ReLU net has rank <= C - 1 = 9 and is positive semi-definite
    assert np.all(np.abs(loss.eigenvalues[:, 9:]) < 1e-10)
    assert np.all(loss.eigenvalues > -1e-10)
    full = hessian_eigenvalues(model, x, of="loss", full=True)
    np.testing.assert_allclose(loss.eigenvalues, full.eigenvalues[:, :12], atol=1e-8)


def test_indicator_linear_model_exact():
    model = random_linear(3, (5,), seed=2)
    x = np.random.default_rng(0).normal(size=(40, 5))
    with assert_unchanged(model, x):
        res = robustness_indicator(model, x, eps=0.05)
        res2 = robustness_indicator(model, x, eps=0.05, norm=2)
    w = model.fc.weight.detach().numpy()
    logits = x @ w.T + model.fc.bias.detach().numpy()
    t = logits.argmax(1)
    masked = np.where(np.eye(3, dtype=bool)[t], -np.inf, logits)
    m = masked.argmax(1)
    diff = w[t] - w[m]
    margin = logits[np.arange(40), t] - logits[np.arange(40), m]
    np.testing.assert_allclose(res.bound, 0.05 * np.abs(diff).sum(1), rtol=1e-12)
    np.testing.assert_array_equal(res.curvature, 0)
    np.testing.assert_array_equal(res.certified, 0.05 * np.abs(diff).sum(1) < margin)
    assert 0 < res.certified.sum() < 40
    # the exact L-inf worst case against m: x + eps * sign(w_m - w_t) reaches L(x) - eps ||w_t - w_m||_1
    worst = x - 0.05 * np.sign(diff)
    wl = worst @ w.T + model.fc.bias.detach().numpy()
    np.testing.assert_allclose(wl[np.arange(40), t] - wl[np.arange(40), m], margin - res.bound, atol=1e-12)
    np.testing.assert_allclose(res2.bound, 0.05 * np.linalg.norm(diff, axis=1), rtol=1e-12)


def test_indicator_quadratic_curvature_term(quad):
    model, a, x = quad
    y = np.zeros(3, dtype=np.int64)
    res = robustness_indicator(model, x, y, eps=0.01, k=2)
    lam = np.abs(np.linalg.eigvalsh(a)).max()
    np.testing.assert_allclose(res.max_abs_eigenvalue, lam, rtol=1e-6)
    np.testing.assert_allclose(res.curvature, 0.5 * lam * 12 * 0.01**2, rtol=1e-6)
    # the bound holds for the true change of the quadratic at the corners of the ball along sign(J)
    j = jacobian_stats(model, x, y).gradients.reshape(3, -1)
    corner = (x.reshape(3, -1) - 0.01 * np.sign(j)).reshape(x.shape)
    change = np.abs(decision_function(model, corner, y) - res.decision)
    assert np.all(change <= res.bound + 1e-12)


def test_batch_size_and_order_invariance(quad):
    model, _, x = quad
    loss = hessian_eigenvalues(model, x, k=3, of="loss", batch_size=1)
    loss2 = hessian_eigenvalues(model, x[::-1].copy(), k=3, of="loss", batch_size=3)
    np.testing.assert_allclose(loss.eigenvalues, loss2.eigenvalues[::-1], atol=1e-8)


def test_bad_inputs(quad):
    model, _, x = quad
    with pytest.raises(ValueError, match="only 12 dimensions"):
        hessian_eigenvalues(model, x, k=13)
    with pytest.raises(ValueError, match="only 12 dimensions"):
        robustness_indicator(model, x, eps=0.1, k=20)
    with pytest.raises(ValueError, match="of must be"):
        hessian_eigenvalues(model, x, of="logits")
    with pytest.raises(ValueError, match="eps must be"):
        robustness_indicator(model, x, eps=0.0)
    with pytest.raises(ValueError, match="norm must be"):
        robustness_indicator(model, x, eps=0.1, norm=1)
    with pytest.raises(ValueError, match="threshold"):
        jacobian_stats(model, x, threshold=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        jacobian_stats(model, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="out of range"):
        robustness_indicator(model, x, np.array([0, 1, 2]), eps=0.1)
    with pytest.raises(ValueError, match="labels 2 samples"):
        jacobian_stats(model, x, np.array([0, 1]))


def test_bad_shape_and_empty_with_art_classifier(trained_cnn, digits):
    with pytest.raises(ValueError, match="input_shape"):
        jacobian_stats(trained_cnn, digits.x_test[:2, :, :4])
    with pytest.raises(ValueError, match="empty"):
        hessian_eigenvalues(trained_cnn, digits.x_test[:0])
    with pytest.raises(ValueError, match="empty"):
        robustness_indicator(trained_cnn, digits.x_test[:0], eps=0.1)


def test_results_serialise(trained_cnn, digits):
    x = digits.x_test[:4]
    with assert_unchanged(trained_cnn, x):
        res = robustness_indicator(trained_cnn, x, digits.y_test[:4], eps=0.01)
        hes = hessian_eigenvalues(trained_cnn, x, k=3, of="loss")
        jac = jacobian_stats(trained_cnn, x)
    for r in (res, hes, jac):
        d = r.to_dict()
        assert "summary" in d
    assert res.summary()["norm"] == "inf"
    np.testing.assert_allclose(res.jacobian_l1, jacobian_stats(trained_cnn, x, digits.y_test[:4]).l1, rtol=1e-5)


def _with_spectrum(eigenvalues: list[float], seed: int) -> tuple[Quadratic, np.ndarray]:
    """A :class:`Quadratic` with ``A = U diag(eigenvalues) U^T``, ``U`` a seeded Haar-random orthogonal matrix."""
    d = len(eigenvalues)
    g = torch.Generator().manual_seed(seed)
    u, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    u = u * torch.sign(torch.diagonal(r))
    a = u @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ u.T
    a = (a + a.T) / 2
    return Quadratic(a, torch.randn(d, generator=g, dtype=torch.float64), 0.1, (d,)), a.numpy()


_BULK = list(np.linspace(-1.5, 1.5, 31))
_SPECTRA = {
    # a repeated top eigenvalue, and three copies of 3 around the 5th
    "repeated": [5.0, 5.0, -4.5, 3.0, 3.0, 3.0, -2.5] + _BULK,
    # two negative eigenvalues 1e-7 apart, and a cluster of width 4e-8 at the 3rd
    "clusters": [-6.0, -6.0 + 1e-7, 4.0 + 2e-8, 4.0, 4.0 - 2e-8, 3.5, -2.0] + _BULK,
    # a triple negative eigenvalue on top, then two positive ones 1e-6 apart
    "negative": [-3.0, -3.0, -3.0, 2.9, 2.9 - 1e-6, 2.0, -1.9] + _BULK,
}


@pytest.mark.parametrize("kind", sorted(_SPECTRA))
def test_hessian_topk_with_repeated_and_clustered_eigenvalues(kind):
    """Lanczos' converged Ritz values miss second copies and unresolved cluster members: the top-k must not."""
    x = np.random.default_rng(3).normal(size=(3, 38))
    y = np.zeros(3, dtype=np.int64)
    for seed in range(3):
        model, a = _with_spectrum(_SPECTRA[kind], seed)
        exact = _by_magnitude(torch.linalg.eigvalsh(torch.from_numpy(a)).numpy())
        full = hessian_eigenvalues(model, x, y, full=True).eigenvalues
        np.testing.assert_allclose(full, np.tile(exact, (3, 1)), atol=1e-10)
        for k in (1, 3, 5):
            top = hessian_eigenvalues(model, x, y, k=k, seed=seed).eigenvalues
            assert top.shape == (3, k)
            assert np.all(np.diff(np.abs(top), axis=1) <= 1e-10), "sorted by decreasing magnitude"
            # compared as sets: the order within equal magnitudes is free
            np.testing.assert_allclose(np.sort(top, axis=1), np.tile(np.sort(exact[:k]), (3, 1)), atol=1e-5)
            np.testing.assert_allclose(np.sort(top, axis=1), np.sort(full[:, :k], axis=1), atol=1e-5)


def test_results_round_trip_and_summary_keys(quad):
    model, _, x = quad
    y = np.zeros(3, dtype=np.int64)
    jac = jacobian_stats(model, x, y, threshold=0.5)
    hes = hessian_eigenvalues(model, x, y, k=2, seed=4)
    ind = robustness_indicator(model, x, y, eps=0.01, norm=2)
    for res in (jac, hes, ind):
        assert_round_trip(res)
        assert res.summary()["n_samples"] == 3
    assert jac.summary()["params"] == {"threshold": 0.5, "batch_size": 256}
    assert hes.summary()["params"] == {
        "k": 2, "of": "decision", "full": False, "zero_tol": 1e-10, "tol": 1e-6, "seed": 4, "batch_size": 16,
    }
    assert ind.summary()["params"] == {
        "eps": 0.01, "norm": 2.0, "k": 1, "of": "decision", "full": False, "zero_tol": 1e-10, "tol": 1e-6, "seed": 0,
        "batch_size": 16,
    }
    assert robustness_indicator(model, x, eps=0.01).params["norm"] == "inf"
    fast = HessianSettings(k=2, seed=4)
    np.testing.assert_array_equal(hessian_eigenvalues(model, x, y, settings=fast).eigenvalues, hes.eigenvalues)
    with pytest.raises(ValueError, match="of='decision'"):
        robustness_indicator(model, x, eps=0.01, of="loss")
    with pytest.raises(TypeError, match="unknown option"):
        hessian_eigenvalues(model, x, y, kk=2)


def test_seed_none_draws_a_recorded_seed(quad):
    model, _, x = quad
    a = hessian_eigenvalues(model, x, k=2, seed=None)
    assert isinstance(a.params["seed"], int) and a.params["seed"] >= 0
    np.testing.assert_array_equal(hessian_eigenvalues(model, x, k=2, seed=a.params["seed"]).eigenvalues, a.eigenvalues)
    assert isinstance(robustness_indicator(model, x, eps=0.1, seed=None).params["seed"], int)


@pytest.mark.parametrize(
    "fn, options, name",
    [
        (jacobian_stats, {"threshold": "a"}, "threshold"),
        (jacobian_stats, {"threshold": float("nan")}, "threshold"),
        (jacobian_stats, {"batch_size": 0}, "batch_size"),
        (jacobian_stats, {"verbose": "no"}, "verbose"),
        (hessian_eigenvalues, {"k": 2.0}, "k"),
        (hessian_eigenvalues, {"of": None}, "of"),
        (hessian_eigenvalues, {"full": 1}, "full"),
        (hessian_eigenvalues, {"zero_tol": -1.0}, "zero_tol"),
        (hessian_eigenvalues, {"tol": 0.0}, "tol"),
        (hessian_eigenvalues, {"seed": -2}, "seed"),
        (hessian_eigenvalues, {"batch_size": "8"}, "batch_size"),
        (robustness_indicator, {"eps": "a"}, "eps"),
        (robustness_indicator, {"eps": 0.1, "norm": "l3"}, "norm"),
        (robustness_indicator, {"eps": 0.1, "tol": -1.0}, "tol"),
        (robustness_indicator, {"eps": 0.1, "seed": "0"}, "seed"),
        (robustness_indicator, {"eps": 0.1, "verbose": None}, "verbose"),
    ],
)
def test_bad_options_name_the_option(quad, fn, options, name):
    model, _, x = quad
    with pytest.raises(ValueError, match=name):
        fn(model, x, **options)


def test_strided_readonly_and_integer_inputs(quad):
    model, _, x = quad
    y = np.zeros(3, dtype=np.int64)
    flipped = np.ascontiguousarray(x[::-1])
    frozen = x.copy()
    frozen.setflags(write=False)
    for variant in (x[::-1], frozen[::-1]):
        np.testing.assert_array_equal(
            jacobian_stats(model, variant, y).gradients, jacobian_stats(model, flipped, y).gradients
        )
        np.testing.assert_array_equal(
            hessian_eigenvalues(model, variant, y, k=2).eigenvalues,
            hessian_eigenvalues(model, flipped, y, k=2).eigenvalues,
        )
        np.testing.assert_array_equal(
            robustness_indicator(model, variant, y, eps=0.01).bound,
            robustness_indicator(model, flipped, y, eps=0.01).bound,
        )
    ints = np.round(x * 3).astype(np.int64)
    np.testing.assert_array_equal(
        jacobian_stats(model, ints).gradients, jacobian_stats(model, ints.astype(np.float64)).gradients
    )
    for fn, options in ((jacobian_stats, {}), (hessian_eigenvalues, {"k": 2}), (robustness_indicator, {"eps": 0.1})):
        with pytest.raises(TypeError, match="real numbers"):
            fn(model, x > 0, **options)


def test_probability_outputs_warn_once_per_call():
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)).double()
    x = np.random.default_rng(0).normal(size=(5, 4))
    calls = [
        lambda: jacobian_stats(model, x, batch_size=2),
        lambda: hessian_eigenvalues(model, x, k=2, batch_size=2),
        lambda: robustness_indicator(model, x, eps=0.1, batch_size=2),
    ]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert sum("probabilities" in str(w.message) for w in caught) == 1

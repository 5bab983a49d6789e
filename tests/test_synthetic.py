import numpy as np
import pytest

from art_geometry.datasets.synthetic import alternating, linearly_separable


def test_t1_shapes_basis_and_coordinates():
    d = linearly_separable(400, 50, epsilon=2.0, sigma=0.5, seed=3)
    assert d.x.shape == (400, 50) and d.x.dtype == np.float32
    assert d.y.shape == (400,) and d.y.dtype == np.int64 and set(np.unique(d.y)) == {0, 1}
    assert (d.y == 0).sum() == 200
    np.testing.assert_allclose(d.U.T @ d.U, np.eye(50), atol=1e-12)
    c = d.coordinates()
    np.testing.assert_allclose(c[:, 0], np.where(d.y == 1, 1.0, -1.0), atol=1e-5)  # ±epsilon/2 exactly (float32)
    np.testing.assert_allclose(d.x @ d.u1, c[:, 0], atol=1e-5)
    std = c[:, 1:].std()
    assert abs(std - 0.5) < 0.02
    assert abs(c[:, 1:].mean()) < 0.02
    assert d.params["name"] == "T1" and d.params["epsilon"] == 2.0


def test_t1_seed_determinism():
    a, b, c = linearly_separable(30, 10, seed=1), linearly_separable(30, 10, seed=1), linearly_separable(30, 10, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.allclose(a.U, c.U)


def test_t1_is_separable_by_u1_with_margin_half_epsilon():
    d = linearly_separable(200, 20, epsilon=3.0, sigma=2.0, seed=0)
    signed = (d.x @ d.u1) * np.where(d.y == 1, 1.0, -1.0)
    np.testing.assert_allclose(signed, 1.5, atol=1e-5)


def test_t2_stripes_follow_the_papers_construction():
    # Hold me tight Sec. 4.1: x2 = rho * j for y = +1, rho * (j + 1/2) for y = -1, j uniform in {-K, ..., K-1}
    rho, k = 4.0, 3
    d = alternating(6000, 30, rho=rho, epsilon=0.6, sigma=0.3, k=k, seed=5)
    assert d.x.shape == (6000, 30) and (d.y == 1).sum() == 3000
    np.testing.assert_allclose(d.U @ d.U.T, np.eye(30), atol=1e-12)
    c = d.coordinates()
    np.testing.assert_allclose(c[:, 0], 0.3 * np.where(d.y == 1, 1.0, -1.0), atol=1e-5)
    positive, negative = c[d.y == 1, 1] / rho, c[d.y == 0, 1] / rho
    np.testing.assert_allclose(positive, np.round(positive), atol=1e-5)
    np.testing.assert_allclose(negative - 0.5, np.round(negative - 0.5), atol=1e-5)
    assert set(np.round(positive).astype(int)) == set(range(-k, k))
    assert set(np.round(negative - 0.5).astype(int)) == set(range(-k, k))
    # 4K stripes rho / 2 apart from -K rho to (K - 1/2) rho, alternating classes
    levels = np.unique(np.round(c[:, 1] * 2 / rho).astype(int))
    np.testing.assert_array_equal(levels, np.arange(-2 * k, 2 * k))
    for level in levels:
        on = np.isclose(c[:, 1], level * rho / 2, atol=1e-4)
        assert set(d.y[on]) == {int(level % 2 == 0)}
        assert 300 < on.sum() < 700  # 6000 / 12 = 500 per stripe: j uniform
    assert abs(c[:, 2:].std() - 0.3) < 0.01


def test_t2_is_linearly_separable_along_u1_only():
    d = alternating(2000, 20, rho=20.0, epsilon=1.0, sigma=1.0, k=3, seed=0)
    signed_u1 = (d.x @ d.u1) * np.where(d.y == 1, 1.0, -1.0)
    np.testing.assert_allclose(signed_u1, 0.5, atol=1e-5)
    along_u2 = d.x @ d.u2
    # no threshold on u2 separates the classes: both classes reach both ends of the pattern
    for cls in (0, 1):
        assert along_u2[d.y == cls].min() < -45 and along_u2[d.y == cls].max() > 35
    np.testing.assert_array_equal(alternating(50, 10, k=2, seed=1).x, alternating(50, 10, k=2, seed=1).x)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="epsilon must be a positive number"):
        linearly_separable(10, epsilon=0.0)
    with pytest.raises(ValueError, match="dim must be an integer >= 3"):
        alternating(10, 2)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        alternating(10, 5, k=0)
    with pytest.raises(ValueError, match="rho must be a positive number"):
        alternating(10, 5, rho=-1.0)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        linearly_separable(1)

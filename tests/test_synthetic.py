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


def test_t2_alternating_feature():
    d = alternating(1000, 30, rho=0.4, epsilon=4.0, sigma=0.3, k=3, seed=5)
    assert d.x.shape == (1000, 30) and (d.y == 1).sum() == 500
    np.testing.assert_allclose(d.U @ d.U.T, np.eye(30), atol=1e-12)
    c = d.coordinates()
    np.testing.assert_allclose(c[:, 0], 2.0 * np.where(d.y == 1, 1.0, -1.0), atol=1e-5)
    # along u2: 6 stripes rho apart, centred, alternating classes starting with class 0
    stripes = np.round(c[:, 1] / 0.4 + 2.5).astype(int)
    np.testing.assert_allclose(c[:, 1], 0.4 * (stripes - 2.5), atol=1e-5)
    assert set(np.unique(stripes)) == set(range(6))
    np.testing.assert_array_equal(stripes % 2, d.y)
    assert abs(c[:, 2:].std() - 0.3) < 0.01
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

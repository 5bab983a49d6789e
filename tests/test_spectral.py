import numpy as np
import pytest
import scipy.fft
import torch

from art_geometry.datasets import Dataset
from art_geometry.subspaces.spectral import (
    DCTTransform,
    dct2,
    dct_flip,
    high_pass,
    idct2,
    low_pass,
    transform_dataset,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).standard_normal((3, 2, 8, 6))


def test_dct2_matches_scipy_and_round_trips(images):
    t = torch.from_numpy(images)
    expected = scipy.fft.dctn(images, type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(dct2(t).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(idct2(dct2(t)).numpy(), images, atol=1e-12)
    # Parseval: the orthonormal DCT keeps the l2 norm of each image
    np.testing.assert_allclose(
        dct2(t).pow(2).sum(dim=(-2, -1)).numpy(), (images**2).sum(axis=(-2, -1)), rtol=1e-12
    )


def test_flip_matches_scipy_and_is_an_involutive_isometry(images):
    coeffs = scipy.fft.dctn(images, norm="ortho", axes=(-2, -1))
    expected = scipy.fft.idctn(coeffs[..., ::-1, ::-1], norm="ortho", axes=(-2, -1))
    flipped = dct_flip(images)
    np.testing.assert_allclose(flipped, expected, atol=1e-12)
    np.testing.assert_allclose(dct_flip(flipped), images, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(flipped.reshape(3, -1), axis=1), np.linalg.norm(images.reshape(3, -1), axis=1))


def test_flip_moves_the_constant_image_to_the_highest_frequency():
    x = np.ones((1, 8, 8))
    coeffs = scipy.fft.dctn(dct_flip(x), norm="ortho", axes=(-2, -1))
    assert abs(coeffs[0, -1, -1] - 8.0) < 1e-12
    assert np.abs(coeffs[0, :-1, :]).max() < 1e-12 and np.abs(coeffs[0, -1, :-1]).max() < 1e-12


@pytest.mark.parametrize("bandwidth", [1, 3, 6])
def test_low_and_high_pass_are_complementary_projections(images, bandwidth):
    lo, hi = low_pass(images, bandwidth), high_pass(images, bandwidth)
    np.testing.assert_allclose(lo + hi, images, atol=1e-12)
    np.testing.assert_allclose(low_pass(lo, bandwidth), lo, atol=1e-12)
    np.testing.assert_allclose(high_pass(hi, bandwidth), hi, atol=1e-12)
    assert abs(float((lo * hi).sum())) < 1e-10
    coeffs = scipy.fft.dctn(lo, norm="ortho", axes=(-2, -1))
    outside = coeffs.copy()
    outside[..., :bandwidth, :bandwidth] = 0
    assert np.abs(outside).max() < 1e-12
    ref = scipy.fft.dctn(images, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(coeffs[..., :bandwidth, :bandwidth], ref[..., :bandwidth, :bandwidth], atol=1e-12)


def test_numpy_torch_parity_and_dtypes(images):
    x32 = images.astype(np.float32)
    for fn in (dct_flip, lambda a: low_pass(a, 3), lambda a: high_pass(a, 3)):
        out_np = fn(x32)
        out_t = fn(torch.from_numpy(x32))
        assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and out_np.shape == x32.shape
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
        np.testing.assert_allclose(out_np, out_t.numpy(), atol=1e-6)
        single = fn(x32[0])
        np.testing.assert_allclose(single, out_np[0], atol=1e-6)


def test_inputs_are_never_mutated(images):
    t = torch.from_numpy(images.copy())
    before_np, before_t = images.copy(), t.clone()
    for fn in (dct_flip, lambda a: low_pass(a, 2), lambda a: high_pass(a, 2), DCTTransform("high_pass", 4)):
        out = fn(images)
        out[...] = 0
        out_t = fn(t)
        out_t.zero_()
    np.testing.assert_array_equal(images, before_np)
    assert torch.equal(t, before_t)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="bandwidth must be a positive integer <= the image side, in \\[1, 8\\]"):
        low_pass(np.zeros((1, 8, 8)), 9)
    with pytest.raises(ValueError, match="bandwidth"):
        high_pass(np.zeros((1, 8, 8)), 2.5)
    with pytest.raises(TypeError, match="floating-point"):
        dct_flip(np.zeros((1, 8, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="\\(N, C, H, W\\) or \\(C, H, W\\)"):
        dct_flip(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="kind must be one of"):
        DCTTransform("band_pass", 3)
    with pytest.raises(ValueError, match="takes no bandwidth"):
        DCTTransform("flip", 3)
    with pytest.raises(ValueError, match="needs a bandwidth"):
        DCTTransform("low_pass")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="bandwidth must be an integer in \\[1, inf\\]"):
            DCTTransform("high_pass", bad)


def test_transform_dataset_transforms_both_splits_and_keeps_labels():
    rng = np.random.default_rng(1)
    ds = Dataset(
        rng.random((5, 1, 8, 8)).astype(np.float32), np.arange(5), rng.random((3, 1, 8, 8)).astype(np.float32),
        np.arange(3), "toy",
    )
    copies = (ds.x_train.copy(), ds.x_test.copy())
    out = transform_dataset(ds, DCTTransform("low_pass", 2))
    assert out.name == "toy-low_pass2"
    assert out.x_train.dtype == np.float32 and out.x_train.shape == ds.x_train.shape
    np.testing.assert_allclose(out.x_train, low_pass(ds.x_train, 2), atol=1e-6)
    np.testing.assert_allclose(out.x_test, low_pass(ds.x_test, 2), atol=1e-6)
    np.testing.assert_array_equal(out.y_train, ds.y_train)
    np.testing.assert_array_equal(ds.x_train, copies[0])
    np.testing.assert_array_equal(ds.x_test, copies[1])
    flipped = transform_dataset(ds, DCTTransform("flip"))
    np.testing.assert_allclose(transform_dataset(flipped, DCTTransform("flip")).x_train, ds.x_train, atol=1e-6)
    with pytest.raises(ValueError, match="changed the shape"):
        transform_dataset(ds, lambda x: x[..., :4])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("as_torch", [False, True])
def test_non_finite_pixels_are_refused(images, bad, as_torch):
    """The DCT mixes all pixels: one NaN pixel would silently make every output pixel NaN."""
    x = images.copy()
    x[1, 0, 3, 2] = bad
    if as_torch:
        x = torch.from_numpy(x)
    for fn in (dct_flip, lambda a: low_pass(a, 3), lambda a: high_pass(a, 3), DCTTransform("high_pass", 2)):
        with pytest.raises(ValueError, match="^x contains NaN or inf values$"):
            fn(x)
    # the other images of the batch are fine on their own, and finite in, finite out
    assert np.isfinite(np.asarray(low_pass(images[[0, 2]], 3))).all()


@pytest.mark.parametrize("bandwidth", [0, -1, 7, 2.0, 2.5, True, "3", None, np.float64(3)])
def test_bandwidth_must_be_an_integer_in_one_to_the_image_side(images, bandwidth):
    # images are 8 x 6: the side is 6
    for fn in (low_pass, high_pass):
        with pytest.raises(ValueError, match="^bandwidth must be a positive integer <= the image side, in \\[1, 6\\]"):
            fn(images, bandwidth)
    np.testing.assert_allclose(low_pass(images, np.int64(6)) + high_pass(images, 6), images, atol=1e-12)
    # bandwidth 1 keeps only the DC coefficient: each channel's mean
    mean = np.broadcast_to(images.mean(axis=(-2, -1), keepdims=True), images.shape)
    np.testing.assert_allclose(low_pass(images, 1), mean, atol=1e-12)

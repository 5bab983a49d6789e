import numpy as np
import pytest
import scipy.fft
import torch

from art_geometry.subspaces import (
    DCTBlockSubspace,
    SubspaceStack,
    dct_subspaces,
    direction,
    orthogonal_complement,
    random_subspace,
    span,
)


def matrix(sub, dtype=torch.float64) -> np.ndarray:
    """The dense D x D matrix of a projection, column j = P e_j."""
    d = int(np.prod(sub.shape))
    eye = torch.eye(d, dtype=dtype).reshape((d,) + sub.shape)
    return sub.project(eye).reshape(d, d).T.numpy()


def dense_dct_projector(n: int, start: int, size: int, channels: int = 1) -> np.ndarray:
    """Independent reference: P = B^T diag(mask) B with B = kron(C, C) the 2-D DCT on row-major vec."""
    c = scipy.fft.dct(np.eye(n), norm="ortho", axis=0)
    b = np.kron(c, c)
    mask = np.zeros((n, n))
    mask[start : start + size, start : start + size] = 1
    p = b.T @ np.diag(mask.ravel()) @ b
    return np.kron(np.eye(channels), p)


def test_dct_subspaces_count_dims_and_names():
    subs = dct_subspaces((1, 28, 28), block_size=8, stride=1)
    assert len(subs) == 21
    assert all(s.dim == 64 and s.shape == (1, 28, 28) for s in subs)
    assert [s.start for s in subs] == list(range(21))
    assert subs[0].name == "dct[0:8]" and subs[-1].name == "dct[20:28]"
    assert len(dct_subspaces((3, 8, 8), block_size=2, stride=2)) == 4
    assert dct_subspaces((3, 8, 8), block_size=2, stride=2)[0].dim == 12


@pytest.mark.parametrize("start,size,channels", [(0, 3, 1), (2, 4, 1), (5, 3, 2)])
def test_dct_block_matches_dense_reference(start, size, channels):
    sub = DCTBlockSubspace((channels, 8, 8), start, size)
    p = matrix(sub)
    np.testing.assert_allclose(p, dense_dct_projector(8, start, size, channels), atol=1e-12)
    np.testing.assert_allclose(p @ p, p, atol=1e-12)
    np.testing.assert_allclose(p, p.T, atol=1e-12)
    assert np.linalg.matrix_rank(p) == sub.dim == channels * size**2


def test_dct_blocks_mutually_orthogonal_when_disjoint():
    subs = dct_subspaces((1, 8, 8), block_size=2, stride=2)
    mats = [matrix(s) for s in subs]
    for i in range(len(mats)):
        for j in range(len(mats)):
            if i != j:
                np.testing.assert_allclose(mats[i] @ mats[j], 0, atol=1e-12)
    overlapping = dct_subspaces((1, 8, 8), block_size=3, stride=1)
    # overlapping blocks [0, 3) and [1, 4) commute; their product projects on the shared 2 x 2 block
    both = matrix(overlapping[0]) @ matrix(overlapping[1])
    np.testing.assert_allclose(both, dense_dct_projector(8, 1, 2), atol=1e-12)


def test_projection_inner_product_symmetry_float32_and_batch():
    sub = dct_subspaces((2, 12, 12), block_size=4, stride=4)[1]
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5, 2, 12, 12, generator=g)
    v = torch.randn(5, 2, 12, 12, generator=g)
    pu, pv = sub.project(u), sub.project(v)
    assert pu.dtype == torch.float32 and pu.shape == u.shape
    torch.testing.assert_close((pu * v).sum(), (u * pv).sum(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sub.project(pu), pu, rtol=1e-5, atol=1e-5)


def test_random_subspace_orthonormal_rank_and_seed():
    a = random_subspace((1, 4, 4), 5, seed=3)
    p = matrix(a)
    np.testing.assert_allclose(p @ p, p, atol=1e-12)
    np.testing.assert_allclose(p, p.T, atol=1e-12)
    assert np.linalg.matrix_rank(p) == 5 and np.isclose(np.trace(p), 5)
    np.testing.assert_array_equal(p, matrix(random_subspace((1, 4, 4), 5, seed=3)))
    assert not np.allclose(p, matrix(random_subspace((1, 4, 4), 5, seed=4)))


def test_span_of_dependent_vectors_and_direction():
    g = np.random.default_rng(0)
    v = g.normal(size=(3, 2, 3))
    vectors = np.stack([v[0], v[1], v[0] + 2 * v[1], v[2]])
    s = span(vectors)
    assert s.dim == 3 and s.shape == (2, 3)
    p = matrix(s)
    np.testing.assert_allclose(p @ p, p, atol=1e-12)
    torch.testing.assert_close(s.project(torch.as_tensor(vectors)), torch.as_tensor(vectors))
    u = g.normal(size=(2, 3))
    d = direction(u)
    w = torch.as_tensor(g.normal(size=(4, 2, 3)))
    ut = torch.as_tensor(u)
    expected = (w * ut).sum(dim=(1, 2))[:, None, None] * ut / (ut * ut).sum()
    torch.testing.assert_close(d.project(w), expected)
    assert d.dim == 1


def test_complement():
    sub = dct_subspaces((1, 6, 6), block_size=2, stride=2)[0]
    comp = orthogonal_complement(sub)
    p, q = matrix(sub), matrix(comp)
    np.testing.assert_allclose(p + q, np.eye(36), atol=1e-12)
    np.testing.assert_allclose(p @ q, 0, atol=1e-12)
    assert comp.dim == 32 and np.linalg.matrix_rank(q) == 32


@pytest.mark.parametrize("kind", ["dct", "generic"])
def test_stack_projects_each_row_on_its_subspace(kind):
    if kind == "dct":
        subs = dct_subspaces((1, 8, 8), block_size=3, stride=2)
    else:
        subs = [random_subspace((1, 8, 8), 4, seed=s) for s in range(3)]
    stack = SubspaceStack(subs)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(7, 4, 1, 8, 8, generator=g, dtype=torch.float64)
    which = torch.tensor([0, 2, 1, 0, 1, 2, 0]) % len(subs)
    out = stack.project(v, which)
    for i in range(7):
        torch.testing.assert_close(out[i], subs[int(which[i])].project(v[i]))


def test_bad_inputs():
    sub = dct_subspaces((1, 8, 8), block_size=4)[0]
    with pytest.raises(ValueError, match="shape"):
        sub.project(torch.zeros(2, 1, 6, 6))
    with pytest.raises(ValueError, match="block_size"):
        dct_subspaces((1, 8, 8), block_size=9)
    with pytest.raises(ValueError, match="stride"):
        dct_subspaces((1, 8, 8), stride=0)
    with pytest.raises(ValueError, match="dim"):
        random_subspace((1, 4, 4), 17)
    with pytest.raises(ValueError, match="zero vector"):
        span(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="same sample shape"):
        SubspaceStack([sub, dct_subspaces((1, 6, 6), block_size=4)[0]])
    with pytest.raises(TypeError, match="Subspace"):
        orthogonal_complement(np.eye(3))


def _integer_batch(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-5, 6, (4,) + shape, generator=g)


def test_integer_and_bool_batches_are_projected_in_float32():
    """An integer batch used to cast the DCT matrix / basis to integers: every projection was zero."""
    shape = (1, 6, 6)
    block = dct_subspaces(shape, block_size=3, stride=3)[0]
    rand = random_subspace(shape, 5, seed=2)
    u = np.arange(36.0)
    subs = [block, rand, direction(u.reshape(shape)), orthogonal_complement(block), orthogonal_complement(rand)]
    v = _integer_batch(shape)
    flat = v.reshape(4, -1).double().numpy()
    p_block = dense_dct_projector(6, 0, 3)
    q = rand.basis.numpy()
    expected = [flat @ p_block, flat @ q.T @ q, np.outer(flat @ u, u) / (u @ u), flat - flat @ p_block,
                flat - flat @ q.T @ q]
    for sub, want in zip(subs, expected):
        for batch in (v, v.to(torch.int32), v.abs().to(torch.uint8)):
            got = sub.project(batch)
            assert got.dtype == torch.float32 and got.shape == batch.shape, sub.name
            torch.testing.assert_close(got, sub.project(batch.to(torch.float32)), rtol=0, atol=0)
        out = sub.project(v)
        assert float(out.abs().max()) > 0.1, f"{sub.name}: the projection of integers is not zero"
        np.testing.assert_allclose(out.reshape(4, -1).double().numpy(), want, atol=1e-4)
        assert sub.project(v.double()).dtype == torch.float64
    mask = v > 0
    torch.testing.assert_close(block.project(mask), block.project(mask.to(torch.float32)), rtol=0, atol=0)
    np.testing.assert_allclose(
        block.project(mask).reshape(4, -1).double().numpy(), mask.reshape(4, -1).double().numpy() @ p_block, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["dct", "generic"])
def test_stack_projects_integer_rows_in_float32(kind):
    shape = (1, 8, 8)
    if kind == "dct":
        subs = dct_subspaces(shape, block_size=3, stride=2)
    else:
        subs = [random_subspace(shape, 4, seed=s) for s in range(3)]
    stack = SubspaceStack(subs)
    v = _integer_batch((2,) + shape, seed=1).reshape(4, 2, *shape)
    which = torch.tensor([0, 2, 1, 0]) % len(subs)
    out = stack.project(v, which)
    assert out.dtype == torch.float32 and out.shape == v.shape
    torch.testing.assert_close(out, stack.project(v.to(torch.float32), which), rtol=0, atol=0)
    reference = stack.project(v.double(), which)
    assert reference.dtype == torch.float64
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)
    for i in range(4):
        assert float(out[i].abs().max()) > 0.1
        torch.testing.assert_close(out[i], subs[int(which[i])].project(v[i]))

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry import regions
from art_geometry.regions import (
    feature_sparsity,
    final_layer_similarity,
    inclusion_ratio,
    layerwise_prs,
    populated_region_set,
    prs_ratio,
)
from tests.helpers import assert_unchanged


class SignNet(nn.Module):
    """Identity hidden layer then ReLU: the region of x at 'hidden' is exactly sign(x) > 0."""

    def __init__(self, d: int, c: int = 3):
        super().__init__()
        self.hidden = nn.Linear(d, d)
        self.relu = nn.ReLU()
        self.out = nn.Linear(d, c)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(d))
            self.hidden.bias.zero_()

    def forward(self, x):
        return self.out(self.relu(self.hidden(x.flatten(1))))


def sign_data(n_patterns: int, d: int, n: int, seed: int = 0):
    """n samples drawn from n_patterns distinct sign vectors with random positive magnitudes."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(2**d, size=n_patterns, replace=False)
    signs = ((codes[:, None] >> np.arange(d)) & 1) * 2 - 1
    which = np.concatenate([np.arange(n_patterns), rng.integers(0, n_patterns, n - n_patterns)])
    x = signs[which] * rng.uniform(0.1, 1.0, size=(n, d))
    return x.astype(np.float32), which, signs


@pytest.mark.parametrize("d", [5, 12, 37])
def test_region_count_is_exact_on_sign_vectors(d):
    model = SignNet(d)
    x, which, _ = sign_data(n_patterns=20, d=d, n=150)
    res = populated_region_set(model, x, "hidden", batch_size=32)
    assert res.n_regions == 20
    assert res.n_samples == 150
    assert res.ratio == pytest.approx(20 / 150)
    assert res.n_units == d
    # Same pattern <=> same region id, and counts are the multiplicities.
    assert np.array_equal(res.region_ids[:, None] == res.region_ids[None, :], which[:, None] == which[None, :])
    assert np.array_equal(np.sort(res.counts), np.sort(np.bincount(which)))
    assert res.counts.sum() == 150


def test_relu_output_and_preactivation_agree():
    model = SignNet(9)
    x, _, _ = sign_data(12, 9, 80)
    a = populated_region_set(model, x, "hidden")
    b = populated_region_set(model, x, "relu")
    c = populated_region_set(model, x, "out:input")
    assert a.n_regions == b.n_regions == c.n_regions == 12
    assert np.array_equal(a.region_ids, b.region_ids) and np.array_equal(a.region_ids, c.region_ids)


def test_matches_naive_set_of_tuples(trained_cnn, digits):
    x = digits.x_train[:400]
    res = populated_region_set(trained_cnn, x, "features.3")
    with torch.no_grad():
        h = trained_cnn.model.features[:4](torch.from_numpy(x)).flatten(1)
    naive = {tuple((row > 0).tolist()) for row in h}
    assert res.n_regions == len(naive)


def test_default_layer_is_input_of_last_linear(trained_cnn, digits):
    res = populated_region_set(trained_cnn, digits.x_test)
    assert res.layer == "classifier.2:input"
    assert res.n_units == 64
    assert prs_ratio(trained_cnn, digits.x_test) == res.ratio


def test_invariant_to_batch_size_and_order(trained_cnn, digits):
    x = digits.x_train[:500]
    ref = populated_region_set(trained_cnn, x, batch_size=500)
    for bs in (1, 7, 64):
        assert np.array_equal(populated_region_set(trained_cnn, x, batch_size=bs).region_ids, ref.region_ids)
    perm = np.random.default_rng(1).permutation(len(x))
    shuffled = populated_region_set(trained_cnn, x[perm])
    assert shuffled.n_regions == ref.n_regions
    assert np.array_equal(shuffled.region_ids, ref.region_ids[perm])


def test_torch_and_numpy_inputs_agree(trained_cnn, digits):
    x = digits.x_test[:100]
    a = populated_region_set(trained_cnn, x)
    b = populated_region_set(trained_cnn, torch.from_numpy(x))
    assert np.array_equal(a.region_ids, b.region_ids)


def test_inclusion_ratio_known_groups():
    model = SignNet(8)
    x, which, signs = sign_data(10, 8, 60)
    assert inclusion_ratio(model, x, x, "hidden").ratio == 1.0
    train = x[which < 5]
    res = inclusion_ratio(model, train, x, "hidden")
    assert np.array_equal(res.included, which < 5)
    assert res.ratio == pytest.approx(np.mean(which < 5))
    assert res.n_train_regions == 5 and res.n_test_regions == 10
    assert res.summary()["n_excluded"] == int(np.sum(which >= 5))


def test_layerwise_prs_counts_each_relu(trained_cnn, digits):
    x = digits.x_test[:200]
    res = layerwise_prs(trained_cnn, x)
    assert res.layers == ["features.1", "features.3", "classifier.1"]
    for layer, ratio in zip(res.layers, res.ratios):
        assert ratio == populated_region_set(trained_cnn, x, layer).ratio
    assert res.region_ids.shape == (3, 200)


def test_module_called_twice_concatenates_calls():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            a = self.relu(x[:, :1])
            b = self.relu(x[:, 1:])
            return self.fc(torch.cat([a, b], 1))

    x = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1], [2, 2]], dtype=np.float32)
    res = populated_region_set(Twice(), x, "relu")
    assert res.n_regions == 4 and res.n_units == 2


def test_final_layer_similarity_closed_form():
    model = SignNet(3, c=3)
    with torch.no_grad():
        model.out.weight.copy_(torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, -2.0]]))
    res = final_layer_similarity(model)
    expected = np.array([[1, 2**-0.5, 0], [2**-0.5, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(res.matrix, expected, atol=1e-12)
    assert res.mean_off_diagonal == pytest.approx(2 * 2**-0.5 / 6)
    assert res.layer == "out"


def test_feature_sparsity_closed_form():
    model = SignNet(4)
    x = np.array([[1, -1, -1, -1], [1, 1, -1, -1], [-1, -1, -1, -1]], dtype=np.float32)
    res = feature_sparsity(model, x)
    assert res.layers == ["relu"]
    np.testing.assert_allclose(res.per_sample[:, 0], [0.75, 0.5, 1.0])
    assert res.mean == pytest.approx(0.75)


def test_results_are_json_safe(trained_cnn, digits):
    import json

    for res in (
        populated_region_set(trained_cnn, digits.x_test[:50]),
        inclusion_ratio(trained_cnn, digits.x_train[:50], digits.x_test[:50]),
        layerwise_prs(trained_cnn, digits.x_test[:50]),
        final_layer_similarity(trained_cnn),
        feature_sparsity(trained_cnn, digits.x_test[:50]),
    ):
        assert json.loads(json.dumps(res.to_dict()))["summary"]


def test_nothing_mutated(trained_cnn, digits):
    x = digits.x_test[:64].copy()
    xt = torch.from_numpy(digits.x_train[:64].copy())
    trained_cnn.model.train()
    try:
        with assert_unchanged(trained_cnn, x, xt):
            populated_region_set(trained_cnn, x)
            prs_ratio(trained_cnn, x)
            inclusion_ratio(trained_cnn, xt, x)
            layerwise_prs(trained_cnn, x)
            final_layer_similarity(trained_cnn)
            feature_sparsity(trained_cnn, xt)
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in trained_cnn.model.modules())
    finally:
        trained_cnn.model.eval()


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((5, 1, 7, 7), np.float32), "input_shape"),
        (np.zeros((0, 1, 8, 8), np.float32), "empty"),
        (np.full((3, 1, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros(8, np.float32), "batch"),
    ],
)
def test_bad_inputs(trained_cnn, x, match):
    with pytest.raises(ValueError, match=match):
        populated_region_set(trained_cnn, x)


def test_bad_layers(trained_cnn, digits):
    with pytest.raises(ValueError, match="available layers: .*features.3"):
        populated_region_set(trained_cnn, digits.x_test, "features.99")
    with pytest.raises(ValueError, match="'input' or 'output'"):
        populated_region_set(trained_cnn, digits.x_test, "features.3:middle")
    with pytest.raises(ValueError, match="not an nn.Linear"):
        final_layer_similarity(trained_cnn, "features.0")
    with pytest.raises(ValueError, match="empty"):
        layerwise_prs(trained_cnn, digits.x_test, layers=[])
    with pytest.raises(ValueError, match="batch_size"):
        populated_region_set(trained_cnn, digits.x_test, batch_size=0)


def test_pack_signs_bit_order():
    h = torch.tensor([[1.0, -1, 0, 2, -3, 4, 5, -6, 7]])
    packed = regions._pack_signs(h)
    assert packed.tolist() == [[0b10010110, 0b10000000]]
    # the accelerator path (torch arithmetic), run here on the CPU, packs exactly as numpy does
    bits = torch.rand(5, 61, generator=torch.Generator().manual_seed(0)) > 0.5
    assert np.array_equal(regions._pack_bits_on_device(bits).numpy(), np.packbits(bits.numpy(), axis=1))


def _same_partition(a, b):
    """Two labelings group the samples identically (up to renaming the groups)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_unique_rows_matches_sorting_and_survives_hash_collisions(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(40, 13), dtype=np.uint8)
    train = base[rng.integers(0, 40, size=300)]
    test = np.concatenate([base[rng.integers(0, 40, size=50)], rng.integers(0, 256, size=(20, 13), dtype=np.uint8)])
    rows = np.concatenate([train, test]).view(np.dtype((np.void, 13))).ravel()
    _, expected, expected_counts = np.unique(rows, return_inverse=True, return_counts=True)
    ids, counts = regions._unique_rows(train, test)
    assert _same_partition(ids, expected.ravel()) and sorted(counts) == sorted(expected_counts)
    assert np.array_equal(counts, np.bincount(ids))
    # every row hashed alike: the byte-for-byte check catches it and the rows are grouped by sorting
    monkeypatch.setattr(regions, "_row_hashes", lambda packed: np.zeros(len(packed), dtype=np.uint64))
    ids, counts = regions._unique_rows(train, test)
    assert np.array_equal(ids, expected.ravel()) and np.array_equal(counts, expected_counts)


def test_row_hashes_separate_patterns_differing_in_one_bit():
    rows = np.zeros((200, 9), dtype=np.uint8)
    for i in range(1, 200):
        bit = (i - 1) % 72
        rows[i, bit // 8] = 1 << (bit % 8)
        if i > 72:
            rows[i, (bit + 13) % 72 // 8] |= 1 << ((bit + 13) % 72 % 8)
    unique_rows = np.unique(rows.view(np.dtype((np.void, 9))).ravel()).size
    assert np.unique(regions._row_hashes(rows)).size == unique_rows

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.regions import patterns
from art_geometry.regions import (
    feature_sparsity,
    final_layer_similarity,
    inclusion_ratio,
    layerwise_prs,
    populated_region_set,
    prs_ratio,
)
from tests.helpers import assert_round_trip, assert_unchanged


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
    res = populated_region_set(model, x, layer="hidden", batch_size=32)
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
    a = populated_region_set(model, x, layer="hidden")
    b = populated_region_set(model, x, layer="relu")
    c = populated_region_set(model, x, layer="out:input")
    assert a.n_regions == b.n_regions == c.n_regions == 12
    assert np.array_equal(a.region_ids, b.region_ids) and np.array_equal(a.region_ids, c.region_ids)


def test_matches_naive_set_of_tuples(trained_cnn, digits):
    x = digits.x_train[:400]
    res = populated_region_set(trained_cnn, x, layer="features.3")
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
    assert inclusion_ratio(model, x, x, layer="hidden").ratio == 1.0
    train = x[which < 5]
    res = inclusion_ratio(model, train, x, layer="hidden")
    assert np.array_equal(res.included, which < 5)
    assert res.ratio == pytest.approx(np.mean(which < 5))
    assert res.n_train_regions == 5 and res.n_test_regions == 10
    assert res.summary()["n_excluded"] == int(np.sum(which >= 5))


def test_layerwise_prs_counts_each_relu(trained_cnn, digits):
    x = digits.x_test[:200]
    res = layerwise_prs(trained_cnn, x)
    assert res.layers == ["features.1", "features.3", "classifier.1"]
    for layer, ratio in zip(res.layers, res.ratios):
        assert ratio == populated_region_set(trained_cnn, x, layer=layer).ratio
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
    res = populated_region_set(Twice(), x, layer="relu")
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
        populated_region_set(trained_cnn, digits.x_test, layer="features.99")
    with pytest.raises(ValueError, match="'input' or 'output'"):
        populated_region_set(trained_cnn, digits.x_test, layer="features.3:middle")
    with pytest.raises(ValueError, match="not an nn.Linear"):
        final_layer_similarity(trained_cnn, layer="features.0")
    with pytest.raises(ValueError, match="empty"):
        layerwise_prs(trained_cnn, digits.x_test, layers=[])
    with pytest.raises(ValueError, match="batch_size"):
        populated_region_set(trained_cnn, digits.x_test, batch_size=0)


def test_pack_signs_bit_order():
    h = torch.tensor([[1.0, -1, 0, 2, -3, 4, 5, -6, 7]])
    packed = patterns._pack_signs(h)
    assert packed.tolist() == [[0b10010110, 0b10000000]]
    # the accelerator path (torch arithmetic), run here on the CPU, packs exactly as numpy does
    bits = torch.rand(5, 61, generator=torch.Generator().manual_seed(0)) > 0.5
    assert np.array_equal(patterns._pack_bits_on_device(bits).numpy(), np.packbits(bits.numpy(), axis=1))


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
    ids, counts = patterns._unique_rows(train, test)
    assert _same_partition(ids, expected.ravel()) and sorted(counts) == sorted(expected_counts)
    assert np.array_equal(counts, np.bincount(ids))
    # every row hashed alike: the byte-for-byte check catches it and the rows are grouped by sorting
    monkeypatch.setattr(patterns, "_row_hashes", lambda packed: np.zeros(len(packed), dtype=np.uint64))
    ids, counts = patterns._unique_rows(train, test)
    assert np.array_equal(ids, expected.ravel()) and np.array_equal(counts, expected_counts)


def test_row_hashes_separate_patterns_differing_in_one_bit():
    rows = np.zeros((200, 9), dtype=np.uint8)
    for i in range(1, 200):
        bit = (i - 1) % 72
        rows[i, bit // 8] = 1 << (bit % 8)
        if i > 72:
            rows[i, (bit + 13) % 72 // 8] |= 1 << ((bit + 13) % 72 % 8)
    unique_rows = np.unique(rows.view(np.dtype((np.void, 9))).ravel()).size
    assert np.unique(patterns._row_hashes(rows)).size == unique_rows


def test_per_sample_predictions_labels_and_correct(trained_cnn, digits):
    x, y = digits.x_test[:80], digits.y_test[:80]
    with torch.no_grad():
        pred = trained_cnn.model(torch.from_numpy(x)).argmax(1).numpy()
    for res in (
        populated_region_set(trained_cnn, x, y, batch_size=32),
        layerwise_prs(trained_cnn, x, y),
        feature_sparsity(trained_cnn, x, y),
        inclusion_ratio(trained_cnn, digits.x_train[:50], x, y_test=y),
    ):
        assert np.array_equal(res.predictions, pred) and res.predictions.dtype == np.int64
        assert np.array_equal(res.labels, y) and np.array_equal(res.correct, pred == y)
        assert res.summary()["n_samples"] == 80 and res.summary()["params"]["batch_size"] in (32, 256)
    res = populated_region_set(trained_cnn, x)
    assert np.array_equal(res.labels, pred) and res.correct.all()
    assert res.summary()["params"] == {"layer": "classifier.2:input", "batch_size": 256}
    assert final_layer_similarity(trained_cnn).summary()["n_samples"] == 0


def test_results_round_trip(trained_cnn, digits):
    x, y = digits.x_test[:40], digits.y_test[:40]
    for res in (
        populated_region_set(trained_cnn, x, y),
        inclusion_ratio(trained_cnn, digits.x_train[:40], x),
        layerwise_prs(trained_cnn, x),
        final_layer_similarity(trained_cnn),
        feature_sparsity(trained_cnn, x, y),
    ):
        assert_round_trip(res)
        assert "params" in res.summary() and "n_samples" in res.summary()


def test_old_positional_forms_warn_and_agree(trained_cnn, digits):
    x, xt = digits.x_test[:60], digits.x_train[:60]
    calls = [
        (populated_region_set, (x, "features.3"), {"layer": "features.3"}),
        (prs_ratio, (x, "features.3"), {"layer": "features.3"}),
        (inclusion_ratio, (xt, x, "features.3"), {"layer": "features.3"}),
        (layerwise_prs, (x, ["features.1", "classifier.1"]), {"layers": ["features.1", "classifier.1"]}),
        (feature_sparsity, (x, ("features.1",)), {"layers": ("features.1",)}),
        (final_layer_similarity, ("classifier.2",), {"layer": "classifier.2"}),
    ]
    for fn, args, kwargs in calls:
        with pytest.warns(DeprecationWarning, match=f"{fn.__name__}: passing layer"):
            old = fn(trained_cnn, *args)
        new = fn(trained_cnn, *args[: len(args) - 1], **kwargs)
        assert old == new if isinstance(new, float) else old.to_dict() == new.to_dict()
    # labels in the third position are labels, not a layer
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        res = populated_region_set(trained_cnn, x, digits.y_test[:60])
    assert np.array_equal(res.labels, digits.y_test[:60])


@pytest.mark.parametrize(
    "options, name",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "a"}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"verbose": "yes"}, "verbose"),
        ({"layer": 3}, "layer"),
    ],
)
def test_bad_options_name_the_option(trained_cnn, digits, options, name):
    x = digits.x_test[:10]
    for fn in (populated_region_set, prs_ratio):
        with pytest.raises(ValueError, match=name):
            fn(trained_cnn, x, **options)
    with pytest.raises(ValueError, match=name):
        inclusion_ratio(trained_cnn, x, x, **options)
    if name != "layer":
        for fn in (layerwise_prs, feature_sparsity):
            with pytest.raises(ValueError, match=name):
                fn(trained_cnn, x, **options)


def test_bad_layers_option(trained_cnn, digits):
    for fn in (layerwise_prs, feature_sparsity):
        with pytest.raises(ValueError, match="layers must be a list"):
            fn(trained_cnn, digits.x_test[:10], layers="features.1")
    with pytest.raises(ValueError, match="layer 3 is not an nn.Linear"):
        final_layer_similarity(trained_cnn, layer=3)
    with pytest.raises(ValueError, match="y_test labels 2 samples"):
        inclusion_ratio(trained_cnn, digits.x_train[:5], digits.x_test[:5], y_test=np.array([0, 1]))


def test_strided_readonly_and_integer_inputs(trained_cnn, digits):
    x = digits.x_test[:90]
    ref = populated_region_set(trained_cnn, x[::-1].copy())
    frozen = x.copy()
    frozen.setflags(write=False)
    for variant in (x[::-1], frozen[::-1]):
        res = populated_region_set(trained_cnn, variant, batch_size=16)
        assert np.array_equal(res.region_ids, ref.region_ids) and np.array_equal(res.predictions, ref.predictions)
    np.testing.assert_array_equal(
        feature_sparsity(trained_cnn, x[:, :, ::-1]).per_sample,
        feature_sparsity(trained_cnn, np.ascontiguousarray(x[:, :, ::-1])).per_sample,
    )
    assert inclusion_ratio(trained_cnn, frozen, x[::-1]).ratio == 1.0
    pixels = np.round(x * 16).astype(np.int64)
    as_int = layerwise_prs(trained_cnn, pixels)
    as_float = layerwise_prs(trained_cnn, pixels.astype(np.float32))
    assert np.array_equal(as_int.region_ids, as_float.region_ids)
    with pytest.raises(TypeError, match="real numbers"):
        populated_region_set(trained_cnn, x > 0.5)
    with pytest.raises(TypeError, match="real numbers"):
        inclusion_ratio(trained_cnn, x, x > 0.5)


def test_probability_outputs_warn_once_per_call():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.Softmax(dim=1))
    x = np.random.default_rng(0).random((10, 4), dtype=np.float32)
    calls = [
        lambda: populated_region_set(model, x, batch_size=3),
        lambda: prs_ratio(model, x, batch_size=3),
        lambda: inclusion_ratio(model, x, x, batch_size=3),
        lambda: layerwise_prs(model, x, batch_size=3),
        lambda: feature_sparsity(model, x, batch_size=3),
    ]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert sum("probabilities" in str(w.message) for w in caught) == 1

"""
The model matrix: every metric family on every architecture (MLP, SmallCNN, CNN6, CIFAR-style and
torchvision-style ResNet-18, WRN-16-4, VGG-11-BN) at 1x28x28, 3x32x32 and 3x224x224 where they apply, at tiny
widths and a few samples; and the ReLU activation sites (``torch.fx``) the region family reads: functional
``relu``, reused and in-place ``nn.ReLU`` modules, GELU / SiLU networks, untraceable models.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import art_geometry as ag
from art_geometry.core.activations import Activations
from art_geometry.core.model import LayerRef, model_view
from art_geometry.datasets import (
    CNN6,
    MLP,
    ResNet18,
    SmallCNN,
    TorchvisionResNet18,
    VGG11BN,
    WideResNet,
    make_classifier,
)
from art_geometry.subspaces import SubspaceStack
from tests.helpers import assert_unchanged

N = 2
C = 10
#: Cheap DeepFool settings: the matrix checks that every family runs on every model, not the margins' accuracy.
DEEPFOOL = {"candidates": 3, "max_iter": 20, "restarts": 0, "refine": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models are tiny: one intra-op thread does the work of two without their synchronisation (4x faster on a
    shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _vgg_relus(imagenet: bool) -> list[str]:
    conv_relus = [f"features.{i}" for i in (2, 6, 10, 13, 17, 20, 24, 27)]
    return conv_relus + (["classifier.1", "classifier.4"] if imagenet else [])


#: (builder, expected ReLU sites) per model; the sites as the region family names them.
MODELS = {
    "mlp": (lambda s: MLP(s, (16, 8), C), lambda s: ["features.2", "features.4"]),
    "smallcnn": (lambda s: SmallCNN(s, C), lambda s: ["features.1", "features.3", "features.6", "classifier.1"]),
    "cnn6": (
        lambda s: CNN6(s, C),
        lambda s: ["features.1", "features.3", "features.6", "features.8", "classifier.1"],
    ),
    "resnet18": (
        lambda s: ResNet18(s, C, width=4),
        lambda s: ["relu"] + [f"relu_{i}" for i in range(1, 17)],
    ),
    "tv_resnet18": (
        lambda s: TorchvisionResNet18(s, C, width=4),
        lambda s: ["relu"] + [f"layer{i}.{b}.relu#{k}" for i in range(1, 5) for b in (0, 1) for k in (0, 1)],
    ),
    "wrn16_4": (
        lambda s: WideResNet(s, C, depth=16, widen_factor=4, width=2),
        lambda s: [f"block{i}.{b}.relu{k}" for i in (1, 2, 3) for b in (0, 1) for k in (1, 2)] + ["relu"],
    ),
    "vgg11_bn": (lambda s: VGG11BN(s, C, width=4), lambda s: _vgg_relus(s[-1] >= 64)),
}

#: (model, input shape) pairs of the matrix: the zoo at 28x28 and 32x32, every model at 32x32, and the models
#: built for ImageNet inputs (MLP, the ResNets' ImageNet stem, VGG's ImageNet head) at 224x224.
CASES = (
    [(m, (1, 28, 28)) for m in ("mlp", "smallcnn", "cnn6")]
    + [(m, (3, 32, 32)) for m in MODELS]
    + [(m, (3, 224, 224)) for m in ("mlp", "resnet18", "tv_resnet18", "vgg11_bn")]
)


def _case_id(case: tuple[str, tuple[int, ...]]) -> str:
    return f"{case[0]}-{'x'.join(map(str, case[1]))}"


@functools.cache
def _classifier(name: str, shape: tuple[int, ...]):
    torch.manual_seed(0)
    model = MODELS[name][0](shape).eval()
    return make_classifier(model, shape, C)


@functools.cache
def _data(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    return g.random((N,) + shape, dtype=np.float32), np.arange(N) % C


def _blocks(shape: tuple[int, ...]) -> list:
    """The lowest and the highest 8x8 diagonal DCT block."""
    return ag.dct_subspaces(shape, block_size=8, stride=shape[-1] - 8)


FAMILIES = {
    "populated_region_set": lambda clf, x, y, s: ag.populated_region_set(clf, x, y),
    "layerwise_prs": lambda clf, x, y, s: ag.layerwise_prs(clf, x, y),
    "feature_sparsity": lambda clf, x, y, s: ag.feature_sparsity(clf, x, y),
    "deepfool_margins": lambda clf, x, y, s: ag.deepfool_margins(clf, x, y, **DEEPFOOL),
    "subspace_margins": lambda clf, x, y, s: ag.subspace_margins(clf, x[:1], y[:1], subspaces=_blocks(s), **DEEPFOOL),
    "decision_surface": lambda clf, x, y, s: ag.decision_surface(clf, x[:1], y[:1], resolution=5),
    "jacobian_stats": lambda clf, x, y, s: ag.jacobian_stats(clf, x, y),
    "hessian_eigenvalues": lambda clf, x, y, s: ag.hessian_eigenvalues(clf, x[:1], y[:1], k=2, of="loss"),
    "robust_accuracy": lambda clf, x, y, s: ag.robust_accuracy(clf, x, y, attack="fgsm", eps=0.03),
}


def _check(family: str, res, name: str, shape: tuple[int, ...]) -> None:
    n = res.summary()["n_samples"]
    assert n == (1 if family in ("subspace_margins", "decision_surface", "hessian_eigenvalues") else N)
    if family == "populated_region_set":
        assert 1 <= res.n_regions <= N and res.layer.endswith(":input")
    elif family == "layerwise_prs":
        assert res.layers == MODELS[name][1](shape)
        assert np.all((res.ratios > 0) & (res.ratios <= 1)) and res.region_ids.shape == (len(res.layers), N)
    elif family == "feature_sparsity":
        assert res.layers == MODELS[name][1](shape)
        assert res.per_sample.shape == (N, len(res.layers)) and np.all((res.per_sample >= 0) & (res.per_sample <= 1))
    elif family == "deepfool_margins":
        assert res.success.any() and np.all(np.isfinite(res.margins[res.success]) & (res.margins[res.success] > 0))
    elif family == "subspace_margins":
        assert res.margins.shape == (2, 1) and np.all(res.margins[res.success] > 0)
    elif family == "decision_surface":
        assert res.decision.shape == (1, 5, 5) and np.isfinite(res.decision).all()
    elif family == "jacobian_stats":
        assert res.gradients.shape == (N,) + shape and np.isfinite(res.l2).all()
    elif family == "hessian_eigenvalues":
        assert res.eigenvalues.shape == (1, 2) and np.isfinite(res.eigenvalues).all()
    else:
        assert res.perturbation_norm.shape == (N,) and np.all(res.perturbation_norm <= 0.03 + 1e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_family_on_every_model(case, family):
    name, shape = case
    clf = _classifier(name, shape)
    x, y = _data(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback, no probability warning
        res = FAMILIES[family](clf, x, y, shape)
    _check(family, res, name, shape)


# --- the activation sites ---------------------------------------------------------------------------------------


def _x(shape=(3, 32, 32), n=N, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def _zeros(h: torch.Tensor) -> np.ndarray:
    return (h <= 0).flatten(1).double().mean(1).numpy()


def test_functional_relu_sites_read_the_values_of_the_forward():
    torch.manual_seed(0)
    model = ResNet18(width=4).eval()
    x = _x()
    res = ag.feature_sparsity(model, x, layers=["relu", "relu_1", "relu_2", "layer1.0", "relu_2:input"])
    with torch.no_grad():
        stem = F.relu(model.bn1(model.conv1(torch.from_numpy(x))))
        block = model.layer1[0]
        h1 = F.relu(block.bn1(block.conv1(stem)))
        h2 = F.relu(block.bn2(block.conv2(h1)) + block.shortcut(stem))
    for j, h in enumerate((stem, h1, h2, h2, h2)):
        np.testing.assert_array_equal(res.per_sample[:, j], _zeros(h))
    a = ag.populated_region_set(model, x, layer="relu_5")
    b = ag.populated_region_set(model, x, layer="relu_5:input")
    assert np.array_equal(a.region_ids, b.region_ids) and a.layer == "relu_5" and b.layer == "relu_5:input"


def test_reused_inplace_relu_gives_one_site_per_call():
    torch.manual_seed(0)
    model = TorchvisionResNet18((3, 32, 32), C, width=4).eval()
    x = _x()
    res = ag.feature_sparsity(model, x, layers=["layer1.0.relu#0", "layer1.0.relu#1", "layer1.0.relu"])
    with torch.no_grad():
        stem = model.maxpool(F.relu(model.bn1(model.conv1(torch.from_numpy(x)))))
        block = model.layer1[0]
        h0 = F.relu(block.bn1(block.conv1(stem)))
        h1 = F.relu(block.bn2(block.conv2(h0)) + stem)
    np.testing.assert_array_equal(res.per_sample[:, 0], _zeros(h0))
    np.testing.assert_array_equal(res.per_sample[:, 1], _zeros(h1))
    np.testing.assert_allclose(res.per_sample[:, 2], (_zeros(h0) + _zeros(h1)) / 2)  # the calls concatenated
    assert ag.populated_region_set(model, x, layer="layer1.0.relu").n_units == h0[0].numel() + h1[0].numel()
    # the k-th call of any module, e.g. the second convolution's input
    assert ag.populated_region_set(model, x, layer="layer1.0.conv2:input").n_units == h0[0].numel()


class _Functional(nn.Module):
    """Every functional spelling of ReLU, once each."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(x.flatten(1))
        h = F.relu(self.fc1(h), inplace=True)
        h = self.fc1(h).relu()
        h = self.fc1(h).relu_()
        return self.fc2(F.relu(self.fc1(h) - 0.1))


def test_every_functional_spelling_is_a_site():
    torch.manual_seed(0)
    model = _Functional().eval()
    x = _x((6,), n=40)
    res = ag.layerwise_prs(model, x)
    assert res.layers == ["relu", "relu_1", "relu_2", "relu_", "relu_3"]
    sparsity = ag.feature_sparsity(model, x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        h = [torch.relu(t)]
        for _ in range(3):
            h.append(torch.relu(model.fc1(h[-1])))
        h.append(torch.relu(model.fc1(h[-1]) - 0.1))
    for j, hj in enumerate(h):
        np.testing.assert_array_equal(sparsity.per_sample[:, j], _zeros(hj))
        assert res.n_regions[j] == len({tuple(r) for r in (hj > 0).numpy().tolist()})


def test_leaf_module_relu_calls_are_not_sites():
    class WithTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
            self.fc = nn.Linear(8 * 4, 3)

        def forward(self, x):
            return self.fc(F.relu(self.encoder(x)).flatten(1))

    torch.manual_seed(0)
    model = WithTransformer().eval()
    x = _x((4, 8), n=5)
    res = ag.layerwise_prs(model, x)  # the encoder's own F.relu runs inside a leaf module: not a site
    assert res.layers == ["relu"]


def test_sites_and_unknown_layers_list_the_names():
    torch.manual_seed(0)
    clf = _classifier("resnet18", (3, 32, 32))
    x, _ = _data((3, 32, 32))
    names = r"unknown layer 'relu_99'; available layers: .*layer4\.1\.bn2.*ReLU sites: relu, relu_1, .*relu_16"
    with pytest.raises(ValueError, match=names):
        ag.populated_region_set(clf, x, layer="relu_99")
    with pytest.raises(ValueError, match="ReLU sites: relu, layer1.0.relu#0, layer1.0.relu#1"):
        ag.layerwise_prs(_classifier("tv_resnet18", (3, 32, 32)), x, layers=["layer1.0.relu#x"])
    with pytest.raises(ValueError, match=r"'layer1.0.relu' runs 2 time\(s\) per forward \(#0 to #1\)"):
        ag.feature_sparsity(_classifier("tv_resnet18", (3, 32, 32)), x, layers=["layer1.0.relu#2"])
    assert model_view(clf, x).relu_layers() == MODELS["resnet18"][1](None)


@pytest.mark.parametrize(
    "act, named",
    [(nn.GELU(), "GELU at '2'"), (nn.SiLU(), "SiLU at '2'"), (F.silu, "silu at 'silu'"), (F.gelu, "gelu at 'gelu'")],
)
def test_gelu_and_silu_networks_are_refused_by_name(act, named):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(6, 8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(act(self.hidden(x)))

    module = isinstance(act, nn.Module)
    model = (nn.Sequential(nn.Flatten(), nn.Linear(6, 8), act, nn.Linear(8, 3)) if module else Functional()).eval()
    x = _x((6,), n=8)
    for fn in (ag.layerwise_prs, ag.feature_sparsity):
        with pytest.raises(ValueError, match=f"applies {named} and no ReLU: .*for ReLU networks"):
            fn(model, x)
    # a named layer is read as asked: the sign pattern of that tensor
    layer = "2" if module else "fc:input"
    assert ag.layerwise_prs(model, x, layers=[layer]).layers == [layer]
    with pytest.raises(ValueError, match="no ReLU activation"):
        ag.layerwise_prs(nn.Sequential(nn.Flatten(), nn.Linear(6, 3)), x)


class _DataDependent(nn.Module):
    """Control flow on the data: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        h = self.relu(self.fc1(x))
        if h.sum() > 0:
            h = F.relu(h - 0.5)
        return self.fc2(h)


def test_untraceable_model_falls_back_to_hooks_with_a_warning():
    torch.manual_seed(0)
    x = _x((6,), n=20)
    with pytest.warns(UserWarning, match="torch.fx cannot trace the model .*fall back to its nn.ReLU modules"):
        res = ag.layerwise_prs(_DataDependent(), x)
    assert res.layers == ["relu"]
    with pytest.warns(UserWarning, match="cannot trace"), pytest.raises(ValueError, match="ReLU sites: relu$"):
        ag.populated_region_set(_DataDependent(), x, layer="relu_1")


def test_forward_that_differs_from_its_trace_raises():
    from torch.fx._symbolic_trace import is_fx_tracing

    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            h = F.relu(x)
            if not is_fx_tracing():
                h = F.relu(h - 1)
            return self.fc(h)

    with pytest.raises(RuntimeError, match="made 2 functional ReLU call.*trace has 1"):
        ag.layerwise_prs(Sneaky(), _x((6,), n=4))


def test_nothing_mutated_and_nothing_left_behind():
    torch.manual_seed(0)
    model = TorchvisionResNet18((3, 32, 32), C, width=4)
    functional = ResNet18(width=4)
    x = _x()
    for m in (model, functional):
        m.train()  # BatchNorm statistics must not move, modes must come back
        with assert_unchanged(m, x):
            ag.layerwise_prs(m, x)
            ag.feature_sparsity(m, x)
            ag.populated_region_set(m, x, layer="relu_3" if m is functional else "layer2.0.relu#1")
        assert all(not k._forward_hooks and not k._forward_pre_hooks for k in m.modules())
    acts = Activations(model_view(functional, x))
    with pytest.raises(KeyError), acts.recording([LayerRef("relu_2")]):
        raise KeyError("boom")
    assert all(not k._forward_hooks and not k._forward_pre_hooks for k in functional.modules())
    assert torch._C._len_torch_function_stack() == 0


# --- DCT blocks on 3x224x224 ------------------------------------------------------------------------------------


def _allocated(fn) -> int:
    """Bytes the CPU allocator hands out while ``fn`` runs (summed over every allocation)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages())


def test_dct_blocks_on_224_are_bounded_by_the_batch():
    shape = (3, 224, 224)
    blocks = ag.dct_subspaces(shape, block_size=8, stride=8)  # Hold me tight, Fig. 1: the 28 diagonal 8x8 blocks
    assert len(blocks) == 28 and blocks[-1].name == "dct[216:224]" and blocks[0].dim == 3 * 64
    v = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    p = blocks[5].project(v)
    torch.testing.assert_close(blocks[5].project(p), p, atol=1e-4, rtol=1e-4)  # a projection
    assert abs(float((p * (v - p)).sum())) < 1e-2 * float((v * v).sum()) ** 0.5  # orthogonal
    # memory: a few copies of the batch plus the 0/1 masks (H x W each), never a dense D x D basis (90 GB)
    sample_bytes = v[0].numel() * 4
    masks_bytes = len(blocks) * 224 * 224 * 4
    stack = SubspaceStack(blocks)
    which = torch.arange(4) % len(blocks)
    for batch, rows in ((v[:1], which[:1]), (v, which)):
        budget = 8 * len(batch) * sample_bytes
        assert _allocated(functools.partial(blocks[5].project, batch)) < budget
        assert _allocated(functools.partial(stack.project, batch, rows)) < budget + 2 * masks_bytes


def test_dct_blocks_that_do_not_fit_the_inputs_are_refused():
    clf = _classifier("resnet18", (3, 224, 224))
    x, y = _data((3, 224, 224))
    mismatch = r"lives in samples of shape \(3, 32, 32\), but the inputs have shape \(3, 224, 224\)"
    with pytest.raises(ValueError, match=mismatch):
        ag.subspace_margins(clf, x, y, subspaces=ag.dct_subspaces((3, 32, 32)))
    with pytest.raises(ValueError, match="block_size 256 exceeds the image side 224"):
        ag.dct_subspaces((3, 224, 224), block_size=256)
    with pytest.raises(ValueError, match="stride"):
        ag.dct_subspaces((3, 224, 224), block_size=8, stride=0)


# --- the architectures themselves -------------------------------------------------------------------------------


def test_architectures_have_the_published_sizes_and_layouts():
    def params(m):
        return sum(p.numel() for p in m.parameters())

    assert params(TorchvisionResNet18()) == 11_689_512  # torchvision's resnet18
    assert params(WideResNet()) == 2_748_890  # WRN-16-4 on CIFAR-10
    tv = TorchvisionResNet18()
    assert isinstance(tv.layer1[0].relu, nn.ReLU) and tv.layer1[0].relu.inplace
    assert "layer2.0.downsample.0.weight" in tv.state_dict() and tv.conv1.kernel_size == (7, 7)
    assert ResNet18().conv1.kernel_size == (3, 3) and ResNet18((3, 224, 224)).conv1.stride == (2, 2)
    assert isinstance(VGG11BN((3, 224, 224), width=4).classifier, nn.Sequential)
    with pytest.raises(ValueError, match="depth must be 6 n \\+ 4"):
        WideResNet(depth=15)
    with pytest.raises(ValueError, match="input_shape"):
        VGG11BN((3, 16, 16))
    with pytest.raises(ValueError, match="width"):
        ResNet18(width=0)

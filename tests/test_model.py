import warnings

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.core.model import LayerRef, model_view, module_of
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.validation import check_labels
from art_geometry.datasets import MLP, make_classifier
from tests.helpers import assert_unchanged


class SkipSequential(nn.Sequential):
    """A Sequential whose forward differs from running its children in order (ART would get it wrong)."""

    def forward(self, x):
        h = self[0](x)
        return self[2](self[1](h) + h)


def _seq():
    torch.manual_seed(0)
    return SkipSequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))


def test_art_classifier_uses_module_forward_and_preprocessing():
    from art.estimators.classification import PyTorchClassifier

    model = _seq()
    mean, std = 0.5, 2.0
    clf = PyTorchClassifier(model, nn.CrossEntropyLoss(), (4,), 3, preprocessing=(mean, std), clip_values=(0, 1))
    view = model_view(clf)
    x = torch.rand(6, 4)
    with view.evaluating(), torch.no_grad():
        got = view(x)
    np.testing.assert_allclose(got.numpy(), model((x - mean) / std).detach().numpy(), rtol=1e-6)
    assert view.nb_classes == 3 and view.input_shape == (4,) and view.clip_values == (0.0, 1.0)
    assert view.source == "art"


def test_art_preprocessing_is_differentiable():
    from art.estimators.classification import PyTorchClassifier

    model = nn.Linear(4, 2, bias=False)
    clf = PyTorchClassifier(model, nn.CrossEntropyLoss(), (4,), 2, preprocessing=(0.0, 4.0))
    view = model_view(clf)
    x = torch.rand(1, 4, requires_grad=True)
    with view.evaluating():
        (g,) = torch.autograd.grad(view(x)[0, 0], x)
    np.testing.assert_allclose(g[0].numpy(), model.weight[0].detach().numpy() / 4.0, rtol=1e-6)


def test_foolbox_model_is_adapted():
    import foolbox

    model = _seq().eval()
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), preprocessing=dict(mean=0.25, std=0.5))
    x = torch.rand(5, 4)
    view = model_view(fmodel, x)
    assert view.module is model and view.nb_classes == 3 and view.clip_values == (0.0, 1.0)
    with view.evaluating(), torch.no_grad():
        np.testing.assert_allclose(view(x).numpy(), fmodel(x).numpy(), rtol=1e-6)


def test_plain_module_needs_data_for_classes():
    model = _seq()
    with pytest.raises(ValueError, match="pass x"):
        model_view(model)
    assert model_view(model, np.zeros((2, 4), np.float32)).nb_classes == 3
    assert module_of(model) is model


def test_evaluating_restores_modes_and_flags_even_on_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.Linear(3, 2))
    model.train()
    model[0].weight.requires_grad_(False)
    view = model_view(model, np.zeros((2, 3), np.float32))
    with assert_unchanged(model):
        with pytest.raises(RuntimeError):
            with view.evaluating():
                assert not any(m.training for m in model.modules())
                assert not any(p.requires_grad for p in model.parameters())
                raise RuntimeError("boom")
    assert model.training and model[1].training


def test_capture_removes_hooks_and_reads_input_or_output():
    model = _seq()
    view = model_view(model, np.zeros((1, 4), np.float32))
    refs = [view.resolve_layer("1"), view.resolve_layer("2:input")]
    x = torch.rand(3, 4)
    with view.evaluating(), view.capture(refs) as store, torch.no_grad():
        view(x)
        h = model[0](x)
        torch.testing.assert_close(store[refs[0]][0], torch.relu(h))
        torch.testing.assert_close(store[refs[1]][0], torch.relu(h) + h)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert str(refs[1]) == "2:input" and LayerRef.parse("a.b") == LayerRef("a.b", "output")


def test_probability_outputs_warn():
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    from art_geometry import populated_region_set

    with pytest.warns(UserWarning, match="probabilities"):
        populated_region_set(model, np.random.default_rng(0).random((10, 4), dtype=np.float32), layer="0")


def test_logits_do_not_warn():
    from art_geometry import populated_region_set

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        populated_region_set(_seq(), np.random.default_rng(0).random((10, 4), dtype=np.float32), layer="1")


def test_unsupported_and_single_class_models():
    with pytest.raises(TypeError, match="unsupported classifier"):
        model_view(object())
    with pytest.raises(ValueError, match="at least 2"):
        model_view(nn.Linear(4, 1), np.zeros((1, 4), np.float32))
    clf = make_classifier(MLP((4,), (3,), nb_classes=2), (4,), 2)
    assert model_view(clf).nb_classes == 2


def test_check_labels():
    assert check_labels(np.eye(3)[[2, 0]], 2, 3).tolist() == [2, 0]
    assert check_labels(torch.tensor([1, 2]), 2, 3).dtype == np.int64
    with pytest.raises(ValueError, match="out of range"):
        check_labels(np.array([0, 3]), 2, 3)
    with pytest.raises(ValueError, match="labels 1 samples but x holds 2"):
        check_labels(np.array([0]), 2, 3)
    with pytest.raises(ValueError, match="integer"):
        check_labels(np.array([0.5, 1.0]), 2, 3)


def test_norm_parsing_duals_and_spellings():
    for spelling in (2, 2.0, "2", "l2", "L2", L2):
        assert Norm.parse(spelling) == L2
    for spelling in (np.inf, "inf", "linf", " Linf ", LINF):
        assert Norm.parse(spelling) == LINF
    assert Norm.parse(1, allowed=(L1, L2, LINF)) == L1
    for bad in (1, 3, "l7", True, None, "two"):
        with pytest.raises(ValueError, match="norm must be one of"):
            Norm.parse(bad)
    assert L2.dual == L2 and LINF.dual == L1 and L1.dual == LINF
    assert (LINF.art, L2.art, LINF.torchattacks, L2.torchattacks) == ("inf", 2, "Linf", "L2")
    v = torch.tensor([[3.0, -4.0], [1.0, 0.0]])
    assert torch.equal(L2.measure(v), torch.tensor([5.0, 1.0]))
    assert torch.equal(LINF.measure(v), torch.tensor([4.0, 1.0]))
    assert torch.equal(L1.measure(v), torch.tensor([7.0, 1.0]))
    # the steepest unit step r maximises <w, r> over the unit p-ball: <w, r> = ||w||_q
    for norm in (L1, L2, LINF):
        r = norm.unit_step(v, norm.dual.measure(v))
        torch.testing.assert_close((r * v).sum(dim=1), norm.dual.measure(v))
        torch.testing.assert_close(norm.measure(r), torch.ones(2))

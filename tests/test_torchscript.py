"""
TorchScript and traced models end to end: every family either gives the Python module's result or refuses with
one sentence naming TorchScript; the README's report command on a scripted model writes a report whose skipped
parts carry a visible note.
"""

import json

import numpy as np
import pytest
import torch

import art_geometry as ag
from art_geometry.datasets import SmallCNN

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def models(digits):
    torch.manual_seed(0)
    net = SmallCNN(SHAPE).eval()
    x = torch.as_tensor(digits.x_test[:2])
    return {"module": net, "script": torch.jit.script(net), "trace": torch.jit.trace(net, x)}


#: Families that run on a TorchScript module, each a call giving the arrays compared with the Python module's.
RUNS = {
    "deepfool_margins": lambda m, x, y: ag.deepfool_margins(m, x, y).margins,
    "deepfool_margins_linf": lambda m, x, y: ag.deepfool_margins(m, x, y, norm="inf").margins,
    "subspace_margins": lambda m, x, y: ag.subspace_margins(m, x, y, subspaces=ag.dct_subspaces(SHAPE, 4, 4)).margins,
    "final_layer_similarity": lambda m, x, y: ag.final_layer_similarity(m).matrix,
    "decision_function": lambda m, x, y: ag.decision_function(m, x, y),
    "decision_surface": lambda m, x, y: ag.decision_surface(m, x[:2], y[:2], resolution=5).decision,
    "jacobian_stats": lambda m, x, y: ag.jacobian_stats(m, x, y).l1,
    "hessian_eigenvalues": lambda m, x, y: ag.hessian_eigenvalues(m, x[:2], y[:2], of="loss", k=2).eigenvalues,
    "robustness_indicator": lambda m, x, y: ag.robustness_indicator(m, x[:2], y[:2], eps=0.05).first_order,
    "relu_layers": lambda m, x, y: np.array(ag.model_view(m, x[:1]).relu_layers()),
}

#: Families that cannot run on one, with the sentence they refuse with.
REFUSED = {
    "populated_region_set": (lambda m, x, y: ag.populated_region_set(m, x, y), "no forward hooks"),
    "layerwise_prs": (lambda m, x, y: ag.layerwise_prs(m, x, y), "no forward hooks"),
    "feature_sparsity": (lambda m, x, y: ag.feature_sparsity(m, x, y), "no forward hooks"),
    "inclusion_ratio": (lambda m, x, y: ag.inclusion_ratio(m, x, x), "no forward hooks"),
    "parameter_loss_surface": (lambda m, x, y: ag.parameter_loss_surface(m, x, y, resolution=3),
                               "functional_call cannot swap"),
    "margin_bounds": (lambda m, x, y: ag.margin_bounds(m, x, y, method="lipschitz"), "a TorchScript module"),
}


@pytest.mark.parametrize("kind", ["script", "trace"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_family_gives_the_python_modules_result(models, digits, kind, name):
    x, y = digits.x_test[:12], digits.y_test[:12]
    got, want = RUNS[name](models[kind], x, y), RUNS[name](models["module"], x, y)
    if want.dtype.kind in "US":
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["script", "trace"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_family_refuses_with_one_sentence(models, digits, kind, name):
    call, sentence = REFUSED[name]
    x, y = digits.x_test[:12], digits.y_test[:12]
    with pytest.raises((TypeError, ValueError), match=sentence) as info:
        call(models[kind], x, y)
    assert "TorchScript" in str(info.value)


def test_readme_report_command_on_a_scripted_model(models, digits, tmp_path, capsys):
    """README: ``art-geometry report --model scripted.pt --data my_data.npz --sections margins,surface``."""
    from art_geometry.cli import main

    models["script"].save(str(tmp_path / "scripted.pt"))
    np.savez(tmp_path / "my_data.npz", x_train=digits.x_train[:100], y_train=digits.y_train[:100],
             x_test=digits.x_test[:30], y_test=digits.y_test[:30])
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="no valid input range"):  # a scripted module declares no input range
        code = main(["report", "--model", str(tmp_path / "scripted.pt"), "--data", str(tmp_path / "my_data.npz"),
                     "--sections", "margins,surface", "--samples", "20", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    margins = report["sections"]["margins"]["data"]["scripted"]
    assert "TorchScript" in margins["l2_bracket"]["skipped"] and margins["l2"]["summary"]["n_samples"] == 20
    assert "bracket skipped: unsupported by the certified bounds: a TorchScript module" in (
        out / "report.html").read_text()

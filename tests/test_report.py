import json

import numpy as np
import pytest

from art_geometry.cli import load_data, load_model, main
from art_geometry.datasets import MLP, Dataset, make_classifier, train_classifier
from art_geometry.report import (
    SCHEMA_VERSION,
    RegionsSection,
    ReportContext,
    validate_report,
    write_report,
)


@pytest.fixture(scope="module")
def tiny_ctx(digits):
    data = Dataset(digits.x_train[:300], digits.y_train[:300], digits.x_test[:100], digits.y_test[:100], "digits-300")
    models = {}
    for name, hidden in (("narrow", (8,)), ("wide", (32,))):
        clf = make_classifier(MLP((1, 8, 8), hidden), (1, 8, 8), 10)
        models[name] = train_classifier(clf, data.x_train, data.y_train, nb_epochs=2, seed=0)
    return ReportContext(models=models, data=data, n_samples=50, verbose=False)


def test_regions_section_numbers_match_the_metrics(tiny_ctx, tmp_path):
    from art_geometry import inclusion_ratio, populated_region_set

    json_path, html_path, rows = write_report(tiny_ctx, [RegionsSection()], tmp_path)
    report = json.loads(json_path.read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    data = report["sections"]["regions"]["data"]
    for name, clf in tiny_ctx.models.items():
        assert data[name]["prs_train"]["ratio"] == populated_region_set(clf, tiny_ctx.data.x_train).ratio
        assert data[name]["inclusion"]["ratio"] == inclusion_ratio(clf, tiny_ctx.data.x_train, tiny_ctx.data.x_test).ratio
    page = html_path.read_text()
    assert page.count("<img") == 2 and "narrow" in page and "inclusion ratio" in page
    assert ("wide", "PRS ratio (train, all 300)", f"{data['wide']['prs_train']['ratio']:.4g}") in rows
    assert ("wide", "PRS ratio (test, all 100)", f"{data['wide']['prs_test']['ratio']:.4g}") in rows
    validate_report(report)
    # one leaderboard record per model, the train and test PRS ratios under two different sample sets
    records = {r["name"]: r for r in report["models"]}
    assert list(records) == ["narrow", "wide"] and records["wide"]["architecture"] == "MLP"
    assert records["wide"]["clean_accuracy"] is None and records["wide"]["dataset"] == "digits-300"
    metrics = records["narrow"]["metrics"]
    assert metrics["prs_ratio_train"]["samples"] == "train, all 300"
    assert metrics["prs_ratio_test"]["samples"] == "test, all 100"
    assert metrics["prs_ratio_train"]["value"] == data["narrow"]["prs_train"]["ratio"]
    assert page.count('<tr><td data-v="') == 2
    # the per-sample tables: region id of every training sample, as the metric computes it
    exports = {(e["path"][0], e["path"][1]): e for e in report["exports"]}
    table = exports[("wide", "prs_train")]
    assert table["rows"] == 300 and table["parquet"] is None or table["parquet"].endswith(".parquet")
    with (tmp_path / table["csv"]).open() as fh:
        header, *lines = fh.read().splitlines()
    ids = [int(line.split(",")[header.split(",").index("region_ids")]) for line in lines]
    expected = populated_region_set(tiny_ctx.models["wide"], tiny_ctx.data.x_train).region_ids
    np.testing.assert_array_equal(ids, expected)


@pytest.fixture(scope="module")
def small_npz(digits, tmp_path_factory):
    """A 256/100 slice of digits, so the four demo models train in a few seconds."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x_train=digits.x_train[:256], y_train=digits.y_train[:256], x_test=digits.x_test[:100],
             y_test=digits.y_test[:100])
    return str(path)


def test_cli_demo(tmp_path, capsys, small_npz):
    argv = ["report", "--demo", "--data", small_npz, "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert main(argv + ["--sections", "regions"]) == 0
    out = capsys.readouterr().out
    names = ["A: natural, batch 512", "B: natural, batch 32", "C: Jacobian-regularised", "D: PGD adversarial"]
    assert all(name in out for name in names) and "report.html" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["sections"]) == {"regions"}
    assert report["meta"]["models"] == names


def test_cli_demo_tracks_every_model(tmp_path, small_npz):
    argv = ["report", "--demo", "--data", small_npz, "--epochs", "2", "--out", str(tmp_path), "--quiet"]
    assert main(argv + ["--sections", "training"]) == 0
    histories = json.loads((tmp_path / "report.json").read_text())["sections"]["training"]["data"]["histories"]
    assert len(histories) == 4
    for h in histories.values():
        assert [r["epoch"] for r in h["epochs"]] == [0, 1]
        assert 0 <= h["epochs"][-1]["test"]["robust_accuracy"] <= h["epochs"][-1]["test"]["accuracy"]
    page = (tmp_path / "report.html").read_text()
    assert page.count('<details class="model"><summary><h3>') == 4
    # the overlaid training curves: one figure per quantity, every model a line in it
    assert "Training curves" in page and "on its own subset of 100 test samples" in page


def test_cli_user_model_and_npz(tmp_path, digits):
    import torch

    model = MLP((1, 8, 8), (16,)).eval()
    torch.jit.script(model).save(str(tmp_path / "m.pt"))
    np.savez(tmp_path / "d.npz", x=digits.x_test[:60], y=digits.y_test[:60])
    torch.save(model.state_dict(), tmp_path / "w.pt")
    code = main(["report", "--model", str(tmp_path / "m.pt"), "--model", "tests.test_report:digits_mlp",
                 "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "out"), "--quiet", "--sections", "regions"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    regions = report["sections"]["regions"]["data"]
    assert report["meta"]["n_train"] == 60
    assert "TorchScript" in regions["m"]["skipped"]
    from art_geometry import populated_region_set

    expected = populated_region_set(model, digits.x_test[:60]).ratio
    assert regions["tests.test_report:digits_mlp"]["prs_train"]["ratio"] == expected


def digits_mlp():
    """A factory for the CLI test (module:factory form)."""
    return MLP((1, 8, 8), (16,))


def test_cli_errors(tmp_path):
    with pytest.raises(ValueError, match="--data must be"):
        load_data("nope")
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="must hold arrays"):
        load_data(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="cannot load factory"):
        load_model("art_geometry.datasets:Nope")
    with pytest.raises(SystemExit, match="unknown section"):
        main(["report", "--demo", "--epochs", "1", "--out", str(tmp_path), "--quiet", "--sections", "nope"])
    with pytest.raises(SystemExit, match="--model and --data"):
        main(["report", "--out", str(tmp_path)])

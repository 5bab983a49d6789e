"""A checkpointed report: an interrupted run resumes without recomputing finished sections or retrained models."""

import json
from dataclasses import replace
from typing import Any

import pytest

from art_geometry.cli import main
from art_geometry.datasets import MLP, Dataset, make_classifier, train_classifier
from art_geometry.report import RegionsSection, ReportContext, Section, write_report


class Counted(Section):
    """A cheap section that counts its computations and can be told to fail (an interruption)."""

    key = "counted"
    title = "Counted"

    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, 0

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise KeyboardInterrupt
        return {name: float(clf.predict(ctx.data.x_test[:5]).sum()) for name, clf in ctx.models.items()}

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        return ""


class CountedRegions(RegionsSection):
    def __init__(self):
        self.calls = 0

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        self.calls += 1
        return super().compute(ctx)


@pytest.fixture(scope="module")
def ctx(digits):
    data = Dataset(digits.x_train[:200], digits.y_train[:200], digits.x_test[:60], digits.y_test[:60], "digits-200")
    clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10)
    return ReportContext(models={"mlp": train_classifier(clf, data.x_train, data.y_train, nb_epochs=1, seed=0)},
                         data=data, n_samples=30, verbose=False)


def _sections(report_path) -> dict[str, Any]:
    return json.loads(report_path.read_text())["sections"]


def test_an_interrupted_report_resumes_with_the_finished_sections_loaded(ctx, tmp_path):
    whole, _, _ = write_report(ctx, [RegionsSection(), Counted()], tmp_path / "whole")
    regions = CountedRegions()
    with pytest.raises(KeyboardInterrupt):
        write_report(ctx, [regions, Counted(fail=True)], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    assert regions.calls == 1 and not (tmp_path / "out" / "report.json").exists()
    regions, counted = CountedRegions(), Counted()
    resumed, _, _ = write_report(ctx, [regions, counted], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    assert (regions.calls, counted.calls) == (0, 1)
    expected, got = _sections(whole), _sections(resumed)
    assert got["regions"]["data"] == expected["regions"]["data"] and got["counted"] == expected["counted"] | {
        "seconds": got["counted"]["seconds"]}
    # a third run computes nothing at all
    regions, counted = CountedRegions(), Counted()
    write_report(ctx, [regions, counted], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    assert (regions.calls, counted.calls) == (0, 0)


def test_a_checkpoint_of_other_settings_or_models_is_refused(ctx, tmp_path):
    write_report(ctx, [Counted()], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"seed: checkpoint has 0, this run 1"):
        write_report(replace(ctx, seed=1), [Counted()], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"n_samples: checkpoint has 30, this run 20"):
        write_report(replace(ctx, n_samples=20), [Counted()], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    other = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"section 'counted' was computed on other models .*differ: mlp"):
        write_report(replace(ctx, models={"mlp": other}), [Counted()], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        write_report(ctx, [Counted()], tmp_path / "out", checkpoint=tmp_path / "file")
    with pytest.raises(TypeError, match="checkpoint must be a directory path"):
        write_report(ctx, [Counted()], tmp_path / "out", checkpoint=3)


def test_a_corrupt_section_file_is_recomputed_never_trusted(ctx, tmp_path):
    write_report(ctx, [Counted()], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "report" / "section-counted.json"
    blob = path.read_bytes()
    path.write_bytes(blob.replace(b'"mlp": ', b'"mlp": 1', 1))
    counted = Counted()
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        write_report(ctx, [counted], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    assert counted.calls == 1
    path.write_bytes(blob[:10])
    counted = Counted()
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        write_report(ctx, [counted], tmp_path / "out", checkpoint=tmp_path / "ckpt")
    assert counted.calls == 1


def test_cli_demo_resumes_trained_models_and_sections(tmp_path, capsys, digits):
    import numpy as np

    data = tmp_path / "small.npz"
    np.savez(data, x_train=digits.x_train[:128], y_train=digits.y_train[:128], x_test=digits.x_test[:40],
             y_test=digits.y_test[:40])
    argv = ["report", "--demo", "--data", str(data), "--epochs", "1", "--samples", "20", "--sections", "regions",
            "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "plain")]) == 0
    ckpt = str(tmp_path / "ckpt")
    assert main(argv + ["--out", str(tmp_path / "first"), "--checkpoint", ckpt]) == 0
    stored = sorted(p.name for p in (tmp_path / "ckpt" / "report").iterdir())
    assert stored == sorted([f"model-{i}.pt" for i in range(4)] + [f"history-{i}.json" for i in range(4)]
                            + ["manifest.json", "section-regions.json"])
    (tmp_path / "ckpt" / "report" / "model-3.pt").unlink()
    (tmp_path / "ckpt" / "report" / "section-regions.json").unlink()
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "second"), "--checkpoint", ckpt]) == 0
    assert "model 0, model 1, model 2" not in capsys.readouterr().err  # --quiet prints nothing
    plain, second = _sections(tmp_path / "plain" / "report.json"), _sections(tmp_path / "second" / "report.json")
    assert second["regions"]["data"] == plain["regions"]["data"]
    capsys.readouterr()
    assert main(argv[:-1] + ["--out", str(tmp_path / "third"), "--checkpoint", ckpt]) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "model 0, model 1, model 2, model 3, section regions loaded" in err
    assert "training" not in err
    with pytest.raises(SystemExit):
        main(argv[:4] + ["--epochs", "2"] + argv[6:] + ["--out", str(tmp_path / "x"), "--checkpoint", ckpt])
    assert "settings.demo.epochs: checkpoint has 1, this run 2" in capsys.readouterr().err

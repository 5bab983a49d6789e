"""The JSON Schema of report.json and the leaderboard records it describes."""

import copy
from typing import Any

import numpy as np
import pytest

from art_geometry.datasets import MLP, Dataset
from art_geometry.report import (
    SCHEMA_VERSION,
    Metric,
    ReportContext,
    Section,
    report_schema,
    validate_report,
)
from art_geometry.report.build import build_report, render_html
from art_geometry.report.leaderboard import (
    highlights,
    leaderboard_columns,
    model_records,
)

jsonschema = pytest.importorskip("jsonschema", reason="schema validation needs jsonschema (the 'test' extra)")


class _Fixed(Section):
    """A section whose numbers are given: accuracy and margin per model, on a named sample set."""

    key = "fixed"
    title = "Fixed"

    def __init__(self, values: dict[str, tuple[float, float]], samples: dict[str, str]) -> None:
        self.values, self.samples = values, samples

    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        return {name: {"acc": a, "margin": m} for name, (a, m) in self.values.items()}

    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        return "<p>fixed</p>"

    def metrics(self, data: dict[str, Any]) -> dict[str, list[Metric]]:
        return {name: [Metric("robust_accuracy", "robust accuracy", d["acc"], self.samples[name], "f"),
                       Metric("margin_l2_median", "median L2 margin", d["margin"], self.samples[name], "g")]
                for name, d in data.items()}

    def record(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: {"robust_accuracy": d["acc"], "threat_model": "Linf", "eps": 0.1, "attack": "PGD"}
                for name, d in data.items()}


@pytest.fixture()
def ctx():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 1, 8, 8)).astype(np.float32)
    y = np.arange(6) % 10
    models = {"a": MLP((1, 8, 8), (4,)), "b": MLP((1, 8, 8), (4,))}
    return ReportContext(models=models, data=Dataset(x, y, x, y, "toy"), verbose=False)


def test_records_columns_and_answers(ctx):
    section = _Fixed({"a": (0.5, 0.2), "b": (0.7, 0.1)}, {"a": "test subset, 6", "b": "test subset, 6"})
    report = build_report(ctx, [section])
    validate_report(report)
    records = report["models"]
    assert [r["name"] for r in records] == ["a", "b"]
    assert records[1]["robust_accuracy"] == 0.7 and records[1]["architecture"] == "MLP"
    assert records[0]["clean_accuracy"] is None and records[0]["dataset"] == "toy"
    assert [c.key for c in leaderboard_columns(records)] == ["robust_accuracy", "margin_l2_median"]
    assert highlights(records) == [
        "Highest robust accuracy under PGD (test subset, 6): b (0.7)",
        "Highest median L2 margin (test subset, 6): a (0.2)",
    ]
    page = render_html(report, ctx, [section])
    assert page.count('<tr><td data-v="') == 2 and 'data-v="0.7"' in page


def test_a_column_never_means_two_things(ctx):
    section = _Fixed({"a": (0.5, 0.2), "b": (0.7, 0.1)}, {"a": "test subset, 6", "b": "train, all 6"})
    records = build_report(ctx, [section])["models"]
    (acc, _) = leaderboard_columns(records)
    assert acc.samples == "test subset, 6 / train, all 6"


def test_schema_is_shipped_and_versioned():
    schema = report_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    jsonschema.Draft202012Validator.check_schema(schema)
    with pytest.raises(ValueError, match="no report schema"):
        report_schema("0.1")


def test_invalid_reports_fail(ctx):
    report = build_report(ctx, [_Fixed({"a": (0.5, 0.2), "b": (0.7, 0.1)}, dict.fromkeys("ab", "test, all 6"))])
    for damage in (
        lambda r: r.pop("models"),
        lambda r: r["models"][0].pop("threat_model"),
        lambda r: r["models"][0].update(robust_accuracy=1.5),
        lambda r: r["models"][0]["metrics"]["robust_accuracy"].pop("samples"),
        lambda r: r["meta"].update(n_train=-1),
        lambda r: r["sections"]["fixed"].pop("seconds"),
    ):
        broken = copy.deepcopy(report)
        damage(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate_report(broken)
    with pytest.raises(ValueError, match="schema_version"):
        validate_report({"meta": {}})
    assert model_records(ctx, [], {"sections": {}})[0]["metrics"] == {}


def test_answers_pick_the_smallest_gradient_and_region_ratio():
    def record(name: str, jac: float, prs: float) -> dict[str, Any]:
        metrics = {"jacobian_l1_mean": {"label": "mean Jacobian l1", "value": jac, "samples": "test subset, 5"},
                   "prs_ratio_train": {"label": "PRS ratio", "value": prs, "samples": "train, all 9"}}
        return {"name": name, "metrics": metrics}

    lines = highlights([record("a", 2.0, 0.1), record("b", 1.0, 0.3), record("c", None, None)])
    assert lines == ["Lowest mean Jacobian l1 (test subset, 5): b (1)", "Lowest PRS ratio (train, all 9): a (0.1)"]


def test_cells_format_and_sort_keys():
    from art_geometry.report.templating import format_number, sort_key

    assert [format_number(v) for v in (0.123456, 3, None, float("nan"), "nan", "inf", "D")] == [
        "0.1235", "3", "-", "-", "-", "inf", "D"]
    # what the page's Number() reads: exact numbers, JavaScript's Infinity, empty for missing (sorted last)
    assert [sort_key(v) for v in (0.1, 2, "inf", "-inf", None, "nan", True, "D")] == [
        "0.1", "2.0", "Infinity", "-Infinity", "", "", "", ""]

"""
The leaderboard: one record per model with RobustBench-style keys (``name``, ``architecture``, ``dataset``,
``threat_model``, ``eps``, ``clean_accuracy``, ``robust_accuracy``) plus the geometry headline numbers of the
sections (:class:`~art_geometry.report.base.Metric`), each with the sample set it was measured on, and the
one-line answers to "which model is most robust" shown above the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from art_geometry.core.model import module_of
from art_geometry.report.base import Metric, ReportContext, Section

__all__ = ["Column", "highlights", "leaderboard_columns", "model_records"]

#: The RobustBench-style keys every record has (``None`` where no section measured them).
RECORD_KEYS = ("name", "architecture", "dataset", "threat_model", "eps", "clean_accuracy", "robust_accuracy")


@dataclass(frozen=True)
class Column:
    """
    :param key: Metric key.
    :param label: Heading.
    :param samples: The sample set of the column (every model's entry measured on a set of this description).
    :param formula: Definition, one line.
    """

    key: str
    label: str
    samples: str
    formula: str


def _architecture(classifier: Any) -> str:
    module = module_of(classifier)
    return str(getattr(module, "original_name", type(module).__name__))


def model_records(ctx: ReportContext, sections: Sequence[Section], report: dict[str, Any]) -> list[dict[str, Any]]:
    """
    :param ctx: The report context.
    :param sections: The sections computed.
    :param report: The report so far (its ``sections`` entries).
    :return: One record per model, in report order: the RobustBench-style keys, then ``metrics`` (key ->
             ``{"label", "value", "samples", "formula"}``) from every section's :meth:`Section.metrics`.
    """
    records = []
    per_section = [(s, report["sections"][s.key]["data"]) for s in sections if s.key in report["sections"]]
    for name, clf in ctx.models.items():
        record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
        record.update(name=name, architecture=_architecture(clf), dataset=ctx.data.name)
        metrics: dict[str, dict[str, Any]] = {}
        for section, data in per_section:
            record.update(section.record(data).get(name, {}))
            for m in section.metrics(data).get(name, []):
                metrics[m.key] = {"label": m.label, "value": m.value, "samples": m.samples, "formula": m.formula}
        record["metrics"] = metrics
        records.append(record)
    return records


#: Leaderboard column order: robustness first, then the geometry that explains it; other keys follow.
COLUMN_ORDER = (
    "clean_accuracy", "robust_accuracy", "robust_accuracy_certified", "robust_accuracy_deepfool", "margin_l2_median",
    "margin_l2_lower_median", "margin_l2_ratio_median", "margin_linf_median", "margin_linf_lower_median",
    "margin_linf_ratio_median", "prs_ratio_train", "prs_ratio_test", "inclusion_ratio", "jacobian_l1_mean",
    "hessian_top_eigenvalue",
)


def leaderboard_columns(records: Sequence[dict[str, Any]]) -> list[Column]:
    """
    :param records: The model records.
    :return: One column per metric key, in :data:`COLUMN_ORDER` and then first-seen order; a key measured on
             differently described sample sets across models gets them all in its heading, so that a heading
             never means two things.
    """
    columns: dict[str, Column] = {}
    for record in records:
        for key, m in record["metrics"].items():
            known = columns.get(key)
            if known is None:
                columns[key] = Column(key, m["label"], m["samples"], m["formula"])
            elif m["samples"] not in known.samples.split(" / "):
                columns[key] = Column(key, known.label, f"{known.samples} / {m['samples']}", known.formula)
    rank = {key: i for i, key in enumerate(COLUMN_ORDER)}
    return sorted(columns.values(), key=lambda c: rank.get(c.key, len(rank)))


def _best(records: Sequence[dict[str, Any]], key: str, largest: bool) -> tuple[str, Metric] | None:
    scored = [(r["name"], r["metrics"][key]) for r in records if r["metrics"].get(key, {}).get("value") is not None]
    scored = [(n, m) for n, m in scored if isinstance(m["value"], (int, float))]
    if not scored:
        return None
    pick = max if largest else min
    name, m = pick(scored, key=lambda item: item[1]["value"])
    attack = next(r.get("attack") for r in records if r["name"] == name) if key == "robust_accuracy" else None
    label = f"{m['label']} under {attack}" if attack else m["label"]
    return name, Metric(key, label, m["value"], m["samples"])


#: The one-line answers above the table: which model is most robust (largest robust accuracy and margins), and the
#: geometry that goes with it (smallest input gradient, fewest regions: Yu et al. 2019; the PRS paper).
_HEADLINES = (
    ("robust_accuracy", True), ("margin_l2_median", True), ("margin_linf_median", True),
    ("margin_l2_lower_median", True), ("jacobian_l1_mean", False), ("prs_ratio_train", False),
)


def highlights(records: Sequence[dict[str, Any]]) -> list[str]:
    """
    :param records: The model records.
    :return: Sentences "Highest <metric> (<sample set>): <model> (<value>)" for robust accuracy and the median
             margins (which model is most robust), then "Lowest ..." for the mean Jacobian l1 and the train PRS
             ratio (the geometry that explains it).
    """
    out = []
    for key, largest in _HEADLINES:
        best = _best(records, key, largest)
        if best is not None:
            name, m = best
            out.append(f"{'Highest' if largest else 'Lowest'} {m.label} ({m.samples}): {name} ({m.value:.4g})")
    return out

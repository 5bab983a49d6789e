"""
The pluggable unit of the benchmark report: a :class:`Section` computes JSON-safe numbers for the models of a
:class:`ReportContext`, names its headline numbers for the leaderboard (:class:`Metric`, each with the sample set
it was measured on), draws its comparison figures with every model on one axis (:class:`Panel`) and renders its
per-model detail as an HTML fragment (figures embedded as PNG, markup from the Jinja2 templates).

To add a section: subclass :class:`Section`, set ``key`` and ``title``, implement ``compute`` and ``render`` (and
``metrics`` / ``panels`` / ``record`` when it has numbers to compare), and list it in ``art_geometry.report.SECTIONS``.
"""

from __future__ import annotations

import abc
import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_geometry.datasets import Dataset
from art_geometry.report.templating import format_number, render

__all__ = ["Image", "Metric", "Panel", "ReportContext", "Section", "figure_html", "figure_uri", "table_html"]


@dataclass
class ReportContext:
    """
    What every section sees.

    :param models: Classifiers to compare, by display name (ART ``PyTorchClassifier`` or torch modules).
    :param data: The data set (train and test splits).
    :param seed: Seed for every random choice the sections make.
    :param n_samples: How many test samples the per-sample metrics use (sections may subsample to it).
    :param batch_size: Batch size for model evaluation.
    :param verbose: Show progress bars.
    :param extras: Section-specific inputs (e.g. a training history), by section key.
    """

    models: dict[str, Any]
    data: Dataset
    seed: int = 0
    n_samples: int = 500
    batch_size: int = 256
    verbose: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def test_subset(self) -> tuple[np.ndarray, np.ndarray]:
        """:return: The first ``n_samples`` of a seeded permutation of the test split (same for every section)."""
        idx = np.random.default_rng(self.seed).permutation(len(self.data.x_test))[: self.n_samples]
        return self.data.x_test[idx], self.data.y_test[idx]


@dataclass(frozen=True)
class Metric:
    """
    One headline number of one model, for the leaderboard and the terminal summary.

    :param key: Column key in the model records of ``report.json`` (the same for every model).
    :param label: Column heading in plain words.
    :param value: The number (``None`` when the model has none).
    :param samples: The sample set it was measured on, e.g. ``"train, all 1437"`` or ``"test subset, 200"``.
    :param formula: How it is computed, one line (shown on demand in the page).
    """

    key: str
    label: str
    value: float | None
    samples: str
    formula: str = ""


@dataclass(frozen=True)
class Image:
    """
    :param uri: The PNG as a ``data:`` URI (:func:`figure_uri`).
    :param alt: Alternative text.
    """

    uri: str
    alt: str


@dataclass(frozen=True)
class Panel:
    """
    A comparison figure of the report's overview: every model on one axis, or the models side by side.

    :param title: Heading.
    :param caption: What the figure shows, in plain words.
    :param images: The figure(s).
    :param formula: The definition behind it (folded in the page).
    :param group: ``"compare"`` (overlaid quantities) or ``"gallery"`` (samples and surfaces).
    :param full_width: Draw each image across the page's width (figures of all models side by side).
    """

    title: str
    caption: str
    images: tuple[Image, ...]
    formula: str = ""
    group: str = "compare"
    full_width: bool = False


class Section(abc.ABC):
    """One part of the report."""

    #: Key of the section in ``report.json``.
    key: str = ""
    #: Heading in ``report.html``.
    title: str = ""
    #: Whether a checkpointed report keeps this section's data once computed (:mod:`art_geometry.report.resume`);
    #: ``False`` for a section that only reads ``ctx.extras`` and costs nothing to recompute.
    resumable: bool = True

    @abc.abstractmethod
    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        """
        :param ctx: The report context.
        :return: JSON-safe results (use :func:`art_geometry.core.results.jsonable`).
        """

    @abc.abstractmethod
    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        """
        :param data: What :meth:`compute` returned.
        :param ctx: The report context.
        :return: An HTML fragment (no ``<html>``/``<body>``; the heading is added by the report).
        """

    def metrics(self, data: dict[str, Any]) -> dict[str, list[Metric]]:
        """
        :param data: What :meth:`compute` returned.
        :return: The headline numbers of each model, by model name (leaderboard columns).
        """
        return {}

    def record(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """
        :param data: What :meth:`compute` returned.
        :return: RobustBench-style fields of each model's record (``clean_accuracy``, ``robust_accuracy``,
                 ``threat_model``, ``eps``, ...), by model name.
        """
        return {}

    def panels(self, data: dict[str, Any], ctx: ReportContext) -> list[Panel]:
        """
        :param data: What :meth:`compute` returned.
        :param ctx: The report context.
        :return: The section's comparison figures for the report's overview.
        """
        return []

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        """
        :param data: What :meth:`compute` returned.
        :return: ``(model, metric (sample set), value)`` rows for the summary printed on the terminal; by default
                 one per :meth:`metrics` entry.
        """
        return [
            (name, f"{m.label} ({m.samples})", format_number(m.value))
            for name, metrics in self.metrics(data).items()
            for m in metrics
        ]


def figure_uri(fig: Any) -> str:
    """
    Render a matplotlib figure as a PNG ``data:`` URI and close it.

    :param fig: The figure.
    :return: ``data:image/png;base64,...``.
    """
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig: Any, alt: str) -> str:
    """
    Render a matplotlib figure as an embedded PNG ``<img>`` and close it.

    :param fig: The figure.
    :param alt: Alternative text.
    :return: The ``<img>`` tag.
    """
    return render("figure.html.j2", image=Image(figure_uri(fig), alt))


def table_html(header: list[str], rows: list[list[Any]]) -> str:
    """
    :param header: Column names.
    :param rows: Cells (floats formatted to 4 significant digits).
    :return: An HTML table.
    """
    return render("table.html.j2", header=header, rows=rows)

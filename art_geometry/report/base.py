"""
The pluggable unit of the benchmark report: a :class:`Section` computes JSON-safe numbers for the models of a
:class:`ReportContext` and renders them as an HTML fragment (figures embedded as PNG).

To add a section: subclass :class:`Section`, set ``key`` and ``title``, implement ``compute`` and ``render``, and
list an instance in ``art_geometry.report.SECTIONS``.
"""

from __future__ import annotations

import abc
import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_geometry.datasets import Dataset

__all__ = ["ReportContext", "Section", "figure_html", "table_html"]


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


class Section(abc.ABC):
    """One part of the report."""

    #: Key of the section in ``report.json``.
    key: str = ""
    #: Heading in ``report.html``.
    title: str = ""

    @abc.abstractmethod
    def compute(self, ctx: ReportContext) -> dict[str, Any]:
        """
        :param ctx: The report context.
        :return: JSON-safe results (use :func:`art_geometry._results.jsonable`).
        """

    @abc.abstractmethod
    def render(self, data: dict[str, Any], ctx: ReportContext) -> str:
        """
        :param data: What :meth:`compute` returned.
        :param ctx: The report context.
        :return: An HTML fragment (no ``<html>``/``<body>``; the heading is added by the report).
        """

    def summary_rows(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        """
        :param data: What :meth:`compute` returned.
        :return: ``(model, metric, value)`` rows for the summary table printed on the terminal.
        """
        return []


def figure_html(fig: Any, alt: str) -> str:
    """
    Render a matplotlib figure as an embedded PNG ``<img>`` and close it.

    :param fig: The figure.
    :param alt: Alternative text.
    :return: The ``<img>`` tag.
    """
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def table_html(header: list[str], rows: list[list[Any]]) -> str:
    """
    :param header: Column names.
    :param rows: Cells (floats formatted to 4 significant digits).
    :return: An HTML table.
    """

    def cell(v: Any) -> str:
        return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

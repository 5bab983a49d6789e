"""
The benchmark report: pluggable sections computed over one or more models, written as ``report.json`` (checked
by a versioned JSON Schema), per-sample CSV / Parquet tables and a self-contained ``report.html`` (leaderboard,
overlaid comparisons, gallery, per-model detail) rendered from Jinja2 templates.
"""

from art_geometry.report.base import Image, Metric, Panel, ReportContext, Section, figure_html, table_html
from art_geometry.report.build import build_report, render_html, write_report
from art_geometry.report.margins import MarginsSection
from art_geometry.report.regions import RegionsSection
from art_geometry.report.schema import SCHEMA_VERSION, report_schema, validate_report
from art_geometry.report.surface import SurfaceSection
from art_geometry.report.training import TrainingSection

__all__ = [
    "SCHEMA_VERSION",
    "SECTIONS",
    "Image",
    "MarginsSection",
    "Metric",
    "Panel",
    "RegionsSection",
    "ReportContext",
    "Section",
    "SurfaceSection",
    "TrainingSection",
    "build_report",
    "default_sections",
    "figure_html",
    "render_html",
    "report_schema",
    "table_html",
    "validate_report",
    "write_report",
]


def default_sections() -> list[Section]:
    """:return: A new instance of every registered section, in report order."""
    return [cls() for cls in SECTIONS]


#: The registered section classes, in report order.
SECTIONS: list[type[Section]] = [RegionsSection, MarginsSection, SurfaceSection, TrainingSection]

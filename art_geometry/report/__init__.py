"""
The benchmark report: pluggable sections computed over one or more models, written as ``report.json`` and a
self-contained ``report.html``.
"""

from art_geometry.report.base import ReportContext, Section, figure_html, table_html
from art_geometry.report.build import SCHEMA_VERSION, build_report, write_report
from art_geometry.report.margins import MarginsSection
from art_geometry.report.regions import RegionsSection
from art_geometry.report.surface import SurfaceSection
from art_geometry.report.training import TrainingSection

__all__ = [
    "ReportContext",
    "Section",
    "SECTIONS",
    "SCHEMA_VERSION",
    "build_report",
    "write_report",
    "figure_html",
    "table_html",
    "RegionsSection",
    "MarginsSection",
    "SurfaceSection",
    "TrainingSection",
    "default_sections",
]


def default_sections() -> list[Section]:
    """:return: A new instance of every registered section, in report order."""
    return [cls() for cls in SECTIONS]


#: The registered section classes, in report order.
SECTIONS: list[type[Section]] = [RegionsSection, MarginsSection, SurfaceSection, TrainingSection]

"""
The report's Jinja2 environment: templates shipped as package data under ``art_geometry/report/templates/``,
HTML autoescaping on, and the ``num`` filter that formats every number of the page the same way.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jinja2

__all__ = ["format_number", "render"]


def format_number(value: Any) -> str:
    """
    :param value: A cell: float, int, bool, ``None`` or a string (``"inf"``, ``"nan"`` as ``jsonable`` writes them).
    :return: Floats with 4 significant digits, ``-`` for ``None`` and NaN, anything else as ``str``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "nan":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sort_key(value: Any) -> str:
    """
    :param value: A cell.
    :return: What the page sorts the cell's column by (JavaScript's ``Number`` reads it): the number itself,
             ``Infinity`` / ``-Infinity``, empty for a missing one.
    """
    if isinstance(value, bool) or value is None:
        return ""
    number = float(value) if isinstance(value, (int, float)) or value in ("inf", "-inf", "nan") else float("nan")
    if math.isnan(number):
        return ""
    return repr(number) if math.isfinite(number) else ("Infinity" if number > 0 else "-Infinity")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("art_geometry.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["sort_key"] = sort_key
    return env


def render(template: str, **context: Any) -> str:
    """
    :param template: File name under ``templates/`` (e.g. ``"report.html.j2"``).
    :param context: The template's variables.
    :return: The rendered text.
    """
    return _environment().get_template(template).render(**context)

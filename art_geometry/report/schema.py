"""
The JSON Schema of ``report.json`` (draft 2020-12), shipped as package data under
``art_geometry/report/schemas/report-<version>.schema.json``, and its validation with ``jsonschema``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

__all__ = ["SCHEMA_VERSION", "report_schema", "validate_report"]

#: Version of the ``report.json`` layout. The major part changes when a key is removed or changes meaning, the
#: minor part when keys are added. 2.0: the ``models`` leaderboard records and the ``exports`` tables. 2.1: the
#: margins section's data described (its brackets, and the robust-accuracy bracket ``accuracy`` and the
#: ``bounds_notes`` it adds); the 2.0 schema still ships, for reports written before.
SCHEMA_VERSION = "2.1"


@functools.cache
def _schema_text(version: str) -> str:
    path = resources.files("art_geometry.report") / "schemas" / f"report-{version}.schema.json"
    if not path.is_file():
        raise ValueError(f"version {version!r}: no report schema of that version is shipped")
    return path.read_text(encoding="utf-8")


def report_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """
    :param version: Schema version.
    :return: The JSON Schema of ``report.json`` (a new dict each call).
    :raises ValueError: For a version that is not shipped.
    """
    return json.loads(_schema_text(version))


def validate_report(report: dict[str, Any]) -> None:
    """
    Check a report (``json.load`` of ``report.json``) against the schema of its ``schema_version``.

    :param report: The report.
    :raises ImportError: Without ``jsonschema`` (``pip install 'art-geometry[test]'``).
    :raises TypeError: For a report that is not a dict.
    :raises ValueError: For a report without a known ``schema_version``.
    :raises jsonschema.ValidationError: Where the report does not match.
    """
    try:
        import jsonschema
    except ImportError as err:
        raise ImportError("validate_report needs jsonschema: pip install jsonschema") from err
    if not isinstance(report, dict):
        raise TypeError(f"report must be a dict (json.load of report.json), got {type(report).__name__}")
    if "schema_version" not in report:
        raise ValueError("report has no 'schema_version': it is not a report.json of art-geometry")
    schema = report_schema(str(report["schema_version"]))
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)

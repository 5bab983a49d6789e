"""The package version, one place (read by packaging and by the report's manifest)."""

__version__ = "0.1.0"

"""art-geometry."""

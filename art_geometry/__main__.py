"""``python -m art_geometry`` is the ``art-geometry`` command (also under ``torchrun ... -m art_geometry``)."""

from art_geometry.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

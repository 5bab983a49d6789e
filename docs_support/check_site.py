"""
Check the built site (``site/``, after ``mkdocs build``): no page shows a raw Sphinx role (``:func:`name```)
outside code listings,
which would mean a docstring role that :mod:`docs_support.sphinx_roles` did not turn into a link. Exits 1 naming
the pages and roles found. Run by ``make docs``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj):(?:`|<code>)")
#: Code listings (the gallery shows the examples' source): a role there is code, not a rendered docstring.
_LISTING = re.compile(r"<pre\b.*?</pre>", re.DOTALL)


def main(site: Path) -> int:
    pages = sorted(site.rglob("*.html"))
    if not pages:
        print(f"{site}: no built pages", file=sys.stderr)
        return 1
    found = {
        str(p.relative_to(site)): sorted(set(_RAW_ROLE.findall(_LISTING.sub("", p.read_text(encoding="utf-8")))))
        for p in pages
    }
    found = {page: roles for page, roles in found.items() if roles}
    for page, roles in found.items():
        print(f"{page}: raw Sphinx roles {', '.join(roles)}", file=sys.stderr)
    print(f"checked {len(pages)} pages: {'no raw Sphinx role' if not found else f'{len(found)} with raw roles'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))

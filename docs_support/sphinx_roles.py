"""
A griffe extension for the documentation site: the docstrings keep ART's Sphinx roles (``:func:`name```,
``:class:`~pkg.Name```, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``, ``:exc:``, ``:obj:``), and this turns each into
a Markdown cross-reference that mkdocs-autorefs resolves (``[name][art_geometry.module.name]``).

A target is looked up as written, then in the scopes of the documented object (its own path, then each parent up
to ``art_geometry``), so ``:func:`deepfool_margins``` in a margins docstring finds
``art_geometry.margins.measure.deepfool_margins``; an alias resolves to its canonical path. Targets outside the
package (``torch.nn.Module``) and private ones (a path part starting with ``_``, not in the reference) become code
spans. A module or attribute links where a page renders it (an optional reference: modules and undocumented
attributes have no anchor of their own). A public ``art_geometry`` target that resolves to nothing, or a function or
class that no page renders, is a required reference, so that ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Alias, Extension, Kind, Module, Object

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj):`(~?)\.?([^`]+?)(?:\(\))?`")


def _lookup(pkg: Module, path: str) -> Object | Alias | None:
    if not path.startswith(pkg.path):
        return None
    rest = path[len(pkg.path) + 1:]
    try:
        return pkg[rest] if rest else pkg
    except (KeyError, ValueError):
        return None


def _canonical(obj: Object | Alias) -> str:
    while isinstance(obj, Alias):
        try:
            obj = obj.final_target
        except Exception:  # an alias to something outside the package (torch, numpy)
            return obj.target_path
    return obj.path


def _kind(obj: Object | Alias) -> Kind:
    try:
        return obj.kind
    except Exception:  # an unresolvable alias
        return Kind.ATTRIBUTE


def _private(path: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring of the package into autorefs cross-references."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _ROLE.sub(lambda m: self._reference(pkg, obj, m), obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not isinstance(m, Alias))

    @staticmethod
    def _reference(pkg: Module, obj: Object, match: re.Match[str]) -> str:
        short, target = match.group(2) == "~", match.group(3)
        shown = target.rsplit(".", 1)[-1] if short else target
        scopes, scope = [], obj
        while scope is not None:
            scopes.append(f"{scope.path}.{target}")
            scope = scope.parent
        found = None
        for candidate in [target, *scopes, f"{pkg.path}.{target}"]:
            found = _lookup(pkg, candidate)
            if found is not None:
                break
        if found is None:
            if not target.startswith(pkg.path) or _private(target):
                return f"`{shown}`"
            return f"[`{shown}`][{target}]"
        path = _canonical(found)
        if not path.startswith(pkg.path) or _private(path):
            return f"`{shown}`"
        if _kind(found) in (Kind.MODULE, Kind.ATTRIBUTE):
            # a module or attribute has an anchor only where a page renders it: linked where it has one
            return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
        return f"[`{shown}`][{path}]"

"""The floor plan of docs/architecture.md, checked against the package's own imports (lazy ones included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "art_geometry"
PLAN = ROOT / "docs" / "architecture.md"
MAX_FLOORS = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (ROOT / rel).is_dir() or (ROOT / rel).with_suffix(".py").is_file()


def imports_of(path: Path) -> set[str]:
    """:return: The ``art_geometry`` modules a file imports, anywhere in it (``from m import sub`` names ``m.sub``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "art_geometry")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] != "art_geometry":
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}")}
            out.update(subs or {node.module})
            if len(subs) < len(node.names):
                out.add(node.module)
    return out


def module_graph() -> dict[str, set[str]]:
    """:return: Every module of the package and the package modules it imports."""
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def room_of(module: str) -> str:
    """``art_geometry.margins.deepfool`` -> ``margins/``; ``art_geometry.cli`` -> ``cli.py``; the root -> ``__init__.py``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__.py"
    return f"{parts[1]}/" if (PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def room_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, targets in modules.items():
        here = room_of(module)
        rooms.setdefault(here, set()).update(room_of(t) for t in targets if room_of(t) != here)
    return rooms


def stated_plan(text: str) -> dict[str, set[str]]:
    """:return: The "may import" column of the Rooms table: ``{room: rooms it may import}``."""
    plan = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[^`]+`", cells[0]):
            plan[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[2]))
    return plan


def violations(rooms: dict[str, set[str]], plan: dict[str, set[str]]) -> list[str]:
    """:return: Every room missing from the plan and every arrow the plan does not allow."""
    out = [f"room {r} is not in docs/architecture.md" for r in sorted(set(rooms) - set(plan))]
    for room, targets in sorted(rooms.items()):
        out += [f"{room} imports {t}" for t in sorted(targets - plan.get(room, set()))]
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """:return: The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floors(rooms: dict[str, set[str]]) -> dict[str, int]:
    """:return: Each room's floor: 1 + the highest floor it imports (the graph must have no circle)."""
    depth: dict[str, int] = {}

    def floor(r: str) -> int:
        if r not in depth:
            depth[r] = 1 + max((floor(t) for t in rooms.get(r, ())), default=0)
        return depth[r]

    return {r: floor(r) for r in rooms}


def test_every_import_is_allowed_by_the_stated_plan():
    plan = stated_plan(PLAN.read_text(encoding="utf-8"))
    assert "core/" in plan and plan["core/"] == set(), "the plan must state that core/ imports no other room"
    assert violations(room_graph(module_graph()), plan) == []


def test_no_import_circle_between_modules_or_rooms():
    modules = module_graph()
    assert circles(modules) == []
    assert circles(room_graph(modules)) == []


def test_at_most_eight_floors_and_the_stated_ones():
    rooms = room_graph(module_graph())
    levels = floors(rooms)
    assert max(levels.values()) <= MAX_FLOORS, levels
    assert levels["core/"] == 1 and levels["__main__.py"] == max(levels.values())


def test_the_checks_fail_on_a_broken_layering():
    """The checker itself: a family imported from core, an unplanned room and a circle are all reported."""
    plan = stated_plan(PLAN.read_text(encoding="utf-8"))
    rooms = room_graph(module_graph())
    rooms["core/"] = rooms["core/"] | {"margins/"}
    rooms["extra/"] = {"core/"}
    assert violations(rooms, plan) == [
        "room extra/ is not in docs/architecture.md", "core/ imports margins/", "extra/ imports core/"
    ]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert floors({"a": {"b"}, "b": {"c"}, "c": set()}) == {"a": 3, "b": 2, "c": 1}


@pytest.mark.parametrize("package", ["regions", "margins", "surface", "indicators", "training", "bounds", "subspaces"])
def test_family_init_holds_imports_and_all_only(package):
    tree = ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body
    kinds = {type(n).__name__ for n in body}
    assert kinds <= {"ImportFrom", "Import", "Assign"}, kinds
    assigned = [t.id for n in body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert assigned == ["__all__"]


def test_every_package_folder_has_an_init():
    """A folder without ``__init__.py`` imports as a namespace package here but is left out of the wheel."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []

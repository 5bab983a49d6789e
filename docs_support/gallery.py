"""
An mkdocs hook that builds the gallery while the site builds: every script of ``examples/`` runs in its
``--quick`` smoke setting (seconds each), and a page per script shows what it reproduces (the script's docstring),
the figures it wrote during this build, its numbers and its code; ``examples/RESULTS.md`` (the papers' claims
beside the committed full runs) becomes the page ``results.md``. The quick figures show what a run draws, on tiny
data: the numbers that count are the full runs in RESULTS.md.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Seconds one quick example may take while the site builds.
QUICK_SECONDS = 300


def _scripts() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_") and p.stem != "make_results")


def _run(script: Path, out: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)])}
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=QUICK_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"gallery: {script.name} --quick failed:\n{done.stderr[-3000:]}")


def _summary(script: Path) -> tuple[str, str]:
    """:return: The first paragraph of the script's docstring on one line, and the rest."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or script.stem
    first, _, rest = doc.partition("\n\n")
    return " ".join(first.split()), rest


def _page(script: Path, out: Path, figures: list[str], title: str, rest: str) -> str:
    numbers = next(out.glob("*.json"), None)
    lines = [f"# {script.stem}", "", title, "", f"`python examples/{script.name} --quick` (run while this site was "
             "built; the full runs behind [the results](../results.md) use the settings in the script's docstring)", ""]
    lines += [f"![{script.stem}: {name}]({name})" for name in figures]
    if numbers is not None:
        data: Any = json.loads(numbers.read_text(encoding="utf-8"))
        lines += ["", "??? note \"The numbers of this quick run\"", "    ```json"]
        lines += ["    " + line for line in json.dumps(data, indent=1)[:6000].splitlines()]
        lines += ["    ```"]
    lines += ["", "## About this example", "", rest.strip(), "", "??? example \"The script\"", "    ```python"]
    lines += ["    " + line for line in script.read_text(encoding="utf-8").splitlines()]
    lines += ["    ```", ""]
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    """Run the quick examples; add their pages and figures, the gallery index and the results page."""
    work = Path(tempfile.mkdtemp(prefix="art-geometry-gallery-"))
    index = ["# Gallery", "", "Each example reproduces a paper's experiment at small scale (the papers' claims and our "
             "numbers: [results](../results.md)). The figures below come from the `--quick` runs of this build.", "",
             "| example | what |", "|---|---|"]
    for script in _scripts():
        out = work / script.stem
        _run(script, out)
        figures = sorted(p.name for p in out.glob("*.png"))
        for name in figures:
            files.append(File.generated(config, f"gallery/{name}", abs_src_path=str(out / name)))
        title, rest = _summary(script)
        files.append(File.generated(config, f"gallery/{script.stem}.md",
                                    content=_page(script, out, figures, title, rest)))
        index.append(f"| [{script.stem}]({script.stem}.md) | {title} |")
    files.append(File.generated(config, "gallery/index.md", content="\n".join(index) + "\n"))
    results = (EXAMPLES / "RESULTS.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "results.md", content=results))
    return files

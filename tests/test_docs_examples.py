"""
The runnable examples of the documentation: every ```python block of ``docs/*.md`` right after a
``<!-- runnable -->`` line runs, in a fresh namespace and an empty working folder, without an error (its own
asserts check what the page claims). Every family page has one.
"""

import re
import runpy
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FAMILIES = ("regions", "margins", "surface", "indicators", "training", "robustness", "report")


def _examples() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(_BLOCK.findall(page.read_text())):
            out.append((f"{page.stem}-{i}", code))
    return out


EXAMPLES = _examples()


def test_every_family_page_has_a_runnable_example():
    assert {name.rsplit("-", 1)[0] for name, _ in EXAMPLES} >= set(FAMILIES)


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_docs_example_runs(name, code, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    script = tmp_path / f"docs_{name.replace('-', '_')}.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
    plt.close("all")

"""The README's quick start runs, and the scripts in ``examples/`` run (in their ``--quick`` smoke setting) and write
what they promise."""

import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_paper_has_an_example():
    assert set(SCRIPTS) >= {
        "prs_batch_size", "margins_over_training", "decision_surface_table1", "hold_me_tight_synthetic",
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs_quick(name, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the scripts import their shared ``_common``, as when run directly
    numbers = _load(name).main(["--quick", "--out", str(tmp_path)])
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert written == json.loads(json.dumps(numbers))
    png = (tmp_path / f"{name}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


@pytest.mark.slow
def test_readme_quick_start_runs():
    (code,) = re.findall(r"## Quick start.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(code.strip().splitlines()) <= 10
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue()
    assert "'ratio'" in printed and "'median'" in printed and "'robust_accuracy'" in printed

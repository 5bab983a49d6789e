"""
The documentation is tested: every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs, in an
empty temporary folder, unless the line right before it is ``<!-- not run: REASON -->``.

- The python blocks of one page run in order in one namespace, as a reader runs them in one session (a page's
  first block sets up the classifier and data the later ones use), with matplotlib's Agg backend.
- Each command of a bash block (continuation lines joined, comments dropped) runs with the virtual environment's
  scripts first on the ``PATH``, within a time limit. A block after ``<!-- run in: user files -->`` runs beside
  stand-ins of the user's files it names (:func:`_user_files`: ``mypkg/models.py`` with ``make_net``, ``net.pt``,
  ``scripted.pt``, ``my_data.npz``).
- A block that needs Fashion-MNIST skips where Debian's ``dataset-fashion-mnist`` is not installed.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from art_geometry.datasets import FASHION_MNIST_PATH

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)^```$",
                    re.MULTILINE | re.DOTALL)
#: Seconds one bash command may take (the README's report on Fashion-MNIST: about 3 minutes on 2 cores).
COMMAND_SECONDS = 900


def _blocks(page: Path) -> list[tuple[str | None, str, str]]:
    return [(m["marker"], m["lang"], m["code"]) for m in _BLOCK.finditer(page.read_text(encoding="utf-8"))]


def _name(page: Path) -> str:
    return page.stem if page.parent.name == "docs" else page.name


BLOCKS = {(_name(page), i): block for page in PAGES for i, block in enumerate(_blocks(page))}
PYTHON_PAGES = sorted({page for (page, _), (_, lang, _) in BLOCKS.items() if lang == "python"})
BASH = sorted(key for key, (_, lang, _) in BLOCKS.items() if lang == "bash")


def _skip_reason(marker: str | None) -> str | None:
    if marker and marker.startswith("not run:"):
        reason = marker[len("not run:"):].strip()
        assert reason, "a <!-- not run: ... --> marker must say why"
        return reason
    return None


def _needs_fashion_mnist(code: str) -> bool:
    return "fashion" in code.lower() and not Path(FASHION_MNIST_PATH).is_dir()


def test_every_marker_is_known_and_says_why():
    for (page, i), (marker, _, _) in BLOCKS.items():
        assert marker in (None, "run in: user files") or _skip_reason(marker), (page, i, marker)


def test_most_blocks_run():
    """A marker is the exception: at least four in five blocks run."""
    skipped = [key for key, (marker, _, _) in BLOCKS.items() if _skip_reason(marker)]
    assert len(skipped) <= len(BLOCKS) // 5, skipped


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_of_a_page_run(page, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for (name, i), (marker, lang, code) in sorted(BLOCKS.items()):
        if name != page or lang != "python" or _skip_reason(marker):
            continue
        if _needs_fashion_mnist(code):
            pytest.skip("dataset-fashion-mnist is not installed")
        script = tmp_path / f"{page.replace('.', '_')}_{i}.py"
        script.write_text(code, encoding="utf-8")
        namespace = runpy.run_path(str(script), init_globals=namespace, run_name="__main__")
    plt.close("all")


def _commands(code: str) -> list[str]:
    joined = code.replace("\\\n", " ")
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not
            line.lstrip().startswith("#")]


def _user_files(folder: Path) -> None:
    """Stand-ins of the files the README's report commands name: a factory module and its weights (Fashion-MNIST
    shape), a TorchScript model and an ``.npz`` of digits for it."""
    from art_geometry.datasets import SmallCNN, load_digits

    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "models.py").write_text(
        "from art_geometry.datasets import SmallCNN\n\n\ndef make_net():\n    return SmallCNN((1, 28, 28))\n"
    )
    torch.manual_seed(0)
    torch.save(SmallCNN((1, 28, 28)).state_dict(), folder / "net.pt")
    torch.jit.script(SmallCNN((1, 8, 8)).eval()).save(str(folder / "scripted.pt"))
    d = load_digits()
    np.savez(folder / "my_data.npz", x_train=d.x_train[:300], y_train=d.y_train[:300], x_test=d.x_test[:100],
             y_test=d.y_test[:100])


@pytest.mark.slow
@pytest.mark.parametrize("key", BASH, ids=[f"{p}-{i}" for p, i in BASH])
def test_bash_block_runs(key, tmp_path):
    marker, _, code = BLOCKS[key]
    reason = _skip_reason(marker)
    if reason:
        pytest.skip(reason)
    if _needs_fashion_mnist(code):
        pytest.skip("dataset-fashion-mnist is not installed")
    if marker == "run in: user files":
        _user_files(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MPLBACKEND": "Agg"}
    for command in _commands(code):
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=COMMAND_SECONDS)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

"""The README's quick start runs, and the scripts in ``examples/`` run (in their ``--quick`` smoke setting) and write
what they promise."""

import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GENERATOR = "make_results"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_") and p.stem != GENERATOR)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_paper_has_an_example():
    assert set(SCRIPTS) >= {
        "prs_batch_size", "margins_over_training", "decision_surface_table1", "hold_me_tight_synthetic",
        "hold_me_tight_dct", "decision_surface_geometry",
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


def _hmt_report(u1: float, perp: float, orth: float, rand: float, f6: list[tuple[float, float, float]]) -> dict:
    """A constructed ``hold_me_tight_synthetic`` report: T1 medians and (epsilon, u1, u2) medians of T2."""
    def stats(m: float) -> dict:
        return {"p05": m, "p50": m, "p95": m, "failed_fraction": 0.0}

    t1 = {"accuracy": 1.0, "margins": {"u1": stats(u1), "span(u1)^perp": stats(perp), "S_orth": stats(orth),
                                       "S_rand": stats(rand)}}
    runs = [{"seed": 0, "t1": t1, "f6": [{"epsilon": e, "accuracy": 1.0,
                                          "margins": {"u1": stats(a), "u2": stats(b)}} for e, a, b in f6]}]
    return {"settings": {"t1_epsilon": 5.0}, "runs": runs, "wall_seconds": 1.0}


def test_results_verdicts_follow_the_stated_criteria():
    gen = _load(GENERATOR)
    sharp = [(0.1, 30.0, 5.0), (0.2, 25.0, 5.0), (0.35, 20.0, 5.0), (0.5, 0.3, 900.0), (0.7, 0.4, 900.0)]
    good = _hmt_report(2.6, 12.0, 100.0, 28.0, sharp)
    assert gen.judge_hmt_t1([good]).verdict == "reproduced"
    assert gen.judge_hmt_f6([good]).verdict == "reproduced"
    # u1 right but the network not invariant off u1: partly; u1 off by more than 20%: not
    assert gen.judge_hmt_t1([_hmt_report(2.6, 3.0, 100.0, 28.0, sharp)]).verdict == "partly reproduced"
    assert gen.judge_hmt_t1([_hmt_report(5.0, 12.0, 100.0, 28.0, sharp)]).verdict == "not reproduced"
    early = [(0.1, 30.0, 5.0), (0.2, 25.0, 5.0), (0.35, 0.2, 900.0), (0.5, 0.3, 900.0), (0.7, 0.4, 900.0)]
    assert gen.judge_hmt_f6([_hmt_report(2.5, 12, 100, 28, early)]).verdict == "reproduced"  # switch at 0.35
    never = [(e, 30.0, 5.0) for e in (0.1, 0.2, 0.35, 0.5, 0.7)]
    assert gen.judge_hmt_f6([_hmt_report(2.5, 12, 100, 28, never)]).verdict == "not reproduced"
    with pytest.raises(ValueError, match="verdict must be one of"):
        gen.Outcome("x", "maybe", "y")
    assert gen.spread([1.0, 2.0, 3.0]) == "2 (1-3, 3 seeds)" and gen.spread([0.5]) == "0.5"


def _mdb_report(means: list[float], initial: "float | None") -> dict:
    """A constructed ``margins_over_training`` report: natural training with these mean margins (every norm and
    subset, standard error 2% of the mean) after each epoch, and the initialised network's mean (``None``: no point
    before training, as in the runs made before it existed)."""
    def row(epoch: int, mean: float) -> dict:
        return {"epoch": epoch, **{f"{s}_{n}_all_{k}": v for s in ("train", "test") for n in ("l2", "linf")
                                   for k, v in (("mean", mean), ("std_error", 0.02 * mean))}}

    rows = ([] if initial is None else [row(-1, initial)]) + [row(e, m) for e, m in enumerate(means)]
    return {"results": {"natural": {"epochs": rows, "transitions": []}}}


def test_margins_verdict_judges_the_jump_from_the_initialised_network():
    gen = _load(GENERATOR)
    falling = [1.6, 1.4, 1.3, 1.1, 1.0]
    assert gen.judge_mdb_o1([_mdb_report(falling, 0.2)]).verdict == "reproduced"
    no_jump = gen.judge_mdb_o1([_mdb_report(falling, 2.0)])
    assert no_jump.verdict == "partly reproduced" and "initialisation: False" in no_jump.why
    unmeasured = gen.judge_mdb_o1([_mdb_report(falling, 0.2), _mdb_report(falling, None)])
    assert unmeasured.verdict == "partly reproduced" and "at initialisation: not measured" in unmeasured.ours
    assert gen.judge_mdb_o1([_mdb_report(falling[::-1], 0.2)]).verdict == "not reproduced"


@pytest.mark.slow
def test_results_table_has_every_claim(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    gen = _load(GENERATOR)
    out = tmp_path / "out"
    report = _load("hold_me_tight_synthetic").main(["--quick", "--out", str(out)])
    (tmp_path / "hold_me_tight_synthetic").mkdir()
    (tmp_path / "hold_me_tight_synthetic" / "seed0.json").write_text(json.dumps(report))
    text = gen.main(["--results", str(tmp_path), "--output", str(tmp_path / "RESULTS.md")])
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ID")]
    ids = [r.split(" | ")[0][2:] for r in rows]
    assert ids == [c.id for c in gen.CLAIMS] and len(set(ids)) == 22
    verdicts = {r.split(" | ")[0][2:]: r.split(" | ")[4] for r in rows}
    assert verdicts["HMT-T1"] in gen.VERDICTS and verdicts["HMT-F6"] in gen.VERDICTS
    assert verdicts["MDB-O1"] == "not run yet" and verdicts["DS-F2"] == "not run yet"
    committed = (EXAMPLES / "RESULTS.md").read_text()
    assert all(f"| {c.id} |" in committed for c in gen.CLAIMS)


@pytest.mark.slow
def test_readme_quick_start_runs():
    (code,) = re.findall(r"## Quick start.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(code.strip().splitlines()) <= 10
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    printed = out.getvalue()
    assert "'ratio'" in printed and "'median'" in printed and "'robust_accuracy'" in printed

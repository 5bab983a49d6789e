"""
Scale-out: sharded runs (two gloo processes under torchrun) equal single-process runs, streamed data equals arrays,
and checkpointed sweeps resume without recomputing finished chunks (including after ``kill -9``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import art_geometry as ag
from art_geometry.datasets import load_digits
from tests import _sweep_worker as worker
from tests.helpers import assert_unchanged

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(worker.__file__)


def _torchrun(*program: str) -> subprocess.CompletedProcess:
    """Run ``program`` (a script and its arguments, or ``-m module ...``) on two gloo ranks under torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *program]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def single():
    x, y = worker.data()
    return worker.families(worker.model(), x, y)


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_results(tmp_path, single):
    done = _torchrun(str(WORKER), "shard", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    assert len(single["margins"]) == worker.N  # 101 samples: 7 chunks of 16, uneven over two ranks
    for got in ranks:
        assert set(got) == set(single)
        for name, want in single.items():
            # float64 model, same batches: margins bit-equal, PRS from the gathered patterns (not a sum of counts)
            assert np.array_equal(got[name], want), name


@pytest.mark.slow
def test_a_failing_rank_stops_every_rank_with_its_error(tmp_path):
    done = _torchrun(str(WORKER), "fail", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        msg = (tmp_path / f"rank{rank}.txt").read_text()
        assert "rank 1" in msg and "NaN" in msg and "samples 16..31" in msg, msg
        assert "rank 0:" not in msg


def test_chunks_are_dealt_round_robin_and_an_idle_rank_is_fine(monkeypatch):
    """Three simulated ranks, two chunks: rank 2 computes nothing; the union of the shares is every chunk."""
    from art_geometry.sweep import loop as _sweep
    from art_geometry.core.prepare import prepare

    x, y = worker.data(12)
    prep = prepare(worker.model(), x, y)
    shares: dict[int, dict] = {}

    def compute(chunk, index):
        return {"first": np.array([chunk.labels[0]]), "n": np.array([len(chunk.x)])}

    for rank in range(3):
        monkeypatch.setattr(_sweep, "world", lambda r=rank: (r, 3))
        monkeypatch.setattr(_sweep, "gather", lambda local, r=rank: shares.setdefault(r, local) and {})
        _sweep.sweep(prep, compute, batch_size=4, options=_sweep.SweepOptions(chunk_size=8), key="k", settings={})
    assert {r: sorted(s) for r, s in shares.items()} == {0: [0], 1: [1], 2: []}
    assert [shares[0][0]["n"][0], shares[1][1]["n"][0]] == [8, 4]
    assert [shares[0][0]["first"][0], shares[1][1]["first"][0]] == [y[0], y[8]]


def test_streamed_dataset_and_loader_equal_arrays(single):
    x, y = worker.data()
    net = worker.model()
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    loader = DataLoader(dataset, batch_size=7)  # batches that do not align with the chunks
    for source in (dataset, loader):
        with assert_unchanged(net, x, y):
            m = ag.deepfool_margins(net, source, seed=3, batch_size=8, chunk_size=16)
        assert np.array_equal(m.margins, single["margins"]) and np.array_equal(m.labels, y)
        p = ag.populated_region_set(net, source, layer="fc1", batch_size=8, chunk_size=16)
        assert np.array_equal(p.region_ids, single["region_ids"])
        with pytest.warns(UserWarning, match=re.escape(worker.NO_RANGE)):
            r = ag.robust_accuracy(worker.model().float(), source, attack="pgd", eps=0.1, max_iter=3, seed=5,
                                   batch_size=8, chunk_size=16)
        assert np.array_equal(r.adv_pred, single["adv_pred"])


def test_streamed_bad_inputs_are_named():
    x, y = worker.data(20)
    net = worker.model()
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    with pytest.raises(ValueError, match="shuffle=True"):
        ag.deepfool_margins(net, DataLoader(dataset, shuffle=True))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="DistributedSampler"):
        ag.deepfool_margins(net, DataLoader(dataset, sampler=sampler))
    with pytest.raises(ValueError, match="y must be None"):
        ag.deepfool_margins(net, dataset, y)
    with pytest.raises(ValueError, match="labels are required"):
        ag.robust_accuracy(net, TensorDataset(torch.as_tensor(x)), eps=0.1)
    odd = [(torch.as_tensor(x[i : i + 5]), ["cat"] * 5) for i in range(0, 20, 5)]
    with pytest.raises(TypeError, match="labels (of )?x"):
        ag.deepfool_margins(net, odd_loader(odd))
    with pytest.raises(TypeError, match="must yield inputs"):
        ag.deepfool_margins(net, odd_loader([{"x": torch.as_tensor(x)}]))
    bad = x.copy()
    bad[13] = np.inf
    with pytest.raises(ValueError, match=r"samples 8\.\.15.*NaN or inf"):
        ag.deepfool_margins(net, TensorDataset(torch.as_tensor(bad)), batch_size=8, chunk_size=8)


def odd_loader(batches: list) -> DataLoader:
    """A DataLoader yielding the given batches as they are (batch_size=None: no collation)."""
    return DataLoader(batches, batch_size=None)


def _count(caplog) -> tuple[int, int]:
    lines = [r.getMessage() for r in caplog.records if r.name == "art_geometry.sweep"]
    found = [re.search(r"(\d+) chunk\(s\) loaded, (\d+) computed", m) for m in lines]
    loaded = sum(int(f.group(1)) for f in found if f)
    computed = sum(int(f.group(2)) for f in found if f)
    return loaded, computed


def test_checkpoint_resumes_and_refuses_another_sweep(tmp_path, caplog):
    x, y = worker.data(40)
    net = worker.model()
    caplog.set_level(logging.INFO, logger="art_geometry.sweep")
    first = ag.deepfool_margins(net, x, y, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    assert _count(caplog) == (0, 5)
    caplog.clear()
    # seed=None again: the manifest's seed is used, so the sweep resumes
    again = ag.deepfool_margins(net, x, y, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    assert _count(caplog) == (5, 0)
    plain = ag.deepfool_margins(net, x, y, seed=first.params["seed"], batch_size=8)
    assert again.to_dict() == first.to_dict() and np.array_equal(first.margins, plain.margins)
    with pytest.raises(ValueError, match="overshoot"):
        ag.deepfool_margins(net, x, y, batch_size=8, chunk_size=8, checkpoint=tmp_path, overshoot=0.05)
    other = worker.model()
    with torch.no_grad():
        other.fc2.bias += 1
    with pytest.raises(ValueError, match="model"):
        ag.deepfool_margins(other, x, y, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    changed = x.copy()
    changed[10] += 0.5
    with pytest.raises(ValueError, match=r"chunk 1 \(samples 8\.\.15\) was computed on other data"):
        ag.deepfool_margins(net, changed, y, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    # a corrupt chunk is detected by its checksum, recomputed, and the result is unchanged
    chunk = tmp_path / "deepfool_margins" / "chunk-000002.npz"
    chunk.write_bytes(chunk.read_bytes()[:-100])
    caplog.clear()
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        repaired = ag.deepfool_margins(net, x, y, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    assert _count(caplog) == (4, 1) and repaired.to_dict() == first.to_dict()


def test_checkpoint_bad_paths(tmp_path):
    x, _ = worker.data(8)
    net = worker.model()
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        ag.deepfool_margins(net, x, checkpoint=afile)
    with pytest.raises(ValueError, match="not writable"):
        ag.deepfool_margins(net, x, checkpoint=afile / "sub")
    with pytest.raises(TypeError, match="checkpoint must be a directory path"):
        ag.deepfool_margins(net, x, checkpoint=3)
    with pytest.raises(ValueError, match="chunk_size"):
        ag.deepfool_margins(net, x, chunk_size=0)


@pytest.mark.slow
def test_kill_minus_nine_mid_sweep_then_resume(tmp_path, caplog):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_WORKER_DELAY": "0.05", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(WORKER), "slow", str(tmp_path)], cwd=ROOT, env=env)
    chunks = tmp_path / "deepfool_margins"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("chunk-*.npz"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = len(list(chunks.glob("chunk-*.npz")))
    assert 3 <= finished < 8, finished
    x, y = worker.data(64)
    net = worker.model()
    caplog.set_level(logging.INFO, logger="art_geometry.sweep")
    resumed = ag.deepfool_margins(net, x, y, seed=3, batch_size=8, chunk_size=8, checkpoint=tmp_path)
    assert _count(caplog) == (finished, 8 - finished)
    whole = ag.deepfool_margins(net, x, y, seed=3, batch_size=8, chunk_size=8)
    assert resumed.to_dict() == whole.to_dict()


def make_seeded() -> torch.nn.Module:
    """A factory (``tests.test_sweeps:make_seeded``) with the same weights at every call."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


@pytest.mark.parametrize("family", ["margins", "prs", "robust", "subspace"])
def test_cli_sweep_writes_the_api_result_and_resumes(tmp_path, caplog, capsys, family):
    from art_geometry.cli import main

    out, ckpt = tmp_path / "r.json", tmp_path / "ck"
    args = ["sweep", "--family", family, "--model", "tests.test_sweeps:make_seeded", "--data", "digits",
            "--samples", "40", "--batch-size", "8", "--checkpoint", str(ckpt), "--out", str(out), "--quiet",
            "--block-size", "4", "--eps", "0.1"]
    caplog.set_level(logging.INFO, logger="art_geometry.sweep")

    def warned() -> Any:
        """robust_accuracy warns that the module declares no input range."""
        return pytest.warns(UserWarning, match=re.escape(worker.NO_RANGE)) if family == "robust" else (
            contextlib.nullcontext())

    with warned():
        assert main(args) == 0
    first = out.read_text()
    d = load_digits()
    x, y = d.x_test[:40], d.y_test[:40]
    kinds = {
        "margins": (ag.MarginResult, lambda: ag.deepfool_margins(make_seeded(), x, y, seed=0, batch_size=8)),
        "prs": (ag.PRSResult, lambda: ag.populated_region_set(make_seeded(), x, y, batch_size=8)),
        "robust": (ag.RobustnessResult, lambda: ag.robust_accuracy(make_seeded(), x, y, attack="pgd", eps=0.1,
                                                                   seed=0, batch_size=8)),
        "subspace": (ag.SubspaceMarginResult, lambda: ag.subspace_margins(
            make_seeded(), x, y, subspaces=ag.dct_subspaces((1, 8, 8), block_size=4, stride=4), seed=0,
            batch_size=8)),
    }
    kind, direct = kinds[family]
    with warned():
        want = direct()
    assert kind.from_json(first).to_dict() == want.to_dict()
    caplog.clear()
    with warned():
        assert main(args) == 0
    assert out.read_text() == first and _count(caplog)[1] == 0 and "written to" in capsys.readouterr().out


def test_cli_sweep_bad_arguments(tmp_path, capsys):
    from art_geometry.cli import main

    base = ["sweep", "--model", "tests.test_sweeps:make_seeded", "--data", "digits", "--samples", "8"]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--family", "margins", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--family", "prs", "--layer", "nope", "--out", str(tmp_path / "r.json")])
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--family", "regions"])
    assert "invalid choice" in capsys.readouterr().err


def _assert_same_report(a: Any, b: Any, path: str = "") -> None:
    """Two reports' JSON agree: equal structure and values, floats to 1e-12 relative (the certified bounds differ in
    the last bit between thread counts), wall-clock fields (``seconds``, ``created``) left out."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            if k not in ("seconds", "created"):
                _assert_same_report(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same_report(u, v, f"{path}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-300, nan_ok=True), path
    else:
        assert a == b, path


def test_cli_report_under_torchrun_equals_one_process(tmp_path, capsys):
    from art_geometry.cli import main

    args = ["report", "--model", "tests._sweep_worker:model", "--data", "digits", "--sections", "margins,regions",
            "--samples", "40", "--batch-size", "8", "--quiet"]
    with pytest.warns(UserWarning, match=re.escape(worker.NO_RANGE)):  # the margins section's robust accuracy
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    ckpt = str(tmp_path / "ckpt")
    done = _torchrun("-m", "art_geometry", *args, "--out", str(tmp_path / "two"), "--checkpoint", ckpt)
    assert done.returncode == 0, done.stderr[-2000:]
    # rank 0 alone prints the summary and writes the files (the checkpoint's too)
    assert done.stdout.count("report written to") == 1
    one, two = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("one", "two"))
    _assert_same_report(two, one)
    assert (tmp_path / "two" / "report.html").is_file()
    # resumed on two ranks: rank 0 reads the finished margins section and hands it to rank 1, both compute regions
    (tmp_path / "ckpt" / "report" / "section-regions.json").unlink()
    done = _torchrun("-m", "art_geometry", *args[:-1], "--out", str(tmp_path / "three"), "--checkpoint", ckpt)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("section margins loaded") == 1 and "section regions" not in done.stderr
    _assert_same_report(json.loads((tmp_path / "three" / "report.json").read_text()), one)

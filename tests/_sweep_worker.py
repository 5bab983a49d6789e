"""
The workload of the sharding and checkpoint tests, run in-process (the single-process reference) and in child
processes (under ``torchrun --nproc_per_node=2`` with gloo, or killed mid-sweep).

``python tests/_sweep_worker.py shard OUT`` (under torchrun): every rank runs :func:`families` and writes its
results to ``OUT/rank<r>.npz``. ``python tests/_sweep_worker.py fail OUT``: rank 1 gets a data chunk with a NaN.
``python tests/_sweep_worker.py slow CKPT``: a slowed-down checkpointed margin sweep, to be killed.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import art_geometry as ag
from art_geometry.datasets import load_digits

N = 101


class Net(nn.Module):
    """A small float64 CNN on 1x8x8 (float64 so that sharded margins must equal single-process ones bit for bit)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten())
        self.fc1 = nn.Linear(6 * 6 * 6, 24)
        self.fc2 = nn.Linear(24, 10)
        self.delay = float(os.environ.get("SWEEP_WORKER_DELAY", "0"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.fc2(torch.relu(self.fc1(self.features(x))))


def model() -> Net:
    torch.manual_seed(0)
    return Net().double()


def data(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.x_test[:n], d.y_test[:n]


#: robust_accuracy's warning for a module that declares no input range.
NO_RANGE = "the model declares no valid input range: assuming clip_values=(0, 1)"


def families(net: nn.Module, x: Any, y: Any) -> dict[str, np.ndarray]:
    """Every sharded family on (x, y); the per-sample arrays and the aggregate numbers, flattened."""
    opts = {"batch_size": 8, "chunk_size": 16}
    m = ag.deepfool_margins(net, x, y, seed=3, **opts)
    s = ag.subspace_margins(net, x, y, subspaces=ag.dct_subspaces((1, 8, 8), block_size=4, stride=4), seed=3,
                            batch_size=4, chunk_size=16)
    p = ag.populated_region_set(net, x, y, layer="fc1", **opts)
    inc = ag.inclusion_ratio(net, x[:60], x[60:], y_test=y[60:], layer="fc1", **opts)
    # ART's attacks feed float32 arrays: a float32 copy of the model for them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ag.robust_accuracy(copy.deepcopy(net).float(), x, y, attack="pgd", eps=0.1, max_iter=3, seed=5, **opts)
    # a plain module declares no input range, so the attack's box is assumed, with a warning
    assert [str(w.message) for w in caught] == [NO_RANGE], [str(w.message) for w in caught]
    j = ag.jacobian_stats(net, x, y, **opts)
    h = ag.hessian_eigenvalues(net, x[:30], y[:30], of="loss", k=2, seed=2, batch_size=4, chunk_size=8)
    return {
        "decision": ag.decision_function(net, x, y, **opts), "jacobian_l1": j.l1, "hessian": h.eigenvalues,
        "margins": m.margins, "success": m.success, "pred": m.predictions, "iterations": m.iterations,
        "sub_margins": s.margins, "sub_success": s.success,
        "region_ids": p.region_ids, "counts": p.counts, "n_regions": np.array(p.n_regions),
        "included": inc.included, "inclusion_ratio": np.array(inc.ratio),
        "adv_pred": r.adv_pred, "adv_correct": r.adv_correct, "perturbation_norm": r.perturbation_norm,
    }


def _shard(out: Path) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    x, y = data()
    np.savez(out / f"rank{rank}.npz", **families(model(), x, y))
    torch.distributed.destroy_process_group()


def _fail(out: Path) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    x, y = data()
    x = x.copy()
    x[20] = np.nan  # chunk 1 (samples 16..31), dealt to rank 1; the Dataset is validated chunk by chunk
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    try:
        ag.deepfool_margins(model(), dataset, batch_size=8, chunk_size=16)
    except RuntimeError as err:
        (out / f"rank{rank}.txt").write_text(str(err))
    torch.distributed.destroy_process_group()


def _slow(ckpt: Path) -> None:
    x, y = data(64)
    ag.deepfool_margins(model(), x, y, seed=3, batch_size=8, chunk_size=8, checkpoint=ckpt)


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    {"shard": _shard, "fail": _fail, "slow": _slow}[mode](where)

"""
Scale-out on CPU: peak memory of a streamed sweep against N, and two gloo ranks against one process.

Memory: each row is a fresh subprocess running the PRS sweep (``populated_region_set``) and the decision function
over the first N Fashion-MNIST training images, either held in memory as one array or streamed from a ``Dataset``
reading a memory-mapped ``.npy`` file; the figure is the process's peak resident set (``ru_maxrss``). A streamed
sweep holds one chunk of inputs at a time, so its peak should grow only with the per-sample results (PRS:
N x 32 bytes of packed patterns), not with N x 3 kB of images.

Ranks: DeepFool L2 margins of the same samples and model (SmallCNN, 2 epochs on 10k samples, seeded) in one
process with 1 and 2 torch threads and under ``torchrun --nproc_per_node=2`` (gloo) with 1 thread per rank; the
time is the computation only (after the process group is up, between two barriers), and the margins of the runs
are checked equal.

    .venv/bin/python benchmarks/bench_scale_out.py                 # N = 10k and 60k, 1000 margin samples
    .venv/bin/python benchmarks/bench_scale_out.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent.parent


class Memmapped(Dataset):
    """The first ``n`` images of a memory-mapped ``(N, 1, 28, 28)`` float32 ``.npy`` file, read one at a time."""

    def __init__(self, path: str, n: int):
        self.images = np.load(path, mmap_mode="r")
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[i]))


def _model(path: Path) -> torch.nn.Module:
    from art_geometry.datasets import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN((1, 28, 28))
    model.load_state_dict(torch.load(path))
    return model.eval()


def _memory_child(mode: str, npy: str, weights: str, n: int) -> None:
    import art_geometry as ag

    warnings.simplefilter("ignore")
    model = _model(Path(weights))
    x = Memmapped(npy, n) if mode == "streamed" else np.load(npy)[:n].copy()
    start = time.perf_counter()
    ag.populated_region_set(model, x, batch_size=512)
    ag.decision_function(model, x, batch_size=512)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "n": n, "peak_mb": peak, "seconds": seconds}))


def _margin_child(npy: str, weights: str, n: int, out: str) -> None:
    import torch.distributed as dist

    import art_geometry as ag

    warnings.simplefilter("ignore")
    sharded = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if sharded:
        dist.init_process_group("gloo")
        dist.barrier()
    model = _model(Path(weights))
    x = np.load(npy)[:n]
    start = time.perf_counter()
    result = ag.deepfool_margins(model, x, seed=0)
    if sharded:
        dist.barrier()
    seconds = time.perf_counter() - start
    if not sharded or dist.get_rank() == 0:
        np.save(out, result.margins)
        print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))
    if sharded:
        dist.destroy_process_group()


def _run(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=HERE,
                          env={**os.environ, "PYTHONPATH": str(HERE), **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10000, 60000], help="samples of the memory rows")
    parser.add_argument("--margin-n", type=int, default=1000, help="samples of the rank rows")
    parser.add_argument("--no-memory", action="store_true", help="only the rank rows")
    parser.add_argument("--quick", action="store_true", help="1000/3000 memory samples, 100 margin samples")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "memory":
            _memory_child(args.child[1], args.child[2], args.child[3], int(args.child[4]))
        else:
            _margin_child(args.child[1], args.child[2], int(args.child[3]), args.child[4])
        return
    if args.quick:
        args.n, args.margin_n = [1000, 3000], 100
    from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier

    warnings.simplefilter("ignore")
    data = load_fashion_mnist()
    with tempfile.TemporaryDirectory() as tmp:
        npy, weights = str(Path(tmp) / "x.npy"), str(Path(tmp) / "w.pt")
        np.save(npy, data.x_train[: max(args.n)].astype(np.float32))
        torch.manual_seed(0)
        clf = make_classifier(SmallCNN((1, 28, 28)), (1, 28, 28), 10)
        train_classifier(clf, data.x_train[:10000], data.y_train[:10000], nb_epochs=2, batch_size=128, seed=0)
        torch.save(clf.model.state_dict(), weights)
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]
        print("| input | N | peak RSS (MB) | seconds (PRS + decision) |\n|---|---|---|---|")
        for mode in () if args.no_memory else ("array", "streamed"):
            for n in args.n:
                r = _run([*me, "memory", mode, npy, weights, str(n)], {"OMP_NUM_THREADS": "2"})
                print(f"| {mode} | {n:,} | {r['peak_mb']:.0f} | {r['seconds']:.2f} |")
        rows = []
        for label, cmd, env in (
            ("1 process, 1 thread", [*me, "margins", npy, weights, str(args.margin_n)], {"OMP_NUM_THREADS": "1"}),
            ("1 process, 2 threads", [*me, "margins", npy, weights, str(args.margin_n)], {"OMP_NUM_THREADS": "2"}),
            ("2 gloo ranks x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                         "--nproc_per_node=2", str(Path(__file__).resolve()), "--child", "margins",
                                         npy, weights, str(args.margin_n)], {"OMP_NUM_THREADS": "1"}),
        ):
            out = str(Path(tmp) / f"m{len(rows)}.npy")
            r = _run([*cmd, out], env)
            rows.append((label, r["seconds"], np.load(out)))
        print(f"\n| DeepFool L2, {args.margin_n} samples | seconds | vs 1 process, 1 thread | margins equal |\n"
              "|---|---|---|---|")
        for label, seconds, margins in rows:
            print(f"| {label} | {seconds:.2f} | {rows[0][1] / seconds:.2f}x | "
                  f"{np.array_equal(margins, rows[0][2])} |")


if __name__ == "__main__":
    main()

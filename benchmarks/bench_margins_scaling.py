"""
Scaling of ``deepfool_margins`` (L2, defaults: refine, 3 restarts, batch_size=128) with the number of samples:
wall time and peak resident memory for N Fashion-MNIST test/train samples.

Model: SmallCNN((1, 28, 28)) briefly trained (1 epoch on 5000 training images, seed 0), saved once and loaded by
every measurement. Each N runs in a fresh subprocess; memory is the largest resident set sampled during the call
(``_memory.peak_growth``) over the resident set just before it, after the data, the model and a warm-up call, so it
covers torch's allocations (which tracemalloc does not see) and excludes the input array itself.

Run:  .venv/bin/python benchmarks/bench_margins_scaling.py [--sizes 1000 10000 60000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from _memory import peak_growth
from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier

SHAPE = (1, 28, 28)


def samples(n: int) -> np.ndarray:
    d = load_fashion_mnist()
    pool = np.concatenate([d.x_test, d.x_train])
    return np.ascontiguousarray(pool[:n])


def child(n: int, weights: str, threads: int) -> None:
    from art_geometry.margins import deepfool_margins

    torch.set_num_threads(threads)
    model = SmallCNN(SHAPE)
    model.load_state_dict(torch.load(weights))
    clf = make_classifier(model, SHAPE, 10)
    x = samples(n)
    deepfool_margins(clf, x[:8])  # warm-up
    out = {}
    t0 = time.perf_counter()
    base, peak = peak_growth(lambda: out.update(r=deepfool_margins(clf, x)))
    seconds = time.perf_counter() - t0
    r = out["r"]
    print(json.dumps({
        "n": n, "seconds": seconds, "peak_mib": (peak - base) / 2**20, "success": float(r.success.mean()),
        "median": float(np.median(r.margins[r.success])), "mean_iter": float(r.iterations.mean()),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 60000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.weights, args.threads)
        return
    torch.set_num_threads(args.threads)
    d = load_fashion_mnist()
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN(SHAPE), SHAPE, 10)
    train_classifier(clf, d.x_train[:5000], d.y_train[:5000], nb_epochs=1, batch_size=64, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "smallcnn.pt")
        torch.save(clf.model.state_dict(), weights)
        for n in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--weights", weights, "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"deepfool_margins L2 on Fashion-MNIST, SmallCNN (1 epoch on 5k), torch threads={args.threads}")
    print("| N | time (s) | ms / sample | peak RSS growth (MiB) | success rate | median margin | mean iterations |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['seconds']:.1f} | {1000 * r['seconds'] / r['n']:.2f} | {r['peak_mib']:.0f} | "
              f"{r['success']:.3f} | {r['median']:.3f} | {r['mean_iter']:.2f} |")


if __name__ == "__main__":
    main()

"""
PRS on Fashion-MNIST (60k train images) with the small CNN, side by side in one run:

* time of ``populated_region_set`` against one bare forward pass over the same data (goal: at most 10% overhead);
* against a naive baseline that stores sign tuples in a Python set (goal: at least 10x faster), in total time and
  in the time each spends beyond the forward pass (the part the two implementations differ in);
* peak memory above a bare forward pass, against the size of the packed patterns (goal: packed patterns plus
  one batch): in fresh subprocesses with an untrained model, the largest resident set sampled during the call
  (``_memory.peak_growth``) over the resident set just before it, after loading the data and a warm-up batch.

Run: ``.venv/bin/python benchmarks/bench_prs.py [--n 60000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from _memory import peak_growth
from art_geometry import populated_region_set
from art_geometry.core.model import model_view
from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier


def _classifier(seed: int = 0, train: bool = True):
    data = load_fashion_mnist()
    torch.manual_seed(seed)
    clf = make_classifier(SmallCNN((1, 28, 28)), (1, 28, 28), 10)
    if train:
        train_classifier(clf, data.x_train[:10000], data.y_train[:10000], nb_epochs=1, batch_size=128, seed=seed)
    return clf, data


def _forward(clf, x, batch_size):
    view = model_view(clf)
    with view.evaluating(), torch.no_grad():
        for i in range(0, len(x), batch_size):
            view(torch.from_numpy(x[i : i + batch_size]))


def _naive(clf, x, layer_module, batch_size):
    patterns = set()
    store = []
    handle = layer_module.register_forward_pre_hook(lambda m, a: store.append(a[0]))
    try:
        with torch.no_grad():
            clf.model.eval()
            for i in range(0, len(x), batch_size):
                clf.model(torch.from_numpy(x[i : i + batch_size]))
                for row in (store.pop().flatten(1) > 0).tolist():
                    patterns.add(tuple(row))
    finally:
        handle.remove()
    return len(patterns)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _memory_child(mode: str, n: int, batch_size: int, layer: str | None) -> None:
    clf, data = _classifier(train=False)
    x = np.ascontiguousarray(data.x_train[:n])
    _forward(clf, x[:batch_size], batch_size)
    populated_region_set(clf, x[:batch_size], layer=layer, batch_size=batch_size)
    extra = {}
    if mode == "forward":
        base, peak = peak_growth(lambda: _forward(clf, x, batch_size))
    else:
        base, peak = peak_growth(
            lambda: extra.update(res=populated_region_set(clf, x, layer=layer, batch_size=batch_size))
        )
        extra = {"packed_bytes": n * ((extra["res"].n_units + 7) // 8)}
    print(json.dumps({"mode": mode, "peak": peak, "base": base, **extra}))


def _memory(n: int, batch_size: int, layer: str | None) -> dict:
    out = {}
    for mode in ("forward", "prs"):
        cmd = [sys.executable, __file__, "--child", mode, "--n", str(n), "--batch-size", str(batch_size)]
        if layer:
            cmd += ["--layer", layer]
        out[mode] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--naive-n", type=int, default=60000, help="samples for the naive baseline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.child:
        _memory_child(args.child, args.n, args.batch_size, args.layer)
        return

    clf, data = _classifier()
    x = np.ascontiguousarray(data.x_train[: args.n])
    print(f"Fashion-MNIST train, N={len(x)}, SmallCNN((1,28,28)) trained 1 epoch on 10k, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    rows = []
    for layer in (None, "features.3"):
        res = populated_region_set(clf, x[:10], layer=layer)
        module = dict(clf.model.named_modules())[res.layer.split(":")[0]]
        t_fwd, t_prs = [], []
        for _ in range(args.repeats):
            t_fwd.append(_timed(lambda: _forward(clf, x, args.batch_size))[0])
            t, prs = _timed(lambda: populated_region_set(clf, x, layer=layer, batch_size=args.batch_size))
            t_prs.append(t)
        naive_n = min(args.naive_n, len(x))
        if layer is not None:
            naive_n = min(naive_n, 5000)
        hook_module = module if res.layer.endswith(":input") else None
        if hook_module is None:
            # For an output layer, hook the next module's input: features.3 (ReLU) output feeds features.4.
            hook_module = dict(clf.model.named_modules())["features.4"]
        x_sub = x[:naive_n]
        t_naive, n_naive = _timed(lambda: _naive(clf, x_sub, hook_module, args.batch_size))
        t_prs_sub, prs_sub = _timed(lambda: populated_region_set(clf, x_sub, layer=layer, batch_size=args.batch_size))
        t_fwd_sub = _timed(lambda: _forward(clf, x_sub, args.batch_size))[0]
        assert prs_sub.n_regions == n_naive, (prs_sub.n_regions, n_naive)
        rows.append({
            "layer": prs.layer, "units": prs.n_units, "regions": prs.n_regions, "ratio": prs.ratio,
            "forward_s": float(np.median(t_fwd)), "prs_s": float(np.median(t_prs)),
            "overhead": float(np.median(t_prs) / np.median(t_fwd) - 1),
            "naive_n": naive_n, "naive_s": t_naive, "prs_sub_s": t_prs_sub, "speedup_vs_naive": t_naive / t_prs_sub,
            "naive_extra_s": t_naive - t_fwd_sub, "prs_extra_s": t_prs_sub - t_fwd_sub,
        })
    print("\n| layer | units | regions | PRS ratio | forward (s) | PRS (s) | overhead | naive set (s) "
          "| ours, same N (s) | speed-up vs naive | beyond the forward: naive / ours (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['units']} | {r['regions']} | {r['ratio']:.4f} | {r['forward_s']:.2f} | "
              f"{r['prs_s']:.2f} | {100 * r['overhead']:+.1f}% | {r['naive_s']:.2f} (N={r['naive_n']}) | "
              f"{r['prs_sub_s']:.2f} | {r['speedup_vs_naive']:.1f}x | "
              f"{r['naive_extra_s']:.2f} / {r['prs_extra_s']:.2f} |")
    print("\nPeak memory (fresh subprocesses, untrained model; peak RSS during the call minus RSS before it):")
    print("| layer | forward only (MiB) | PRS (MiB) | PRS extra over forward (MiB) | packed patterns (MiB) |")
    print("|---|---|---|---|---|")
    for layer in (None, "features.3"):
        m = _memory(args.n, args.batch_size, layer)
        fwd = (m["forward"]["peak"] - m["forward"]["base"]) / 2**20
        prs = (m["prs"]["peak"] - m["prs"]["base"]) / 2**20
        print(f"| {layer or 'default'} | {fwd:.1f} | {prs:.1f} | {prs - fwd:.1f} | "
              f"{m['prs']['packed_bytes'] / 2**20:.1f} |")


if __name__ == "__main__":
    main()

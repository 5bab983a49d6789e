"""
Before/after regression check: the same calls on two checkouts of art-geometry, in alternating subprocesses.

``--base PATH`` is a checkout of an earlier commit (``git worktree add /tmp/base <commit>``); the current tree is
the other side. Each round runs one subprocess per side (the side's checkout first on ``PYTHONPATH``), which times
every call ``--repeats`` times after a warm-up and prints medians; rounds alternate the sides so that drift of a
shared machine hits both. The table gives the median over rounds and the ratio current / base.

The calls cover what the validated path touches on the hot side: DeepFool L2 / L-inf (unclipped and clipped),
PRS over 20k Fashion-MNIST images, a 21-block DCT subspace sweep, and the top-20 input-Hessian eigenvalues. Both
sides use the same settings; every call's result is also digested (SHA-256 of its ``to_dict()`` as sorted JSON, or
of the float for a scalar), and the table says whether the two sides returned the same result bit for bit; where the call form changed between versions (``subspace_margins``' subspaces and
the meaning of its ``batch_size``), each side gets the form that means the same work (6 samples x 21 subspaces
per pass).

    .venv/bin/python benchmarks/bench_ab.py --base /tmp/base --rounds 5 --repeats 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _child(repeats: int) -> None:
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    import art_geometry as ag
    from art_geometry.datasets import (
        SmallCNN,
        load_digits,
        load_fashion_mnist,
        make_classifier,
        train_classifier,
    )
    from art_geometry.subspaces import dct_subspaces

    digits = load_digits()
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN((1, 8, 8)), (1, 8, 8), 10)
    train_classifier(clf, digits.x_train, digits.y_train, nb_epochs=3, batch_size=64, seed=0)
    x = digits.x_test[:300]
    fm = load_fashion_mnist()
    torch.manual_seed(0)
    fclf = make_classifier(SmallCNN((1, 28, 28)), (1, 28, 28), 10)
    train_classifier(fclf, fm.x_train[:3000], fm.y_train[:3000], nb_epochs=1, batch_size=128, seed=0)
    subs = dct_subspaces((1, 28, 28), block_size=8, stride=1)
    keyword_subspaces = hasattr(ag, "DeepFoolSettings")

    def sweep() -> object:
        if keyword_subspaces:
            return ag.subspace_margins(fclf, fm.x_test[:12], subspaces=subs, batch_size=6)
        return ag.subspace_margins(fclf, fm.x_test[:12], subs, batch_size=6 * len(subs))

    calls = {
        "deepfool L2, 300 digits": lambda: ag.deepfool_margins(clf, x),
        "deepfool L-inf, 300 digits": lambda: ag.deepfool_margins(clf, x, norm="inf"),
        "deepfool L2 box=True, 300 digits": lambda: ag.deepfool_margins(clf, x, box=True),
        "PRS, 20k Fashion-MNIST": lambda: ag.populated_region_set(fclf, fm.x_train[:20000]),
        "DCT sweep, 12 x 21 blocks": sweep,
        "Hessian top-20 (loss), 2 images": lambda: ag.hessian_eigenvalues(fclf, fm.x_test[:2], of="loss", k=20,
                                                                          batch_size=2),
    }
    out: dict[str, dict[str, object]] = {}
    for name, fn in calls.items():
        digest = _digest(fn())
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = {"seconds": statistics.median(times), "digest": digest}
    print(json.dumps(out))


def _digest(result: object) -> str:
    """:return: SHA-256 of a result's ``to_dict()`` as sorted JSON (a float's repr for a scalar result)."""
    text = json.dumps(result.to_dict(), sort_keys=True) if hasattr(result, "to_dict") else repr(result)
    return hashlib.sha256(text.encode()).hexdigest()


def _run(side: Path, repeats: int) -> dict[str, dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(side)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", "--repeats", str(repeats)], env=env, cwd=str(side),
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--base", type=Path, help="checkout of the earlier commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.repeats)
        return
    if args.base is None or not (args.base / "art_geometry").is_dir():
        raise SystemExit("--base must be a checkout of art-geometry (git worktree add /tmp/base <commit>)")
    runs: dict[str, list[dict[str, dict[str, object]]]] = {"base": [], "current": []}
    for _ in range(args.rounds):
        runs["base"].append(_run(args.base.resolve(), args.repeats))
        runs["current"].append(_run(HERE, args.repeats))
    print(f"{args.rounds} alternating rounds x {args.repeats} repeats, median over rounds of per-round medians")
    print("| call | base (s) | current (s) | current / base | same result |")
    print("|---|---:|---:|---:|---|")
    for name in runs["base"][0]:
        b = statistics.median(float(r[name]["seconds"]) for r in runs["base"])
        c = statistics.median(float(r[name]["seconds"]) for r in runs["current"])
        digests = {r[name]["digest"] for side in runs.values() for r in side}
        print(f"| {name} | {b:.3f} | {c:.3f} | {c / b:.2f} | {'yes' if len(digests) == 1 else 'NO'} |")


if __name__ == "__main__":
    main()

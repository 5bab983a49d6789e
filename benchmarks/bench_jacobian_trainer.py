"""
Epoch time of the Jacobian-regularised trainer relative to ART's natural ``PyTorchClassifier.fit``.

Same model (SmallCNN for 28 x 28 inputs, identical initial weights for every run), same data (a seeded subset of
Fashion-MNIST; digits when Fashion-MNIST is absent), same batch size and
optimizer (Adam, lr 1e-3), measured side by side in one run; the runs are interleaved over ``--repeats`` rounds
and the median epoch time is reported, as wall-clock and as process CPU time (all threads; steadier than wall
time on a shared machine). The paper (Yu et al. 2018) reports about 2.1x natural training.

    .venv/bin/python benchmarks/bench_jacobian_trainer.py --n 10000 --repeats 2

With ``--tracker``: the overhead of one :class:`GeometryTracker` evaluation (default settings: 200 train and 200
test samples, accuracy, PRS and inclusion ratios, L2 and L-inf DeepFool margins, PGD robust accuracy) against one
epoch of ART's ``fit`` on the same model and data, with the tracker's per-metric breakdown.

    .venv/bin/python benchmarks/bench_jacobian_trainer.py --n 10000 --tracker
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from art_geometry.core.rng import seeded
from art_geometry.datasets import SmallCNN, load_digits, load_fashion_mnist, make_classifier
from art_geometry.training import GeometryTracker, JacobianRegularizedTrainer

VARIANTS = [
    ("ART fit (natural)", None),
    ("Jacobian c=0 (CE + logged penalty)", dict(c=0.0, norm=1)),
    ("Jacobian decision, L1", dict(c=0.01, norm=1)),
    ("Jacobian decision, L2", dict(c=0.01, norm=2)),
    ("Jacobian decision, Linf", dict(c=0.01, norm=np.inf)),
    ("Jacobian cross-entropy, L2^2", dict(c=0.01, norm=2, target="cross_entropy", squared=True)),
    ("Frobenius projections k=1", dict(c=0.01, projections=1)),
]


def load(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        data = load_fashion_mnist()
    except FileNotFoundError:
        data = load_digits()
    idx = np.random.default_rng(0).permutation(len(data.x_train))[:n]
    return data.x_train[idx], data.y_train[idx], data.name


def epoch_time(
    init: dict, shape: tuple, x: np.ndarray, y: np.ndarray, bs: int, options: dict | None
) -> tuple[float, float]:
    """:return: Wall-clock and process CPU seconds of one training epoch from the initial weights ``init``."""
    model = SmallCNN(shape)
    model.load_state_dict(copy.deepcopy(init))
    clf = make_classifier(model, shape, 10, lr=1e-3)
    trainer = None if options is None else JacobianRegularizedTrainer(clf, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    if trainer is None:
        with seeded(0):
            clf.fit(x, y, batch_size=bs, nb_epochs=1, verbose=False)
    else:
        trainer.fit(x, y, batch_size=bs, nb_epochs=1, verbose=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def tracker_overhead(init: dict, shape: tuple, x: np.ndarray, y: np.ndarray, bs: int, name: str) -> None:
    """Print one tracked evaluation's time against one ART ``fit`` epoch, with the per-metric breakdown."""
    model = SmallCNN(shape)
    model.load_state_dict(copy.deepcopy(init))
    clf = make_classifier(model, shape, 10, lr=1e-3)
    wall, cpu = time.perf_counter(), time.process_time()
    with seeded(0):
        clf.fit(x, y, batch_size=bs, nb_epochs=1, verbose=False)
    epoch_wall, epoch_cpu = time.perf_counter() - wall, time.process_time() - cpu
    n_test = min(len(x), 10000)
    tracker = GeometryTracker(x, y, x[:n_test], y[:n_test], batch_size=256, seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    record = tracker.evaluate(clf, 0)
    eval_wall, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"SmallCNN{shape}, ART fit epoch on {len(x)} {name} samples (batch {bs}) vs one GeometryTracker "
          f"evaluation (200 train + 200 test samples), torch threads {torch.get_num_threads()}, device cpu")
    print(f"| {'step':<28} | {'wall s':>8} | {'CPU s':>8} | {'wall / epoch':>12} |")
    print(f"|{'-' * 30}|{'-' * 9}:|{'-' * 9}:|{'-' * 13}:|")
    print(f"| {'ART fit, 1 epoch':<28} | {epoch_wall:>8.2f} | {epoch_cpu:>8.2f} | {1:>11.2f}x |")
    print(f"| {'tracker evaluation (total)':<28} | {eval_wall:>8.2f} | {eval_cpu:>8.2f} | "
          f"{eval_wall / epoch_wall:>11.2f}x |")
    for key, seconds in record["timing"].items():
        if key != "total":
            print(f"| {'  ' + key:<28} | {seconds:>8.2f} | {'':>8} | {seconds / epoch_wall:>11.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000, help="training samples")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds (median reported)")
    parser.add_argument("--tracker", action="store_true", help="measure the GeometryTracker overhead instead")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, name = load(args.n)
    shape = tuple(x.shape[1:])
    torch.manual_seed(0)
    init = SmallCNN(shape).state_dict()
    if args.tracker:
        tracker_overhead(init, shape, x, y, args.batch_size, name)
        return
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in VARIANTS}
    for _ in range(args.repeats):
        for label, options in VARIANTS:
            times[label].append(epoch_time(init, shape, x, y, args.batch_size, options))
    med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
    base_wall, base_cpu = med[VARIANTS[0][0]]
    print(f"SmallCNN{shape} on {len(x)} {name} samples, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, device cpu, {args.repeats} interleaved round(s) (median)")
    print(f"| {'training':<36} | {'wall s/epoch':>12} | {'wall ratio':>10} | {'CPU s/epoch':>11} | {'CPU ratio':>9} |")
    print(f"|{'-' * 38}|{'-' * 13}:|{'-' * 11}:|{'-' * 12}:|{'-' * 10}:|")
    for label, _ in VARIANTS:
        w, c = med[label]
        print(f"| {label:<36} | {w:>12.2f} | {w / base_wall:>9.2f}x | {c:>11.2f} | {c / base_cpu:>8.2f}x |")

if __name__ == "__main__":
    main()

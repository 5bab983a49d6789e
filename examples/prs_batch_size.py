"""
Batch size, populated region set and robustness: a small-scale reproduction of the batch-size experiment (Fig. 5)
of *Empirical Study of the Decision Region and Robustness in Deep Neural Networks* (ICLR 2022 submission, the
"PRS paper").

The same network (the paper's six-layer CNN shape, ``CNN6``), from the same initial weights, is trained for the same
number of epochs with a large batch (2048) and a small batch (128), Adam at the same learning rate. For both nets
we report the test accuracy, the PRS ratio of the training set at the penultimate layer (the input of the last
``nn.Linear``; ``populated_region_set``), the inclusion ratio of the test set (``inclusion_ratio``), the PGD-20
L-inf robust accuracy at eps 0.1 (``robust_accuracy``), and the PRS ratio over the epochs (``GeometryTracker``
with the region metrics, on the whole training set). The paper's claim (Fig. 5): the large-batch net ends with a
larger PRS ratio and a lower robust accuracy than the small-batch one.

For the claims PRS-F2 ... PRS-F12 of ``examples/RESULTS.md`` the final networks are also measured with the PRS
ratio at every ReLU layer (``layerwise_prs``, Fig. 2a), FGSM / BIM-5 / PGD-20 / PGD-100 robust accuracy (Fig. 3),
the zero-gradient share of the failed PGD attacks (``zero_gradient_analysis``, Fig. 6), the mean cosine similarity
of the final layer's class rows (``final_layer_similarity``, Fig. 7-8), the PGD robust accuracy of the test
samples inside / outside the training regions (``inclusion_robustness``, Fig. 9-10) and the mean feature sparsity
(``feature_sparsity``, Fig. 12); the tracker also records the PGD robust accuracy at every tracked epoch (Fig. 5).
The paper's step size (2/255) is not used: ART's defaults of each attack are.

On digits the training set has 1,437 samples, so batch 2048 is ONE full batch per epoch (full-batch Adam: one step
per epoch), against 12 steps per epoch at batch 128. The epoch count is the same for both (as in the paper), chosen
so that the full-batch net also trains to a reasonable accuracy.

Commands::

    python examples/prs_batch_size.py --quick                       # smoke run (test suite), seconds
    python examples/prs_batch_size.py                               # digits, 100 epochs
    python examples/prs_batch_size.py --data fashion-mnist --n-train 8192 --n-test 1000 --epochs 8 \
        --track-points 8 --out examples_out/prs_batch_size_fashion     # 24 min here, see below

Each run writes ``prs_batch_size.json`` (numbers and settings) and ``prs_batch_size.png`` into ``--out``.

Measured (seed 0, ``nice -n 19 env OMP_NUM_THREADS=1``, a shared and busy 2-core CPU; PRS ratio of the training
set at ``classifier.2:input``, 256 units; inclusion ratio and PGD-20 L-inf eps 0.1 robust accuracy on the test set):

digits (default: 1,437 train / 360 test, 100 epochs: batch 2048 = 100 full-batch steps, batch 128 = 1,200 steps;
113-199 s wall, 106-108 s of CPU, identical numbers over three runs; ``--quick``: 7-13 s inside ``main``, 10-11 s of
CPU with the imports)::

                 test acc   PRS ratio  regions  inclusion  PGD-20 robust acc
    batch 2048    0.975      0.793      1139      0.308        0.456
    batch 128     0.978      0.994      1428      0.011        0.514

Fashion-MNIST (the command above: a seeded random 8,192 of the 60k training images, 1,000 of the test images,
8 epochs: batch 2048 = 4 steps per epoch, 32 in all; batch 128 = 64 per epoch, 512 in all; run once, 1,426 s wall
on the busy machine, about 19 min of CPU, so over the 15-minute aim: ``--n-train 6144`` should fit, untested)::

                 test acc   PRS ratio  regions  inclusion  PGD-20 robust acc
    batch 2048    0.738      0.759      6217      0.327        0.274
    batch 128     0.881      0.989      8104      0.014        0.000

(per epoch, PRS ratio batch 2048: 0.29 0.40 0.74 0.71 0.77 0.77 0.81 0.76; batch 128: 0.78 0.84 0.94 0.97 0.98 0.99
0.99 0.99.) With the same 8 epochs the large-batch net is far from trained (train accuracy 0.74 against 0.92).

Against the paper (Fig. 5: the large-batch net ends with a LARGER PRS ratio and a LOWER robust accuracy):

* robust accuracy: agrees on digits (0.456 vs 0.514 at equal clean accuracy); DISAGREES on Fashion-MNIST, where
  the small-batch net is broken completely at eps 0.1 (0.000) and the under-trained large-batch net keeps 0.274
  (at a much lower clean accuracy, so the two nets are not comparable there);
* PRS ratio: DISAGREES on both data sets. The large-batch net ends with the SMALLER PRS ratio (digits 0.79 vs
  0.99, Fashion-MNIST 0.76 vs 0.99), and its test samples fall far more often in training regions (inclusion
  0.31 vs 0.01, 0.33 vs 0.01). The small-batch net puts almost every training sample in its own region within a
  few epochs; on digits the full-batch net's ratio jumps to 0.87 after 6 epochs, drops to ~0.65-0.75 and climbs
  back to 0.79 while its accuracy catches up. Same epochs means 12x (digits) / 16x (Fashion-MNIST) fewer
  optimiser steps for batch 2048; with 256 penultimate units and at most 8k samples, a well-trained net here
  gives nearly every sample its own region, so the ratio mostly tracks how far training has gone. We did not
  change the settings to match the paper.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import example_parser, twin_classifiers

from art_geometry import (
    AttackSettings,
    GeometryTracker,
    feature_sparsity,
    final_layer_similarity,
    fit_tracked,
    inclusion_ratio,
    inclusion_robustness,
    layerwise_prs,
    populated_region_set,
    robust_accuracy,
    zero_gradient_analysis,
)
from art_geometry.datasets import CNN6, Dataset, load_digits, load_fashion_mnist

NAME = "prs_batch_size"
#: The attacks of the PRS paper's Fig. 3: (name, ``robust_accuracy`` attack, iterations).
FIG3_ATTACKS = (("FGSM", "fgsm", 1), ("BIM-5", "bim", 5), ("PGD-20", "pgd", 20), ("PGD-100", "pgd", 100))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """
    :param argv: Command-line arguments (``None``: ``sys.argv[1:]``).
    :return: The parsed options; ``--quick`` overrides the sizes with a tiny smoke setting.
    """
    parser = example_parser(NAME, __doc__)
    parser.add_argument("--epochs", type=int, default=100, help="epochs, the same for both batch sizes")
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=(2048, 128), metavar=("LARGE", "SMALL"))
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate, the same for both")
    parser.add_argument("--n-train", type=int, default=None, help="subsample the training set (default: all)")
    parser.add_argument("--n-test", type=int, default=None, help="subsample the test set (default: all)")
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf budget of PGD")
    parser.add_argument("--pgd-iter", type=int, default=20, help="PGD iterations")
    parser.add_argument("--track-points", type=int, default=20, help="epochs at which the PRS ratio is tracked")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.epochs, args.n_train, args.n_test, args.track_points = "digits", 3, 256, 100, 3
    return args


def tracked_epochs(nb_epochs: int, points: int) -> list[int]:
    """
    :param nb_epochs: Number of epochs.
    :param points: Number of tracked epochs wanted.
    :return: About ``points`` 0-based epochs, evenly spread, always including the last one.
    """
    return sorted({int(e) for e in np.linspace(0, nb_epochs - 1, max(1, min(points, nb_epochs)))})


def train_tracked(classifier: Any, data: Dataset, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """
    Train with ART's ``fit`` one epoch at a time, tracking accuracy, PRS ratio, inclusion ratio and PGD robust
    accuracy (``--pgd-iter`` steps, eps ``--eps``) on the WHOLE (subsampled) training and test sets.

    :param classifier: The ART classifier to train.
    :param data: The data set.
    :param batch_size: Training batch size.
    :param args: The options (epochs, seed, track points).
    :return: The tracker's history.
    """
    tracker = GeometryTracker(
        data.x_train, data.y_train, data.x_test, data.y_test,
        epochs=tracked_epochs(args.epochs, args.track_points),
        n_train=len(data.x_train), n_test=len(data.x_test), metrics=("accuracy", "regions", "robustness"),
        attack_settings=AttackSettings(attack="pgd", eps=args.eps, max_iter=args.pgd_iter, seed=args.seed),
        seed=args.seed,
    )
    return fit_tracked(
        classifier, data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=batch_size, tracker=tracker,
        seed=args.seed,
    )


def final_metrics(classifier: Any, data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """
    :param classifier: A trained ART classifier.
    :param data: The data set.
    :param args: The options (eps, PGD iterations, seed).
    :return: Test accuracy, PRS ratio and region count of the training set, inclusion ratio of the test set,
        PGD-``--pgd-iter`` robust accuracy of the test set, and (``attacks``) the robust accuracy under the PRS
        paper's Fig. 3 attacks at the same eps: FGSM, BIM-5, PGD-20, PGD-100; the PRS ratio at every ReLU layer
        (Fig. 2a), the PGD failures with a zero input gradient (Fig. 6), the mean cosine similarity of the final
        layer's class rows (Fig. 7-8), the robust accuracy of the test samples inside / outside the training
        regions (Fig. 9-10) and the mean feature sparsity of the test set (Fig. 12).
    """
    pgd = {"attack": "pgd", "eps": args.eps, "max_iter": args.pgd_iter, "seed": args.seed}
    layers = layerwise_prs(classifier, data.x_train)
    prs = populated_region_set(classifier, data.x_train)
    inc = inclusion_ratio(classifier, data.x_train, data.x_test)
    rob = robust_accuracy(
        classifier, data.x_test, data.y_test, attack="pgd", eps=args.eps, max_iter=args.pgd_iter, seed=args.seed
    )
    return {
        "test_accuracy": rob.accuracy,
        "prs_ratio": prs.ratio,
        "n_regions": prs.n_regions,
        "layer": prs.layer,
        "n_units": prs.n_units,
        "inclusion_ratio": inc.ratio,
        "robust_accuracy": rob.robust_accuracy,
        "attacks": {
            name: robust_accuracy(classifier, data.x_test, data.y_test, attack=attack, eps=args.eps,
                                  max_iter=steps, seed=args.seed).robust_accuracy
            for name, attack, steps in FIG3_ATTACKS
        },
        "layerwise_prs": {name: float(r) for name, r in zip(layers.layers, layers.ratios)},
        "zero_gradient": zero_gradient_analysis(classifier, data.x_test, data.y_test, **pgd).summary(),
        "final_layer_similarity": final_layer_similarity(classifier).mean_off_diagonal,
        "inclusion_robustness": inclusion_robustness(classifier, data.x_train, data.x_test, data.y_test,
                                                     **pgd).summary(),
        "feature_sparsity": feature_sparsity(classifier, data.x_test).mean,
    }


def curves(history: dict[str, Any]) -> dict[str, list[float]]:
    """
    :param history: A tracker history.
    :return: Per tracked epoch (by epochs trained so far): train/test accuracy, train PRS ratio, test inclusion ratio
        and test robust accuracy.
    """
    records = history["epochs"]
    return {
        "epochs_trained": [r["epoch"] + 1 for r in records],
        "train_accuracy": [r["train"]["accuracy"] for r in records],
        "test_accuracy": [r["test"]["accuracy"] for r in records],
        "prs_ratio": [r["train"]["prs_ratio"] for r in records],
        "inclusion_ratio": [r["test"]["inclusion_ratio"] for r in records],
        "robust_accuracy": [r["test"]["robust_accuracy"] for r in records],
    }


def plot(results: dict[str, Any], path: Path) -> None:
    """
    Left: PRS ratio of the training set over epochs; right: test accuracy over epochs; one line per batch size.

    :param results: ``{"batch_<B>": {"curves": ..., "final": ...}}``.
    :param path: The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, res in results.items():
        c, f = res["curves"], res["final"]
        left.plot(c["epochs_trained"], c["prs_ratio"], marker="o", ms=3, label=f"{name} (final {f['prs_ratio']:.3f})")
        right.plot(c["epochs_trained"], c["test_accuracy"], marker="o", ms=3,
                   label=f"{name}: acc {f['test_accuracy']:.3f}, PGD {f['robust_accuracy']:.3f}")
    left.set(xlabel="epochs trained", ylabel="PRS ratio (training set, penultimate layer)", ylim=(0, 1.02))
    right.set(xlabel="epochs trained", ylabel="test accuracy", ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict[str, Any]) -> None:
    """
    Print the final numbers of both nets, one row per batch size.

    :param results: ``{"batch_<B>": {"final": ..., "train_track_seconds": ...}}`` (seconds: training plus tracking).
    """
    keys = ("test_accuracy", "prs_ratio", "n_regions", "inclusion_ratio", "robust_accuracy", "train_track_seconds")
    print(f"{'':12s}" + "".join(f"{k:>20s}" for k in keys))
    for name, res in results.items():
        row = {**res["final"], "train_track_seconds": res["train_track_seconds"]}
        print(f"{name:12s}" + "".join(f"{row[k]:20.4g}" for k in keys))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run the experiment, write ``prs_batch_size.json`` and ``prs_batch_size.png`` into ``--out`` and print a table.

    :param argv: Command-line arguments (``None``: ``sys.argv[1:]``).
    :return: The JSON-able numbers and settings.
    """
    args = parse_args(argv)
    start = time.perf_counter()
    data = load_digits() if args.data == "digits" else load_fashion_mnist()
    data = data.subset(args.n_train, args.n_test, args.seed)
    results: dict[str, Any] = {}
    for classifier, batch_size in zip(twin_classifiers(CNN6, data, args.lr, args.seed, 2), args.batch_sizes):
        tic = time.perf_counter()
        history = train_tracked(classifier, data, batch_size, args)
        seconds = time.perf_counter() - tic
        results[f"batch_{batch_size}"] = {
            "batch_size": batch_size,
            "steps_per_epoch": int(np.ceil(len(data.x_train) / batch_size)),
            "train_track_seconds": seconds,
            "final": final_metrics(classifier, data, args),
            "curves": curves(history),
        }
    settings = {**vars(args), "model": "CNN6", "optimizer": "Adam", "n_train_used": len(data.x_train),
                "n_test_used": len(data.x_test)}
    report = {"settings": settings, "results": results, "wall_seconds": time.perf_counter() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot(results, out / f"{NAME}.png")
    print_table(results)
    print(f"wall time {report['wall_seconds']:.1f} s; wrote {out / NAME}.json and .png")
    return report


if __name__ == "__main__":
    main()

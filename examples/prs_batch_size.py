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
BIM and PGD take the paper's step alpha = 2/255 (``--eps-step``, Sec. 4.1: "For each step, alpha = 2/255 is
adopted"); FGSM takes one step of eps.

On digits the training set has 1,437 samples, so batch 2048 is ONE full batch per epoch (full-batch Adam: one step
per epoch), against 12 steps per epoch at batch 128. The epoch count is the same for both (as in the paper), chosen
so that the full-batch net also trains to a reasonable accuracy. The paper trains CNN-6 for 300 epochs on the full
data sets (MNIST, F-MNIST, CIFAR-10); on one CPU thread that does not fit, hence the subsets below. A larger run
was tried on 2026-12-02 (``--n-train 8192 --n-test 1000 --epochs 40``, where batch 2048 takes 4 steps an epoch
instead of one): the first net alone (training with the tracker's five measurements on all 8,192 + 1,000 samples)
took 73 min on one thread beside another job, so a seed would take about 2.5 h and three seeds most of a day; it
was stopped, and the 1,024-sample runs below stay the ones behind ``examples/RESULTS.md``.

Commands::

    python examples/prs_batch_size.py --quick                       # smoke run (test suite), seconds
    python examples/prs_batch_size.py                               # digits, 100 epochs
    python examples/prs_batch_size.py --data fashion-mnist --n-train 1024 --n-test 200 --epochs 40 \
        --track-points 5 --seed 0 --out examples_out/prs_batch_size_fashion   # about 8 min a seed, see below

Each run writes ``prs_batch_size.json`` (numbers and settings) and ``prs_batch_size.png`` into ``--out``.

Measured on digits (seed 0, ``nice -n 19 env OMP_NUM_THREADS=1``, a shared and busy 2-core CPU, before
``--eps-step`` existed, so BIM / PGD took ART's default steps; PRS ratio of the training set at
``classifier.2:input``, 256 units; inclusion ratio and PGD-20 L-inf eps 0.1 robust accuracy on the test set;
default settings: 1,437 train / 360 test, 100 epochs: batch 2048 = 100 full-batch steps, batch 128 = 1,200 steps;
113-199 s wall; ``--quick``: 7-13 s inside ``main``)::

                 test acc   PRS ratio  regions  inclusion  PGD-20 robust acc
    batch 2048    0.975      0.793      1139      0.308        0.456
    batch 128     0.978      0.994      1428      0.011        0.514

Fashion-MNIST, the runs behind ``examples/RESULTS.md`` (the third command above with ``--seed 0 / 1 / 2``: a seeded
random 1,024 of the 60k training images and 200 of the test images, 40 epochs: batch 2048 is one full batch of
1,024 per epoch, 40 Adam steps in all; batch 128 is 8 steps per epoch, 320 in all; BIM / PGD steps of 2/255; eps
0.1; PRS ratio tracked at epochs 1, 10, 20, 30, 40; 482 / 495 / 512 s wall for seeds 0 / 1 / 2 with
``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` on a 2-core machine whose other core ran another job)::

    seed batch  train acc  test acc  PRS ratio  inclusion  FGSM   BIM-5  PGD-20  PGD-100
    0    2048       0.784     0.770      0.885      0.170  0.255  0.585  0.215   0.190
    0    128        0.945     0.800      0.997      0.005  0.150  0.355  0.075   0.060
    1    2048       0.774     0.745      0.602      0.525  0.215  0.540  0.205   0.200
    1    128        0.980     0.795      0.998      0.005  0.100  0.440  0.045   0.045
    2    2048       0.750     0.720      0.734      0.420  0.305  0.590  0.305   0.300
    2    128        0.972     0.805      0.997      0.000  0.185  0.430  0.110   0.105

Against the paper (Fig. 2-3: network A, batch 2048, ends with the LARGER PRS ratio, 0.99 against 0.007, at similar
accuracy, and is the LESS robust one under every attack; Fig. 5: after convergence the PRS ratio keeps falling and
the robust accuracy rising):

* PRS ratio (Fig. 2): DISAGREES, as on digits. Network A ends with the SMALLER ratio (seeds 0 / 1 / 2: 0.885 / 0.602
  / 0.734 against 0.997 / 0.998 / 0.997); the small-batch net puts nearly every training sample in a region of its
  own and almost no test sample in a training region (inclusion 0.005 / 0.005 / 0.000). A takes 8x fewer optimiser
  steps and ends 3-8.5 points lower in test accuracy; with 256 penultimate units and 1,024 samples its ratio mostly
  tracks how far training went. Fig. 2a holds: every earlier ReLU layer has ratio 1.0 in both nets, only the
  penultimate layer differs.
* Robustness (Fig. 3): by network label it DISAGREES: B (batch 128) is the LESS robust net under every attack in
  every seed (PGD-20 0.075 / 0.045 / 0.110 against 0.215 / 0.205 / 0.305). Read through the PRS ratio it agrees: the
  lower-PRS net, here A, is the more robust one, at a 3-8.5 points lower clean accuracy. BIM-5 comes out above FGSM
  for both nets: at the paper's alpha = 2/255 its five steps move at most 10/255 = 0.039, less than eps 0.1.
* Over epochs (Fig. 5): B's PRS ratio climbs to about 1 while its PGD-20 accuracy falls (0.305 / 0.16 / 0.09 / 0.075
  / 0.07 at epochs 1 / 10 / 20 / 30 / 40 in seed 0); neither net shows the paper's falling PRS ratio with rising
  robust accuracy after convergence. We did not change the settings to match the paper.
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
    parser.add_argument("--eps-step", type=float, default=2 / 255,
                        help="step of BIM and PGD (the paper's alpha = 2/255; FGSM takes one step of eps)")
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
        attack_settings=AttackSettings(attack="pgd", eps=args.eps, eps_step=args.eps_step, max_iter=args.pgd_iter,
                                       seed=args.seed),
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
    pgd = {"attack": "pgd", "eps": args.eps, "eps_step": args.eps_step, "max_iter": args.pgd_iter, "seed": args.seed}
    layers = layerwise_prs(classifier, data.x_train)
    prs = populated_region_set(classifier, data.x_train)
    inc = inclusion_ratio(classifier, data.x_train, data.x_test)
    rob = robust_accuracy(classifier, data.x_test, data.y_test, **pgd)
    return {
        "test_accuracy": rob.accuracy,
        "prs_ratio": prs.ratio,
        "n_regions": prs.n_regions,
        "layer": prs.layer,
        "n_units": prs.n_units,
        "inclusion_ratio": inc.ratio,
        "robust_accuracy": rob.robust_accuracy,
        "attacks": {
            name: robust_accuracy(classifier, data.x_test, data.y_test, attack=attack, eps=args.eps, max_iter=steps,
                                  seed=args.seed, **({} if attack == "fgsm" else {"eps_step": args.eps_step}))
            .robust_accuracy
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

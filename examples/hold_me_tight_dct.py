"""
The real-data experiments of Ortiz-Jimenez et al., "Hold me tight! Influence of discriminative features on deep
network boundaries" (NeurIPS 2020): margins of test samples along the diagonal DCT blocks (claims HMT-F2, HMT-F2d,
HMT-F4, HMT-F7 of ``examples/RESULTS.md``), on Fashion-MNIST in place of MNIST / CIFAR-10.

One ``SmallCNN`` (two conv layers and two linear ones, the LeNet shape; the same seeded initial weights for all)
is trained five ways, Adam 1e-3, the same epochs and batch size:

* ``standard``: on the data as it is (Fig. 2a, HMT-F2);
* ``flipped``: on ``dct_flip`` of the data, measured on flipped test samples (Sec. 3.2.1, Fig. 2d, HMT-F2d);
* ``low_pass``: on ``low_pass(x, bandwidth)`` (the paper's ``T_LP``; 14 x 14 is its MNIST bandwidth, footnote 8),
  from scratch, and ``low_pass_finetuned``: ``standard`` trained further on ``T_LP`` for ``--finetune-epochs`` at a
  tenth of the learning rate (Sec. 3.2.2, Fig. 4, HMT-F4); both measured on the original test samples;
* ``adversarial``: ART's ``AdversarialTrainer`` with PGD L-inf (``--adv-eps``, 10 steps, ratio 0.5) (Sec. 4.2,
  Fig. 7, HMT-F7); the DCT energy of its PGD perturbations of training samples per diagonal block (Fig. 8).

Margins: L2 subspace-constrained DeepFool (``subspace_margins``, library defaults, no box constraint) of
``--n-obs`` test samples in the diagonal blocks ``dct_subspaces(block, stride)`` (the paper's ``K = 8``; its
stride ``T`` is not given for MNIST; we take 4), median per block; a sample without a boundary in a block counts
as infinite.

Scale (stated, not tuned): 5,000 training samples, 5 epochs, 200 observation samples, seeds 0 / 1 / 2 (a run of all
five trainings and the sweeps: 289 s wall on 2 cores for seed 0; 632 s and 1,189 s for seeds 1 and 2 on one
thread, ``OMP_NUM_THREADS=1``, beside other jobs); the paper trains on the full data sets. The three seeds agree
(``examples/RESULTS.md``: high / low block 14.2-16; flipped 3.9-6.9; low-pass outside the band 0.82-1.37 of the
standard model's, no invariance; adversarial gain 2.0-2.6 at the lowest block, 1.1-1.5 at the highest).

Commands::

    python examples/hold_me_tight_dct.py --seed 0 --out examples_out/hold_me_tight_dct   # also --seed 1, 2
    python examples/hold_me_tight_dct.py --quick      # digits, a few seconds
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import example_parser, write_outputs
from art.attacks.evasion import ProjectedGradientDescent
from art.defences.trainer import AdversarialTrainer

from art_geometry import dct_subspaces, seeded, subspace_margins
from art_geometry.datasets import (
    Dataset,
    SmallCNN,
    load_digits,
    load_fashion_mnist,
    make_classifier,
    train_classifier,
)
from art_geometry.subspaces.spectral import dct2, dct_flip, low_pass

NAME = "hold_me_tight_dct"
MODELS = ("standard", "flipped", "low_pass", "low_pass_finetuned", "adversarial")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """
    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The settings.
    """
    p = example_parser(NAME, __doc__)
    p.set_defaults(data="fashion-mnist")
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-obs", type=int, default=200, help="observation (test) samples")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--block", type=int, default=8, help="K, the side of the diagonal DCT blocks")
    p.add_argument("--stride", type=int, default=4, help="T, the step between blocks")
    p.add_argument("--bandwidth", type=int, default=14, help="side of the kept DCT block of T_LP")
    p.add_argument("--adv-eps", type=float, default=0.1, help="L-inf budget of the adversarial training")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.n_train, args.n_obs, args.epochs = "digits", 300, 20, 1
        args.block, args.stride, args.bandwidth = 4, 2, 4
    return args


def new_classifier(init: dict[str, torch.Tensor], data: Dataset, lr: float, clip: bool) -> Any:
    """
    :param init: The shared initial weights.
    :param data: The data set (shapes).
    :param lr: Adam's learning rate.
    :param clip: Clip values ``(0, 1)`` (for the attacks of adversarial training), else none.
    :return: A fresh ART classifier from ``init``.
    """
    model = SmallCNN(data.input_shape, data.nb_classes)
    model.load_state_dict(copy.deepcopy(init))
    return make_classifier(model, data.input_shape, data.nb_classes, lr=lr, clip_values=(0.0, 1.0) if clip else None)


def pgd(classifier: Any, eps: float) -> ProjectedGradientDescent:
    """:return: ART's PGD L-inf at ``eps``, 10 steps of ``eps / 4``."""
    return ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=10, verbose=False)


def medians(classifier: Any, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> list[float | None]:
    """
    :return: Median L2 margin per diagonal DCT block, low to high frequency (failures infinite, ``None`` in the
        JSON when the median is infinite).
    """
    blocks = dct_subspaces(x.shape[1:], block_size=args.block, stride=args.stride)
    sweep = subspace_margins(classifier, x, y, subspaces=blocks, seed=args.seed)
    out = []
    for j in range(len(blocks)):
        m = float(np.median(np.where(sweep.success[j], sweep.margins[j], np.inf)))
        out.append(m if np.isfinite(m) else None)
    return out


def block_energy(delta: np.ndarray, args: argparse.Namespace) -> list[float]:
    """
    :param delta: Perturbations ``(N, C, H, W)``.
    :param args: The settings (block, stride).
    :return: Fraction of the perturbations' total DCT energy in each diagonal block (blocks may overlap).
    """
    energy = dct2(torch.as_tensor(delta, dtype=torch.float64)).pow(2).sum(dim=(0, 1))
    side = min(energy.shape)
    starts = range(0, side - args.block + 1, args.stride)
    total = float(energy.sum())
    return [float(energy[s:s + args.block, s:s + args.block].sum()) / total for s in starts]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """
    Train the five models and measure them.

    :param args: The settings.
    :return: Per model: test accuracy (on the data it is measured on), the per-block medians, training seconds; and
        the DCT energy of the adversarial perturbations.
    """
    data = (load_digits(seed=args.seed) if args.data == "digits" else load_fashion_mnist()).subset(
        args.n_train, args.n_obs, args.seed)
    with seeded(args.seed):
        init = copy.deepcopy(SmallCNN(data.input_shape, data.nb_classes).state_dict())
    xs = {"standard": data.x_train, "flipped": dct_flip(data.x_train), "low_pass": low_pass(data.x_train,
                                                                                            args.bandwidth)}
    obs = {"flipped": dct_flip(data.x_test)}
    results: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    for kind in MODELS:
        tic = time.perf_counter()
        if kind == "low_pass_finetuned":
            clf = new_classifier(trained["standard"].model.state_dict(), data, args.lr / 10, clip=False)
            train_classifier(clf, xs["low_pass"], data.y_train, nb_epochs=args.finetune_epochs,
                             batch_size=args.batch_size, seed=args.seed)
        elif kind == "adversarial":
            clf = new_classifier(init, data, args.lr, clip=True)
            with seeded(args.seed):
                AdversarialTrainer(clf, attacks=pgd(clf, args.adv_eps), ratio=0.5).fit(
                    data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=args.batch_size)
            clf.model.eval()
        else:
            clf = new_classifier(init, data, args.lr, clip=False)
            train_classifier(clf, xs[kind], data.y_train, nb_epochs=args.epochs, batch_size=args.batch_size,
                             seed=args.seed)
        seconds = time.perf_counter() - tic
        trained[kind] = clf
        x = obs.get(kind, data.x_test)
        results[kind] = {
            "accuracy": float(np.mean(clf.predict(x).argmax(axis=1) == data.y_test)),
            "medians": medians(clf, x, data.y_test, args),
            "train_seconds": seconds,
        }
    x_pert = data.x_train[: args.n_obs]
    delta = pgd(trained["adversarial"], args.adv_eps).generate(x_pert, y=data.y_train[: args.n_obs]) - x_pert
    results["adversarial"]["perturbation_energy"] = block_energy(delta, args)
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    """Median margin per DCT block for every model (log scale), and the adversarial perturbations' energy."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, res in results.items():
        ax1.plot([np.inf if m is None else m for m in res["medians"]], marker="o", label=kind)
    ax1.set(yscale="log", xlabel="diagonal DCT block (low -> high frequency)", ylabel="median L2 margin")
    ax1.legend(fontsize=7)
    ax2.bar(range(len(results["adversarial"]["perturbation_energy"])), results["adversarial"]["perturbation_energy"])
    ax2.set(xlabel="diagonal DCT block", ylabel="fraction of PGD perturbation energy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run, write ``NAME.json`` and ``NAME.png`` into ``--out`` and print a table.

    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The JSON-able results and settings.
    """
    args = parse_args(argv)
    t0 = time.perf_counter()
    results = run(args)
    report = write_outputs(NAME, args, "Ortiz-Jimenez et al., NeurIPS 2020, Fig. 2, 4, 7, 8", results, plot, t0)
    out = Path(args.out)
    for kind, res in results.items():
        cells = " ".join("inf" if m is None else f"{m:.2f}" for m in res["medians"])
        print(f"{kind:<20} acc {res['accuracy']:.3f}  medians {cells}")
    print(f"wall time {report['wall_seconds']:.1f} s; wrote {out / NAME}.json and .png")
    return report


if __name__ == "__main__":
    main()

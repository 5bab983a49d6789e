"""
Table 1 of Yu, Liu, Wang, Chen, "Interpreting Adversarial Robustness: A View from Decision Surface in Input
Space" (ICLR 2019 submission, arXiv:1810.00144), at small scale on offline data.

The paper trains MNIST models that share their initial weights with five procedures and reports their accuracy
under FGSM, BIM and a C&W-loss attack at L-inf eps = 0.1, 0.2, 0.3; its claim is that regularising the Jacobian
of the decision function ``L(x) = Z_t(x) - max_{i != t} Z_i(x)`` (a flatter decision surface) gives robustness
comparable with adversarial training without adversarial examples, better than the cross-entropy input-gradient
regulariser of Ross & Doshi-Velez, and that the two combine; and that the regularised model's Jacobian is much
smaller than the natural model's.

What this script does (all five models start from the same seeded weights of ``SmallCNN``, Adam lr 1e-3,
the same epochs and batch size):

* ``natural``: ART's ``fit`` (``art_geometry.datasets.train_classifier``);
* ``adv``: ART's ``AdversarialTrainer`` with ART's ``ProjectedGradientDescent`` (L-inf, ``--train-eps``,
  ``--train-iter`` steps of ``2.5 eps / iter``, one random start), ``ratio=0.5``;
* ``ce_grad``: Ross & Doshi-Velez, ``JacobianRegularizedTrainer(target="cross_entropy", norm=2, squared=True,
  c=--c-ce)``;
* ``jacobian``: Yu et al., ``JacobianRegularizedTrainer(target="decision", norm=1, c=--c)``;
* ``jacobian_adv``: both. The public API has no trainer combining them, so this script runs ART's
  ``AdversarialTrainer`` procedure (shuffle every epoch; in every batch, replace a random half, ``ceil(0.5 B)``
  samples, by fresh PGD examples of the current model) and fits each mixed batch with one step of the Jacobian
  trainer (``fit(batch, nb_epochs=1)``), so the penalty is applied to clean and adversarial samples alike. Chosen
  over "regularised pre-training, then adversarial fine-tuning" because the penalty then acts during the whole
  adversarial training, and the batches have exactly the ``ratio=0.5`` semantics of the ``adv`` model.

Attacks (never reimplemented; run through ``art_geometry.robust_accuracy``, one random seed):

* FGSM: ART ``FastGradientMethod`` (``attack="fgsm"``);
* BIM: ART ``BasicIterativeMethod`` (``attack="bim"``, ``--attack-iter`` steps of ``2.5 eps / iter``);
* C&W: ART ``BasicIterativeMethod`` on a second ART ``PyTorchClassifier`` around the *same* module whose loss is
  the C&W margin ``max_{i != t} Z_i - Z_t`` (Carlini & Wagner 2017, their f_6 with kappa = infinity), same steps as
  BIM. Why: ART 1.20.1's ``ProjectedGradientDescent`` has no loss option, and its ``CarliniLInfMethod`` minimises
  the L-inf norm without a fixed budget (no ``eps``). torchattacks 3.5.1's ``UPGD(loss="margin")`` exists but
  takes the competitor as ``max((1 - onehot) * Z)``, which is ``0`` (the masked true class), not the strongest
  other logit, whenever all other logits are negative (common for a confident model), so its gradient then
  ignores the competitors; the ART route has no such defect.

Also reported: the mean ``||grad_x L||_1`` over the test samples (``art_geometry.jacobian_stats``, true labels)
and the ratio natural / model; for the paper's Fig. 8 (claim DS-F8 of ``examples/RESULTS.md``, natural vs the
``adv`` model) the fraction of Jacobian entries below 1e-3 and, over the first ``--n-hessian`` test samples, the
mean ``sum |lambda_i|`` of the decision function's input-Hessian eigenvalues and their fraction of zeros
(``hessian_eigenvalues``, full spectrum). The training times give DS-TIME.

Choices stated beforehand, not tuned to match the paper: ``c = 0.03`` for the decision-function penalty (the
value of the example in ``docs/training.md``); ``c_ce = 1.0`` for the squared CE input-gradient penalty (a round
value: that penalty is orders of magnitude smaller than the l1 decision Jacobian, so 0.03 would be inert);
training eps 0.2 (the middle of the evaluated budgets; digits are 8 x 8 images, coarser than MNIST).

Commands::

    python examples/decision_surface_table1.py              # digits, about 2.5 minutes on one core
    python examples/decision_surface_table1.py --quick      # smoke setting, about 3 s after the imports
    python examples/decision_surface_table1.py --data fashion-mnist --n-train 5000 --n-test 500   # not run here

Measured on digits (1437 training / 360 test images, 8 x 8), default settings, seed 0, ``nice -n 19 env
OMP_NUM_THREADS=1`` on a shared 2-core CPU: 131 s inside the script (142 s with the imports; 227 s when another
job shared the core), identical numbers in both runs. Training took 3.7 s (natural), 28.8 s (adv), 8.7 s
(ce_grad), 9.1 s (jacobian), 32.7 s (jacobian_adv). Robust accuracy (a sample wrong when clean counts as broken),
mean ``||grad_x L||_1`` over the test set and its ratio natural / model::

    model         clean  FGSM .1   .2    .3   BIM .1   .2    .3   C&W .1   .2    .3   |J|_1  nat/|J|
    natural       0.967  0.594 0.064 0.000   0.544 0.014 0.000   0.556 0.033 0.000   68.35   1.00
    adv           0.961  0.833 0.464 0.100   0.808 0.361 0.011   0.814 0.325 0.000   19.71   3.47
    ce_grad       0.942  0.725 0.239 0.003   0.686 0.161 0.000   0.697 0.153 0.000   21.67   3.15
    jacobian      0.944  0.778 0.325 0.028   0.750 0.222 0.003   0.742 0.333 0.033   14.81   4.61
    jacobian_adv  0.919  0.758 0.481 0.147   0.750 0.428 0.064   0.722 0.356 0.036   12.01   5.69

Against the paper's claims:

* The decision-function Jacobian regulariser makes the model more robust than natural training under all three
  attacks at every eps, and more robust than the Ross & Doshi-Velez regulariser (at its stated c) at every
  attack and eps: reproduced.
* "Comparable with adversarial training": only partly. At eps 0.1 it is close (BIM 0.750 vs 0.808), at eps 0.2
  it is clearly below under FGSM and BIM (0.325 / 0.222 vs 0.464 / 0.361) and about equal under the C&W loss
  (0.333 vs 0.325). At eps 0.3 every model is nearly broken on these 8 x 8 images (eps 0.3 is a large budget
  for digits), so that column does not discriminate between methods, unlike the paper's MNIST table.
* Regulariser plus adversarial training is the most robust model at eps 0.2 and 0.3 under all three attacks, at
  the cost of 4.8 points of clean accuracy (at C&W eps 0.3 by one sample only): consistent with the paper's
  claim that the two combine.
* The Jacobian of the regularised model is much smaller: natural / regularised = 4.6 (5.7 with adversarial
  training); note that adversarial training and the CE-gradient penalty shrink it too (3.5 and 3.2).
* The C&W-loss BIM is not uniformly stronger than the cross-entropy BIM here (e.g. ``jacobian`` at eps 0.2:
  0.333 vs 0.222); both run 20 steps from the clean point without restarts.

One seed, one value of each c, no error bars: differences of a few points (about 1/360 per sample) are noise.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import example_parser
from art.attacks.evasion import BasicIterativeMethod, ProjectedGradientDescent
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_geometry import (
    JacobianRegularizedTrainer,
    hessian_eigenvalues,
    jacobian_stats,
    robust_accuracy,
    seeded,
)
from art_geometry.datasets import (
    Dataset,
    SmallCNN,
    load_digits,
    load_fashion_mnist,
    make_classifier,
    train_classifier,
)

NAME = "decision_surface_table1"
MODELS = ("natural", "adv", "ce_grad", "jacobian", "jacobian_adv")
ATTACK_NAMES = ("fgsm", "bim", "cw")


class CWMarginLoss(nn.Module):
    """
    The C&W margin loss ``sum_b (max_{i != t} Z_i - Z_t)`` (Carlini & Wagner 2017, f_6 without the kappa clamp),
    to be maximised by an attack. ART passes one-hot labels to a loss it does not know.
    """

    def forward(self, logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """
        :param logits: ``(B, C)`` logits.
        :param onehot: ``(B, C)`` one-hot labels.
        :return: The summed margin.
        """
        true = (logits * onehot).sum(dim=1)
        other = (logits - 1e9 * onehot).amax(dim=1)
        return (other - true).sum()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """
    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The settings.
    """
    p = example_parser(NAME, __doc__)
    p.add_argument("--n-train", type=int, default=None, help="training subset size (default: all)")
    p.add_argument("--n-test", type=int, default=None, help="test subset size (default: all)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--c", type=float, default=0.03, help="weight of the decision-function Jacobian penalty (L1)")
    p.add_argument("--c-ce", type=float, default=1.0, help="weight of the squared CE input-gradient penalty")
    p.add_argument("--train-eps", type=float, default=0.2, help="L-inf budget of PGD adversarial training")
    p.add_argument("--train-iter", type=int, default=7, help="PGD steps in adversarial training")
    p.add_argument("--attack-iter", type=int, default=20, help="steps of BIM and of the C&W-loss BIM")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.3], help="evaluated L-inf budgets")
    p.add_argument("--n-hessian", type=int, default=100, help="test samples of the Hessian statistics (Fig. 8)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs = 300, 60, 1
        args.train_iter, args.attack_iter = 2, 3
    return args


def fresh_classifier(init: dict[str, torch.Tensor], input_shape: tuple[int, ...], nb_classes: int) -> Any:
    """
    :param init: The shared initial weights.
    :param input_shape: ``(C, H, W)``.
    :param nb_classes: Number of classes.
    :return: An ART classifier (cross-entropy, Adam lr 1e-3) holding a copy of ``init``.
    """
    model = SmallCNN(input_shape, nb_classes)
    model.load_state_dict(copy.deepcopy(init))
    return make_classifier(model, input_shape, nb_classes)


def pgd(classifier: Any, eps: float, max_iter: int) -> ProjectedGradientDescent:
    """
    :param classifier: The ART classifier to attack.
    :param eps: L-inf budget.
    :param max_iter: Steps (of ``2.5 eps / max_iter``, Madry et al.).
    :return: ART's PGD with one random start.
    """
    return ProjectedGradientDescent(
        classifier, norm=np.inf, eps=eps, eps_step=2.5 * eps / max_iter, max_iter=max_iter, num_random_init=1,
        verbose=False,
    )


def train_jacobian_adversarial(
    classifier: Any, x: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> None:
    """
    ART's ``AdversarialTrainer`` procedure (ratio 0.5, fresh PGD examples per batch) with each mixed batch fitted
    by the decision-function Jacobian trainer.

    :param classifier: The ART classifier (trained in place).
    :param x: Training inputs.
    :param y: Training labels.
    :param args: The settings.
    """
    trainer = JacobianRegularizedTrainer(classifier, c=args.c, norm=1, target="decision")
    attack = pgd(classifier, args.train_eps, args.train_iter)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), args.batch_size):
            ids = order[start:start + args.batch_size]
            xb, yb = x[ids].copy(), y[ids]
            adv = rng.choice(len(ids), size=int(np.ceil(0.5 * len(ids))), replace=False)
            with seeded(args.seed + epoch * len(x) + start):
                xb[adv] = attack.generate(xb[adv], y=yb[adv])
            trainer.fit(xb, yb, batch_size=len(ids), nb_epochs=1, seed=args.seed, verbose=False)


def train_model(kind: str, classifier: Any, data: Dataset, args: argparse.Namespace) -> None:
    """
    Train one of the five models in place.

    :param kind: One of :data:`MODELS`.
    :param classifier: The ART classifier.
    :param data: The data set.
    :param args: The settings.
    """
    x, y = data.x_train, data.y_train
    if kind == "natural":
        train_classifier(classifier, x, y, nb_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    elif kind == "adv":
        trainer = AdversarialTrainer(classifier, pgd(classifier, args.train_eps, args.train_iter), ratio=0.5)
        with seeded(args.seed):
            trainer.fit(x, y, nb_epochs=args.epochs, batch_size=args.batch_size)
    elif kind == "jacobian_adv":
        train_jacobian_adversarial(classifier, x, y, args)
    else:
        options: dict[str, Any] = (
            {"target": "cross_entropy", "norm": 2, "squared": True, "c": args.c_ce}
            if kind == "ce_grad" else {"target": "decision", "norm": 1, "c": args.c}
        )
        trainer = JacobianRegularizedTrainer(classifier, **options)
        trainer.fit(x, y, batch_size=args.batch_size, nb_epochs=args.epochs, seed=args.seed, verbose=False)
    classifier.model.eval()


def cw_attack(classifier: Any, eps: float, max_iter: int) -> BasicIterativeMethod:
    """
    :param classifier: The ART classifier to attack.
    :param eps: L-inf budget.
    :param max_iter: Steps (of ``2.5 eps / max_iter``).
    :return: ART's BIM on a twin classifier (same module) whose loss is the C&W margin.
    """
    twin = PyTorchClassifier(
        model=classifier.model, loss=CWMarginLoss(), input_shape=classifier.input_shape,
        nb_classes=classifier.nb_classes, clip_values=classifier.clip_values,
    )
    return BasicIterativeMethod(twin, eps=eps, eps_step=2.5 * eps / max_iter, max_iter=max_iter, verbose=False)


def evaluate(classifier: Any, data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """
    :param classifier: A trained ART classifier.
    :param data: The data set (its test part is attacked).
    :param args: The settings.
    :return: Clean accuracy, robust accuracy per attack and eps, the mean Jacobian l1 norm and fraction of zero
        Jacobian entries (``jacobian_stats``, threshold 1e-3), and over the first ``--n-hessian`` test samples the
        mean ``sum |lambda_i|`` of the decision function's input-Hessian eigenvalues and their fraction of zeros
        (``hessian_eigenvalues``, full spectrum): the statistics of the paper's Fig. 8.
    """
    x, y = data.x_test, data.y_test
    robust: dict[str, list[float]] = {name: [] for name in ATTACK_NAMES}
    for eps in args.eps:
        for name in ATTACK_NAMES:
            attack: Any = cw_attack(classifier, eps, args.attack_iter) if name == "cw" else name
            res = robust_accuracy(
                classifier, x, y, attack=attack, eps=eps, max_iter=args.attack_iter, seed=args.seed
            )
            robust[name].append(res.robust_accuracy)
    jac = jacobian_stats(classifier, x, y)
    n = min(args.n_hessian, len(x))
    hess = hessian_eigenvalues(classifier, x[:n], y[:n], full=True)
    return {
        "accuracy": res.accuracy,
        "robust_accuracy": robust,
        "jacobian_l1_mean": float(np.mean(jac.l1)),
        "jacobian_l1_median": float(np.median(jac.l1)),
        "jacobian_zero_fraction": float(np.mean(jac.sparsity)),
        "jacobian_zero_threshold": jac.threshold,
        "hessian_samples": n,
        "hessian_l1_mean": float(np.mean(hess.l1)),
        "hessian_zero_fraction": float(np.mean(hess.sparsity)),
        "hessian_zero_tol": hess.zero_tol,
    }


def plot(results: dict[str, dict[str, Any]], eps: list[float], path: Path) -> None:
    """
    Robust accuracy against eps, one panel per attack, one line per model (eps = 0: clean accuracy).

    :param results: Per-model results of :func:`evaluate`.
    :param eps: The budgets.
    :param path: The PNG file.
    """
    fig, axes = plt.subplots(1, len(ATTACK_NAMES), figsize=(4 * len(ATTACK_NAMES), 3.4), sharey=True)
    for ax, attack in zip(axes, ATTACK_NAMES):
        for model, res in results.items():
            ax.plot([0.0, *eps], [res["accuracy"], *res["robust_accuracy"][attack]], marker="o", label=model)
        ax.set_title({"fgsm": "FGSM", "bim": "BIM", "cw": "C&W-loss BIM"}[attack])
        ax.set_xlabel("L-inf eps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust accuracy")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict[str, dict[str, Any]], eps: list[float]) -> None:
    """
    :param results: Per-model results of :func:`evaluate` (with ``train_seconds``).
    :param eps: The budgets.
    """
    cols = [f"{a}@{e:g}" for a in ATTACK_NAMES for e in eps]
    print(f"{'model':<13}{'clean':>7}" + "".join(f"{c:>9}" for c in cols) + f"{'|J|_1':>9}{'nat/|J|':>8}{'train s':>9}")
    nat = results["natural"]["jacobian_l1_mean"]
    for model, res in results.items():
        accs = [res["robust_accuracy"][a][i] for a in ATTACK_NAMES for i in range(len(eps))]
        print(
            f"{model:<13}{res['accuracy']:>7.3f}" + "".join(f"{v:>9.3f}" for v in accs)
            + f"{res['jacobian_l1_mean']:>9.3f}{nat / res['jacobian_l1_mean']:>8.2f}{res['train_seconds']:>9.1f}"
        )


def run_model(kind: str, init: dict[str, torch.Tensor], data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """
    :param kind: One of :data:`MODELS`.
    :param init: The shared initial weights.
    :param data: The data set.
    :param args: The settings.
    :return: The model's results with its training time.
    """
    classifier = fresh_classifier(init, data.input_shape, data.nb_classes)
    start = time.perf_counter()
    train_model(kind, classifier, data, args)
    seconds = time.perf_counter() - start
    return {**evaluate(classifier, data, args), "train_seconds": seconds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Train the five models, attack them, write ``NAME.json`` and ``NAME.png`` into ``--out`` and print a table.

    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The JSON-able results and settings.
    """
    args = parse_args(argv)
    t0 = time.perf_counter()
    data = (load_digits(seed=args.seed) if args.data == "digits" else load_fashion_mnist()).subset(
        args.n_train, args.n_test, args.seed
    )
    with seeded(args.seed):
        init = copy.deepcopy(SmallCNN(data.input_shape, data.nb_classes).state_dict())
    results = {kind: run_model(kind, init, data, args) for kind in MODELS}
    nat = results["natural"]["jacobian_l1_mean"]
    for res in results.values():
        res["jacobian_ratio_natural_over_model"] = nat / res["jacobian_l1_mean"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings.update(n_train=len(data.x_train), n_test=len(data.x_test))
    report = {"paper": "Yu et al., arXiv:1810.00144, Table 1", "settings": settings, "results": results,
              "wall_seconds": time.perf_counter() - t0}
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=2))
    plot(results, args.eps, out / f"{NAME}.png")
    print_table(results, args.eps)
    print(f"wall time {report['wall_seconds']:.1f} s; wrote {out / NAME}.json and .png")
    return report


if __name__ == "__main__":
    main()

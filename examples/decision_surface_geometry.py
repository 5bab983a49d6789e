"""
Decision surfaces of a natural and an adversarially trained model, after Yu, Liu, Wang, Chen, "Interpreting
Adversarial Robustness: A View from Decision Surface in Input Space" (ICLR 2019 submission): claims DS-F2
(Fig. 2-3: parameter-space loss surfaces look alike, input-space surfaces differ) and DS-F4 (Fig. 4: along
adversarial directions the decision boundary is far closer than along random ones) of ``examples/RESULTS.md``.

Two copies of one ``MadryCNN`` (``art_geometry.datasets.MadryCNN``: the architecture of the paper's models,
those of Madry et al.'s MNIST challenge; the same seeded weights, Adam 1e-3, the same epochs) are trained: naturally
(ART's ``fit``) and with ART's ``AdversarialTrainer`` (PGD L-inf ``--adv-eps``, 10 steps of ``eps / 4``, ratio
0.5). On ``--n-obs`` test samples:

* DS-F2: ``parameter_loss_surface`` (filter-normalised random directions, Li et al. 2018) of both models, and
  ``decision_surface`` in input space along random directions; summarised by the mean rise of the loss over the
  grid above its centre (parameter space) and the fraction of grid points where the decision function ``L`` is
  negative, i.e. misclassified (input space), over the samples classified correctly at the centre;
* DS-F4: ``decision_surface`` of the natural model along random and along adversarial directions (``ce``,
  ``least_likely``, ``cw``); the distance to the boundary along the second direction ``beta`` is the first grid
  coordinate ``b > 0`` on the line ``a = 0`` where ``L <= 0`` (``inf`` when the line stays inside the grid).

Scale (stated, not tuned): digits by default, 15 epochs, 50 observation samples, grids of 41 points over
``[-span, span]``; one seed per run. The runs behind ``examples/RESULTS.md`` are on Fashion-MNIST (standing in for
the paper's MNIST) at the largest size that fits one CPU thread: a seeded random 2,000 of the training images,
3 epochs, 20 observation samples (the first 20 test images), 41 x 41 grids, and ``--adv-eps 0.3``, the budget of
Madry et al.'s MNIST robust model that the paper compares with; 264 / 263 / 294 s wall for seeds 0 / 1 / 2 with
``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1``, most of it the surfaces::

    seed  model    test acc  param. loss rise  misclassified grid  boundary: random   ce    least-likely   cw
    0     natural     0.780             0.751               0.074    beyond    2.9    beyond    2.9
    0     robust      0.709             0.216               0.032    beyond
    1     natural     0.800             0.689               0.036    beyond    1.8    beyond    1.8
    1     robust      0.743             0.234               0.002    beyond
    2     natural     0.801             1.222               0.002    beyond    2.4    beyond    2.0
    2     robust      0.693             0.167               0.000    beyond

Against the paper (``examples/RESULTS.md``, DS-F2 and DS-F4): the input-space surfaces differ as the paper says (the
natural model misclassifies a larger share of its random grid than the robust one in every seed, in seed 2 both
nearly none: 0.002 against 0.000), but the parameter-space loss surfaces do not look alike here: over the same
filter-normalised grid the robust model's loss rises 0.29 / 0.34 / 0.14 times the natural one's. Along the CE and
C&W directions the natural model's boundary is 1.8-2.9 away (l2), while along random directions it stays beyond the
grid (span 4), as in Fig. 4; along the least-likely direction it stays beyond the grid as well, unlike Fig. 4.

Commands::

    python examples/decision_surface_geometry.py --seed 0 --out examples_out/decision_surface_geometry   # digits
    python examples/decision_surface_geometry.py --data fashion-mnist --n-train 2000 --n-obs 20 --epochs 3 \
        --adv-eps 0.3 --seed 0 --out examples_out/decision_surface_geometry_fashion   # about 4.5 min a seed
    python examples/decision_surface_geometry.py --quick     # a few seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from _common import example_parser, twin_classifiers, write_outputs
from art.attacks.evasion import ProjectedGradientDescent
from art.defences.trainer import AdversarialTrainer

from art_geometry import decision_surface, parameter_loss_surface, seeded
from art_geometry.datasets import (
    MadryCNN,
    load_digits,
    load_fashion_mnist,
    train_classifier,
)

NAME = "decision_surface_geometry"
LOSSES = ("ce", "least_likely", "cw")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """
    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The settings.
    """
    p = example_parser(NAME, __doc__)
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: all)")
    p.add_argument("--n-obs", type=int, default=50, help="observation (test) samples")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--adv-eps", type=float, default=0.2, help="L-inf budget of the adversarial training")
    p.add_argument("--span", type=float, default=4.0, help="half-width of the input-space grids (l2)")
    p.add_argument("--param-span", type=float, default=1.0, help="half-width of the parameter-space grid")
    p.add_argument("--resolution", type=int, default=41)
    p.set_defaults(model="MadryCNN")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_obs, args.epochs, args.resolution = 300, 8, 1, 11
    return args


def correct(surface: Any) -> np.ndarray:
    """:return: The samples classified correctly at the grid centre (``L > 0`` there)."""
    centre = len(surface.coords) // 2
    return np.asarray(surface.decision)[:, centre, centre] > 0


def boundary_distance(surface: Any) -> np.ndarray:
    """
    :param surface: A ``SurfaceResult``.
    :return: Per correctly classified sample, the smallest grid coordinate ``b > 0`` on the line ``a = 0`` with
        ``L <= 0``, ``inf`` if none.
    """
    centre = len(surface.coords) // 2
    coords = np.asarray(surface.coords)
    line = np.asarray(surface.decision)[correct(surface), centre + 1:, centre]  # [n, i, j]: a = c[j], b = c[i]
    hit = line <= 0
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return np.where(first >= 0, coords[centre + 1:][first], np.inf)


def misclassified_fraction(surface: Any) -> float | None:
    """:return: The fraction of grid points with ``L <= 0`` around the correctly classified samples (``None`` when
    no sample is classified correctly)."""
    around = np.asarray(surface.decision)[correct(surface)]
    return float(np.mean(around <= 0)) if around.size else None


def finite_median(values: np.ndarray) -> float | None:
    """:return: The median (``None`` in the JSON when infinite or when there are no values)."""
    m = float(np.median(values)) if values.size else float("inf")
    return m if np.isfinite(m) else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """
    Train both models and measure their surfaces.

    :param args: The settings.
    :return: Per model: accuracy, parameter-space loss rise, input-space misclassified fraction; for the natural
        model, the median boundary distance along random and adversarial directions.
    """
    data = (load_digits(seed=args.seed) if args.data == "digits" else load_fashion_mnist()).subset(
        args.n_train, None, args.seed)
    natural, robust = twin_classifiers(MadryCNN, data, 1e-3, args.seed, 2)
    train_classifier(natural, data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=args.batch_size,
                     seed=args.seed)
    attack = ProjectedGradientDescent(robust, norm=np.inf, eps=args.adv_eps, eps_step=args.adv_eps / 4,
                                      max_iter=10, verbose=False)
    with seeded(args.seed):
        AdversarialTrainer(robust, attacks=attack, ratio=0.5).fit(data.x_train, data.y_train,
                                                                  nb_epochs=args.epochs, batch_size=args.batch_size)
    robust.model.eval()
    x, y = data.x_test[: args.n_obs], data.y_test[: args.n_obs]
    grid = {"span": args.span, "resolution": args.resolution, "seed": args.seed}
    out: dict[str, Any] = {}
    for name, clf in (("natural", natural), ("robust", robust)):
        params = parameter_loss_surface(clf, x, y, span=args.param_span, resolution=21, seed=args.seed)
        loss = np.asarray(params.loss)
        inputs = decision_surface(clf, x, y, directions="random", **grid)
        out[name] = {
            "accuracy": float(np.mean(clf.predict(data.x_test).argmax(axis=1) == data.y_test)),
            "parameter_loss_rise": float(loss.mean() - loss[len(loss) // 2, len(loss) // 2]),
            "input_misclassified_fraction": misclassified_fraction(inputs),
            "random_boundary_median": finite_median(boundary_distance(inputs)),
        }
    for loss_name in LOSSES:
        adv = decision_surface(natural, x, y, directions="adversarial", adversarial_loss=loss_name, **grid)
        out["natural"][f"{loss_name}_boundary_median"] = finite_median(boundary_distance(adv))
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    """Median boundary distance of the natural model along random and adversarial directions."""
    names = ["random", *LOSSES]
    values = [results["natural"][f"{n}_boundary_median"] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(names, [np.nan if v is None else v for v in values])
    ax.set(ylabel="median l2 distance to the boundary", title="natural model (None = beyond the grid)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run, write ``NAME.json`` and ``NAME.png`` into ``--out`` and print the numbers.

    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The JSON-able results and settings.
    """
    args = parse_args(argv)
    t0 = time.perf_counter()
    results = run(args)
    report = write_outputs(NAME, args, "Yu et al., arXiv:1810.00144, Fig. 2-4", results, plot, t0)
    out = Path(args.out)
    print(json.dumps(results, indent=1))
    print(f"wall time {report['wall_seconds']:.1f} s; wrote {out / NAME}.json and .png")
    return report


if __name__ == "__main__":
    main()

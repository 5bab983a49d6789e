"""
The synthetic experiments of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Hold me tight! Influence of
discriminative features on deep network boundaries" (NeurIPS 2020), at the paper's settings: claims HMT-T1
(Table 1) and HMT-F6 (Fig. 6) of ``examples/RESULTS.md``.

HMT-T1, Table 1 (Sec. 3.1): an MLP with 10 hidden layers of 500 units trained on ``T1(epsilon = 5, sigma = 1)``,
``D = 100``, ``N = 10,000`` training samples, margins of ``M = 1,000`` observation samples along ``u1``, in
``span{u1}^perp``, in a fixed random 3-dimensional subspace orthogonal to ``u1`` (``S_orth``) and in a fixed
random 3-dimensional subspace (``S_rand``), reported as 5th percentile / median / 95th percentile. The paper:
1.74 / 2.50 / 3.22 along ``u1``, 4.85 / 12.36 / 31.60 in ``span{u1}^perp``, 30.68 / 102.0 / 229.5 in ``S_orth``,
17.21 / 27.90 / 80.61 in ``S_rand``.

HMT-F6, Fig. 6 (Sec. 4.1): the same MLP trained on ``T2(rho = 20, epsilon, sigma = 1, K = 3)`` (same ``D``,
``N``, ``M``) for a range of small ``epsilon``; median margins along ``u1`` and ``u2``. The paper: "for
epsilon < 0.2, the network is almost invariant in u1, and it uses a non-linear alternating pattern in u2", and
"at epsilon > 0.5 we notice a sharp transition" after which it "starts to linearly separate the different points
using only u1".

``epsilon`` follows the library's reading (class centres ``±epsilon / 2`` along ``u1``, docs/synthetic.md): a
result at ``epsilon`` here is the printed formula's (``x1 = epsilon y``) result at ``epsilon / 2``; the JSON
keeps both scales.

Settings we chose (the paper's training details are in its supplementary material, which we do not have): Adam
(learning rate 1e-4), batch 128, 10 epochs (about 7 s an epoch on one shared core: 21 trainings for three seeds;
after one epoch the T1 margins along ``u1`` are already 1.86 / 2.51 / 3.13), seeded initial weights (PyTorch's
default initialisation); the observation samples are fresh draws of the same distribution (test samples); L2
DeepFool with the library's defaults (no box constraint, as in the paper's footnote 2). A sample for which DeepFool
finds no boundary in a subspace counts as an infinite margin (kept in the percentiles; the JSON counts them). The
``epsilon`` grid of HMT-F6 spans the paper's "small" range on both scales. Nothing was tuned to the paper's numbers.

Commands::

    python examples/hold_me_tight_synthetic.py --seeds 0 1 2 --out examples_out/hold_me_tight_synthetic
    python examples/hold_me_tight_synthetic.py --quick     # smoke setting, a few seconds

The full run's JSON is ``examples/results/hold_me_tight_synthetic.json``; its numbers and verdicts are in
``examples/RESULTS.md`` (built by ``examples/make_results.py``).
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
from _common import example_parser

from art_geometry import (
    Subspace,
    direction,
    orthogonal_complement,
    random_subspace,
    seeded,
    span,
    subspace_margins,
)
from art_geometry.datasets import MLP, make_classifier, train_classifier
from art_geometry.datasets.synthetic import (
    SyntheticData,
    alternating,
    linearly_separable,
)

NAME = "hold_me_tight_synthetic"
PERCENTILES = (5, 50, 95)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """
    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The settings.
    """
    p = example_parser(NAME, __doc__, data=False)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: --seed only)")
    p.add_argument("--dim", type=int, default=100, help="input dimension D")
    p.add_argument("--sigma", type=float, default=1.0, help="noise standard deviation")
    p.add_argument("--n-train", type=int, default=10_000, help="N")
    p.add_argument("--n-test", type=int, default=1_000, help="M, the observation samples")
    p.add_argument("--depth", type=int, default=10, help="hidden layers of the MLP")
    p.add_argument("--width", type=int, default=500, help="units per hidden layer")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate")
    p.add_argument("--t1-epsilon", type=float, default=5.0, help="epsilon of T1 (Table 1)")
    p.add_argument("--subspace-dim", type=int, default=3, help="S, the dimension of S_orth and S_rand")
    p.add_argument("--rho", type=float, default=20.0, help="rho of T2 (Fig. 6)")
    p.add_argument("--k", type=int, default=3, help="K of T2 (Fig. 6)")
    p.add_argument("--t2-epsilon", type=float, nargs="+", default=[0.1, 0.2, 0.35, 0.5, 0.7, 1.4],
                   help="epsilons of T2 (class centres ±epsilon / 2)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.depth, args.width = 400, 40, 3, 2, 32
        args.t2_epsilon, args.seeds = [0.2, 1.4], None
    if args.seeds is None:
        args.seeds = [args.seed]
    return args


def train_mlp(data: SyntheticData, args: argparse.Namespace, seed: int) -> Any:
    """
    :param data: A synthetic data set of ``n_train + n_test`` samples (the first ``n_train`` are trained on).
    :param args: The settings.
    :param seed: Seed of the initial weights and the shuffling.
    :return: The trained ART classifier (no clip values: the data is unbounded).
    """
    with seeded(seed):
        model = MLP((args.dim,), (args.width,) * args.depth, 2)
    classifier = make_classifier(model, (args.dim,), 2, lr=args.lr, clip_values=None)
    x, y = data.x[: args.n_train], data.y[: args.n_train]
    return train_classifier(classifier, x, y, nb_epochs=args.epochs, batch_size=args.batch_size, seed=seed)


def margin_stats(margins: np.ndarray, success: np.ndarray) -> dict[str, Any]:
    """
    :param margins: Per-sample margins (``inf`` where DeepFool found no boundary).
    :param success: Per-sample success flags.
    :return: The 5th, 50th and 95th percentiles over all samples (failures infinite, nearest-rank so that an
             infinite percentile is ``None`` in the JSON) and the fraction of failures.
    """
    values = np.where(success, margins, np.inf)
    stats: dict[str, Any] = {}
    for q in PERCENTILES:
        value = float(np.percentile(values, q, method="nearest"))
        stats[f"p{q:02d}"] = value if np.isfinite(value) else None
    stats["failed_fraction"] = float(1.0 - success.mean())
    return stats


def measure(classifier: Any, data: SyntheticData, subspaces: list[Subspace], args: argparse.Namespace,
            seed: int) -> dict[str, Any]:
    """
    :param classifier: The trained classifier.
    :param data: The data set (its last ``n_test`` samples are the observation samples).
    :param subspaces: The subspaces to measure in.
    :param args: The settings.
    :param seed: Seed of DeepFool's restarts.
    :return: Test accuracy and margin statistics per subspace name.
    """
    x, y = data.x[args.n_train:], data.y[args.n_train:]
    sweep = subspace_margins(classifier, x, y, subspaces=subspaces, seed=seed)
    return {
        "accuracy": float(np.mean(classifier.predict(x).argmax(axis=1) == y)),
        "margins": {name: margin_stats(sweep.margins[j], sweep.success[j]) for j, name in enumerate(sweep.names)},
    }


def orthogonal_random_subspace(u1: np.ndarray, dim: int, seed: int) -> Subspace:
    """
    :param u1: A unit vector.
    :param dim: Dimension of the subspace.
    :param seed: Seed of the Gaussian vectors.
    :return: ``S_orth``: the span of ``dim`` Gaussian vectors with their ``u1`` components removed.
    """
    g = np.random.default_rng(seed).standard_normal((dim, u1.size))
    g -= np.outer(g @ u1, u1)
    return span(g.astype(np.float32), name="S_orth")


def experiment_t1(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """
    HMT-T1 (Table 1): margins along ``u1``, in ``span{u1}^perp``, ``S_orth`` and ``S_rand``.

    :param args: The settings.
    :param seed: Seed of the data, the weights, the subspaces and DeepFool.
    :return: Test accuracy and margin percentiles per subspace.
    """
    data = linearly_separable(args.n_train + args.n_test, args.dim, epsilon=args.t1_epsilon, sigma=args.sigma,
                              seed=seed)
    classifier = train_mlp(data, args, seed)
    u1 = data.u1.astype(np.float32)
    s_rand = random_subspace((args.dim,), args.subspace_dim, seed=seed + 1)
    s_rand.name = "S_rand"
    subspaces = [direction(u1, name="u1"), orthogonal_complement(direction(u1, name="u1")),
                 orthogonal_random_subspace(data.u1, args.subspace_dim, seed + 2), s_rand]
    result = measure(classifier, data, subspaces, args, seed)
    result["margins"]["span(u1)^perp"] = result["margins"].pop(subspaces[1].name)
    return result


def experiment_f6(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """
    HMT-F6 (Fig. 6): one MLP per ``epsilon`` on ``T2(rho, epsilon, sigma, K)``; margins along ``u1`` and ``u2``.

    :param args: The settings.
    :param seed: Seed of the data, the weights and DeepFool.
    :return: One record per ``epsilon`` (with ``epsilon_printed = epsilon / 2``, the printed formula's scale).
    """
    records = []
    for epsilon in args.t2_epsilon:
        data = alternating(args.n_train + args.n_test, args.dim, rho=args.rho, epsilon=epsilon, sigma=args.sigma,
                           k=args.k, seed=seed)
        classifier = train_mlp(data, args, seed)
        subspaces = [direction(data.u1.astype(np.float32), name="u1"),
                     direction(data.u2.astype(np.float32), name="u2")]
        records.append({"epsilon": epsilon, "epsilon_printed": epsilon / 2,
                        **measure(classifier, data, subspaces, args, seed)})
    return records


def as_float(value: float | None) -> float:
    """
    :param value: A statistic, ``None`` for infinite.
    :return: The value, ``inf`` for ``None``.
    """
    return float("inf") if value is None else value


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """
    Left: T1 median margins per subspace (one marker per seed); right: T2 median margins along ``u1`` and ``u2``
    against ``epsilon``.

    :param runs: One ``{"seed", "t1", "f6"}`` record per seed.
    :param path: The PNG file.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(runs[0]["t1"]["margins"])
    for run in runs:
        ax1.plot(range(len(names)), [as_float(run["t1"]["margins"][n]["p50"]) for n in names], "o",
                 label=f"seed {run['seed']}")
    ax1.set_xticks(range(len(names)), names, fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("median L2 margin")
    ax1.set_title("T1 (Table 1)")
    ax1.legend(fontsize=8)
    for name, colour in (("u1", "tab:blue"), ("u2", "tab:orange")):
        for run in runs:
            eps = [r["epsilon"] for r in run["f6"]]
            ax2.plot(eps, [as_float(r["margins"][name]["p50"]) for r in run["f6"]], marker="o", color=colour,
                     alpha=0.7, label=name if run is runs[0] else None)
    ax2.set_yscale("log")
    ax2.set_xlabel("epsilon (class centres ±epsilon/2)")
    ax2.set_title("T2 (Fig. 6)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_tables(runs: list[dict[str, Any]]) -> None:
    """
    :param runs: One ``{"seed", "t1", "f6"}`` record per seed.
    """
    for run in runs:
        t1 = run["t1"]
        print(f"seed {run['seed']}  T1: test accuracy {t1['accuracy']:.3f}   (p05 / median / p95, failed)")
        for name, m in t1["margins"].items():
            print(f"  {name:<16}{as_float(m['p05']):9.2f}{as_float(m['p50']):9.2f}{as_float(m['p95']):9.2f}"
                  f"   {m['failed_fraction']:.2f}")
        print(f"  T2 {'eps':>6}{'acc':>7}{'median u1':>12}{'median u2':>12}")
        for r in run["f6"]:
            print(f"     {r['epsilon']:>6g}{r['accuracy']:>7.3f}{as_float(r['margins']['u1']['p50']):>12.2f}"
                  f"{as_float(r['margins']['u2']['p50']):>12.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run both experiments for every seed, write ``NAME.json`` and ``NAME.png`` into ``--out`` and print the tables.

    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The JSON-able results and settings.
    """
    args = parse_args(argv)
    t0 = time.perf_counter()
    runs = [{"seed": seed, "t1": experiment_t1(args, seed), "f6": experiment_f6(args, seed)} for seed in args.seeds]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report = {"paper": "Ortiz-Jimenez et al., NeurIPS 2020, Table 1 and Fig. 6", "settings": settings,
              "runs": runs, "wall_seconds": time.perf_counter() - t0}
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1))
    plot(runs, out / f"{NAME}.png")
    print_tables(runs)
    print(f"wall time {report['wall_seconds']:.1f} s; wrote {out / NAME}.json and .png")
    return report


if __name__ == "__main__":
    main()

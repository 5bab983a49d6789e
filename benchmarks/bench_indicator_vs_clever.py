"""
The second-order robustness indicator (Yu et al. 2019, eq. 9) against ART's CLEVER (``art.metrics.clever_u``) on
the same digits test samples of four small CNNs trained differently, and the rank correlation (Spearman) of each
with PGD robust accuracy (ART's ``ProjectedGradientDescent``) across the models, side by side in one run.

Per model: cost of ``robustness_indicator`` and of ``clever_u`` on the same samples; the indicator's certified
fraction and its first-order distance estimate ``L(x) / ||J||_1`` (the L-inf radius at which ``eps ||J||_1``
reaches ``L(x)``; zero-curvature ReLU networks), CLEVER's mean score, and PGD accuracy at ``eps``.

Run: ``.venv/bin/python benchmarks/bench_indicator_vs_clever.py [--n 50] [--eps 0.05]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from art_geometry.core.rng import seeded
from art_geometry.datasets import SmallCNN, load_digits, make_classifier, train_classifier
from art_geometry.indicators import robustness_indicator


def _models(data, seed: int = 0) -> dict:
    from art.estimators.classification import PyTorchClassifier

    x, y = data.x_train, data.y_train
    rng = np.random.default_rng(seed)
    noisy = np.clip(x + rng.normal(0, 0.3, size=x.shape).astype(np.float32), 0, 1)
    recipes = {
        "2 epochs": (x, y, 2, 0.0),
        "15 epochs": (x, y, 15, 0.0),
        "15 ep + wd 1e-2": (x, y, 15, 1e-2),
        "15 ep + noise 0.3": (np.concatenate([x, noisy]), np.concatenate([y, y]), 15, 0.0),
    }
    out = {}
    for name, (xt, yt, epochs, wd) in recipes.items():
        torch.manual_seed(seed)
        model = SmallCNN((1, 8, 8))
        clf = make_classifier(model, (1, 8, 8), 10)
        if wd:
            clf = PyTorchClassifier(
                model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=wd), clip_values=(0.0, 1.0),
            )
        out[name] = train_classifier(clf, xt, yt, nb_epochs=epochs, batch_size=64, seed=seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--pgd-eps", type=float, default=0.1)
    parser.add_argument("--clever-batches", type=int, default=5)
    parser.add_argument("--clever-batch-size", type=int, default=10)
    args = parser.parse_args()
    from art.attacks.evasion import ProjectedGradientDescent
    from art.metrics import clever_u

    data = load_digits()
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    models = _models(data)
    print(f"digits, SmallCNN, n={args.n}, indicator eps={args.eps} (L-inf), PGD eps={args.pgd_eps} (L-inf, 20 "
          f"steps), CLEVER nb_batches={args.clever_batches} batch_size={args.clever_batch_size} radius=0.3 L-inf")
    header = (f"{'model':18} {'acc':>5} {'PGD acc':>7} {'certified':>9} {'L/||J||1':>9} {'CLEVER':>7} "
              f"{'t ind s':>8} {'t CLEVER s':>10} {'ratio':>6}")
    print(header)
    rows = []
    pooled = {"dist": [], "clever": [], "robust": []}
    for name, clf in models.items():
        t = time.perf_counter()
        ind = robustness_indicator(clf, x, y, eps=args.eps)
        t_ind = time.perf_counter() - t
        t = time.perf_counter()
        with seeded(0):
            clever = np.array([
                clever_u(clf, xi, args.clever_batches, args.clever_batch_size, 0.3, np.inf, verbose=False)
                for xi in x
            ])
        t_clever = time.perf_counter() - t
        pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=args.pgd_eps, eps_step=args.pgd_eps / 8, max_iter=20,
                                       verbose=False)
        with seeded(0):
            x_adv = pgd.generate(x, y)
        robust = clf.predict(x_adv).argmax(1) == y
        acc = float((clf.predict(x).argmax(1) == y).mean())
        dist = np.where(ind.decision > 0, ind.decision / np.maximum(ind.jacobian_l1, 1e-12), 0.0)
        rows.append((name, acc, robust.mean(), ind.certified.mean(), dist.mean(), clever.mean()))
        pooled["dist"].append(dist)
        pooled["clever"].append(clever)
        pooled["robust"].append(robust)
        print(f"{name:18} {acc:5.2f} {robust.mean():7.2f} {ind.certified.mean():9.2f} {dist.mean():9.4f} "
              f"{clever.mean():7.4f} {t_ind:8.2f} {t_clever:10.2f} {t_clever / t_ind:6.1f}")
    pgd_acc = [r[2] for r in rows]
    print("\nSpearman rank correlation with PGD robust accuracy across the models:")
    for label, col in (("indicator certified fraction", 3), ("indicator L/||J||_1", 4), ("CLEVER mean score", 5)):
        rho = spearmanr([r[col] for r in rows], pgd_acc).statistic
        print(f"  {label:30} {rho:+.2f}")
    dist, clev, rob = (np.concatenate(pooled[k]) for k in ("dist", "clever", "robust"))
    print("Per-sample Spearman (all models pooled):")
    print(f"  indicator L/||J||_1 vs CLEVER          {spearmanr(dist, clev).statistic:+.2f}")
    print(f"  indicator L/||J||_1 vs PGD-robust flag {spearmanr(dist, rob).statistic:+.2f}")
    print(f"  CLEVER vs PGD-robust flag              {spearmanr(clev, rob).statistic:+.2f}")


if __name__ == "__main__":
    main()

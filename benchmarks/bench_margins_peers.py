"""
DeepFool margins side by side: art-geometry (L2, L-inf) vs foolbox 3 (L2/LinfDeepFoolAttack), ART's DeepFool and
torchattacks' DeepFool, on the same model and the same samples, in one run.

Model: SmallCNN((1, 8, 8)) trained 5 epochs (seed 0) on 1297 of scikit-learn's 1797 digits (seeded permutation);
the other 500 are the samples. Every attack gets 50 steps, overshoot 0.02 and the top-10 classes; each measures
the distance to the boundary of the PREDICTED class (the labels passed to the peers are the model's predictions).
Margin = norm of (adversarial - x) over the successful samples. foolbox, ART and torchattacks clip their iterates to
[0, 1]; art-geometry's default is margins in R^D (``box=False``), so it is shown both ways.

Run:  .venv/bin/python benchmarks/bench_margins_peers.py [--n 500] [--threads 2] [--torchattacks-n 50]
"""

from __future__ import annotations

import argparse
import time
import numpy as np
import torch

from art_geometry.datasets import SmallCNN, load_digits, make_classifier, train_classifier
from art_geometry.margins import deepfool_margins

STEPS, OVERSHOOT, CANDIDATES = 50, 0.02, 10


def setup(n: int):
    d = load_digits()
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[n:], order[:n]
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN((1, 8, 8)), (1, 8, 8), 10)
    train_classifier(clf, x[train], y[train], nb_epochs=5, batch_size=64, seed=0)
    return clf, x[test], y[test]


def predictions(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).argmax(1).numpy()


def from_adversarials(model, x, pred, adv, p) -> tuple[np.ndarray, np.ndarray]:
    adv = np.asarray(adv, dtype=np.float32)
    success = predictions(model, adv) != pred
    diff = (adv - x).reshape(len(x), -1)
    norms = np.linalg.norm(diff, axis=1) if p == 2 else np.abs(diff).max(axis=1)
    return success, np.where(success, norms, np.inf)


def ours(clf, p, box):
    def run(x, pred):
        r = deepfool_margins(clf, x, norm=p, candidates=CANDIDATES, overshoot=OVERSHOOT, max_iter=STEPS, box=box)
        return r.success, r.margins

    return run


def foolbox_run(clf, p):
    import foolbox as fb

    fmodel = fb.PyTorchModel(clf.model, bounds=(0, 1))
    cls = fb.attacks.L2DeepFoolAttack if p == 2 else fb.attacks.LinfDeepFoolAttack
    attack = cls(steps=STEPS, candidates=CANDIDATES, overshoot=OVERSHOOT)

    def run(x, pred):
        xt = torch.as_tensor(x)
        criterion = fb.criteria.Misclassification(torch.as_tensor(pred))
        _, clipped, _ = attack(fmodel, xt, criterion, epsilons=None)
        return from_adversarials(clf.model, x, pred, clipped.numpy(), p)

    return run


def art_run(clf):
    from art.attacks.evasion import DeepFool

    attack = DeepFool(clf, max_iter=STEPS, epsilon=OVERSHOOT, nb_grads=CANDIDATES, batch_size=128, verbose=False)

    def run(x, pred):
        return from_adversarials(clf.model, x, pred, attack.generate(x), 2)

    return run


def torchattacks_run(clf):
    import torchattacks

    attack = torchattacks.DeepFool(clf.model, steps=STEPS, overshoot=OVERSHOOT)

    def run(x, pred):
        adv = attack(torch.as_tensor(x), torch.as_tensor(pred))
        return from_adversarials(clf.model, x, pred, adv.numpy(), 2)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torchattacks-n", type=int, default=50,
                        help="torchattacks loops over samples in Python: run it on the first N samples only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clf, x, _ = setup(args.n)
    clf.model.eval()
    pred = predictions(clf.model, x)
    rows: list[tuple] = [
        ("art-geometry L2 (box=False, default)", ours(clf, 2, False)),
        ("art-geometry L2 (box=True)", ours(clf, 2, True)),
        ("foolbox L2DeepFoolAttack", foolbox_run(clf, 2)),
        ("ART DeepFool (L2)", art_run(clf)),
        ("torchattacks DeepFool (L2)", torchattacks_run(clf), args.torchattacks_n),
        ("art-geometry L-inf (box=False, default)", ours(clf, np.inf, False)),
        ("art-geometry L-inf (box=True)", ours(clf, np.inf, True)),
        ("foolbox LinfDeepFoolAttack", foolbox_run(clf, np.inf)),
    ]
    results = []
    for name, run, *subset in rows:
        n = min(subset[0], len(x)) if subset else len(x)
        run(x[:8], pred[:8])  # warm-up: lazy initialisation out of the timing
        t0 = time.perf_counter()
        success, margins = run(x[:n], pred[:n])
        results.append((name, n, time.perf_counter() - t0, success.mean(), float(np.median(margins[success]))))
        print(f"  done: {results[-1]}", flush=True)
    per_sample = {"L2": results[1][2] / results[1][1], "L-inf": results[6][2] / results[6][1]}
    print(f"{len(x)} digits samples, SmallCNN, torch threads={args.threads}, steps={STEPS}, "
          f"overshoot={OVERSHOOT}, candidates={CANDIDATES}")
    print("| method | samples | time (s) | time per sample / ours (box=True) | success rate | median margin |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, seconds, rate, median in results:
        ref = per_sample["L-inf" if "inf" in name.lower() else "L2"]
        print(f"| {name} | {n} | {seconds:.2f} | {seconds / n / ref:.1f}x | {rate:.3f} | {median:.4f} |")


if __name__ == "__main__":
    main()

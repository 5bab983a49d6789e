"""
DeepFool margins against every peer and against the best-known envelope of minimum-norm attacks, side by side in
one run, unclipped and clipped to [0, 1].

Models (``--models``, all trained here, seeded, CPU):

* ``digits``: SmallCNN((1, 8, 8)) on scikit-learn's digits (the model of ``bench_margins_peers.py``);
* ``fmnist``: SmallCNN((1, 28, 28)) trained 2 epochs on the first 12,000 Fashion-MNIST training images; samples
  from the test set;
* ``resnet18``: the CIFAR-style ResNet-18 of :mod:`art_geometry.datasets.architectures` (width 16, BatchNorm,
  functional ReLU) at 3 x 32 x 32, trained 1 epoch on 4,000 Fashion-MNIST images zero-padded to 32 x 32 and tiled
  to three channels; samples from the test set, prepared alike.

Methods, every one measuring the distance to the boundary of the region the model PREDICTS (the labels given to
the peers are the predictions): ours (``deepfool_margins`` defaults, and variants: ``boundary_steps`` 5, 10, 20 and
50, ``candidates=4``, and the first iteration alone without refinement or restarts, the time floor of any
DeepFool at these candidates), foolbox 3 ``L2DeepFoolAttack`` / ``LinfDeepFoolAttack``, ART ``DeepFool`` (L2),
torchattacks ``DeepFool`` (L2; a Python loop over samples, so on the first ``--torchattacks-n`` samples), adv-lib
0.2.8 ``df`` (L2, L-inf) and ``sdf`` (SuperDeepFool, L2, its defaults), and the envelope: adv-lib ``alma``
(L2), ``ddn`` (L2), ``fmn`` and ``fab`` (L2 and L-inf) at ``--steps`` steps (100 and 1000). Every DeepFool gets
50 steps, overshoot 0.02 and the top 10 classes (adv-lib's df and torchattacks use all classes).

Clipping, the same on both sides of every ratio: the ``clipped`` table keeps every iterate in [0, 1] (ours
``box=True``); in the ``unclipped`` table ours runs in R^D (``box=False``, the default) and every peer in the
wide box [-1, 2] (foolbox ``bounds``, ART without ``clip_values``; adv-lib and torchattacks, which hard-code
[0, 1], run on the model composed with ``x = -1 + 3 u``, their input-unit step sizes divided by 3: ALMA's
``lr_init``, DDN's ``init_norm`` (and no quantisation, ``levels=None``), FMN's ``alpha_init``); the column
``at box`` counts the returned points with a coordinate on that box (0: the box never bound).

Per row: seconds (noise on a shared machine), forward and backward passes per sample (counted by a wrapper
module: samples through ``forward``, and samples through each backward pass by a hook on the logits), success
rate, and, against the best-known distance (per sample, the smallest over all rows of the table, each point
verified adversarial by one float32 forward pass of the plain model), the median and 90th percentile of
distance / best-known over all samples (a failure counts as ``inf``) and the share within 1 % of it.

Install adv-lib first: ``.venv/bin/pip install -c constraints.txt adv-lib==0.2.8 --no-deps``.

Run:  ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_margins_envelope.py [--quick] [--samples 200]
[--models fmnist] [--norms 2 inf] [--clipping unclipped clipped] [--steps 100 1000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _advlib_shim import load_attacks
from bench_margins_peers import setup as digits_setup
from torch import nn

from art_geometry.datasets import (
    ResNet18,
    SmallCNN,
    load_fashion_mnist,
    make_classifier,
    train_classifier,
)
from art_geometry.margins import deepfool_margins

STEPS, OVERSHOOT, CANDIDATES = 50, 0.02, 10
#: The box of the unclipped table's peers, and its map from the unit box ``x = LOW + SCALE u``.
LOW, HIGH = -1.0, 2.0
SCALE = HIGH - LOW

#: An attack: (model on x-space inputs, x, predictions, norm, box) -> adversarial points in x space.
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, "tuple[float, float]"], torch.Tensor]


class Counted(nn.Module):
    """Counts the samples through ``forward`` and, by a hook on the logits, through every backward pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += grad.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += x.shape[0]
        out = self.model(x)
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out


class FromUnitBox(nn.Module):
    """``u -> model(low + scale u)``: a model on [0, 1] for attacks that hard-code that box."""

    def __init__(self, model: nn.Module, low: float, scale: float):
        super().__init__()
        self.model, self.low, self.scale = model, low, scale

    def to_x(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + self.scale * u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.to_x(u))


@dataclass
class Problem:
    """One model and its samples."""

    name: str
    model: nn.Module
    x: torch.Tensor
    pred: torch.Tensor
    accuracy: float


def _train(build: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    """The model built and trained from seed 0 (the initial weights too)."""
    torch.manual_seed(0)
    clf = make_classifier(build(), tuple(x.shape[1:]), 10)
    train_classifier(clf, x, y, nb_epochs=epochs, batch_size=64, seed=0)
    return clf.model.eval()


def _problem(name: str, model: nn.Module, x: np.ndarray, y: np.ndarray) -> Problem:
    xt = torch.as_tensor(x)
    with torch.no_grad():
        pred = model(xt).argmax(1)
    return Problem(name, model, xt, pred, float((pred.numpy() == y).mean()))


def _to_rgb32(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2))), 3, axis=1)


def build_problem(name: str, n: int) -> Problem:
    if name == "digits":
        clf, x, y = digits_setup(n)
        return _problem(name, clf.model.eval(), x, y)
    data = load_fashion_mnist()
    if name == "fmnist":
        model = _train(lambda: SmallCNN((1, 28, 28)), data.x_train[:12000], data.y_train[:12000], epochs=2)
        return _problem(name, model, data.x_test[:n], data.y_test[:n])
    model = _train(lambda: ResNet18((3, 32, 32), 10, width=16), _to_rgb32(data.x_train[:4000]),
                   data.y_train[:4000], 1)
    return _problem(name, model, _to_rgb32(data.x_test[:n]), data.y_test[:n])


def _in_unit_box(run: Callable[[nn.Module, torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> Attack:
    """An adv-lib / torchattacks attack (inputs in [0, 1]) on the box ``[low, high]`` through :class:`FromUnitBox`;
    ``run`` gets the unit-box model, ``u``, the predictions, the norm and the scale (to divide step sizes by)."""

    def attack(model, x, pred, p, box):
        low, high = box
        unit = FromUnitBox(model, low, high - low).eval()
        u = ((x - low) / (high - low)).clamp(0, 1)
        with torch.enable_grad():
            adv = run(unit, u, pred, p, high - low)
        with torch.no_grad():
            return unit.to_x(adv.detach())

    return attack


def ours(**overrides) -> Attack:
    def attack(model, x, pred, p, box):
        clipped = box == (0.0, 1.0)
        clf = make_classifier(model, tuple(x.shape[1:]), 10, clip_values=(0.0, 1.0) if clipped else None)
        res = deepfool_margins(clf, x.numpy(), norm=p, box=clipped, return_perturbations=True, **overrides)
        return x + torch.from_numpy(res.perturbations)

    return attack


def foolbox_deepfool(model, x, pred, p, box):
    import foolbox as fb

    cls = fb.attacks.L2DeepFoolAttack if p == 2 else fb.attacks.LinfDeepFoolAttack
    attack = cls(steps=STEPS, candidates=CANDIDATES, overshoot=OVERSHOOT)
    _, clipped, _ = attack(fb.PyTorchModel(model, bounds=box), x, fb.criteria.Misclassification(pred), epsilons=None)
    return clipped


def art_deepfool(model, x, pred, p, box):
    from art.attacks.evasion import DeepFool

    clf = make_classifier(model, tuple(x.shape[1:]), 10, clip_values=box if box == (0.0, 1.0) else None)
    attack = DeepFool(clf, max_iter=STEPS, epsilon=OVERSHOOT, nb_grads=CANDIDATES, batch_size=128, verbose=False)
    return torch.from_numpy(attack.generate(x.numpy()))


def torchattacks_deepfool(model, u, pred, p, scale):
    import torchattacks

    return torchattacks.DeepFool(model, steps=STEPS, overshoot=OVERSHOOT)(u, pred)


def methods(norm: float, steps: list[int]) -> list[tuple[str, Attack]]:
    adv = load_attacks()
    rows: list[tuple[str, Attack]] = [
        ("ours (default)", ours()),
        ("ours boundary_steps=5", ours(boundary_steps=5)),
        ("ours boundary_steps=10", ours(boundary_steps=10)),
        ("ours boundary_steps=20", ours(boundary_steps=20)),
        ("ours boundary_steps=50", ours(boundary_steps=50)),
        ("ours candidates=4", ours(candidates=4)),
        # not a margin method (samples needing a second iteration fail): the time of the first iteration alone,
        # the floor of any DeepFool that takes the candidates' gradients at every sample
        ("ours one iteration (floor)", ours(max_iter=1, refine=False, restarts=0)),
        ("foolbox DeepFool", foolbox_deepfool),
        ("adv-lib df", _in_unit_box(lambda m, u, y, p, s: adv.df(m, u, y, steps=STEPS, overshoot=OVERSHOOT, norm=p))),
    ]
    if norm == 2:
        rows += [
            ("ART DeepFool", art_deepfool),
            ("torchattacks DeepFool", _in_unit_box(torchattacks_deepfool)),
            ("adv-lib sdf", _in_unit_box(lambda m, u, y, p, s: adv.sdf(m, u, y))),
        ]
    for n in steps:
        if norm == 2:
            rows += [
                (f"adv-lib ALMA-{n}", _in_unit_box(lambda m, u, y, p, s, n=n: adv.alma(m, u, y, num_steps=n,
                                                                                        lr_init=0.1 / s))),
                (f"adv-lib DDN-{n}", _in_unit_box(lambda m, u, y, p, s, n=n: adv.ddn(m, u, y, steps=n,
                                                                                      init_norm=1.0 / s,
                                                                                      levels=None))),
            ]
        rows += [
            (f"adv-lib FMN-{n}", _in_unit_box(lambda m, u, y, p, s, n=n: adv.fmn(m, u, y, norm=p, steps=n,
                                                                                  α_init=1.0 / s))),
            (f"adv-lib FAB-{n}", _in_unit_box(lambda m, u, y, p, s, n=n: adv.fab(m, u, y, norm=p, n_iter=n))),
        ]
    return rows


@dataclass
class Row:
    name: str
    n: int
    seconds: float
    forwards: float
    backwards: float
    success: np.ndarray
    distance: np.ndarray
    at_box: int


def measure(problem: Problem, name: str, attack: Attack, p: float, box: tuple[float, float], n: int) -> Row:
    counted = Counted(problem.model).eval()
    x, pred = problem.x[:n], problem.pred[:n]
    t0 = time.perf_counter()
    adv = attack(counted, x, pred, p, box).detach().to(torch.float32)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        success = (problem.model(adv).argmax(1) != pred).numpy()
    diff = (adv - x).flatten(1)
    dist = (diff.norm(dim=1) if p == 2 else diff.abs().amax(dim=1)).numpy().astype(np.float64)
    # a moved coordinate on the box: the box bound the attack there
    flat = adv.flatten(1)
    on_box = ((flat <= box[0]) | (flat >= box[1])) & (diff != 0)
    at_box = int(on_box.any(dim=1)[torch.from_numpy(success)].sum())
    return Row(name, n, seconds, counted.forwards / n, counted.backwards / n, success,
               np.where(success, dist, np.inf), at_box)


def ratios(row: Row, best: np.ndarray) -> np.ndarray:
    return row.distance / best[: row.n]


def table(problem: Problem, p: float, clipping: str, args: argparse.Namespace) -> list[dict]:
    samples = min(args.samples, len(problem.x))
    box = (0.0, 1.0) if clipping == "clipped" else (LOW, HIGH)
    #: the peers that loop over samples in Python run on a prefix
    prefix = {"torchattacks DeepFool": args.torchattacks_n, "ART DeepFool": args.art_n}
    rows = []
    for name, attack in methods(p, args.steps):
        if name in args.skip:
            continue
        n = min(prefix.get(name, samples), samples)
        attack(Counted(problem.model).eval(), problem.x[:2], problem.pred[:2], p, box)  # warm-up
        rows.append(measure(problem, name, attack, p, box, n))
        r = rows[-1]
        print(f"    {name}: {r.seconds:.1f} s, success {r.success.mean():.3f}", flush=True)
    best = np.min(np.stack([np.pad(r.distance, (0, samples - r.n), constant_values=np.inf) for r in rows]), axis=0)
    norm_name = "L2" if p == 2 else "L-inf"
    box_name = "[0, 1]" if clipping == "clipped" else f"none (ours), [{LOW:g}, {HIGH:g}] (peers)"
    print(f"\n### {problem.name} (accuracy {problem.accuracy:.3f}), {norm_name}, clipping {box_name}, "
          f"{samples} samples\n")
    print("| method | samples | time (s) | forwards / sample | backwards / sample | success | median / best "
          "| p90 / best | within 1 % | at box |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = []
    for r in rows:
        q = ratios(r, best)
        med, p90 = np.median(q), np.percentile(q, 90, method="inverted_cdf")  # no interpolation: inf stays inf
        within = float((q <= 1.01).mean())
        print(f"| {r.name} | {r.n} | {r.seconds:.2f} | {r.forwards:.1f} | {r.backwards:.1f} | "
              f"{r.success.mean():.3f} | {med:.4f} | {p90:.4f} | {within:.2f} | {r.at_box} |")
        out.append({"model": problem.name, "norm": norm_name, "clipping": clipping, "method": r.name, "n": r.n,
                    "seconds": r.seconds, "forwards": r.forwards, "backwards": r.backwards,
                    "success": float(r.success.mean()), "median_ratio": float(med), "p90_ratio": float(p90),
                    "within_1pct": within, "at_box": r.at_box,
                    "distances": [d if math.isfinite(d) else None for d in r.distance.tolist()]})
    print(flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: digits, 12 samples, 100 steps, L2")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=["digits", "fmnist", "resnet18"],
                        choices=["digits", "fmnist", "resnet18"])
    parser.add_argument("--norms", nargs="+", default=["2", "inf"], choices=["2", "inf"])
    parser.add_argument("--clipping", nargs="+", default=["unclipped", "clipped"], choices=["unclipped", "clipped"])
    parser.add_argument("--steps", nargs="+", type=int, default=[100, 1000], help="steps of the envelope attacks")
    parser.add_argument("--torchattacks-n", type=int, default=50, help="samples for torchattacks (a Python loop)")
    parser.add_argument("--art-n", type=int, default=200, help="samples for ART's DeepFool (numpy gradients)")
    parser.add_argument("--skip", nargs="*", default=[], help="method names to leave out, e.g. 'adv-lib FAB-1000'")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.models, args.steps, args.norms = 12, ["digits"], [100], ["2"]
        args.torchattacks_n = args.art_n = 4
    torch.set_num_threads(args.threads)
    everything = []
    for name in args.models:
        problem = build_problem(name, args.samples)
        for clipping in args.clipping:
            for norm in args.norms:
                p = 2.0 if norm == "2" else math.inf
                print(f"  {name} {clipping} L{norm}", flush=True)
                everything += table(problem, p, clipping, args)
                if args.json:  # after every table, so an interrupted run keeps what it measured
                    with open(args.json, "w") as handle:
                        json.dump(everything, handle, indent=1)


if __name__ == "__main__":
    main()

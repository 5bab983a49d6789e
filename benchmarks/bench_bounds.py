"""
Certified lower bounds beside the DeepFool margins (``margin_bounds``): how tight each method is and what it costs.

1. A ReLU MLP 64-24-24-10 trained on 8x8 digits, L-inf, box-free. The exact distance of each sample comes from an
   independent MILP (``exact_distance`` searching 1.1 x the DeepFool margin); ``margin_bounds`` is run with
   ``method="milp"`` (its lower bound must equal the exact distance within 1e-4), ``"lipschitz"``, ``"crown"`` and
   ``"alpha-crown"``. Printed per method: median and min of lower / exact, and seconds per sample.
2. The report's demo CNN (``SmallCNN`` on 8x8 digits: conv-relu-conv-relu-maxpool-fc-relu-fc, 10 epochs), L2 and
   L-inf, every method with its defaults: lower / upper (the DeepFool margin) per sample, summarised; the MILP
   (L-inf, the first ``--milp-samples``, ``time_limit=20``) gives exact distances where it finishes, and every
   certified bound is checked against them and against the verified DeepFool margin (soundness: any sample above
   either is printed, and is a bug).
3. ``SmallCNN`` on Fashion-MNIST 28x28 (conv-relu-conv-relu-maxpool-conv-relu-maxpool-fc-relu-fc, 2 epochs on
   10,000 images), when Debian's ``dataset-fashion-mnist`` is installed: CROWN and alpha-CROWN, L-inf and L2.
4. ``ResNet18(width=16)`` at 3x32x32 (random weights): whether CROWN reads it.

Run: ``.venv/bin/python benchmarks/bench_bounds.py [--samples 40] [--cnn-samples 20] [--milp-samples 5]
[--fashion-samples 3]``
(quiet machine: nothing else running).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from art_geometry import BoundsSettings, DeepFoolSettings, Norm, margin_bounds
from art_geometry.bounds.crown import crown_cost
from art_geometry.core.model import model_view
from art_geometry.bounds.milp import exact_distance
from art_geometry.datasets import (
    MLP, ResNet18, SmallCNN, load_digits, load_fashion_mnist, make_classifier, train_classifier,
)


def _row(name: str, values: np.ndarray, seconds: float) -> str:
    finite = values[np.isfinite(values)]
    med = np.median(finite) if finite.size else np.nan
    low = finite.min() if finite.size else np.nan
    return f"{name:<22}{med:>12.4f}{low:>12.4f}{seconds:>14.4f}"


def mlp_section(data, n: int, methods: list[str]) -> None:
    torch.manual_seed(0)
    model = MLP((1, 8, 8), hidden=(24, 24), nb_classes=10)
    clf = train_classifier(make_classifier(model, (1, 8, 8), 10), data.x_train, data.y_train, nb_epochs=40, seed=0)
    x = data.x_test[:n]
    deepfool = DeepFoolSettings(norm=np.inf, box=False)
    results = {m: margin_bounds(clf, x, norm=np.inf, method=m, deepfool=deepfool) for m in methods}
    first = results[methods[0]]
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in model.modules() if isinstance(m, torch.nn.Linear)]
    exact = np.full(n, np.nan)
    t0 = time.perf_counter()
    for i in range(n):
        if np.isfinite(first.upper[i]):
            value, status = exact_distance(layers, x[i].reshape(-1).astype(np.float64), int(first.predictions[i]),
                                           1.1 * first.upper[i])
            exact[i] = value if status == "exact" else np.nan
    t_exact = (time.perf_counter() - t0) / n
    acc = float((clf.predict(data.x_test).argmax(1) == data.y_test).mean())
    print(f"MLP 64-24-24-10 on digits, test accuracy {acc:.3f}; {n} test samples, L-inf, exact for "
          f"{np.isfinite(exact).sum()}")
    print(f"{'method':<22}{'median l/ex':>12}{'min l/ex':>12}{'s / sample':>14}")
    print(_row("exact (independent)", np.ones(n), t_exact))
    print(_row("deepfool upper", first.upper / exact, first.seconds["deepfool"]))
    for m, res in results.items():
        print(_row(m, res.lower / exact, res.seconds.get(m, np.nan)))
    if "milp" in results:
        off = np.abs(results["milp"].lower - exact) > 1e-4 * np.maximum(exact, 1e-12)
        print(f"milp samples off the exact distance by more than 1e-4 (a bug if any): {np.nonzero(off)[0].tolist()}")
    for m, res in results.items():
        above = np.nonzero(res.lower > exact * (1 + 1e-6))[0]
        print(f"{m} samples whose lower bound exceeds the exact distance (a bug if any): {above.tolist()}")


def _soundness(name: str, lower: np.ndarray, upper: np.ndarray, exact: "np.ndarray | None") -> None:
    above = np.nonzero(lower > upper * (1 + 1e-9))[0].tolist()
    if exact is not None:
        known = np.isfinite(exact)
        above += np.nonzero(known & (lower > exact * (1 + 1e-6) + 1e-9))[0].tolist()
    print(f"  {name}: samples above the DeepFool margin or the exact distance (a bug if any): {sorted(set(above))}")


def cnn_section(data, n: int, methods: list[str], milp_samples: int) -> None:
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8))
    clf = train_classifier(make_classifier(model, (1, 8, 8), 10), data.x_train, data.y_train, nb_epochs=10, seed=0)
    x = data.x_test[:n]
    acc = float((clf.predict(data.x_test).argmax(1) == data.y_test).mean())
    print(f"\nSmallCNN on digits, test accuracy {acc:.3f}; {n} test samples")
    print(f"{'norm / method':<22}{'median l/u':>12}{'min l/u':>12}{'s / sample':>14}")
    for norm in (2, np.inf):
        found = {}
        for m in (["milp"] if norm == np.inf else []) + methods:
            name = f"L{'inf' if norm == np.inf else 2} {m}"
            options = {"time_limit": 20.0} if m == "milp" else {}
            try:
                res = margin_bounds(clf, x[:milp_samples] if m == "milp" else x, norm=norm, method=m, **options)
            except Exception as err:  # a method's failure on this model is a result of the benchmark
                print(f"{name:<22}failed: {type(err).__name__}: {err}")
                continue
            found[m] = res
            print(_row(name, res.ratio, res.seconds.get(m, np.nan)))
            if m == "milp":
                status = np.asarray(res.status)
                print(f"  milp status: exact {int((status == 'exact').sum())}, time_limit "
                      f"{int((status == 'time_limit').sum())}")
        milp = found.get("milp")
        exact = None if milp is None else np.where(np.asarray(milp.status) == "exact", milp.lower, np.nan)
        exact = None if exact is None else np.concatenate([exact, np.full(len(x) - len(exact), np.nan)])
        for m, res in found.items():
            if m != "milp":
                _soundness(m, res.lower, res.upper, exact)


def fashion_section(n: int) -> None:
    try:
        data = load_fashion_mnist()
    except FileNotFoundError as err:
        print(f"\nFashion-MNIST section skipped: {err}")
        return
    torch.manual_seed(0)
    model = SmallCNN((1, 28, 28))
    clf = train_classifier(make_classifier(model, (1, 28, 28), 10), data.x_train[:10000], data.y_train[:10000],
                           nb_epochs=2, seed=0)
    x = data.x_test[:n]
    acc = float((clf.predict(data.x_test[:2000]).argmax(1) == data.y_test[:2000]).mean())
    print(f"\nSmallCNN on Fashion-MNIST 28x28, test accuracy {acc:.3f} (2,000 test images); {n} test samples")
    print(f"{'norm / method':<22}{'median l/u':>12}{'min l/u':>12}{'s / sample':>14}")
    for norm in (np.inf, 2):
        free = margin_bounds(clf, x, norm=norm, method="lipschitz")
        cost = crown_cost(model_view(clf, x), torch.as_tensor(x), torch.as_tensor(free.predictions),
                          torch.as_tensor(free.upper), Norm.parse(norm))
        estimate = cost.seconds(BoundsSettings().crown_steps)
        print(f"  L{'inf' if norm == np.inf else 2}: CROWN estimated at {estimate:.3g} s a sample (crown_cost)")
        if estimate > 60:
            print("  not run: over a minute a sample")
            continue
        for m in ("crown", "alpha-crown"):
            res = margin_bounds(clf, x, norm=norm, method=m)
            print(_row(f"L{'inf' if norm == np.inf else 2} {m}", res.ratio, res.seconds[m]))
            _soundness(m, res.lower, res.upper, None)


def resnet_section() -> None:
    torch.manual_seed(0)
    model = ResNet18((3, 32, 32), width=16).eval()
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    try:
        margin_bounds(model, x, norm=np.inf, method="crown")
    except ValueError as err:
        print(f"\nResNet-18 width 16, 3x32x32: CROWN refused: {str(err)[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=40, help="MLP samples (exact MILP distances)")
    parser.add_argument("--cnn-samples", type=int, default=20, help="digits SmallCNN samples")
    parser.add_argument("--milp-samples", type=int, default=5, help="digits SmallCNN samples of the MILP (L-inf)")
    parser.add_argument("--fashion-samples", type=int, default=3, help="Fashion-MNIST SmallCNN samples")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    data = load_digits()
    crown = ["crown", "alpha-crown"]
    mlp_section(data, args.samples, ["milp", "lipschitz"] + crown)
    cnn_section(data, args.cnn_samples, ["lipschitz"] + crown, args.milp_samples)
    fashion_section(args.fashion_samples)
    resnet_section()


if __name__ == "__main__":
    main()

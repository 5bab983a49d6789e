"""
Certified lower bounds beside the DeepFool margins (``margin_bounds``): how tight each method is and what it costs.

1. A ReLU MLP 64-24-24-10 trained on 8x8 digits (as ``bench_tightness_milp.py`` trains its MLP), L-inf, box-free.
   The exact distance of each sample comes from an independent MILP (``exact_distance`` searching 1.1 x the
   DeepFool margin); ``margin_bounds`` is run with ``method="milp"`` (its lower bound must equal the exact distance
   within 1e-4 for every sample), ``"lipschitz"`` and, when the CROWN module imports, ``"crown"``. Printed per
   method: median and min of lower / exact, and seconds per sample.
2. A small digits CNN (``SmallCNN``, conv-conv-maxpool-linear-linear), L2 and L-inf: ``"lipschitz"`` and ``"crown"``
   (if available) lower / upper (the DeepFool margin) per sample, summarised.

Run: ``.venv/bin/python benchmarks/bench_bounds.py [--samples 40]``
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings

import numpy as np
import torch

from art_geometry import DeepFoolSettings, margin_bounds
from art_geometry.bounds.milp import exact_distance
from art_geometry.datasets import MLP, SmallCNN, load_digits, make_classifier, train_classifier


def _crown_available() -> bool:
    try:
        return importlib.util.find_spec("art_geometry.bounds.crown") is not None
    except ImportError:
        return False


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


def cnn_section(data, n: int, methods: list[str]) -> None:
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8))
    clf = train_classifier(make_classifier(model, (1, 8, 8), 10), data.x_train, data.y_train, nb_epochs=10, seed=0)
    x = data.x_test[:n]
    acc = float((clf.predict(data.x_test).argmax(1) == data.y_test).mean())
    print(f"\nSmallCNN on digits, test accuracy {acc:.3f}; {n} test samples")
    print(f"{'norm / method':<22}{'median l/u':>12}{'min l/u':>12}{'s / sample':>14}")
    for norm in (2, np.inf):
        for m in methods:
            name = f"L{'inf' if norm == np.inf else 2} {m}"
            try:
                res = margin_bounds(clf, x, norm=norm, method=m)
            except Exception as err:  # a method's failure on this model is a result of the benchmark
                print(f"{name:<22}failed: {type(err).__name__}: {err}")
                continue
            print(_row(name, res.ratio, res.seconds.get(m, np.nan)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=40, help="MLP samples (exact MILP distances)")
    parser.add_argument("--cnn-samples", type=int, default=10, help="SmallCNN samples (CROWN costs ~1 s each on CPU)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    data = load_digits()
    crown = ["crown"] if _crown_available() else []
    mlp_section(data, args.samples, ["milp", "lipschitz"] + crown)
    cnn_section(data, args.cnn_samples, ["lipschitz"] + crown)


if __name__ == "__main__":
    main()

"""
The GPU figures in one run: margins against foolbox, the DCT subspace sweep, PRS throughput, the Hessian top-k,
the Jacobian-regularised trainer, and (with two or more GPUs) a two-GPU sharded sweep against one GPU.

Run it whenever a CUDA device is available (CI never has one; the script says so and exits 0 without one):

    .venv/bin/python benchmarks/gpu.py                    # Fashion-MNIST when installed, else digits
    .venv/bin/python benchmarks/gpu.py --n 2000 --repeats 3
    .venv/bin/python benchmarks/gpu.py --device cpu --n 20 --repeats 1 --epochs 1   # smoke run of the code

Every ratio compares the two sides in this process, on the same model and samples, with the same settings: the
DeepFool rows clip to [0, 1] on both sides (ours ``box=True``, foolbox's bounds), 50 steps, 10 candidates,
overshoot 0.02. Each call is warmed up once and timed ``--repeats`` times with ``torch.cuda.synchronize()``; the
median is printed. The two-GPU row runs ``torchrun --nproc_per_node=2 -m art_geometry sweep`` against
``--nproc_per_node=1`` on the same samples (NCCL), wall-clock including start-up.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import art_geometry as ag
from art_geometry.datasets import ResNet18, SmallCNN, load_digits, load_fashion_mnist

HERE = Path(__file__).resolve().parent.parent


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    out = fn()
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _data() -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        d = load_fashion_mnist()
    except FileNotFoundError:
        d = load_digits()
    return d.name, d.x_train, d.y_train, d.x_test, d.y_test


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, device: torch.device) -> nn.Module:
    """A few seeded epochs of Adam, so the margins are those of a classifier, not of random weights."""
    torch.manual_seed(0)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), device=device).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def _foolbox(model: nn.Module, x: torch.Tensor, pred: torch.Tensor, p: float) -> np.ndarray:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    cls = fb.attacks.L2DeepFoolAttack if p == 2 else fb.attacks.LinfDeepFoolAttack
    attack = cls(steps=50, candidates=10, overshoot=0.02)
    _, adv, ok = attack(fmodel, x, fb.criteria.Misclassification(pred), epsilons=None)
    d = (adv - x).flatten(1)
    norms = d.norm(dim=1) if p == 2 else d.abs().amax(dim=1)
    return torch.where(ok, norms, torch.full_like(norms, float("inf"))).cpu().numpy()


def _ours(model: nn.Module, x: torch.Tensor, p: float) -> Any:
    """Our DeepFool with foolbox's settings and clipping: the model wrapped with bounds (0, 1), ``box=True``."""
    import foolbox as fb

    return ag.deepfool_margins(fb.PyTorchModel(model, bounds=(0, 1)), x, norm=p, box=True, batch_size=len(x),
                               candidates=10, overshoot=0.02, max_iter=50)


def _rgb(x: np.ndarray) -> np.ndarray:
    """Grey images padded by 2 pixels and repeated over 3 channels (28 x 28 -> 3 x 32 x 32, CIFAR-shaped)."""
    return np.repeat(np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2))), 3, axis=1)


def _two_gpu_rows(model: nn.Module, name: str, n: int) -> list[tuple[str, str, str]]:
    """torchrun on 2 GPUs against 1 GPU, the CLI's sweep of DeepFool margins (wall-clock, start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        scripted = torch.jit.script(copy.deepcopy(model).cpu())
        path = Path(tmp) / "model.pt"
        scripted.save(str(path))
        seconds = {}
        for ranks in (1, 2):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   "-m", "art_geometry", "sweep", "--family", "margins", "--model", str(path), "--data", name,
                   "--samples", str(n), "--device", "cuda", "--quiet", "--out", str(Path(tmp) / f"r{ranks}.json")]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)})
            seconds[ranks] = time.perf_counter() - start
    return [("sweep, DeepFool L2, 1 GPU vs 2 GPUs", f"{seconds[1]:.1f} s vs {seconds[2]:.1f} s",
             f"{seconds[1] / seconds[2]:.2f}x")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="test samples per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the benchmark models")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a smoke run of this script's code paths (its figures are not GPU figures)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing measured (run it on a machine with a GPU)")
        return
    warnings.simplefilter("ignore")
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    name, x_tr, y_tr, x_te, y_te = _data()
    shape = tuple(x_te.shape[1:])
    cnn = _train(SmallCNN(shape), x_tr[: 20 * args.n], y_tr[: 20 * args.n], args.epochs, device)
    x = torch.as_tensor(x_te[: args.n], device=device)
    with torch.no_grad():
        pred = cnn(x).argmax(1)
    rows: list[tuple[str, str, str]] = []
    for p in (2, np.inf):
        t_ours, ours = _timed(lambda: _ours(cnn, x, p), args.repeats)
        t_fb, fb_margins = _timed(lambda: _foolbox(cnn, x, pred, p), args.repeats)
        rows.append((f"DeepFool L{'2' if p == 2 else 'inf'} (SmallCNN, {len(x)} samples), foolbox / ours",
                     f"{t_fb:.3f} s / {t_ours:.3f} s; median {np.median(fb_margins):.4f} / "
                     f"{np.median(ours.margins):.4f}", f"{t_fb / t_ours:.1f}x"))
    subspaces = ag.dct_subspaces(shape, block_size=8, stride=1 if shape[-1] <= 8 else shape[-1] // 8)
    few = x[: min(len(x), 128)]
    t_sub, _ = _timed(lambda: ag.subspace_margins(cnn, few, subspaces=subspaces, batch_size=32), args.repeats)
    rows.append((f"DCT sweep, {len(subspaces)} blocks x {len(few)} samples", f"{t_sub:.2f} s",
                 f"{t_sub / len(few) * 1e3:.1f} ms/sample"))
    big = torch.as_tensor(x_tr if args.device == "cuda" else x_tr[: 10 * args.n], device=device)
    t_prs, prs = _timed(lambda: ag.populated_region_set(cnn, big, batch_size=2048), args.repeats)
    rows.append((f"PRS over {len(big)} samples", f"{t_prs:.2f} s (ratio {prs.ratio:.4f})",
                 f"{len(big) / t_prs:,.0f} samples/s"))
    xh = x[:16]
    t_h, _ = _timed(lambda: ag.hessian_eigenvalues(cnn, xh, k=20, of="loss", seed=0), args.repeats)
    rows.append((f"Hessian top-20 (loss), {len(xh)} samples", f"{t_h:.2f} s",
                 f"{t_h / len(xh) * 1e3:.0f} ms/sample"))
    rgb_train = _rgb(x_tr[: 5 * args.n])
    resnet = _train(ResNet18(rgb_train.shape[1:], width=16), rgb_train, y_tr[:5000], 1, device)
    xr = torch.as_tensor(_rgb(x_te[: min(256, args.n)]), device=device)
    with torch.no_grad():
        pred_r = resnet(xr).argmax(1)
    t_r, ours_r = _timed(lambda: _ours(resnet, xr, 2), args.repeats)
    t_rf, fb_r = _timed(lambda: _foolbox(resnet, xr, pred_r, 2), args.repeats)
    rows.append((f"DeepFool L2 (ResNet-18 w16, {'x'.join(map(str, xr.shape[1:]))}, {len(xr)} samples), "
                 "foolbox / ours",
                 f"{t_rf:.3f} s / {t_r:.3f} s; median {np.median(fb_r):.4f} / {np.median(ours_r.margins):.4f}",
                 f"{t_rf / t_r:.1f}x"))
    rows += _trainer_rows(x_tr[: 10 * args.n], y_tr[: 10 * args.n], shape, args.device)
    if args.device == "cuda" and torch.cuda.device_count() >= 2:
        rows += _two_gpu_rows(cnn, name, len(x_te))
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (smoke run, not GPU figures)"
    print(f"device {where}, data {name}, torch {torch.__version__}, "
          f"median of {args.repeats}\n")
    print("| benchmark | measured | ratio / rate |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _trainer_rows(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], device: str) -> list[tuple[str, str, str]]:
    """One epoch natural against one epoch Jacobian-regularised, on the GPU through ART's PyTorchClassifier."""
    from art.estimators.classification import PyTorchClassifier

    def classifier() -> PyTorchClassifier:
        torch.manual_seed(0)
        model = SmallCNN(shape)
        return PyTorchClassifier(model, nn.CrossEntropyLoss(), shape, 10, optimizer=torch.optim.Adam(
            model.parameters(), lr=1e-3), clip_values=(0.0, 1.0), device_type="gpu" if device == "cuda" else "cpu")

    natural = classifier()
    t_nat, _ = _timed(lambda: natural.fit(x, y, batch_size=128, nb_epochs=1, verbose=False), 1)
    trainer = ag.JacobianRegularizedTrainer(classifier(), c=0.1)
    t_jac, _ = _timed(lambda: trainer.fit(x, y, batch_size=128, nb_epochs=1, verbose=False), 1)
    return [(f"Jacobian-regularised epoch / natural epoch ({len(x)} samples)", f"{t_jac:.2f} s / {t_nat:.2f} s",
             f"{t_jac / t_nat:.2f}x")]


if __name__ == "__main__":
    main()

"""
Top-20 input-Hessian eigenvalues (of the cross-entropy, ``of="loss"``) on 28 x 28 Fashion-MNIST inputs (D = 784),
side by side in one run, for a ReLU CNN and a smooth (softplus) CNN:

* ``hessian_eigenvalues(k=20)``: batched Lanczos with full reorthogonalisation on Hessian-vector products;
* ``hessian_eigenvalues(full=True)``: all 784 products with the identity in vectorised backward passes, then
  ``eigvalsh`` (goal: top-k at least 20x faster);
* naive: the Hessian row by row, one double-backward pass per input coordinate (784 passes), then ``eigvalsh``.

Errors are the largest absolute difference of the top-20 eigenvalues from a float64 full spectrum (goal 1e-4).

Run: ``.venv/bin/python benchmarks/bench_hessian.py [--n 2] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _timing import best_of
from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier
from art_geometry.indicators import hessian_eigenvalues


def _smooth(model: nn.Module) -> nn.Module:
    smooth = copy.deepcopy(model)
    for name, module in list(smooth.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.Softplus(beta=5.0))
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(2))
    return smooth


def _trained(smooth: bool, data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    base = SmallCNN((1, 28, 28))
    model = _smooth(base) if smooth else base
    clf = make_classifier(model, (1, 28, 28), 10)
    train_classifier(clf, data.x_train[:5000], data.y_train[:5000], nb_epochs=1, batch_size=128, seed=seed)
    return clf.model.eval()


def _naive(model: nn.Module, x: np.ndarray, k: int) -> np.ndarray:
    """The Hessian of the cross-entropy, one double-backward pass per coordinate."""
    xt = torch.as_tensor(x).requires_grad_(True)
    params = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        logits = model(xt)
        loss = F.cross_entropy(logits, logits.argmax(1), reduction="sum")
        (g,) = torch.autograd.grad(loss, xt, create_graph=True)
        g = g.flatten(1)
        rows = [torch.autograd.grad(g[:, i].sum(), xt, retain_graph=True)[0].flatten(1) for i in range(g.shape[1])]
    finally:
        for p, flag in params:
            p.requires_grad_(flag)
    h = torch.stack(rows, dim=1).double()
    lam = torch.linalg.eigvalsh((h + h.transpose(1, 2)) / 2)
    order = lam.abs().argsort(dim=1, descending=True)
    return lam.gather(1, order[:, :k]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2, help="samples")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the top-k timing (best)")
    args = parser.parse_args()
    data = load_fashion_mnist()
    x = data.x_test[: args.n]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={args.n}, D=784, k={args.k}")
    print(f"{'model':8} {'method':22} {'time s':>8} {'x vs top-k':>10} {'max |err|':>10} {'products':>9}")
    for smooth in (False, True):
        model = _trained(smooth, data)
        name = "softplus" if smooth else "relu"
        ref = hessian_eigenvalues(copy.deepcopy(model).double(), x.astype(np.float64), of="loss", full=True,
                                  batch_size=args.n).eigenvalues[:, : args.k]
        hessian_eigenvalues(model, x[:1], of="loss", k=2)  # warm-up (lazy imports)
        t_top, top = best_of(lambda: hessian_eigenvalues(model, x, of="loss", k=args.k, batch_size=args.n),
                             args.repeats)
        t_full, full = best_of(lambda: hessian_eigenvalues(model, x, of="loss", full=True, batch_size=args.n), 1)
        t_naive, naive = best_of(lambda: _naive(model, x, args.k), 1)
        rows = [
            ("lanczos top-k", t_top, top.eigenvalues, top.n_products),
            ("full (batched HVPs)", t_full, full.eigenvalues[:, : args.k], full.n_products),
            ("naive per-coordinate", t_naive, naive, 784),
        ]
        for method, t, lam, products in rows:
            err = np.abs(lam - ref).max()
            print(f"{name:8} {method:22} {t:8.3f} {t / t_top:10.1f} {err:10.2e} {products:9d}")
        print(f"{name:8} largest |lambda| {np.abs(ref[:, 0]).max():.3e}, 20th {np.abs(ref[:, -1]).max():.3e}")


if __name__ == "__main__":
    main()

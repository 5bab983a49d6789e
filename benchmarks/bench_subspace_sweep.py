"""
Margins along the 21 DCT subspaces of Fashion-MNIST (Hold me tight, Fig. 2): batched ``subspace_margins`` against a
per-sample, dense-basis reference loop.

The reference follows ``subspace_deepfool`` of LTS4/hold-me-tight (``utils.py``), written here from its description:
one sample at a time; the classes sorted once by the clean logits; at every iteration one backward pass per class;
``pert_k = |f_k| / ||S^T w_k||`` with the subspace as a dense ``D x K^2`` orthonormal basis ``S``; the step
``max(pert, 1e-4) S S^T w / ||S S^T w||``; stop when ``x + (1 + overshoot) r`` changes the label; the margin is
``||(1 + overshoot) r||``.

Ours is timed twice: with the reference's settings (``refine=False, restarts=1``, same overshoot 0.02, max_iter 100)
and with the defaults (``refine=True`` bisects back to the crossing, so its margins sit about ``overshoot`` below the
reference's). The reference is timed on a subset and extrapolated linearly to every sample (stated in the output).

Run: ``.venv/bin/python benchmarks/bench_subspace_sweep.py [--samples 500] [--ref-samples 20]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier
from art_geometry.margins import subspace_margins
from art_geometry.spectral import dct_matrix
from art_geometry.subspaces import dct_subspaces


def dense_dct_basis(h: int, w: int, start: int, size: int) -> torch.Tensor:
    """:return: ``(H*W, size^2)`` orthonormal columns ``vec(outer(C_H[start+i], C_W[start+j]))``."""
    ch = dct_matrix(h, dtype=torch.float32)[start : start + size]
    cw = dct_matrix(w, dtype=torch.float32)[start : start + size]
    return torch.einsum("ih,jw->hwij", ch, cw).reshape(h * w, size * size)


def reference_subspace_deepfool(
    model: torch.nn.Module, image: torch.Tensor, basis: torch.Tensor, num_classes: int = 10,
    overshoot: float = 0.02, max_iter: int = 100,
) -> tuple[float, bool]:
    """One sample, one subspace: the per-class loop of Hold me tight's ``subspace_deepfool``."""
    with torch.no_grad():
        order = model(image[None])[0].argsort(descending=True)[:num_classes]
    label = int(order[0])
    r = torch.zeros_like(image)
    pert_image = image.clone()
    current, it = label, 0
    while current == label and it < max_iter:
        x = pert_image.clone().requires_grad_(True)
        fs = model(x[None])[0]
        (grad_orig,) = torch.autograd.grad(fs[order[0]], x, retain_graph=True)
        best, w = torch.tensor(float("inf")), torch.zeros_like(image)
        for k in range(1, num_classes):
            (grad_k,) = torch.autograd.grad(fs[order[k]], x, retain_graph=True)
            w_k = grad_k - grad_orig
            f_k = (fs[order[k]] - fs[order[0]]).detach()
            pert_k = f_k.abs() / (basis.T @ w_k.reshape(-1)).norm()
            if pert_k < best:
                best, w = pert_k, w_k
        w = (basis @ (basis.T @ w.reshape(-1))).reshape(image.shape)
        r_i = best.clamp(min=1e-4) * w / w.norm()
        r = r + r_i
        pert_image = pert_image + r_i
        with torch.no_grad():
            current = int(model((image + (1 + overshoot) * r)[None]).argmax())
        it += 1
    return float(((1 + overshoot) * r).norm()), current != label


def main() -> None:
    parser = argparse.ArgumentParser(description="DCT subspace sweep: ours vs the per-sample reference")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--ref-samples", type=int, default=20)
    parser.add_argument("--train", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(2)

    data = load_fashion_mnist()
    torch.manual_seed(0)
    model = SmallCNN((1, 28, 28))
    clf = make_classifier(model, (1, 28, 28), 10)
    train_classifier(clf, data.x_train[: args.train], data.y_train[: args.train], nb_epochs=1, batch_size=64, seed=0)
    model.eval()
    x = data.x_test[: args.samples]
    acc = float((clf.predict(data.x_test[:2000]).argmax(1) == data.y_test[:2000]).mean())
    subspaces = dct_subspaces((1, 28, 28), block_size=8, stride=1)

    t0 = time.perf_counter()
    same = subspace_margins(clf, x, subspaces=subspaces, norm=2, refine=False, restarts=1, overshoot=0.02, max_iter=100)
    t_same = time.perf_counter() - t0
    t0 = time.perf_counter()
    default = subspace_margins(clf, x, subspaces=subspaces, norm=2)
    t_default = time.perf_counter() - t0

    n_ref = min(args.ref_samples, len(x))
    ref = np.zeros((len(subspaces), n_ref))
    ref_ok = np.zeros((len(subspaces), n_ref), dtype=bool)
    t0 = time.perf_counter()
    for s, sub in enumerate(subspaces):
        basis = dense_dct_basis(28, 28, s, 8)
        for i in range(n_ref):
            ref[s, i], ref_ok[s, i] = reference_subspace_deepfool(model, torch.from_numpy(x[i, 0])[None], basis)
    t_ref = time.perf_counter() - t0
    t_ref_full = t_ref * len(x) / n_ref

    print(f"SmallCNN (1 epoch on {args.train} Fashion-MNIST images, test accuracy {acc:.3f}); 21 DCT subspaces "
          f"8x8 stride 1; {len(x)} samples; torch threads {torch.get_num_threads()}")
    print(f"{'method':<44}{'time (s)':>10}{'ratio':>10}")
    print(f"{'reference loop (' + str(n_ref) + ' samples, extrapolated)':<44}{t_ref_full:>10.1f}{1.0:>10.1f}")
    print(f"{'ours, reference settings (no refine)':<44}{t_same:>10.1f}{t_ref_full / t_same:>10.1f}")
    print(f"{'ours, defaults (refine, 3 restarts)':<44}{t_default:>10.1f}{t_ref_full / t_default:>10.1f}")
    print()
    print(f"per-subspace medians on the {n_ref} reference samples (ours same settings / defaults vs reference)")
    print(f"{'block':>6}{'reference':>12}{'ours same':>12}{'rel diff':>10}{'ours def.':>12}{'rel diff':>10}{'ours all':>12}")
    worst = 0.0
    for s in range(len(subspaces)):
        m_ref = np.median(ref[s])
        m_same = np.median(same.margins[s, :n_ref])
        m_def = np.median(default.margins[s, :n_ref])
        worst = max(worst, abs(m_same / m_ref - 1))
        print(f"{s:>6}{m_ref:>12.4f}{m_same:>12.4f}{m_same / m_ref - 1:>+10.2%}{m_def:>12.4f}{m_def / m_ref - 1:>+10.2%}"
              f"{np.median(same.margins[s]):>12.4f}")
    print(f"largest per-subspace median difference (same settings): {worst:.2%}; reference success "
          f"{ref_ok.mean():.3f}, ours success {same.success[:, :n_ref].mean():.3f}")


if __name__ == "__main__":
    main()

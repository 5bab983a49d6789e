"""
Margins along the 21 DCT subspaces of Fashion-MNIST (Hold me tight, Fig. 2): batched ``subspace_margins`` against
the published reference code itself, LTS4/hold-me-tight's ``subspace_deepfool`` and ``generate_subspace_list``
(``utils.py``), on its own ``LeNet`` (``model_classes/mnist/lenet.py``).

The reference is loaded at run time from a copy of the repository passed as ``--reference PATH`` (never copied into
this project) and run unmodified, apart from stand-ins for what this environment lacks: ``zero_gradients`` (removed
from ``torch.autograd.gradcheck`` in torch 1.x; the stand-in zeroes ``x.grad`` in place as the original did),
``torch_dct.idct_2d(x, norm="ortho")`` (``C^T x C`` with the orthonormal DCT-II matrix of
:func:`art_geometry.subspaces.spectral.dct_matrix`) and empty ``torchvision`` modules (imported by ``utils.py`` for its data
loaders, which are not called). Without ``--reference`` (or when the path holds no ``utils.py``) only ours runs,
and the output says so.

Setup: the reference's LeNet trained here (Adam, ``--epochs`` on ``--train`` Fashion-MNIST images, seeded; no
normalisation layer on either side: the reference's ``trans`` only makes the sample a batch of one), the
reference's 21 subspaces ``generate_subspace_list(8, 28, 1, 1)`` against ours ``dct_subspaces((1, 28, 28),
block_size=8, stride=1)`` (the same projectors: checked and printed). The reference runs the loop its
``compute_margin_distribution`` runs (one sample at a time, all 10 classes, overshoot 0.02, max_iter 100), on
``--ref-samples`` samples, timed and extrapolated linearly to ``--samples``. Ours runs on all ``--samples``: with
the reference's settings (``refine=False, restarts=0``, overshoot 0.02, max_iter 100, all 10 classes) and with its
defaults (refined, 3 restarts). The medians per block are compared on the reference's samples, over the samples
where both the reference and ours (its settings) changed the label: the reference returns its perturbation after
``max_iter`` iterations whether or not the label changed.

Run:  ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_subspace_sweep.py --reference /path/to/hold-me-tight
[--samples 500] [--ref-samples 50] [--threads 1]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_geometry import dct_subspaces, subspace_margins
from art_geometry.datasets import load_fashion_mnist, make_classifier, train_classifier
from art_geometry.subspaces.spectral import dct_matrix


def _idct_2d(x: torch.Tensor, norm: str | None = None) -> torch.Tensor:
    """Stand-in for ``torch_dct.idct_2d(x, norm="ortho")``: the orthonormal 2-D inverse DCT-II ``C^T x C``."""
    if norm != "ortho":
        raise ValueError("the stand-in implements norm='ortho' only (the reference's only use)")
    ch = dct_matrix(x.shape[-2], dtype=x.dtype).to(x.device)
    cw = dct_matrix(x.shape[-1], dtype=x.dtype).to(x.device)
    return ch.T @ x @ cw


def _zero_gradients(x: torch.Tensor) -> None:
    """Stand-in for the removed ``torch.autograd.gradcheck.zero_gradients``: zero ``x.grad`` in place."""
    if x.grad is not None:
        x.grad.detach_()
        x.grad.zero_()


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference(root: Path) -> tuple[types.ModuleType, type]:
    """
    :param root: A checkout of LTS4/hold-me-tight.
    :return: Its ``utils`` module and its MNIST ``LeNet`` class, loaded from ``root`` with the stand-ins above.
    """
    import torch.autograd.gradcheck  # noqa: F401  (the submodule; ``torch.autograd.gradcheck`` is also a function)

    sys.modules["torch.autograd.gradcheck"].zero_gradients = _zero_gradients  # type: ignore[attr-defined]
    stubs = {"torch_dct": types.ModuleType("torch_dct"), "torchvision": types.ModuleType("torchvision"),
             "torchvision.transforms": types.ModuleType("torchvision.transforms")}
    stubs["torch_dct"].idct_2d = _idct_2d  # type: ignore[attr-defined]
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        utils = _load(root / "utils.py", "hold_me_tight_utils")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    lenet = _load(root / "model_classes" / "mnist" / "lenet.py", "hold_me_tight_lenet")
    return utils, lenet.LeNet


def reference_margins(
    utils: Any, model: torch.nn.Module, x: np.ndarray, bases: list[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """
    :return: ``(S, n)`` margins ``||(1 + overshoot) r||`` of the reference's ``subspace_deepfool`` (its defaults),
             one sample at a time, as its ``compute_margin_distribution`` loops, and whether the label changed
             (the reference reports the norm after ``max_iter`` iterations either way).
    """
    # the reference's TransformLayer ``(x - mean) / std`` with 4-D mean and std also makes the sample a batch of one;
    # with no normalisation (mean 0, std 1) it is this reshape
    def trans(v: torch.Tensor) -> torch.Tensor:
        return v.reshape((1,) + tuple(v.shape[-3:]))

    out = np.zeros((len(bases), len(x)))
    changed = np.zeros((len(bases), len(x)), dtype=bool)
    for s, sp in enumerate(bases):
        for i in range(len(x)):
            pert, _, label, label_pert, _ = utils.subspace_deepfool(
                torch.from_numpy(x[i]), model, trans, Sp=sp, device="cpu"
            )
            out[s, i], changed[s, i] = float(pert.norm()), int(label) != int(label_pert)
    return out, changed


def main() -> None:
    parser = argparse.ArgumentParser(description="DCT subspace sweep: ours vs Hold me tight's reference code")
    parser.add_argument("--reference", help="path of a checkout of LTS4/hold-me-tight (its utils.py is run)")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--ref-samples", type=int, default=50)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = Path(args.reference) if args.reference else None
    if root is None or not (root / "utils.py").is_file():
        print(f"no reference: {'--reference not given' if root is None else f'{root}/utils.py not found'}; "
              "fetch LTS4/hold-me-tight and pass its path to compare. Timing ours only, on a LeNet of our own.")
        utils, lenet_cls = None, None
    else:
        utils, lenet_cls = load_reference(root)

    data = load_fashion_mnist()
    torch.manual_seed(0)
    if lenet_cls is not None:
        model = lenet_cls()
    else:
        from art_geometry.datasets import SmallCNN

        model = SmallCNN((1, 28, 28))
    clf = make_classifier(model, (1, 28, 28), 10)
    train_classifier(clf, data.x_train[: args.train], data.y_train[: args.train], nb_epochs=args.epochs,
                     batch_size=64, seed=0)
    model.eval()
    x = data.x_test[: args.samples]
    acc = float((clf.predict(data.x_test[:2000]).argmax(1) == data.y_test[:2000]).mean())
    subspaces = dct_subspaces((1, 28, 28), block_size=8, stride=1)

    t0 = time.perf_counter()
    same = subspace_margins(clf, x, subspaces=subspaces, norm=2, refine=False, restarts=0, overshoot=0.02,
                            max_iter=100, candidates=10)
    t_same = time.perf_counter() - t0
    t0 = time.perf_counter()
    default = subspace_margins(clf, x, subspaces=subspaces, norm=2)
    t_default = time.perf_counter() - t0
    print(f"{type(model).__name__} ({args.epochs} epochs on {args.train} Fashion-MNIST images, test accuracy "
          f"{acc:.3f}); 21 DCT subspaces 8x8 stride 1; {len(x)} samples; torch threads {torch.get_num_threads()}")
    if utils is None:
        print(f"ours, reference settings: {t_same:.1f} s; defaults: {t_default:.1f} s")
        return

    bases = utils.generate_subspace_list(8, 28, 1, 1)
    eye = torch.eye(28 * 28).reshape(-1, 1, 28, 28)
    gap = max(float((s.project(eye).reshape(784, 784) - b @ b.T).abs().max()) for s, b in zip(subspaces, bases))
    print(f"largest difference of the subspace projectors, ours vs the reference's: {gap:.1e}")
    n_ref = min(args.ref_samples, len(x))
    t0 = time.perf_counter()
    ref, ref_ok = reference_margins(utils, model, x[:n_ref], bases)
    t_ref = time.perf_counter() - t0
    t_ref_full = t_ref * len(x) / n_ref

    print(f"{'method':<52}{'time (s)':>10}{'speed-up':>10}")
    print(f"{'reference subspace_deepfool (' + str(n_ref) + ' samples, extrapolated)':<52}{t_ref_full:>10.1f}"
          f"{1.0:>10.1f}")
    print(f"{'ours, reference settings (no refine, no restarts)':<52}{t_same:>10.1f}{t_ref_full / t_same:>10.1f}")
    print(f"{'ours, defaults (refined, 3 restarts)':<52}{t_default:>10.1f}{t_ref_full / t_default:>10.1f}")
    print()
    print(f"per-block medians on the {n_ref} reference samples, over the pairs where the reference and ours with its "
          "settings both changed the label (success: reference / ours same / ours defaults)")
    print(f"{'block':>6}{'reference':>12}{'ours same':>12}{'diff':>9}{'ours def.':>12}{'diff':>9}{'success':>20}")
    diffs = []
    for s in range(len(subspaces)):
        both = ref_ok[s] & same.success[s, :n_ref]
        m_ref = np.median(ref[s][both])
        m_same = np.median(same.margins[s, :n_ref][both])
        m_def = np.median(default.margins[s, :n_ref][both])
        diffs.append(m_same / m_ref - 1)
        ok = f"{ref_ok[s].mean():.2f}/{same.success[s, :n_ref].mean():.2f}/{default.success[s, :n_ref].mean():.2f}"
        print(f"{s:>6}{m_ref:>12.4f}{m_same:>12.4f}{m_same / m_ref - 1:>+9.2%}{m_def:>12.4f}{m_def / m_ref - 1:>+9.2%}"
              f"{ok:>20}")
    within = int(np.sum(np.abs(diffs) <= 0.01))
    print(f"same settings: {within} of {len(diffs)} block medians within 1% of the reference's, worst "
          f"{max(np.abs(diffs)):.2%}; success on all {len(x)}: ours same {same.success.mean():.3f}, defaults "
          f"{default.success.mean():.3f}")


if __name__ == "__main__":
    main()

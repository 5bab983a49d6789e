"""
A 101 x 101 decision surface of one Fashion-MNIST sample with the small CNN, side by side in one run with a bare
forward pass over the same 10,201 grid points in the same chunks (goal: the surface within 1.5x of the forward).

The surface also computes the decision function and the cross-entropy on every point and builds the points from
the two directions on the fly; the forward-only baseline gets the points precomputed.

Run: ``.venv/bin/python benchmarks/bench_surface.py [--resolution 101] [--batch-size 2048] [--repeats 3]``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _timing import best_of
from art_geometry.core.model import model_view
from art_geometry.datasets import SmallCNN, load_fashion_mnist, make_classifier, train_classifier
from art_geometry.surface import decision_surface


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=101)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_fashion_mnist()
    torch.manual_seed(0)
    clf = make_classifier(SmallCNN((1, 28, 28)), (1, 28, 28), 10)
    train_classifier(clf, data.x_train[:5000], data.y_train[:5000], nb_epochs=1, batch_size=128, seed=0)
    x = data.x_test[:1]
    r = args.resolution
    res = decision_surface(clf, x, resolution=r, span=5.0)  # warm-up, and the directions for the baseline
    coords = torch.as_tensor(res.coords, dtype=torch.float32)
    alpha = torch.as_tensor(res.alpha).flatten()
    beta = torch.as_tensor(res.beta).flatten()
    b_grid, a_grid = torch.meshgrid(coords, coords, indexing="ij")
    points = (torch.as_tensor(x).flatten() + a_grid.reshape(-1, 1) * alpha + b_grid.reshape(-1, 1) * beta)
    points = points.view(-1, 1, 28, 28).contiguous()
    view = model_view(clf)

    def forward() -> torch.Tensor:
        with view.evaluating(), torch.no_grad():
            return torch.cat([view(points[i : i + args.batch_size]) for i in range(0, len(points), args.batch_size)])

    t_fwd, logits = best_of(forward, args.repeats)
    t_surf, surf = best_of(lambda: decision_surface(clf, x, resolution=r, span=5.0, batch_size=args.batch_size),
                         args.repeats)
    t = int(surf.labels[0])
    others = torch.cat([logits[:, :t], logits[:, t + 1 :]], dim=1)
    expected = (logits[:, t] - others.max(dim=1).values).numpy()
    same = np.allclose(surf.decision[0].ravel(), expected, atol=1e-4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {r}x{r} = {r * r} points, "
          f"batch {args.batch_size}, best of {args.repeats}")
    print(f"{'method':34} {'time s':>8} {'ratio':>6}")
    print(f"{'forward pass over the grid points':34} {t_fwd:8.3f} {1.0:6.2f}")
    print(f"{'decision_surface (L + CE + points)':34} {t_surf:8.3f} {t_surf / t_fwd:6.2f}")
    print(f"grid values agree with the forward logits: {same}")


if __name__ == "__main__":
    main()

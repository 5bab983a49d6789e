"""
Tightness of L-inf margins against the exact answer of a mixed-integer program.

A tiny ReLU MLP (64-16-16-10) is trained on 8x8 digits. For each sample, the exact minimal L-inf distance to the
boundary of its predicted region is

    min_j  min_{x'} ||x' - x||_inf   subject to   z_j(x') >= z_pred(x'),

solved per class j with ``scipy.optimize.milp`` (HiGHS, :func:`art_geometry.bounds.milp.exact_distance`) on the
standard big-M encoding of each ReLU, ``a = max(z, 0)``:
``a >= z, a >= 0, a <= z - l (1 - d), a <= u d, d in {0, 1}``, with pre-activation bounds ``[l, u]`` from interval
arithmetic over the box ``|x' - x|_inf <= T``. ``T`` is 1.5 x the largest L-inf distance of the verified adversarial
points found by the attacks (an upper bound on the exact distance, so the program is exact within it). No [0, 1]
box: the attacks run box-free too (``box=False`` for ours, foolbox bounds widened to [-10, 11]).

Compared: ``deepfool_margins(norm=inf, refine=True)`` (ours), the same with the boundary stage
(``boundary_steps``, default 20 here) and foolbox's ``LinfDeepFoolAttack`` (candidates=10, overshoot=0.02, steps=50).
Any margin of ours below the exact distance is a bug and is printed.

Run: ``.venv/bin/python benchmarks/bench_tightness_milp.py [--samples 40] [--boundary-steps 20]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from art_geometry.bounds.milp import exact_distance
from art_geometry.datasets import MLP, load_digits, make_classifier, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--boundary-steps", type=int, default=20)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import foolbox as fb

    from art_geometry import margins as am

    data = load_digits()
    torch.manual_seed(0)
    model = MLP((1, 8, 8), hidden=(16, 16), nb_classes=10)
    clf = train_classifier(make_classifier(model, (1, 8, 8), 10), data.x_train, data.y_train, nb_epochs=40, seed=0)
    model.eval()
    x = data.x_test[: args.samples]
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    acc = float((model(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test).mean())

    t0 = time.perf_counter()
    ours = am.deepfool_margins(clf, x, norm=np.inf, refine=True, box=False, return_perturbations=True)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    staged = am.deepfool_margins(clf, x, norm=np.inf, refine=True, box=False, boundary_steps=args.boundary_steps,
                                 return_perturbations=True)
    t_staged = time.perf_counter() - t0

    fmodel = fb.PyTorchModel(model, bounds=(-10.0, 11.0))
    attack = fb.attacks.LinfDeepFoolAttack(steps=50, candidates=10, overshoot=0.02)
    t0 = time.perf_counter()
    raw, _, fb_success = attack(fmodel, torch.from_numpy(x), torch.from_numpy(pred), epsilons=None)
    t_fb = time.perf_counter() - t0
    fb_success = fb_success.numpy()
    fb_dist = (raw.numpy() - x).reshape(len(x), -1).__abs__().max(1)

    # verify adversariality in float64 for the bound T
    m64 = MLP((1, 8, 8), hidden=(16, 16), nb_classes=10).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    m64.eval()

    def adversarial_in_float64(result) -> np.ndarray:
        points = torch.from_numpy(x.astype(np.float64) + result.perturbations.astype(np.float64))
        with torch.no_grad():
            return (m64(points).argmax(1).numpy() != pred) & result.success

    ours_ok, staged_ok = adversarial_in_float64(ours), adversarial_in_float64(staged)
    with torch.no_grad():
        fb_ok = (m64(torch.from_numpy(raw.numpy().astype(np.float64))).argmax(1).numpy() != pred) & fb_success
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in m64.modules() if isinstance(m, torch.nn.Linear)]

    exact = np.full(len(x), np.nan)
    t0 = time.perf_counter()
    for i in range(len(x)):
        found = [d for d, ok in ((ours.margins[i], ours_ok[i]), (staged.margins[i], staged_ok[i]),
                                 (fb_dist[i], fb_ok[i])) if ok]
        if not found:
            continue
        value, status = exact_distance(layers, x[i].reshape(-1).astype(np.float64), int(pred[i]), 1.5 * max(found))
        exact[i] = value if status == "exact" else np.nan
    t_milp = time.perf_counter() - t0

    valid = np.isfinite(exact) & ours.success & staged.success & fb_success
    r_ours = ours.margins[valid] / exact[valid]
    r_staged = staged.margins[valid] / exact[valid]
    r_fb = fb_dist[valid] / exact[valid]
    below = np.where(valid & (np.minimum(ours.margins, staged.margins) < exact * (1 - 1e-6)))[0]
    print(f"model: MLP 64-16-16-10 on digits, test accuracy {acc:.3f}; {len(x)} test samples, {valid.sum()} solved")
    print(f"{'method':<28}{'median ratio':>14}{'p95 ratio':>12}{'max ratio':>12}{'time (s)':>10}")
    print(f"{'exact (MILP, HiGHS)':<28}{1.0:>14.4f}{1.0:>12.4f}{1.0:>12.4f}{t_milp:>10.2f}")
    print(f"{'ours deepfool_margins':<28}{np.median(r_ours):>14.4f}{np.percentile(r_ours, 95):>12.4f}"
          f"{r_ours.max():>12.4f}{t_ours:>10.2f}")
    label = f"ours boundary_steps={args.boundary_steps}"
    print(f"{label:<28}{np.median(r_staged):>14.4f}{np.percentile(r_staged, 95):>12.4f}{r_staged.max():>12.4f}"
          f"{t_staged:>10.2f}")
    print(f"{'foolbox LinfDeepFool':<28}{np.median(r_fb):>14.4f}{np.percentile(r_fb, 95):>12.4f}"
          f"{r_fb.max():>12.4f}{t_fb:>10.2f}")
    print(f"ours success {ours.success.mean():.3f} (adversarial in float64: {ours_ok.mean():.3f}), with the stage "
          f"{staged.success.mean():.3f} ({staged_ok.mean():.3f}), foolbox success {fb_success.mean():.3f}")
    print(f"samples where ours < exact (a bug if any): {below.tolist()}")
    for i in below:
        print(f"  sample {i}: ours {ours.margins[i]:.6g} with the stage {staged.margins[i]:.6g} exact {exact[i]:.6g}")


if __name__ == "__main__":
    main()

"""The loss surface in parameter space (Li et al. 2018, filter-normalised directions), the contrast Yu et al. draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from art_geometry.core.batching import batches
from art_geometry.core.prepare import prepare
from art_geometry.core.results import ResultMixin
from art_geometry.core.rng import generator, resolve_seed
from art_geometry.core.validation import check_bool, check_positive_int, check_seed
from art_geometry.surface.grid import _check_grid, _grid


@dataclass(frozen=True)
class ParameterSurfaceResult(ResultMixin):
    """
    The mean cross-entropy of a data batch on a 2-D plane of parameter space, ``theta + a * delta + b * eta``
    (Li et al. 2018, Sec. 4; the comparison of Yu et al. 2019, Fig. 1a and 2).

    :param coords: ``(R,)`` grid coordinates.
    :param loss: ``(R, R)`` mean cross-entropy; ``loss[i, j]`` at ``a = coords[j]``, ``b = coords[i]``.
    :param accuracy: ``(R, R)`` accuracy on the batch at each grid point.
    :param span: Half-width of the grid.
    :param seed: Seed of the directions (the one drawn, for ``seed=None``).
    :param n_samples: Size of the data batch.
    :param params: The parameters used (``span``, ``resolution``, ``seed``, ``batch_size``).
    """

    coords: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    span: float
    seed: int
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """:return: Loss at the centre, its range over the plane, the centre accuracy, ``n_samples``, ``params``."""
        c = len(self.coords) // 2
        return {
            "n_samples": self.n_samples,
            "resolution": int(len(self.coords)),
            "span": self.span,
            "centre_loss": float(self.loss[c, c]),
            "min_loss": float(self.loss.min()),
            "max_loss": float(self.loss.max()),
            "centre_accuracy": float(self.accuracy[c, c]),
            "params": dict(self.params),
        }


def _filter_normalised(params: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """
    One random direction with filter normalisation (Li et al. 2018, Sec. 4): a Gaussian ``d`` shaped like each
    weight, every filter ``d_i`` (slice along the output dimension) rescaled to ``||theta_i|| / ||d_i|| * d_i``;
    zero for parameters of dimension <= 1 (biases, batch-norm scales and shifts), as in that paper.
    """
    out = {}
    for name, p in params.items():
        if p.dim() <= 1:
            out[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype)
        dims = tuple(range(1, p.dim()))
        d_norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
        p_norm = torch.linalg.vector_norm(p, dim=dims, keepdim=True)
        out[name] = d * p_norm / torch.where(d_norm > 0, d_norm, torch.ones_like(d_norm))
    return out


def parameter_loss_surface(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    span: float = 1.0,
    resolution: int = 21,
    seed: int = 0,
    batch_size: int = 256,
    verbose: bool = False,
) -> ParameterSurfaceResult:
    """
    The loss surface in parameter space with filter-normalised random directions (Li et al. 2018, "Visualizing the
    Loss Landscape of Neural Nets", Sec. 4): ``loss(theta + a * delta + b * eta)`` averaged over ``(x, y)``.

    The perturbed weights are passed to ``torch.func.functional_call``: the user's parameters are never written,
    so they stay bit-identical even when the model raises. Buffers (batch-norm statistics) are left as they are and
    the model runs in eval mode; ``delta`` and ``eta`` are zero on biases and other 1-D parameters.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels (indices or one-hot), required.
    :param span: Half-width of the grid (in units of the filter-normalised direction), ``> 0``.
    :param resolution: Grid points per axis, ``>= 2``.
    :param seed: Seed of the two directions: a non-negative int, or ``None`` for fresh entropy (the seed drawn is
                 recorded in ``result.seed`` and ``result.params``).
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar over the grid.
    :return: A :class:`ParameterSurfaceResult`.
    :raises ValueError: When ``y`` is missing.
    :raises TypeError: For a TorchScript module (``functional_call`` cannot swap its weights).
    """
    span, resolution = _check_grid(span, resolution)
    seed = resolve_seed(check_seed(seed))
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    prep = prepare(classifier, x, y, require_labels=True)
    view, n = prep.view, prep.n
    if isinstance(view.module, torch.jit.ScriptModule):
        raise TypeError(
            "the model is a TorchScript module, whose weights torch.func.functional_call cannot swap for the "
            "perturbed ones of the parameter surface: pass the Python nn.Module"
        )
    coords = _grid(span, resolution)
    loss = torch.empty(resolution, resolution, dtype=torch.float64)
    accuracy = torch.empty_like(loss)
    with view.evaluating():
        theta = {k: v.detach() for k, v in view.module.named_parameters()}
        gen = generator(seed)
        delta, eta = _filter_normalised(theta, gen), _filter_normalised(theta, gen)
        buffers = dict(view.module.named_buffers())
        data = list(batches(view, prep.x, batch_size, labels=prep.labels))
        grid = [(i, j) for i in range(resolution) for j in range(resolution)]
        with torch.no_grad():
            for i, j in tqdm(grid, disable=not verbose, leave=False, desc="parameter surface"):
                a, b = float(coords[j]), float(coords[i])
                params = {k: v + a * delta[k] + b * eta[k] for k, v in theta.items()}
                total, hits = 0.0, 0
                for _, xb, lb in data:
                    inp = xb if view.preprocess is None else view.preprocess(xb)
                    logits = torch.func.functional_call(view.module, {**params, **buffers}, (inp,))
                    logits = logits.reshape(len(xb), -1)
                    total += float(F.cross_entropy(logits, lb, reduction="sum"))
                    hits += int((logits.argmax(dim=1) == lb).sum())
                loss[i, j] = total / n
                accuracy[i, j] = hits / n
    return ParameterSurfaceResult(
        coords=coords.numpy(),
        loss=loss.numpy(),
        accuracy=accuracy.numpy(),
        span=span,
        seed=seed,
        n_samples=n,
        params={"span": span, "resolution": resolution, "seed": seed, "batch_size": batch_size},
    )

"""
Decision surfaces in input space and the loss surface in parameter space.

From "Interpreting Adversarial Robustness: A View from Decision Surface in Input Space" (Yu, Liu, Wang, Chen; ICLR
2019 submission, arXiv:1810.00144). The decision function of a sample with label ``t`` on the logits ``Z`` is

    L(x) = Z_t(x) - max_{i != t} Z_i(x)                                                       (paper, Sec. 4)

positive where the classifier predicts ``t`` and zero on the decision boundary. The paper draws ``L`` on 2-D planes
``x + a * alpha + b * beta`` spanned by two unit directions -- random, or an adversarial direction ``beta`` (the sign
of the gradient of an attack objective) with a random ``alpha`` orthogonal to it -- and contrasts it with the loss
surface in parameter space (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"), which it finds says
little about adversarial robustness.

Every grid is evaluated in large batched passes: all ``R * R`` points of all samples are streamed through the model
in chunks of ``batch_size``, with the decision function and the cross-entropy computed from the same logits.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from art_geometry._batching import batches, predict_logits
from art_geometry._decision import decision_labels, decision_values
from art_geometry._gradients import input_gradients
from art_geometry._model import ModelView
from art_geometry._prepare import Prepared, prepare
from art_geometry._results import ResultMixin, describe
from art_geometry._rng import generator, resolve_seed
from art_geometry._sweep import Chunk, SweepOptions, stack, sweep
from art_geometry._validation import check_bool, check_choice, check_int, check_number, check_positive_int, check_seed

__all__ = [
    "SurfaceResult",
    "ParameterSurfaceResult",
    "decision_function",
    "decision_surface",
    "parameter_loss_surface",
]

_DIRECTIONS = ("random", "adversarial")


def decision_function(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    batch_size: int = 256,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
) -> np.ndarray:
    """
    The decision function ``L(x) = Z_t(x) - max_{i != t} Z_i(x)`` of Yu et al. (2019, Sec. 4) per sample.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t`` (indices or one-hot); ``None`` uses the model's prediction (then ``L >= 0``).
    :param batch_size: Samples per forward pass.
    :param verbose: Show a progress bar.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :return: ``(N,)`` float64 values; negative where the model does not predict ``t``.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    options = SweepOptions.build(checkpoint, chunk_size)
    prep = prepare(classifier, x, y, stream=True, batch_size=batch_size)
    view = prep.view

    def compute(chunk: Prepared, index: int) -> Chunk:
        with view.evaluating():
            logits = predict_logits(view, chunk.x, batch_size)
            pred = logits.argmax(dim=1)
            labels = pred if chunk.labels is None else torch.as_tensor(chunk.labels, device=view.device)
            values, _ = decision_values(logits, labels)
        return {"values": values.double().cpu().numpy()}

    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key="decision_function",
                   settings={"batch_size": batch_size}, verbose=verbose, desc="decision")
    return stack(chunks, "values")


@dataclass(frozen=True)
class SurfaceResult(ResultMixin):
    """
    Decision and loss surfaces of samples on 2-D planes of input space (Yu et al. 2019, Fig. 3-6).

    Grid point ``[n, i, j]`` is the input ``x_n + coords[j] * alpha_n + coords[i] * beta_n``: columns run along
    ``alpha`` (horizontal axis of a plot), rows along ``beta`` (vertical axis), so ``contour(coords, coords,
    decision[n])`` draws it the right way round. With an odd ``resolution`` the middle point ``[n, R // 2, R // 2]``
    is the sample itself. Grid points are not clipped to the classifier's ``clip_values``.

    :param coords: ``(R,)`` grid coordinates, ``span * linspace(-1, 1, R)``.
    :param decision: ``(N, R, R)`` decision function ``L`` on the grid.
    :param loss: ``(N, R, R)`` cross-entropy ``-log softmax(Z)_t`` on the grid.
    :param alpha: ``(N, *input_shape)`` unit-l2 first direction (random; orthogonal to ``beta``).
    :param beta: ``(N, *input_shape)`` unit-l2 second direction (random, or adversarial).
    :param boundary: ``(N, R, R)`` True at grid points with a 4-neighbour of the other sign of ``L`` (``L > 0`` vs
                     ``L <= 0``): the points next to the ``L = 0`` decision boundary.
    :param labels: ``(N,)`` the labels ``t`` used.
    :param directions: ``"random"`` or ``"adversarial"``.
    :param adversarial_loss: Objective of the adversarial direction (``"ce"``, ``"least_likely"``, ``"cw"``).
    :param span: Half-width of the grid, in l2 units along each direction.
    :param seed: Seed of the random directions (the one drawn, for ``seed=None``).
    :param params: The parameters used (``directions``, ``adversarial_loss``, ``span``, ``resolution``, ``seed``,
                   ``batch_size``).
    """

    coords: np.ndarray
    decision: np.ndarray
    loss: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    boundary: np.ndarray
    labels: np.ndarray
    directions: str
    adversarial_loss: str
    span: float
    seed: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def correct_fraction(self) -> np.ndarray:
        """``(N,)`` fraction of grid points where ``L > 0`` (the plateau of label ``t`` on the plane)."""
        return (self.decision > 0).mean(axis=(1, 2))

    def summary(self) -> dict[str, Any]:
        """
        :return: Directions, grid, decision value at the centre, the fraction of the plane labelled ``t``,
                 ``n_samples`` and ``params``.
        """
        centre = len(self.coords) // 2
        return {
            "directions": self.directions,
            "adversarial_loss": self.adversarial_loss if self.directions == "adversarial" else None,
            "n_samples": int(len(self.labels)),
            "resolution": int(len(self.coords)),
            "span": self.span,
            "centre_decision": describe(self.decision[:, centre, centre]),
            "correct_fraction": describe(self.correct_fraction),
            "boundary_fraction": describe(self.boundary.mean(axis=(1, 2))),
            "params": dict(self.params),
        }


def _check_grid(span: Any, resolution: Any) -> tuple[float, int]:
    """:return: ``span`` (the grid's half-width, ``> 0``) and ``resolution`` (points per axis, ``>= 2``), checked."""
    return check_number(span, "span", minimum=0.0, strict=True), check_int(resolution, "resolution", minimum=2)


def _grid(span: float, resolution: int) -> torch.Tensor:
    """:return: ``span * (2 i / (R - 1) - 1)`` in float64; exactly 0 in the middle for odd ``R``."""
    half = (resolution - 1) / 2
    return span * (torch.arange(resolution, dtype=torch.float64) - half) / half


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=1, keepdim=True)


def _random_directions(n: int, d: int, count: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """:return: ``(count, n, d)`` directions, orthonormal per sample (Gram-Schmidt of seeded Gaussians)."""
    raw = torch.randn(count, n, d, generator=generator(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(raw.permute(1, 2, 0))
    return q.permute(2, 0, 1).to(dtype)


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The untargeted cross-entropy ``-log softmax(Z)_t`` per sample."""
    return F.cross_entropy(logits, labels, reduction="none")


def _least_likely(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Minus the cross-entropy of the least-likely class per sample (its ascent moves towards that class)."""
    return -F.cross_entropy(logits, logits.argmin(dim=1), reduction="none")


def _cw(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The C&W margin ``max_{i != t} Z_i - Z_t = -L`` per sample."""
    return -decision_values(logits, labels)[0]


#: The objectives whose ascent direction is the adversarial ``beta`` (Yu et al. 2019, Sec. 4.2).
_ATTACK_OBJECTIVES = {"ce": _ce, "least_likely": _least_likely, "cw": _cw}


def _adversarial_directions(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    labels: np.ndarray,
    kind: str,
    seed: int,
    batch_size: int,
    verbose: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    :return: ``alpha, beta`` ``(N, D)``: ``beta = sign(grad_x objective) / ||sign(.)||_2`` and ``alpha`` a seeded
             random unit vector orthogonal to ``beta``. A sample whose gradient is exactly zero gets a random
             ``beta`` (with a warning).
    """
    parts = input_gradients(
        view, x, batch_size, _ATTACK_OBJECTIVES[kind], labels=labels, verbose=verbose, desc="adversarial directions"
    )
    sign = torch.cat([part.grad.flatten(1).sign() for part in parts])
    rand = _random_directions(len(x), sign.shape[1], 2, seed, view.dtype).to(view.device)
    flat = sign.norm(dim=1) == 0
    if bool(flat.any()):
        warnings.warn(
            f"{int(flat.sum())} sample(s) have an exactly zero gradient of the {kind!r} objective; "
            "their adversarial direction is replaced by a random one",
            UserWarning,
            stacklevel=3,
        )
    beta = _unit(torch.where(flat[:, None], rand[1], sign))
    alpha = rand[0] - (rand[0] * beta).sum(dim=1, keepdim=True) * beta
    return _unit(alpha), beta


def _evaluate_grid(
    view: ModelView,
    x_flat: torch.Tensor,
    sample_shape: tuple[int, ...],
    labels: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    coords: torch.Tensor,
    batch_size: int,
    verbose: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: ``L`` and the cross-entropy ``(N, R, R)`` over all grid points, in chunks of ``batch_size``."""
    n, r = len(x_flat), len(coords)
    c = coords.to(device=view.device, dtype=view.dtype)
    per_sample = r * r
    total = n * per_sample
    decision = torch.empty(total, device=view.device, dtype=view.dtype)
    loss = torch.empty_like(decision)
    with torch.no_grad():
        for start in tqdm(range(0, total, batch_size), disable=not verbose, leave=False, desc="surface"):
            idx = torch.arange(start, min(start + batch_size, total), device=view.device)
            s, g = idx // per_sample, idx % per_sample
            a, b = c[g % r], c[g // r]
            points = torch.addcmul(torch.addcmul(x_flat[s], a[:, None], alpha[s]), b[:, None], beta[s])
            logits = view(points.view(-1, *sample_shape))
            lab = labels[s]
            decision[idx], _ = decision_values(logits, lab)
            loss[idx] = F.cross_entropy(logits, lab, reduction="none")
    return decision.view(n, r, r), loss.view(n, r, r)


def _boundary_mask(decision: torch.Tensor) -> torch.Tensor:
    pos = decision > 0
    mask = torch.zeros_like(pos)
    row = pos[:, 1:, :] != pos[:, :-1, :]
    col = pos[:, :, 1:] != pos[:, :, :-1]
    mask[:, 1:, :] |= row
    mask[:, :-1, :] |= row
    mask[:, :, 1:] |= col
    mask[:, :, :-1] |= col
    return mask


def decision_surface(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    directions: str = "random",
    adversarial_loss: str = "ce",
    span: float = 1.0,
    resolution: int = 51,
    seed: int = 0,
    batch_size: int = 4096,
    verbose: bool = False,
) -> SurfaceResult:
    """
    The decision function ``L`` and the cross-entropy on a 2-D plane around each sample (Yu et al. 2019, Sec. 4):
    ``L(x + a * alpha + b * beta)`` for ``a, b`` on a ``resolution x resolution`` grid over ``[-span, span]^2``.

    ``directions="random"``: ``alpha, beta`` orthonormal Gaussian directions (seeded). ``"adversarial"``:
    ``beta = sign(grad_x J) / ||sign(grad_x J)||_2`` for the objective ``J`` chosen by ``adversarial_loss`` --
    ``"ce"`` (untargeted cross-entropy of ``t``), ``"least_likely"`` (minus the cross-entropy of the least-likely
    class) or ``"cw"`` (the C&W margin ``max_{i != t} Z_i - Z_t``) -- and ``alpha`` a random unit vector
    orthogonal to ``beta``. The grid contains the sample itself when ``resolution`` is odd.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)`` (one sample: ``x[:1]``).
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param directions: ``"random"`` or ``"adversarial"``.
    :param adversarial_loss: ``"ce"``, ``"least_likely"`` or ``"cw"`` (used with ``directions="adversarial"``).
    :param span: Half-width of the grid along each unit direction (l2 distance), ``> 0``.
    :param resolution: Grid points per axis, ``>= 2`` (odd to contain the sample).
    :param seed: Seed of the random directions: a non-negative int, or ``None`` for fresh entropy (the seed drawn
                 is recorded in ``result.seed`` and ``result.params``).
    :param batch_size: Grid points per forward pass (and samples per pass of the predictions and gradients).
    :param verbose: Show progress bars.
    :return: A :class:`SurfaceResult`.
    """
    directions = check_choice(directions, "directions", _DIRECTIONS)
    adversarial_loss = check_choice(adversarial_loss, "adversarial_loss", tuple(_ATTACK_OBJECTIVES))
    span, resolution = _check_grid(span, resolution)
    seed = resolve_seed(check_seed(seed))
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    prep = prepare(classifier, x, y)
    view, x = prep.view, prep.x
    coords = _grid(span, resolution)
    with view.evaluating():
        labels = decision_labels(prep, batch_size, verbose=verbose)
        x_flat = view.to_tensor(x).flatten(1)
        if directions == "random":
            alpha, beta = _random_directions(len(x), x_flat.shape[1], 2, seed, view.dtype).to(view.device)
        else:
            alpha, beta = _adversarial_directions(view, x, labels, adversarial_loss, seed, batch_size, verbose)
        decision, loss = _evaluate_grid(
            view, x_flat, tuple(x.shape[1:]), torch.as_tensor(labels, device=view.device), alpha, beta, coords,
            batch_size, verbose,
        )
    shape = (len(x), *x.shape[1:])
    return SurfaceResult(
        coords=coords.numpy(),
        decision=decision.double().cpu().numpy(),
        loss=loss.double().cpu().numpy(),
        alpha=alpha.reshape(shape).cpu().numpy(),
        beta=beta.reshape(shape).cpu().numpy(),
        boundary=_boundary_mask(decision).cpu().numpy(),
        labels=labels,
        directions=directions,
        adversarial_loss=adversarial_loss,
        span=span,
        seed=seed,
        params={
            "directions": directions,
            "adversarial_loss": adversarial_loss,
            "span": span,
            "resolution": resolution,
            "seed": seed,
            "batch_size": batch_size,
        },
    )


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
    """
    span, resolution = _check_grid(span, resolution)
    seed = resolve_seed(check_seed(seed))
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    prep = prepare(classifier, x, y, require_labels=True)
    view, n = prep.view, prep.n
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

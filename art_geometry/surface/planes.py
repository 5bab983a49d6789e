"""The decision function on 2-D planes of input space, spanned by random or adversarial directions (Yu et al., Sec. 4),
evaluated in large batched passes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from art_geometry.core.decision import decision_labels, decision_values
from art_geometry.core.gradients import input_gradients
from art_geometry.core.model import ModelView
from art_geometry.core.prepare import prepare
from art_geometry.core.results import ResultMixin, describe
from art_geometry.core.rng import generator, resolve_seed
from art_geometry.core.validation import check_bool, check_choice, check_positive_int, check_seed
from art_geometry.surface.grid import _check_grid, _grid

_DIRECTIONS = ("random", "adversarial")


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

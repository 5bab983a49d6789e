"""
Linear bound propagation through the model's own layers (CROWN and alpha-CROWN), never unfolded: the engine of
:mod:`art_geometry.bounds.crown`.

The chain of :func:`~art_geometry.bounds._network.read_chain` is split into stages: a run of affine layers (any of
the chain's: convolutions, eval-mode batch norms, average pools, reshapes, arithmetic with constants, the
classifier's mean/std preprocessing) and the nonlinear layer after it (ReLU, leaky ReLU, tanh, sigmoid, or a round
of a max-pool's tournament; none after the last run, which gives the logits).

A linear function ``lambda^T y + beta`` of a stage's output is moved onto its input through the affine run by the
run's vector-Jacobian product (``torch.func.vjp`` at zero, vectorised over the rows with ``torch.func.vmap``: for a
convolution it is the transposed convolution, for a batch norm its per-channel scale), plus ``lambda^T A(0)``; and
through a nonlinear layer ``y = f(z)`` with pre-activation bounds ``l <= z <= u`` by its linear relaxation
``a_l z + b_l <= f(z) <= a_u z + b_u``, the lower line where the coefficient is ``>= 0`` and the upper one where it is
negative (CROWN, Zhang, Weng, Chen, Hsieh and Daniel, NeurIPS 2018, Theorem 3.2):

* ReLU: stable neurons exactly; an unstable one (``l < 0 < u``) between the upper chord ``u (z - l) / (u - l)``
  and ``alpha z`` with ``alpha`` 1 if ``u >= -l`` else 0 (CROWN-Ada), or optimised in [0, 1] (alpha-CROWN: Xu,
  Zhang, Wang, Wang, Jana, Lin and Hsieh, "Fast and Complete", ICLR 2021, Sec. 3.1);
* leaky ReLU ``s z + (1 - s) relu(z)``: the same lines for its ReLU part;
* tanh and sigmoid (S-shaped, convex below 0, concave above): on a convex interval the chord above and the tangent
  at the midpoint below, on a concave one the mirror image, and across 0 two parallel lines of slope
  ``min(f'(l), f'(u))`` through ``(l, f(l))`` and ``(u, f(u))``, valid because ``f(z) - k z`` is increasing on
  ``[l, u]`` for that slope (CROWN, Sec. 3.2 uses tangent lines found by binary search; these are simpler and
  sound);
* max-pool: rounds of ``max(a, b) = b + relu(a - b)`` over its window, each difference ``a - b`` bounded by its own
  backward pass and relaxed as a ReLU (the relaxation of DeepPoly, Singh et al., POPL 2019, Sec. 4.4, ``z_k`` of
  the largest lower bound below and ``max u`` above, left the bracket at half the width on the demo CNN).

At the input, over the ball ``||x' - x||_p <= r``, ``min lambda^T x' + beta = lambda^T x + beta - r ||lambda||_q``
with the dual norm ``q`` (CROWN, Corollary 3.3).

The pre-activation bounds ``l, u`` of each nonlinear layer come from the same backward pass started at that
layer (CROWN's intermediate bounds): the first layer's exactly (an affine map of the ball), each later one first by
interval arithmetic through its affine run (``A mid + A(0)`` and ``|A| rad`` with the absolute weights), then by a
backward pass for the neurons interval arithmetic leaves undecided (unstable ReLUs, every tanh / sigmoid neuron,
max-pool differences of undecided sign), per sample, and the tighter of the two kept. A run with no layers (a ReLU
followed by a max-pool) passes its input's interval on exactly. These passes start from a few non-zeros (one
neuron, a pooling pair) and stay sparse through the layers without affine maps and through a run whose matrix has
sparse rows (a convolution's receptive field, merged over the terms), so that a convolutional layer costs its
receptive field, not its width.

The relaxations chosen at radius ``R`` hold on every smaller ball, and the final lower bound is then linear in the
radius: each evaluation certifies ``min(R, min_j (lambda_j^T x + beta_j) / ||lambda_j||_q)`` at once, which the
radius search of :func:`certified_radii` uses on both sides of its bisection.

Everything is float64 on the chain's device; the user's model is only read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from art_geometry.bounds._network import Arithmetic, Chain, Layer, _Reshape, pool_windows, unfold
from art_geometry.core.norms import L2, LINF, Norm

__all__ = ["Propagation", "certified_radii"]

_DTYPE = torch.float64

#: Floats of one backward pass at most (rows x samples x layer width): larger passes run in chunks of samples, and
#: a sample's rows in parts.
_PASS_FLOATS = 1 << 24
#: Largest affine run (output x input floats) kept as a dense matrix for the rows a backward pass starts from.
_DENSE_FLOATS = 1 << 22

Linear = tuple[torch.Tensor, torch.Tensor]


def _apply(layers: tuple[Layer, ...], shape: tuple[int, ...], z: torch.Tensor) -> torch.Tensor:
    """The run of affine layers on flattened inputs ``(M, prod(shape))``, flattened outputs."""
    z = z.reshape((-1,) + shape)
    for layer in layers:
        z = layer(z)
    return z.flatten(1)


def _absolute(layer: Layer) -> "Callable[[torch.Tensor], torch.Tensor] | None":
    """
    :param layer: An affine layer.
    :return: ``r -> |A| r`` for its linear part ``A`` (absolute weights, no bias), or ``None`` (the preprocessing,
             which is only ever the first layer, whose bounds are exact).
    """
    m = layer.module
    if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        weight = m.weight.detach().to(_DTYPE).abs()
        if isinstance(m, nn.Linear):
            return lambda r: F.linear(r, weight)
        conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
        return lambda r: conv(r, weight, None, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale = 1.0 / torch.sqrt(m.running_var.detach().to(_DTYPE) + m.eps)
        if m.weight is not None:
            scale = scale * m.weight.detach().to(_DTYPE).abs()
        return lambda r: r * scale.reshape((-1,) + (1,) * (r.dim() - 2))
    if isinstance(m, Arithmetic):
        if m.op in ("add", "sub"):
            factor = abs(m.alpha) if m.swapped else 1.0
            return lambda r: r * factor
        size = torch.as_tensor(m.const, dtype=_DTYPE).abs()
        size = size if m.op == "mul" else 1.0 / size
        return lambda r: r * size.to(r.device)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Identity,
                      nn.Dropout, _Reshape)):
        return layer.fn  # linear with non-negative weights and no offset
    return None


def _relu_lines(lower: torch.Tensor, upper: torch.Tensor) -> tuple[Linear, Linear, torch.Tensor]:
    """
    :return: ``((a_l, b_l), (a_u, b_u), unstable)``: CROWN-Ada's lines of ``relu`` on ``[l, u]`` and the mask of the
             unstable neurons.
    """
    unstable = (lower < 0) & (upper > 0)
    active = (lower >= 0).to(_DTYPE)
    a_u = torch.where(unstable, upper / (upper - lower).clamp(min=1e-300), active)
    b_u = torch.where(unstable, -a_u * lower, torch.zeros_like(lower))
    a_l = torch.where(unstable, (upper >= -lower).to(_DTYPE), active)
    return (a_l, torch.zeros_like(lower)), (a_u, b_u), unstable


def _s_curve_lines(fn: Callable[[torch.Tensor], torch.Tensor], grad: Callable[[torch.Tensor], torch.Tensor],
                   lower: torch.Tensor, upper: torch.Tensor) -> tuple[Linear, Linear]:
    """
    Lines of an S-shaped activation (convex below 0, concave above: tanh, sigmoid) on ``[l, u]``: chord and tangent
    at the midpoint on a convex or concave interval, two parallel lines of slope ``min(f'(l), f'(u))`` across 0 (or
    on an interval too narrow for a chord).
    """
    fl, fu = fn(lower), fn(upper)
    width = upper - lower
    tight = width > 1e-9
    chord = (fu - fl) / width.clamp(min=1e-300)
    mid = (lower + upper) / 2
    tangent, f_mid = grad(mid), fn(mid)
    k = torch.minimum(grad(lower), grad(upper))
    convex, concave = tight & (upper <= 0), tight & (lower >= 0)
    a_l = torch.where(convex, tangent, torch.where(concave, chord, k))
    b_l = torch.where(convex, f_mid - tangent * mid, fl - torch.where(concave, chord, k) * lower)
    a_u = torch.where(concave, tangent, torch.where(convex, chord, k))
    b_u = torch.where(concave, f_mid - tangent * mid, torch.where(convex, fl - chord * lower, fu - k * upper))
    return (a_l, b_l), (a_u, b_u)


def _tanh_grad(z: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(z) ** 2


def _sigmoid_grad(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


@dataclass
class _Relaxation:
    """
    The linear relaxation of one nonlinear layer over the balls, per sample: ``a_l q + b_l <= y - s q_0 <= a_u q + b_u``
    in the layer's bounded quantities ``q`` (its pre-activations; for a max of two inputs ``y = b + relu(a - b)``, the
    difference ``q = a - b``), ``(B, n)`` each.

    :param lower_line: ``(a_l, b_l)``.
    :param upper_line: ``(a_u, b_u)``.
    :param unstable: ``(B, n)`` where alpha-CROWN may move the lower slope (unstable ReLU parts), or ``None``.
    :param leak: ``s`` of a leaky ReLU ``s z + (1 - s) relu(z)``: the optimised lower slope is ``s + (1 - s) alpha``.
    :param pairs: For a max of two: ``(first, second)`` ``(n,)`` input indices (``second = -1``: the first passes).
    :param n_in: Input width (for a max of two).
    """

    lower_line: Linear
    upper_line: Linear
    unstable: "torch.Tensor | None" = None
    leak: float = 0.0
    pairs: "tuple[torch.Tensor, torch.Tensor] | None" = None
    n_in: int = 0

    def start(self) -> torch.Tensor:
        """:return: ``(B, n)`` the lower slopes of CROWN-Ada as alpha-CROWN's starting point, in [0, 1]."""
        return ((self.lower_line[0] - self.leak) / (1.0 - self.leak)).clamp(0.0, 1.0)

    def back(self, lam: torch.Tensor, bias: torch.Tensor, alpha: "torch.Tensor | None" = None) -> Linear:
        """
        :param lam: ``(S, B, n_out)`` coefficients of a lower bound on the layer's output.
        :param bias: ``(S, B)`` its constant.
        :param alpha: ``(S, B, n)`` lower slopes of the unstable ReLU parts (alpha-CROWN), or ``None``.
        :return: The coefficients on the layer's input and the constant.
        """
        (a_l, b_l), (a_u, b_u) = self.lower_line, self.upper_line
        if alpha is not None:
            a_l = torch.where(self.unstable, self.leak + (1.0 - self.leak) * alpha, a_l)
        negative = lam < 0
        slope = lam * torch.where(negative, a_u, a_l)
        bias = bias + torch.linalg.vecdot(lam, torch.where(negative, b_u, b_l))
        if self.pairs is None:
            return slope, bias
        first, second = self.pairs
        out = torch.zeros(lam.shape[:-1] + (self.n_in,), dtype=lam.dtype, device=lam.device)
        out.index_add_(-1, first, slope)
        keep = second >= 0
        out.index_add_(-1, second[keep], (lam - slope)[..., keep])
        return out, bias

    def sparse_back(self, idx: torch.Tensor, coef: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """
        :meth:`back` for coefficients with few non-zeros per row: ``lambda = sum_t coef_t e_{idx_t}``.

        :param idx: ``(T, S, B)`` output indices.
        :param coef: ``(T, S, B)`` their coefficients (an index may repeat: each term is bounded on its own, which is
                     sound).
        :param bias: ``(S, B)`` the constant.
        :return: ``(idx, coef, bias)`` on the layer's input.
        """
        sample = torch.arange(idx.shape[-1], device=idx.device).expand_as(idx)
        (a_l, b_l), (a_u, b_u) = self.lower_line, self.upper_line
        negative = coef < 0
        bias = bias + (coef * torch.where(negative, b_u[sample, idx], b_l[sample, idx])).sum(0)
        moved = coef * torch.where(negative, a_u[sample, idx], a_l[sample, idx])
        if self.pairs is None:
            return idx, moved, bias
        first, second = self.pairs
        rest = torch.where(second[idx] >= 0, coef - moved, torch.zeros_like(coef))
        return torch.cat([first[idx], second.clamp(min=0)[idx]]), torch.cat([moved, rest]), bias

    def select(self, rows: torch.Tensor) -> "_Relaxation":
        """:return: The relaxation of the samples ``rows``."""
        return _Relaxation(
            (self.lower_line[0][rows], self.lower_line[1][rows]), (self.upper_line[0][rows], self.upper_line[1][rows]),
            None if self.unstable is None else self.unstable[rows], self.leak, self.pairs, self.n_in,
        )


class _Elementwise:
    """
    An element-wise activation (ReLU, leaky ReLU, tanh, sigmoid): its bounded quantities are its pre-activations.

    :param layer: The chain's layer.
    """

    def __init__(self, layer: Layer):
        self.layer = layer
        self.n_out = layer.out_dim
        module = layer.module
        self.leak = 0.0 if layer.kind == "relu" else float(getattr(module, "negative_slope", math.nan))
        self.relu_like = layer.kind == "relu" or isinstance(module, nn.LeakyReLU)

    def quantities(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lower, upper

    def exact_from_input(self) -> bool:
        """Whether the interval of the quantities is exact given the input's (an empty affine run before)."""
        return True

    def terms(self, index: torch.Tensor) -> Linear:
        """
        :param index: ``(S, B)`` quantities.
        :return: ``(idx, coef)``, ``(T, S, B)`` each: quantity ``index`` is ``sum_t coef_t z[idx_t]`` of the layer's
                 input ``z``.
        """
        return index[None], torch.ones((1,) + index.shape, dtype=_DTYPE, device=index.device)

    def undecided(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        if self.relu_like:
            return (lower < 0) & (upper > 0)
        return upper > lower

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: The output's interval over the input box (the activations are increasing)."""
        return self.layer(lower), self.layer(upper)

    def relaxation(self, lower: torch.Tensor, upper: torch.Tensor) -> _Relaxation:
        if self.relu_like:
            lower_line, upper_line, unstable = _relu_lines(lower, upper)
            part = 1.0 - self.leak
            (a_l, b_l), (a_u, b_u) = lower_line, upper_line
            if part < 0:  # a leaky ReLU of slope > 1 is concave: its ReLU part enters with a negative sign
                (a_l, b_l), (a_u, b_u), unstable = (a_u, b_u), (a_l, b_l), torch.zeros_like(unstable)
            return _Relaxation((self.leak + part * a_l, part * b_l), (self.leak + part * a_u, part * b_u), unstable,
                               self.leak)
        if isinstance(self.layer.module, nn.Tanh):
            return _Relaxation(*_s_curve_lines(torch.tanh, _tanh_grad, lower, upper))
        return _Relaxation(*_s_curve_lines(torch.sigmoid, _sigmoid_grad, lower, upper))


class _PairMax:
    """
    One round of a max-pool's tournament: output ``o`` is ``max(z_a, z_b) = z_b + relu(z_a - z_b)`` of its pair
    ``(a, b)``, or ``z_a`` alone; the bounded quantities are the differences ``z_a - z_b``, bounded by their own
    backward passes (as the ReLUs they are).

    :param first: ``(n_out,)`` input indices ``a``.
    :param second: ``(n_out,)`` input indices ``b`` (``-1``: none).
    :param n_in: Input width.
    """

    leak = 0.0
    relu_like = True

    def __init__(self, first: torch.Tensor, second: torch.Tensor, n_in: int):
        self.first, self.second, self.n_in = first, second, n_in
        self.n_out = first.numel()
        self.paired = second >= 0
        self._second = second.clamp(min=0)

    def quantities(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: Interval bounds of the differences from the input box (``[1, 1]`` for a single input)."""
        lo = torch.where(self.paired, lower[:, self.first] - upper[:, self._second], 1.0)
        hi = torch.where(self.paired, upper[:, self.first] - lower[:, self._second], 1.0)
        return lo, hi

    def exact_from_input(self) -> bool:
        return False

    def terms(self, index: torch.Tensor) -> Linear:
        ones = torch.ones((1,) + index.shape, dtype=_DTYPE, device=index.device)
        return torch.stack([self.first[index], self._second[index]]), torch.cat([ones, -ones])

    def undecided(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        return (lower < 0) & (upper > 0)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def pick(v: torch.Tensor) -> torch.Tensor:
            return torch.where(self.paired, torch.maximum(v[:, self.first], v[:, self._second]), v[:, self.first])

        return pick(lower), pick(upper)

    def relaxation(self, lower: torch.Tensor, upper: torch.Tensor) -> _Relaxation:
        lower_line, upper_line, unstable = _relu_lines(lower, upper)
        return _Relaxation(lower_line, upper_line, unstable, 0.0, (self.first, self.second), self.n_in)


def _rounds(windows: torch.Tensor, n_in: int) -> list[_PairMax]:
    """
    :param windows: ``(n_out, width)`` a max-pool's input indices per output (``-1``: padding).
    :param n_in: The pool's input width.
    :return: The rounds of pairwise maxima that compute it, the last one's outputs in the pool's order.
    """
    rounds: list[_PairMax] = []
    places = windows
    size = n_in
    while places.shape[1] > 1 or not rounds:
        if places.shape[1] % 2:
            places = torch.cat([places, torch.full_like(places[:, :1], -1)], dim=1)
        a, b = places[:, 0::2].reshape(-1), places[:, 1::2].reshape(-1)
        first = torch.where(a >= 0, a, b)  # a padded first entry: the second passes alone
        second = torch.where(a >= 0, b, -1)
        rounds.append(_PairMax(first.clamp(min=0), second, size))
        size = first.numel()
        index = torch.arange(size, device=windows.device)
        places = torch.where(first >= 0, index, -1).reshape(places.shape[0], -1)
    return rounds


@dataclass
class _Stage:
    """
    A run of affine layers and the nonlinear layer after it (for a max-pool: a round of its tournament).

    :param layers: The affine layers (possibly none).
    :param in_shape: The run's input sample shape.
    :param offset: ``(n_out,)`` the run at 0.
    :param back: ``(M, n_out) -> (M, n_in)``: ``lambda -> A^T lambda``.
    :param dense: ``(n_out, n_in)`` the run's matrix where it is small, else ``None``.
    :param op: The nonlinear layer after the run, ``None`` for the logits.
    :param sparse: ``(index, value)``, ``(n_out, k)`` each: the non-zeros of each row of ``dense`` (padded with zeros)
                   where rows have at most a quarter of their entries non-zero (a convolution's receptive field).
    """

    layers: tuple[Layer, ...]
    in_shape: tuple[int, ...]
    offset: torch.Tensor
    back: Callable[[torch.Tensor], torch.Tensor]
    dense: "torch.Tensor | None"
    op: "_Elementwise | _PairMax | None"
    sparse: "Linear | None" = None
    magnitudes: "tuple[Callable[[torch.Tensor], torch.Tensor] | None, ...]" = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.magnitudes = tuple(_absolute(layer) for layer in self.layers)  # once, not at every evaluation

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return self.offset.numel()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """:return: The run on flattened inputs."""
        return _apply(self.layers, self.in_shape, z) if self.layers else z

    def absolute(self, r: torch.Tensor) -> torch.Tensor:
        """:return: ``|A_last| ... |A_first| r >= |A| r`` for ``r >= 0`` (flattened)."""
        z = r.reshape((-1,) + self.in_shape)
        for layer, fn in zip(self.layers, self.magnitudes):
            if fn is None:
                raise ValueError(f"no interval arithmetic through {layer.name!r}")
            z = fn(z)
        return z.flatten(1)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """:return: ``(*index.shape, n_in)`` the rows ``index`` of the run's matrix."""
        if self.dense is not None:
            return self.dense[index]
        if not self.layers:
            return F.one_hot(index, self.n_in).to(_DTYPE)
        unique, inverse = torch.unique(index, return_inverse=True)
        eye = F.one_hot(unique, self.n_out).to(_DTYPE)
        chunk = max(1, _PASS_FLOATS // max(self.n_out, self.n_in))
        return torch.cat([self.back(part) for part in eye.split(chunk)])[inverse]


def _nonzeros(dense: torch.Tensor) -> "Linear | None":
    """:return: The non-zeros of each row of ``dense`` as ``(index, value)``, if rows have at most n / 4 of them."""
    nonzero = dense != 0
    k = int(nonzero.sum(1).max())
    if k > dense.shape[1] // 4:
        return None
    index = torch.sort((~nonzero).to(torch.int8), dim=1, stable=True).indices[:, :k]
    return index, dense.gather(1, index)


def _sparse_rows(stage: "_Stage") -> "Linear | None":
    """
    :return: The non-zeros of each row of a run too large to keep densely, as :func:`_nonzeros` (the rows pushed
             back in chunks, once), or ``None`` as soon as a chunk's rows are not sparse.
    """
    index, value = [], []
    chunk = max(1, _PASS_FLOATS // stage.n_in)
    for start in range(0, stage.n_out, chunk):
        rows = torch.arange(start, min(start + chunk, stage.n_out), device=stage.offset.device)
        found = _nonzeros(stage.rows(rows))
        if found is None:
            return None
        index.append(found[0])
        value.append(found[1])
    k = max(i.shape[1] for i in index)
    return (torch.cat([F.pad(i, (0, k - i.shape[1])) for i in index]),
            torch.cat([F.pad(v, (0, k - v.shape[1])) for v in value]))


def _merged(idx: torch.Tensor, coef: torch.Tensor) -> Linear:
    """
    :param idx: ``(T, S, B)`` indices of terms (an index may repeat within a row).
    :param coef: ``(T, S, B)`` their coefficients.
    :return: The same sums with each index once per row (coefficients added), padded with zero terms.
    """
    if idx.shape[0] == 1:
        return idx, coef
    order = idx.argsort(dim=0)
    idx, coef = idx.gather(0, order), coef.gather(0, order)
    first = torch.ones_like(idx, dtype=torch.bool)
    first[1:] = idx[1:] != idx[:-1]
    group = first.cumsum(0) - 1
    size = int(group.max()) + 1
    out_idx = torch.zeros((size,) + idx.shape[1:], dtype=idx.dtype, device=idx.device).scatter_(0, group, idx)
    out_coef = torch.zeros((size,) + idx.shape[1:], dtype=coef.dtype, device=coef.device)
    return out_idx, out_coef.scatter_add_(0, group, coef)


def _stages(chain: Chain) -> list[_Stage]:
    """:return: The chain as stages, each max-pool as the rounds of its tournament."""
    device = chain.device
    out: list[_Stage] = []
    for block, in_shape, after in chain.affine_runs():
        run, shape = tuple(block), tuple(in_shape)
        n_in = math.prod(shape)
        if after is None:
            ops: list = [None]
        elif after.kind == "maxpool":
            ops = _rounds(pool_windows(after.module, after.in_shape, device), after.in_dim)
        else:
            ops = [_Elementwise(after)]
        if run:
            zero = torch.zeros((1, n_in), dtype=_DTYPE, device=device)
            with torch.no_grad():
                offset = _apply(run, shape, zero)[0]
            _, vjp = torch.func.vjp(lambda z, run=run, shape=shape, offset=offset: _apply(run, shape, z) - offset, zero)
            batched = torch.func.vmap(vjp)

            def back(lam: torch.Tensor, batched: Callable = batched) -> torch.Tensor:
                return batched(lam.unsqueeze(1))[0].squeeze(1)

            dense = unfold(list(run), shape, device, limit=None)[0] if offset.numel() * n_in <= _DENSE_FLOATS else None
            stage = _Stage(run, shape, offset, back, dense, ops[0])
            stage.sparse = _nonzeros(dense) if dense is not None else _sparse_rows(stage)
            out.append(stage)
        else:
            out.append(_Stage(run, shape, torch.zeros(n_in, dtype=_DTYPE, device=device), lambda lam: lam, None,
                              ops[0]))
        for op in ops[1:]:
            width = out[-1].op.n_out
            out.append(_Stage((), (width,), torch.zeros(width, dtype=_DTYPE, device=device), lambda lam: lam, None, op))
    return out


class Propagation:
    """
    CROWN / alpha-CROWN over a chain of layers, in one norm.

    :param chain: The model read by :func:`~art_geometry.bounds._network.read_chain`.
    :param norm: L2 or L-inf: the ball of the certificates.
    """

    def __init__(self, chain: Chain, norm: Norm):
        if norm not in (L2, LINF):
            raise ValueError(f"CROWN bounds support the norms 2 and inf, got {norm}")
        self.norm, self.device = norm, chain.device
        self.dual = 1.0 if norm == LINF else 2.0
        self.stages = _stages(chain)
        self.nb_classes = self.stages[-1].n_out
        self._first_norms: "torch.Tensor | None" = None
        #: Floats of the coefficient tensors the backward passes have moved so far: the cost of the layers actually
        #: propagated, deterministic (the estimate of :func:`~art_geometry.bounds.crown.crown_cost`).
        self.work = 0

    @property
    def relu_layers(self) -> list[int]:
        """The stages whose nonlinear layer has lower slopes alpha-CROWN optimises (ReLUs, leaky ReLUs, maxima)."""
        return [k for k, s in enumerate(self.stages[:-1]) if s.op.relu_like]

    def widths(self) -> list[int]:
        """:return: The width of every stage's input, then the logits'."""
        return [s.n_in for s in self.stages] + [self.nb_classes]

    def first_norms(self) -> torch.Tensor:
        """:return: ``(n,)`` the dual norms of the rows of the first run's matrix (its exact bounds' radii / r)."""
        if self._first_norms is None:
            first = self.stages[0]
            index = torch.arange(first.n_out, device=self.device)
            chunk = max(1, _PASS_FLOATS // max(first.n_in, first.n_out))
            self._first_norms = torch.cat([first.rows(part).norm(p=self.dual, dim=1) for part in index.split(chunk)])
        return self._first_norms

    def _concretize(self, lam: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: ``(value, size)``: ``lambda^T x + beta`` and ``||lambda||_q``, ``(S, B)`` each."""
        self.work += lam.numel()
        return (lam * x).sum(-1) + bias, lam.norm(p=self.dual, dim=-1)

    def _backward(self, lam: torch.Tensor, bias: torch.Tensor, k: int, relax: list[_Relaxation],
                  alphas: "dict[int, torch.Tensor] | None" = None) -> Linear:
        """
        :param lam: ``(S, B, n)`` coefficients on the input of stage ``k`` (the output of nonlinear layer ``k - 1``).
        :param bias: ``(S, B)`` the constant.
        :param relax: The relaxations of the nonlinear layers before stage ``k``.
        :param alphas: alpha-CROWN's slopes per stage, ``(S, B, n)`` each.
        :return: The coefficients on the model's input and the constant.
        """
        for m in range(k - 1, -1, -1):
            self.work += lam.numel()
            lam, bias = relax[m].back(lam, bias, None if alphas is None else alphas.get(m))
            stage = self.stages[m]
            if stage.layers:
                self.work += lam.numel() + lam.shape[0] * lam.shape[1] * stage.n_in
                bias = bias + lam @ stage.offset
                s, b = lam.shape[:2]
                lam = stage.back(lam.reshape(s * b, -1)).reshape(s, b, -1)
        return lam, bias

    def relax(self, x: torch.Tensor, radius: torch.Tensor, dry: bool = False) -> list[_Relaxation]:
        """
        CROWN's intermediate bounds and the relaxations of every nonlinear layer over the balls.

        :param x: ``(B, d)`` flattened float64 samples.
        :param radius: ``(B,)`` radii.
        :param dry: Interval bounds only, adding to :attr:`work` what the backward passes of their undecided
                    neurons would move at most (two rows each, as wide as the layers they cross): a cheap upper
                    estimate of the cost, for models whose passes would take too long to try.
        :return: One relaxation per nonlinear layer.
        """
        relax: list[_Relaxation] = []
        first = self.stages[0]
        spread = radius[:, None] * self.first_norms()[None]
        mid = first.forward(x)
        lo, hi = mid - spread, mid + spread  # exact: an affine map of the ball
        for k, stage in enumerate(self.stages[:-1]):
            if k > 0:
                lo, hi = self.stages[k - 1].op.interval(lo, hi)
                if stage.layers:
                    centre, rad = stage.forward((lo + hi) / 2), stage.absolute((hi - lo) / 2)
                    lo, hi = centre - rad, centre + rad
            lower, upper = stage.op.quantities(lo, hi)
            if (stage.layers and k > 0 or not stage.op.exact_from_input()) and dry:
                self.work += 2 * int(stage.op.undecided(lower, upper).sum()) * sum(self.widths()[:k + 1])
            elif stage.layers and k > 0 or not stage.op.exact_from_input():
                lower, upper = self._tighten(k, relax, x, radius, lower, upper)
                if stage.op.exact_from_input():
                    lo, hi = lower, upper
            relax.append(stage.op.relaxation(lower, upper))
        return relax

    def _tighten(self, k: int, relax: list[_Relaxation], x: torch.Tensor, radius: torch.Tensor, lower: torch.Tensor,
                 upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounds of stage ``k``'s undecided quantities by a backward pass from each, intersected with ``[l, u]``.
        """
        stage = self.stages[k]
        wanted = stage.op.undecided(lower, upper)
        counts = wanted.sum(1)
        if int(counts.max()) == 0:
            return lower, upper
        # per sample its undecided quantities first (a stable sort keeps their order), padded with the others;
        # the samples in chunks of similar counts, each padded to its own largest
        order = torch.sort((~wanted).to(torch.int8), dim=1, stable=True).indices
        by_count = torch.sort(counts, descending=True).indices
        width = max(self.widths()[:k + 1])
        lower, upper = lower.clone(), upper.clone()
        done = 0
        while done < len(by_count) and int(counts[by_count[done]]) > 0:
            top = int(counts[by_count[done]])
            rows = by_count[done:done + max(1, _PASS_FLOATS // (2 * top * width))]
            done += len(rows)
            sub = [r.select(rows) for r in relax]
            piece = max(1, _PASS_FLOATS // (2 * width * len(rows)))  # a sample's rows in parts, when it is wide
            for first in range(0, top, piece):
                index = order[rows, first:min(top, first + piece)].T  # (rows, samples)
                n = index.shape[0]
                idx, coef = stage.op.terms(index)
                lam, bias = self._sparse_backward(torch.cat([idx, idx], 1), torch.cat([coef, -coef], 1), k, sub)
                value, size = self._concretize(lam, bias, x[rows][None])
                bound = value - radius[rows][None] * size
                ok = torch.arange(first, first + n, device=self.device)[:, None] < counts[rows][None]
                sample = rows.expand_as(index)[ok]
                where = index[ok]
                lower[sample, where] = torch.maximum(lower[sample, where], bound[:n][ok])
                upper[sample, where] = torch.minimum(upper[sample, where], -bound[n:][ok])
        return lower, torch.maximum(upper, lower)

    def _sparse_backward(self, idx: torch.Tensor, coef: torch.Tensor, k: int,
                         relax: list[_Relaxation]) -> Linear:
        """
        The backward pass of ``sum_t coef_t e_{idx_t}`` on stage ``k``'s output, kept sparse through the stages
        without affine layers (a ReLU's output into a max-pool's tournament) and made dense by the first run's
        rows (:meth:`_Stage.rows`).

        :param idx: ``(T, S, B)`` indices into stage ``k``'s output.
        :param coef: ``(T, S, B)`` their coefficients.
        :return: The coefficients on the model's input and the constant, as :meth:`_backward`.
        """
        bias = torch.zeros(coef.shape[1:], dtype=_DTYPE, device=self.device)
        m = k
        while m > 0:
            stage = self.stages[m]
            if stage.layers and stage.sparse is None:
                break
            if stage.layers:  # rows of few non-zeros: the terms of their union, each index once
                index, value = stage.sparse
                bias = bias + (coef * stage.offset[idx]).sum(0)
                self.work += coef.numel() * index.shape[1]
                idx, coef = _merged(index[idx].movedim(-1, 1).flatten(0, 1),
                                    (coef[..., None] * value[idx]).movedim(-1, 1).flatten(0, 1))
            self.work += coef.numel()
            idx, coef, bias = relax[m - 1].sparse_back(idx, coef, bias)
            m -= 1
        stage = self.stages[m]
        bias = bias + (coef * stage.offset[idx]).sum(0)
        t, s, b = idx.shape
        if t * stage.n_in <= 2 * stage.n_out or not stage.layers:
            self.work += t * s * b * stage.n_in
            lam = sum(c[..., None] * stage.rows(i) for i, c in zip(idx, coef))
            return self._backward(lam, bias, m, relax)
        self.work += s * b * (stage.n_out + stage.n_in)
        lam = torch.zeros(coef.shape[1:] + (stage.n_out,), dtype=_DTYPE, device=self.device)
        lam.scatter_add_(-1, idx.permute(1, 2, 0), coef.permute(1, 2, 0))
        return self._backward(stage.back(lam.reshape(s * b, -1)).reshape(s, b, -1), bias, m, relax)

    def spec_start(self, pred: torch.Tensor) -> Linear:
        """
        :param pred: ``(B,)`` the certified classes.
        :return: The specification ``Z_pred - Z_j`` moved onto the last run's input: ``(C, B, n)`` and ``(C, B)``.
        """
        last = self.stages[-1]
        eye = torch.eye(self.nb_classes, dtype=_DTYPE, device=self.device)
        spec = eye[pred][None] - eye[:, None]  # (C, B, C): row j of sample b is e_pred - e_j
        bias = spec @ last.offset
        if last.dense is not None:
            return spec @ last.dense, bias
        c, b = spec.shape[:2]
        return last.back(spec.reshape(c * b, -1)).reshape(c, b, -1), bias

    def margins(self, x: torch.Tensor, pred: torch.Tensor, relax: list[_Relaxation],
                alphas: "dict[int, torch.Tensor] | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        :return: ``(value, size)``, ``(C, B)`` each: the lower bound of ``Z_pred - Z_j`` over a ball of radius ``r`` is
                 ``value_j - r size_j`` for every ``r`` up to the radius of ``relax`` (row ``pred``: 0 and 0).
        """
        lam, bias = self.spec_start(pred)
        lam, bias = self._backward(lam, bias, len(self.stages) - 1, relax, alphas)
        return self._concretize(lam, bias, x[None])


def _reach(value: torch.Tensor, size: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """:return: ``(B,)`` ``g = min_j value_j / size_j``: every ``Z_pred - Z_j`` is positive on the balls of radius
    ``< g`` (up to the radius of the relaxations), ``inf`` where no row depends on the input."""
    ratio = torch.where(size > 0, value / size.clamp(min=1e-300), torch.where(value > 0, math.inf, -math.inf))
    ratio = torch.nan_to_num(ratio, nan=-math.inf)  # bounds that overflowed on a huge ball certify nothing
    return ratio.scatter(0, pred[None], math.inf).amin(0)


def certified_radii(prop: Propagation, x: torch.Tensor, pred: torch.Tensor, upper: torch.Tensor, *, steps: int,
                    rtol: float, alpha_steps: int = 0, alpha_lr: float = 0.5) -> torch.Tensor:
    """
    The largest radius certified by CROWN (``alpha_steps = 0``) or alpha-CROWN, searched on ``[0, upper]``.

    An evaluation at a radius ``R`` (relaxations chosen for the ball of radius ``R``) gives the lower bounds
    ``value_j - r size_j`` of ``Z_pred - Z_j`` for every ``r <= R``, so it certifies ``c(R) = min(R, g(R))`` with
    ``g(R) = min_j value_j / size_j``, and ``g`` decreases with ``R``. The search looks for the fixed point
    ``g(R) = R``: the bracket ``[lo, hi]`` (``lo`` certified) becomes ``[R, hi]`` when ``g(R) >= R`` and
    ``[max(lo, g(R)), R]`` otherwise, so that an evaluation near the fixed point closes the bracket from either
    side. The next radius is the root of ``h(R) = g(R) - R`` interpolated between the last evaluation on each side
    (regula falsi, kept at least a tenth of the bracket inside it; with no failure yet ``min(g, upper)`` of the last
    success, exact at once where the relaxations do not move; the midpoint when only failures are known). The first
    radius is ``upper / 2`` (where ``upper`` is not finite the bracket first grows by doubling from ``||x||`` or 1).
    A sample stops when its bracket is within ``rtol`` of its top.

    :param prop: The propagation.
    :param x: ``(B, d)`` flattened float64 samples.
    :param pred: ``(B,)`` the certified classes.
    :param upper: ``(B,)`` upper bounds of the distance (``inf`` where unknown).
    :param steps: Evaluations at most.
    :param rtol: Relative width of the bracket at which a sample stops.
    :param alpha_steps: Projected Adam steps on the lower ReLU slopes per evaluation (0: CROWN), warm-started from
                        the previous evaluation of the same sample.
    :param alpha_lr: Adam's learning rate on the slopes.
    :return: ``(B,)`` certified radii ``>= 0``.
    """
    lo = torch.zeros_like(upper)
    hi = torch.where(torch.isfinite(upper), upper, torch.full_like(upper, math.inf))
    start = prop.norm.measure(x)
    start = torch.where(start > 0, start, torch.ones_like(start))
    nan = torch.full_like(upper, math.nan)
    success, success_h, failure, failure_h = nan.clone(), nan.clone(), nan.clone(), nan.clone()
    alphas: dict[int, torch.Tensor] = {}
    for _ in range(steps):
        active = torch.nonzero((hi > 0) & (torch.isinf(hi) | (hi - lo > rtol * hi))).flatten()
        if active.numel() == 0:
            break
        low, high = lo[active], hi[active]
        s, sh, f, fh = success[active], success_h[active], failure[active], failure_h[active]
        both = ~torch.isnan(s) & ~torch.isnan(f)
        falsi = s + (f - s) * sh / (sh - fh)
        after_success = s + sh  # g of the last success: exact where the relaxations do not move (an affine model)
        width = high - low
        r = torch.where(both, falsi, (low + high) / 2).clamp(min=low + width / 10, max=high - width / 10)
        # with no failure yet, ``hi`` is ``upper``, never evaluated: g of the last success may reach it
        r = torch.where(~torch.isnan(s) & torch.isnan(f), torch.minimum(after_success, high).clamp(min=low), r)
        r = torch.where(torch.isnan(s) & torch.isnan(f), high / 2, r)
        r = torch.where(torch.isfinite(high), r, torch.where(low > 0, 2 * low, start[active]))
        xs, ps = x[active], pred[active]
        with torch.no_grad():
            relax = prop.relax(xs, r)
        if alpha_steps:
            value, size = _optimise(prop, xs, ps, r, relax, alphas, active, alpha_steps, alpha_lr, len(x))
        else:
            with torch.no_grad():
                value, size = prop.margins(xs, ps, relax)
        g = _reach(value, size, ps)
        ok = g >= r
        h = torch.clamp(g - r, min=-r, max=high)  # finite, for the interpolation
        lo[active] = torch.maximum(low, torch.minimum(r, g).clamp(min=0.0))
        hi[active] = torch.where(ok, high, r)
        success[active] = torch.where(ok, r, s)
        success_h[active] = torch.where(ok, h, sh)
        failure[active] = torch.where(ok, f, r)
        failure_h[active] = torch.where(ok, fh, h)
    return lo


def _optimise(prop: Propagation, x: torch.Tensor, pred: torch.Tensor, radius: torch.Tensor, relax: list[_Relaxation],
              alphas: dict[int, torch.Tensor], active: torch.Tensor, steps: int, lr: float,
              n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    alpha-CROWN at one radius: Adam on the lower slopes of the unstable ReLUs (one set per specification row and
    sample), projected on [0, 1], maximising the sum of the lower bounds of ``Z_pred - Z_j`` at ``radius``.

    :param alphas: Per ReLU stage ``(C, n_samples, width)`` slopes of every sample, updated in place (warm starts).
    :param active: The samples of ``x`` among all ``n``.
    :return: ``(value, size)`` of the best slopes found, as :meth:`Propagation.margins`.
    """
    c = prop.nb_classes
    params = {}
    for k in prop.relu_layers:
        init = relax[k].start()
        if k not in alphas:
            alphas[k] = torch.full((c, n, init.shape[1]), math.nan, dtype=_DTYPE, device=x.device)
        stored = alphas[k][:, active]
        start = torch.where(torch.isnan(stored), init[None].expand_as(stored), stored)
        params[k] = start.clone().requires_grad_(True)
    with torch.no_grad():
        value, size = prop.margins(x, pred, relax)
    best = value - radius[None] * size
    best_value, best_size = value, size
    if not params:
        return value, size
    optimiser = torch.optim.Adam(list(params.values()), lr=lr)
    for _ in range(steps):
        value, size = prop.margins(x, pred, relax, params)
        bound = value - radius[None] * size
        optimiser.zero_grad()
        (-bound.sum()).backward()
        with torch.no_grad():
            better = bound > best
            best = torch.where(better, bound, best)
            best_value = torch.where(better, value, best_value)
            best_size = torch.where(better, size, best_size)
        optimiser.step()
        with torch.no_grad():
            for p in params.values():
                p.clamp_(0.0, 1.0)
    for k, p in params.items():
        alphas[k][:, active] = p.detach()
    return best_value.detach(), best_size.detach()

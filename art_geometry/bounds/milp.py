"""
Exact distances to the decision boundary of a network of affine layers, ReLUs and max-pools by mixed-integer linear
programming (Tjeng, Xiao and Tedrake, "Evaluating Robustness of Neural Networks with Mixed Integer Programming",
ICLR 2019, Sec. 3-4), solved with ``scipy.optimize.milp`` (HiGHS).

The network is a sequence of steps (:data:`Layers`, written from a model by
:func:`art_geometry.bounds._network.milp_layers`): dense affine maps ``(W, b)``, ReLUs (:data:`RELU`) and max-pools
(:class:`MaxPool`, the flat input indices of each output's window), ending with the affine map to the logits. A
plain list of ``(W, b)`` pairs is the ReLU network with a ReLU between consecutive maps
(:func:`art_geometry.bounds._network.affine_relu_layers`). For a sample ``x`` predicted ``p`` and each other class
``j``:

    min ||x' - x||   subject to   Z_j(x') >= Z_p(x'),   x' in B,

with ``B = {||x' - x||_inf <= T}`` (intersected with ``clip_values`` when the distance is measured inside them). Every
nonlinear step is encoded exactly from bounds ``[l, u]`` of its inputs over ``B``:

* a ReLU ``a = max(z, 0)`` with ``l < 0 < u``: one binary ``d``, ``a >= z, a >= 0, a <= z - l (1 - d), a <= u d``
  (stable ReLUs, ``l >= 0`` or ``u <= 0``, need none);
* a max-pool output ``y = max_{i in window} z_i`` (Tjeng et al., Sec. 4; padding, which PyTorch fills with
  ``-inf``, is ignored): with ``k*`` an input of the largest lower bound ``m = l_k* = max_k l_k``, the other inputs
  with ``u_i <= m`` never exceed ``z_k*`` and are dropped; if ``k*`` alone remains, ``y = z_k*``; otherwise one
  binary ``d_i`` per remaining input, ``sum_i d_i = 1``, ``y >= z_i``, ``y <= z_i + (u_max - l_i) (1 - d_i)`` with
  ``u_max = max_i u_i``. Its bounds are ``[max_i l_i, max_i u_i]``.

The bounds come from interval arithmetic over ``B`` (for L1 also ``W x + b -/+ T max_i |W_ki|`` over the L1 ball in
the first affine map), intersected with tighter bounds when the caller has them (``pre_bounds``, e.g. from linear
bound propagation). The norm is linear with auxiliary variables: ``|x'_i - x_i| <= t`` and ``min t`` for L-inf,
``|x'_i - x_i| <= s_i`` and ``min sum_i s_i`` for L1. L2 would make the objective quadratic (a mixed-integer
conic program); it is not offered.

``T`` is the DeepFool margin: the DeepFool point is a verified adversarial within ``T``, so the minimum over ``B``
is the exact distance (a point outside ``B`` is farther than ``T``). The classes are solved nearest logit first,
each with the best distance so far as a cutoff (``t <= best``), which makes most of them infeasible at once.

The certified value of a class is HiGHS's dual bound (at most the optimum; at a time-out the best bound proved so
far), ``best`` when the program is infeasible under the cutoff, and the distance is the minimum over the classes.
The solver's feasibility tolerances only enlarge the feasible set, so they lower the value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from art_geometry.core.norms import L1, LINF, Norm

__all__ = [
    "RELU", "MaxPool", "Step", "Layers", "as_steps", "exact_distance", "forward", "interval_bounds", "unstable_relus",
]

#: HiGHS's relative MIP gap at which a class's program counts as solved.
_GAP = 1e-9

#: The ReLU step of a layer sequence: ``a = max(z, 0)`` element-wise.
RELU = "relu"


@dataclass(frozen=True, eq=False)
class MaxPool:
    """
    A max-pool step: output ``o`` is ``max_i z[windows[o, i]]`` over the entries ``>= 0`` (``-1`` marks padding,
    which PyTorch fills with ``-inf``: it never attains the maximum).

    :param windows: ``(n_out, window)`` flat input indices of each output's window, as
                    :func:`~art_geometry.bounds._network.pool_windows` returns them (a tensor or an array; kept as
                    int64 numpy).
    :raises ValueError: For windows that are not a 2-d array of indices ``>= -1`` with an input in every window.
    """

    windows: np.ndarray

    def __post_init__(self) -> None:
        w = self.windows
        w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w)
        if w.ndim != 2 or w.shape[1] == 0 or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"MaxPool windows must be a 2-d integer array, got shape {w.shape} of {w.dtype}")
        if (w < -1).any() or not (w >= 0).any(axis=1).all():
            raise ValueError("MaxPool windows hold indices >= 0, -1 for padding, and an input in every window")
        object.__setattr__(self, "windows", w.astype(np.int64))


#: One step of a layer sequence: a dense affine map ``(W, b)`` (``W`` ``(out, in)``, ``b`` ``(out,)``),
#: :data:`RELU` or a :class:`MaxPool`.
Step = Union[tuple[np.ndarray, np.ndarray], str, MaxPool]
#: A network as the programs read it: steps ending with the affine map to the logits, or only ``(W, b)`` pairs (a
#: ReLU between consecutive ones).
Layers = Sequence[Step]


def _is_map(step: Any) -> bool:
    return isinstance(step, (tuple, list)) and len(step) == 2


def _numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


def as_steps(layers: "Sequence[Any]") -> list[Step]:
    """
    The layer sequence in the form the programs read: float64 numpy ``(W, b)``, :data:`RELU` and :class:`MaxPool`
    steps, no two affine maps in a row (consecutive maps composed: ``(W_2 W_1, W_2 b_1 + b_2)``), an affine map last.

    :param layers: Steps: ``(W, b)`` (numpy arrays or CPU-movable tensors), :data:`RELU` and :class:`MaxPool`; or
                   only ``(W, b)`` pairs, a ReLU network with a ReLU between consecutive maps (as
                   :func:`~art_geometry.bounds._network.affine_relu_layers` returns it).
    :return: The steps.
    :raises ValueError: For an unknown step, a map that is not ``(out, in)`` and ``(out,)``, or a sequence that does
                        not end with the affine map to the logits.
    """
    items = list(layers)
    implicit = all(_is_map(s) for s in items)
    out: list[Step] = []
    for step in items:
        if _is_map(step):
            w, b = (_numpy(t) for t in step)
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"an affine step needs W (out, in) and b (out,), got {w.shape} and {b.shape}")
            if out and _is_map(out[-1]):
                if implicit:
                    out.append(RELU)
                else:
                    w0, b0 = out.pop()
                    w, b = w @ w0, w @ b0 + b
            out.append((w, b))
        elif isinstance(step, MaxPool) or (isinstance(step, str) and step == RELU):
            out.append(step)
        else:
            raise ValueError(f"unknown layer step {step!r}: expected (W, b), RELU or MaxPool")
    if not out or not _is_map(out[-1]):
        raise ValueError("the layer sequence must end with the affine map to the logits")
    return out


def _input_box(x: np.ndarray, radius: float, box: "tuple[float, float] | None") -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x - radius, x + radius
    if box is not None:
        lo, hi = np.maximum(lo, box[0]), np.minimum(hi, box[1])
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("the MILP needs a finite search box: a finite radius or clip_values")
    return lo, hi


def _windowed(windows: np.ndarray, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:return: ``(n_out, window)`` bounds of each window's inputs, ``-inf`` at padding."""
    valid = windows >= 0
    index = np.where(valid, windows, 0)
    return np.where(valid, l[index], -np.inf), np.where(valid, u[index], -np.inf)


def _undominated(lw: np.ndarray, uw: np.ndarray) -> np.ndarray:
    """
    :return: ``(n_out, window)`` the inputs the maximum is taken over: one input ``k*`` of the largest lower bound
             ``m = l_k*`` and the others with ``u_i > m`` (one with ``u_i <= m`` is at most ``z_k*``; padding never).
    """
    keep = uw > lw.max(axis=1, keepdims=True)
    keep[np.arange(len(lw)), lw.argmax(axis=1)] = True
    return keep


def interval_bounds(
    layers: Layers,
    x: np.ndarray,
    radius: float,
    norm: Norm,
    box: "tuple[float, float] | None" = None,
    pre_bounds: "Sequence[tuple[Any, Any] | None] | None" = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """
    Bounds of the inputs of every nonlinear step (ReLU or max-pool) over ``B`` by interval arithmetic: an affine map
    ``W v + b`` of ``v in [lo, hi]`` lies in ``[W+ lo + W- hi + b, W+ hi + W- lo + b]``, a ReLU's output in
    ``[max(l, 0), max(u, 0)]``, a max-pool's in ``[max_i l_i, max_i u_i]``.

    :param layers: The network (:data:`Layers`).
    :param x: The flattened sample.
    :param radius: ``T``, the radius of the ball searched.
    :param norm: L-inf or L1.
    :param box: ``(min, max)`` the inputs are also kept in, or ``None``.
    :param pre_bounds: Certified bounds ``(l, u)`` of each nonlinear step's inputs over ``B`` (or ``None`` for a
                       step), intersected with the interval bounds and propagated; where an intersection is empty
                       (the given bounds are wrong there) the interval bound is kept.
    :return: ``[(l_1, u_1), ...]``, one pair per nonlinear step, in order (for a plain ReLU network the
             pre-activation bounds of its hidden layers).
    :raises ValueError: When the steps' sizes do not chain, or ``pre_bounds`` has not one entry per nonlinear step.
    """
    steps = as_steps(layers)
    x = np.asarray(x, dtype=np.float64).ravel()
    lo, hi = _input_box(x, radius, box)
    given = None if pre_bounds is None else list(pre_bounds)
    n_nonlinear = sum(not _is_map(s) for s in steps)
    if given is not None and len(given) != n_nonlinear:
        raise ValueError(f"pre_bounds needs one entry per nonlinear step ({n_nonlinear}), got {len(given)}")
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for k, step in enumerate(steps):
        if _is_map(step):
            w, b = step
            if w.shape[1] != lo.size:
                raise ValueError(f"step {k}: an affine map of {w.shape[1]} inputs after {lo.size} values")
            if k == len(steps) - 1:
                break
            wp, wn = np.clip(w, 0, None), np.clip(w, None, 0)
            l, u = wp @ lo + wn @ hi + b, wp @ hi + wn @ lo + b
            if k == 0 and norm == L1 and math.isfinite(radius):
                centre, reach = w @ x + b, radius * np.abs(w).max(axis=1)
                l, u = np.maximum(l, centre - reach), np.minimum(u, centre + reach)
            lo, hi = l, u
            continue
        l, u = lo, hi
        if given is not None and given[len(out)] is not None:
            gl, gu = (_numpy(t).ravel() for t in given[len(out)])
            if gl.shape != l.shape or gu.shape != l.shape:
                raise ValueError(f"pre_bounds[{len(out)}]: {l.size} bounds needed, got {gl.size} and {gu.size}")
            tl, tu = np.maximum(l, gl), np.minimum(u, gu)
            ok = tl <= tu
            l, u = np.where(ok, tl, l), np.where(ok, tu, u)
        out.append((l, u))
        if isinstance(step, MaxPool):
            if step.windows.max() >= l.size:
                raise ValueError(f"step {k}: a max-pool reading index {step.windows.max()} of {l.size} values")
            lw, uw = _windowed(step.windows, l, u)
            lo, hi = lw.max(axis=1), uw.max(axis=1)
        else:
            lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return out


def _binaries(steps: list[Step], bounds: list[tuple[np.ndarray, np.ndarray]]) -> int:
    n = 0
    for step, (l, u) in zip([s for s in steps if not _is_map(s)], bounds):
        if isinstance(step, MaxPool):
            count = _undominated(*_windowed(step.windows, l, u)).sum(axis=1)
            n += int(count[count > 1].sum())
        else:
            n += int(((l < 0) & (u > 0)).sum())
    return n


def unstable_relus(
    layers: Layers,
    x: np.ndarray,
    radius: float,
    norm: Norm,
    box: "tuple[float, float] | None" = None,
    pre_bounds: "Sequence[tuple[Any, Any] | None] | None" = None,
) -> int:
    """
    The binary variables of the program, the measure of its cost: one per ReLU whose pre-activation may change
    sign in ``B`` (``l < 0 < u``), one per remaining input of each max-pool window that the bounds do not decide
    (another input than the one of the largest lower bound ``m`` has ``u_i > m``).

    :param layers: The network (:data:`Layers`).
    :param x: The flattened sample.
    :param radius: ``T``, the radius of the ball searched.
    :param norm: L-inf or L1.
    :param box: ``(min, max)`` the inputs are also kept in, or ``None``.
    :param pre_bounds: Tighter bounds of the nonlinear steps' inputs, as for :func:`interval_bounds`.
    :return: The number of binaries.
    """
    steps = as_steps(layers)
    return _binaries(steps, interval_bounds(steps, x, radius, norm, box, pre_bounds))


class _Rows:
    """Sparse constraint rows ``lb <= A v <= ub``, added in blocks of rows with the same number of terms."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.n = 0

    def add(self, terms: list[tuple[np.ndarray, Any]], lb: Any, ub: Any) -> None:
        """
        :param terms: ``(cols, vals)`` pairs: ``cols`` ``(h,)`` (one term per row) or ``(h, k)``, ``vals`` a
                      number, ``(h,)`` or the shape of ``cols``.
        :param lb: ``(h,)`` lower bounds of the rows.
        :param ub: ``(h,)`` upper bounds.
        """
        h = len(lb)
        index = np.arange(self.n, self.n + h)
        for cols, vals in terms:
            cols = np.asarray(cols)
            cols = cols[:, None] if cols.ndim == 1 else cols
            vals = np.asarray(vals, dtype=np.float64)
            vals = np.broadcast_to(vals[:, None] if vals.ndim == 1 else vals, cols.shape)
            self.rows.append(np.repeat(index, cols.shape[1]))
            self.cols.append(cols.ravel())
            self.vals.append(vals.ravel())
        self.lb.append(np.broadcast_to(np.asarray(lb, dtype=np.float64), (h,)))
        self.ub.append(np.broadcast_to(np.asarray(ub, dtype=np.float64), (h,)))
        self.n += h

    def matrix(self, n_var: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        if not self.n:
            return sp.csr_matrix((0, n_var)), np.zeros(0), np.zeros(0)
        a = sp.csr_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))), shape=(self.n, n_var)
        )
        return a, np.concatenate(self.lb), np.concatenate(self.ub)


@dataclass
class _Input:
    """
    The input ``z`` of a nonlinear step: ``W v[live] + b`` of the previous variables ``v`` when an affine map
    precedes the step (``affine``), else ``v`` itself.
    """

    affine: "tuple[np.ndarray, np.ndarray] | None"
    prev: np.ndarray
    live: np.ndarray

    def terms(self, mask: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """:return: The terms of ``-z[mask]`` (a row ``... - z = ...``) and the constant of ``z[mask]``."""
        k = int(mask.sum())
        if self.affine is None:
            return [(self.prev[mask], np.full(k, -1.0))], np.zeros(k)
        w, b = self.affine
        return [(np.tile(self.prev[self.live], (k, 1)), -w[mask][:, self.live])], b[mask]


class _Program:
    """The big-M program of one sample, without the class row (shared by the classes)."""

    def __init__(self, steps: list[Step], x: np.ndarray, radius: float, norm: Norm,
                 box: "tuple[float, float] | None", pre_bounds: "Sequence[tuple[Any, Any] | None] | None"):
        d = x.size
        lo_in, hi_in = _input_box(x, radius, box)
        self.rows = rows = _Rows()
        self.n_var = 0
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._tight: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        xs = self._vars(lo_in, hi_in)
        reach = np.maximum(x - lo_in, hi_in - x)
        self.norm_index = self._vars(np.zeros(d), reach) if norm == L1 else self._vars(np.zeros(1), [reach.max()])
        aux = self.norm_index if norm == L1 else np.full(d, self.norm_index[0])
        rows.add([(xs, np.ones(d)), (aux, -np.ones(d))], np.full(d, -np.inf), x)  # x'_i - x_i <= s_i (or t)
        rows.add([(xs, np.ones(d)), (aux, np.ones(d))], x, np.full(d, np.inf))  # x_i - x'_i <= s_i (or t)
        bounds = iter(interval_bounds(steps, x, radius, norm, box, pre_bounds))
        prev, live, affine = xs, np.ones(d, dtype=bool), None
        for step in steps[:-1]:
            if _is_map(step):
                affine = step
                continue
            l, u = next(bounds)
            z = _Input(affine, prev, live)
            if affine is None:  # the step reads variables: their bounds may be tighter now
                self._tight.append((prev, l, u))
            if isinstance(step, MaxPool):
                prev, lo, hi = self._max_pool(z, step.windows, l, u)
            else:
                prev, lo, hi = self._relu(z, l, u)
            live, affine = (lo != 0) | (hi != 0), None  # variables fixed at 0 drop out of the next map
        self.last, self.last_live = prev, live
        self.matrix, self.row_lb, self.row_ub = rows.matrix(self.n_var)
        self.var_lb, self.var_ub = np.concatenate(self._lb), np.concatenate(self._ub)
        for index, l, u in self._tight:
            np.maximum.at(self.var_lb, index, l)
            np.minimum.at(self.var_ub, index, u)
        self.integrality = np.concatenate(self._int)
        self.cost = np.zeros(self.n_var)
        self.cost[self.norm_index] = 1.0
        self.norm = norm

    def _vars(self, lb: Any, ub: Any, integral: bool = False) -> np.ndarray:
        """New variables of bounds ``[lb, ub]``; :return: their indices."""
        lb, ub = np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64)
        index = np.arange(self.n_var, self.n_var + lb.size)
        self.n_var += lb.size
        self._lb.append(lb)
        self._ub.append(ub)
        self._int.append(np.full(lb.size, 1.0 if integral else 0.0))
        return index

    def _relu(self, z: _Input, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``a = max(z, 0)``; :return: the indices of ``a`` and its bounds."""
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
        a = self._vars(lo, hi)
        active, unstable = l >= 0, (l < 0) & (u > 0)
        if active.any():
            terms, c = z.terms(active)
            self.rows.add([(a[active], 1.0)] + terms, c, c)  # a = z
        k = int(unstable.sum())
        if k:
            dv = self._vars(np.zeros(k), np.ones(k), integral=True)
            au, lu, uu = a[unstable], l[unstable], u[unstable]
            terms, c = z.terms(unstable)
            self.rows.add([(au, 1.0)] + terms, c, np.full(k, np.inf))  # a >= z
            self.rows.add([(au, 1.0)] + terms + [(dv, -lu)], np.full(k, -np.inf), c - lu)  # a <= z - l (1 - d)
            self.rows.add([(au, 1.0), (dv, -uu)], np.full(k, -np.inf), np.zeros(k))  # a <= u d
        return a, lo, hi

    def _max_pool(self, z: _Input, windows: np.ndarray, l: np.ndarray,
                  u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``y_o = max_{i in window o} z_i``; :return: the indices of ``y`` and its bounds."""
        if z.affine is None:
            zin = z.prev
        else:  # the inputs as variables: each is read by several rows
            zin = self._vars(l, u)
            terms, c = z.terms(np.ones(l.size, dtype=bool))
            self.rows.add([(zin, 1.0)] + terms, c, c)
        lw, uw = _windowed(windows, l, u)
        lo, hi = lw.max(axis=1), uw.max(axis=1)
        keep = _undominated(lw, uw)
        count = keep.sum(axis=1)
        y = np.empty(len(windows), dtype=np.int64)
        one = count == 1
        y[one] = zin[windows[one][keep[one]]]  # y = the one input that can attain the maximum
        many = np.nonzero(~one)[0]
        if many.size:
            y[many] = self._vars(lo[many], hi[many])
            r, c = np.nonzero(keep[many])  # row-major: each window's inputs are consecutive
            yo, zi = y[many][r], zin[windows[many][r, c]]
            big = hi[many][r] - lw[many][r, c]  # u_max - l_i
            dv = self._vars(np.zeros(r.size), np.ones(r.size), integral=True)
            self.rows.add([(yo, 1.0), (zi, -1.0)], np.zeros(r.size), np.full(r.size, np.inf))  # y >= z_i
            # y <= z_i + (u_max - l_i) (1 - d_i)
            self.rows.add([(yo, 1.0), (zi, -1.0), (dv, big)], np.full(r.size, -np.inf), big)
            start = np.concatenate([[0], np.cumsum(count[many])[:-1]])
            for k in np.unique(count[many]):  # sum_i d_i = 1, in blocks of windows with k inputs
                group = start[count[many] == k]
                self.rows.add([(dv[group[:, None] + np.arange(k)], 1.0)], np.ones(group.size), np.ones(group.size))
        return y, lo, hi

    def solve(self, w_out: np.ndarray, b_out: np.ndarray, pred: int, j: int, cutoff: float,
              time_limit: float) -> Any:
        """Solve for class ``j`` with the objective at most ``cutoff``; :return: scipy's ``OptimizeResult``."""
        diff = w_out[j] - w_out[pred]
        extra = [sp.csr_matrix(
            (diff[self.last_live], (np.zeros(int(self.last_live.sum()), dtype=int), self.last[self.last_live])),
            shape=(1, self.n_var),
        )]
        lb, ub = [self.row_lb, [b_out[pred] - b_out[j]]], [self.row_ub, [np.inf]]
        var_ub = self.var_ub.copy()
        if self.norm == L1:
            extra.append(sp.csr_matrix(self.cost[None, :]))
            lb.append([-np.inf])
            ub.append([cutoff])
        else:
            var_ub[self.norm_index] = np.minimum(var_ub[self.norm_index], cutoff)
        constraint = LinearConstraint(sp.vstack([self.matrix] + extra).tocsr(), np.concatenate(lb), np.concatenate(ub))
        return milp(
            self.cost, constraints=constraint, integrality=self.integrality, bounds=Bounds(self.var_lb, var_ub),
            options={"time_limit": time_limit, "mip_rel_gap": _GAP, "disp": False},
        )


def forward(layers: Layers, x: np.ndarray) -> np.ndarray:
    """
    :param layers: The network (:data:`Layers`).
    :param x: The flattened sample.
    :return: Its logits, in float64.
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    for step in as_steps(layers):
        if _is_map(step):
            v = step[0] @ v + step[1]
        elif isinstance(step, MaxPool):
            v = np.where(step.windows >= 0, v[np.maximum(step.windows, 0)], -np.inf).max(axis=1)
        else:
            v = np.maximum(v, 0)
    return v


def exact_distance(
    layers: Layers,
    x: np.ndarray,
    pred: int,
    radius: float,
    *,
    norm: Norm = LINF,
    box: "tuple[float, float] | None" = None,
    time_limit: float = math.inf,
    pre_bounds: "Sequence[tuple[Any, Any] | None] | None" = None,
    return_point: bool = False,
) -> "tuple[float, str] | tuple[float, str, np.ndarray | None]":
    """
    The exact distance from ``x`` to the other classes' regions within the radius ``T`` (ties count as the other
    class: the closure of its region), in L-inf or L1, by one MILP per class.

    :param layers: The network (:data:`Layers`): ``(W, b)`` affine maps (numpy arrays or tensors), :data:`RELU` and
                   :class:`MaxPool` steps, ending with the map to the logits; or only ``(W, b)`` pairs, a ReLU
                   between consecutive ones.
    :param x: The flattened sample, float64.
    :param pred: The class whose region's boundary is measured.
    :param radius: ``T``: the programs search ``||x' - x||_inf <= T`` (``inf`` with a ``box``).
    :param norm: :data:`~art_geometry.LINF` or :data:`~art_geometry.L1`.
    :param box: ``(min, max)`` the points searched are kept in (``clip_values``), or ``None``.
    :param time_limit: Seconds for all the classes together.
    :param pre_bounds: Certified bounds ``(l, u)`` over the search box of each nonlinear step's inputs, in order
                       (``None`` for a step), tighter than interval arithmetic (e.g. from CROWN): intersected with
                       the interval bounds for the big-M constants (see :func:`interval_bounds`).
    :param return_point: Also return the nearest point of another class the solver found.
    :return: ``(lower, status)``: a certified lower bound of the distance and how it was obtained: ``"exact"``
             (the distance, to the solver's tolerance), ``"bound"`` (no other class within ``T``: ``lower = T``),
             ``"time_limit"`` (the dual bounds reached, at most the distance) or ``"failed"`` (``0``: a program
             the solver could not solve); with ``return_point`` also ``x'``, the flattened optimal point (on the
             boundary to the solver's tolerance; with ``"time_limit"`` the best found), or ``None`` when none was.
    :raises ValueError: For another norm, a search box that is not finite, or layers that do not chain.
    """
    if norm not in (L1, LINF):
        raise ValueError("method='milp' supports norm=inf and norm=1; for L2 use 'crown' or 'lipschitz'")
    steps = as_steps(layers)
    x = np.asarray(x, dtype=np.float64).ravel()
    program = _Program(steps, x, radius, norm, box, pre_bounds)
    w_out, b_out = steps[-1]
    z = forward(steps, x)
    others = [j for j in np.argsort(z[pred] - z) if j != pred]
    deadline = time.perf_counter() + time_limit
    best, lower, point = math.inf, math.inf, None
    found, timed_out, failed = False, False, False
    for j in others:
        cutoff = min(radius, best)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            lower, timed_out = 0.0, True
            break
        res = program.solve(w_out, b_out, pred, int(j), cutoff, remaining)
        dual = getattr(res, "mip_dual_bound", None)
        if res.status == 0:
            bound = float(res.fun) if dual is None or not math.isfinite(dual) else min(float(dual), float(res.fun))
            if float(res.fun) < best:
                point = res.x[:x.size].copy()
            best, found = min(best, float(res.fun)), True
        elif res.status == 2:
            bound = cutoff
        elif res.status == 1:
            bound = 0.0 if dual is None or not math.isfinite(dual) else min(max(float(dual), 0.0), cutoff)
            timed_out = True
            if res.x is not None:
                if float(res.fun) < best:
                    point = res.x[:x.size].copy()
                best, found = min(best, float(res.fun)), True
        else:
            bound, failed = 0.0, True
        lower = min(lower, max(bound, 0.0))
    if failed:
        lower, status = 0.0, "failed"
    elif timed_out:
        status = "time_limit"
    else:
        status = "exact" if found else "bound"
    return (lower, status, point) if return_point else (lower, status)

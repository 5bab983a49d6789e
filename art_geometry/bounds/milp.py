"""
Exact distances to the decision boundary of a ReLU network by mixed-integer linear programming (Tjeng, Xiao and
Tedrake, "Evaluating Robustness of Neural Networks with Mixed Integer Programming", ICLR 2019, Sec. 3-4), solved
with ``scipy.optimize.milp`` (HiGHS).

For a network of affine maps with ReLUs between them (:func:`art_geometry.bounds._network.affine_relu_layers`),
a sample ``x`` predicted ``p`` and each other class ``j``:

    min ||x' - x||   subject to   Z_j(x') >= Z_p(x'),   x' in B,

with ``B = {||x' - x||_inf <= T}`` (intersected with ``clip_values`` when the distance is measured inside them) and
every ReLU ``a = max(z, 0)`` of pre-activation bounds ``[l, u]`` encoded exactly with one binary ``d``:
``a >= z, a >= 0, a <= z - l (1 - d), a <= u d`` (stable ReLUs, ``l >= 0`` or ``u <= 0``, need none). The bounds
come from interval arithmetic over ``B`` (for L1 also ``W x + b -/+ T max_i |W_ki|`` over the L1 ball in the first
layer). The norm is linear with auxiliary variables: ``|x'_i - x_i| <= t`` and ``min t`` for L-inf,
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
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from art_geometry.core.norms import L1, LINF, Norm

__all__ = ["Layers", "exact_distance", "interval_bounds", "unstable_relus"]

#: HiGHS's relative MIP gap at which a class's program counts as solved.
_GAP = 1e-9

Layers = Sequence[tuple[np.ndarray, np.ndarray]]


def _as_numpy(layers: "Sequence[tuple[object, object]]") -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, b)`` pairs (numpy arrays or CPU-movable tensors) as float64 numpy arrays."""
    out = []
    for w, b in layers:
        w, b = (t.detach().cpu().numpy() if hasattr(t, "detach") else t for t in (w, b))
        out.append((np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    return out


def _input_box(x: np.ndarray, radius: float, box: "tuple[float, float] | None") -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x - radius, x + radius
    if box is not None:
        lo, hi = np.maximum(lo, box[0]), np.minimum(hi, box[1])
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("the MILP needs a finite search box: a finite radius or clip_values")
    return lo, hi


def interval_bounds(
    layers: Layers, x: np.ndarray, radius: float, norm: Norm, box: "tuple[float, float] | None" = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """
    Pre-activation bounds of every hidden layer over ``B`` by interval arithmetic.

    :param layers: ``(W, b)`` float64 pairs, ReLU between consecutive ones.
    :param x: The flattened sample.
    :param radius: ``T``, the radius of the ball searched.
    :param norm: L-inf or L1.
    :param box: ``(min, max)`` the inputs are also kept in, or ``None``.
    :return: ``[(l_1, u_1), ...]`` for the ``len(layers) - 1`` hidden layers.
    """
    lo, hi = _input_box(x, radius, box)
    out = []
    for k, (w, b) in enumerate(layers[:-1]):
        wp, wn = np.clip(w, 0, None), np.clip(w, None, 0)
        l, u = wp @ lo + wn @ hi + b, wp @ hi + wn @ lo + b
        if k == 0 and norm == L1 and math.isfinite(radius):
            centre, reach = w @ x + b, radius * np.abs(w).max(axis=1)
            l, u = np.maximum(l, centre - reach), np.minimum(u, centre + reach)
        out.append((l, u))
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return out


def unstable_relus(
    layers: Layers, x: np.ndarray, radius: float, norm: Norm, box: "tuple[float, float] | None" = None
) -> int:
    """
    :return: The number of ReLUs whose pre-activation may change sign in ``B`` (``l < 0 < u``): one binary
             variable each, the measure of the program's cost.
    """
    return int(sum(((l < 0) & (u > 0)).sum() for l, u in interval_bounds(_as_numpy(layers), x, radius, norm, box)))


class _Rows:
    """Sparse constraint rows ``lb <= A v <= ub``, added in blocks of rows with the same number of terms."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.n = 0

    def add(self, terms: list[tuple[np.ndarray, np.ndarray]], lb: np.ndarray, ub: np.ndarray) -> None:
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


class _Program:
    """The big-M program of one sample, without the class row (shared by the classes)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, radius: float, norm: Norm,
                 box: "tuple[float, float] | None"):
        d = x.size
        lo_in, hi_in = _input_box(x, radius, box)
        rows = _Rows()
        n = d
        self.norm_index = np.arange(d, 2 * d) if norm == L1 else np.array([d])
        n += len(self.norm_index)
        var_lb = [lo_in, np.zeros(len(self.norm_index))]
        reach = np.maximum(x - lo_in, hi_in - x)
        var_ub = [hi_in, reach if norm == L1 else np.array([reach.max()])]
        integral = [np.zeros(n)]
        xs = np.arange(d)
        aux = self.norm_index if norm == L1 else np.full(d, d)
        rows.add([(xs, np.ones(d)), (aux, -np.ones(d))], np.full(d, -np.inf), x)  # x'_i - x_i <= s_i (or t)
        rows.add([(xs, np.ones(d)), (aux, np.ones(d))], x, np.full(d, np.inf))  # x_i - x'_i <= s_i (or t)
        prev, live = xs, np.ones(d, dtype=bool)
        for (w, b), (l, u) in zip(layers[:-1], interval_bounds(layers, x, radius, norm, box)):
            h = w.shape[0]
            a = np.arange(n, n + h)
            n += h
            var_lb.append(np.maximum(l, 0))
            var_ub.append(np.maximum(u, 0))
            integral.append(np.zeros(h))
            cols, wl = prev[live], w[:, live]
            active, unstable = l >= 0, (l < 0) & (u > 0)
            if active.any():
                rows.add([(a[active], 1.0), (np.tile(cols, (active.sum(), 1)), -wl[active])], b[active], b[active])
            k = int(unstable.sum())
            if k:
                dv = np.arange(n, n + k)
                n += k
                var_lb.append(np.zeros(k))
                var_ub.append(np.ones(k))
                integral.append(np.ones(k))
                au, wu, bu, lu, uu = a[unstable], -wl[unstable], b[unstable], l[unstable], u[unstable]
                grid = np.tile(cols, (k, 1))
                rows.add([(au, 1.0), (grid, wu)], bu, np.full(k, np.inf))  # a >= z
                rows.add([(au, 1.0), (grid, wu), (dv, -lu)], np.full(k, -np.inf), bu - lu)  # a <= z - l (1 - d)
                rows.add([(au, 1.0), (dv, -uu)], np.full(k, -np.inf), np.zeros(k))  # a <= u d
            prev, live = a, u > 0
        self.n_var = n
        self.last, self.last_live = prev, live
        self.matrix, self.row_lb, self.row_ub = rows.matrix(n)
        self.var_lb, self.var_ub = np.concatenate(var_lb), np.concatenate(var_ub)
        self.integrality = np.concatenate(integral)
        self.cost = np.zeros(n)
        self.cost[self.norm_index] = 1.0
        self.norm = norm

    def solve(self, w_out: np.ndarray, b_out: np.ndarray, pred: int, j: int, cutoff: float,
              time_limit: float) -> object:
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


def _forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    for w, b in layers[:-1]:
        x = np.maximum(w @ x + b, 0)
    w, b = layers[-1]
    return w @ x + b


def exact_distance(
    layers: "Sequence[tuple[object, object]]",
    x: np.ndarray,
    pred: int,
    radius: float,
    *,
    norm: Norm = LINF,
    box: "tuple[float, float] | None" = None,
    time_limit: float = math.inf,
) -> tuple[float, str]:
    """
    The exact distance from ``x`` to the other classes' regions within the radius ``T`` (ties count as the other
    class: the closure of its region), in L-inf or L1, by one MILP per class.

    :param layers: ``(W, b)`` of each affine map (numpy arrays or tensors), ReLU between consecutive ones.
    :param x: The flattened sample, float64.
    :param pred: The class whose region's boundary is measured.
    :param radius: ``T``: the programs search ``||x' - x||_inf <= T`` (``inf`` with a ``box``).
    :param norm: :data:`~art_geometry.LINF` or :data:`~art_geometry.L1`.
    :param box: ``(min, max)`` the points searched are kept in (``clip_values``), or ``None``.
    :param time_limit: Seconds for all the classes together.
    :return: ``(lower, status)``: a certified lower bound of the distance and how it was obtained: ``"exact"``
             (the distance, to the solver's tolerance), ``"bound"`` (no other class within ``T``: ``lower = T``),
             ``"time_limit"`` (the dual bounds reached, at most the distance) or ``"failed"`` (``0``: a program
             the solver could not solve).
    :raises ValueError: For another norm, or a search box that is not finite.
    """
    if norm not in (L1, LINF):
        raise ValueError("method='milp' supports norm=inf and norm=1; for L2 use 'crown' or 'lipschitz'")
    layers = _as_numpy(layers)
    x = np.asarray(x, dtype=np.float64).ravel()
    program = _Program(layers, x, radius, norm, box)
    w_out, b_out = layers[-1]
    z = _forward(layers, x)
    others = [j for j in np.argsort(z[pred] - z) if j != pred]
    deadline = time.perf_counter() + time_limit
    best, lower = math.inf, math.inf
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
            best, found = min(best, float(res.fun)), True
        elif res.status == 2:
            bound = cutoff
        elif res.status == 1:
            bound = 0.0 if dual is None or not math.isfinite(dual) else min(max(float(dual), 0.0), cutoff)
            timed_out = True
            if res.x is not None:
                best, found = min(best, float(res.fun)), True
        else:
            bound, failed = 0.0, True
        lower = min(lower, max(bound, 0.0))
    if failed:
        return 0.0, "failed"
    if timed_out:
        return lower, "time_limit"
    return lower, "exact" if found else "bound"

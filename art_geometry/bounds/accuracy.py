"""
Brackets of robust accuracy from the margin brackets: over a grid of budgets ``eps``, the certified robust accuracy
(a lower bound of the true one) and the empirical robust accuracy of DeepFool and of the attacks the caller ran (upper
bounds), from the per-sample bracket ``lower <= d(x) <= upper`` of :func:`~art_geometry.bounds.margin_bounds`.

For a threat model ``||x' - x|| <= eps`` (the closed ball, as ART's attacks project) and sample ``i``:

* certified: ``correct_i and lower_i > eps``. No point of another class lies strictly inside the radius
  ``lower_i``, so for every ``eps < lower_i`` the closed ball of radius ``eps`` holds none; at ``eps = lower_i`` the
  sphere may hold one, so the comparison is strict and a sample is never certified at its own radius;
* DeepFool: ``correct_i and upper_i > eps``. A verified adversarial point lies at distance ``upper_i``: for every
  ``eps >= upper_i`` the sample is broken (``upper_i = inf`` where DeepFool failed: never broken by it);
* an attack run by the caller at budget ``e`` (e.g. PGD through ART, :func:`art_geometry.robust_accuracy`): its
  ``adv_correct``.

So, per budget, ``certified <= true robust accuracy <= min(DeepFool, attack)`` and, per sample, no attack can break
a certified sample: a violation is reported with a warning (a certified bound would be unsound).

The attacks are taken as results, not run here: :mod:`~art_geometry.bounds` stands on the floor of
:mod:`~art_geometry.robustness` (``docs/architecture.md``), so the caller (the report, a user) runs
:func:`~art_geometry.robust_accuracy` or :func:`~art_geometry.robustness_curve` on the same ``x``, ``y`` and
passes the results as ``attacks=``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from art_geometry.bounds.brackets import MarginBoundsResult, margin_bounds
from art_geometry.core.batching import predict_logits
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.prepare import prepare
from art_geometry.core.results import ResultMixin, jsonable
from art_geometry.core.settings import BoundsSettings, DeepFoolSettings
from art_geometry.core.validation import check_bool, check_number, check_positive_int

__all__ = ["RobustAccuracyBoundsResult", "robust_accuracy_bounds"]


def _robust_fraction(radius: np.ndarray, correct: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """
    :return: ``(E,)`` the fraction of all samples that are correct with ``radius > eps[e]`` (strictly), by a
             sorted search (no ``(E, N)`` table); a NaN radius never counts.
    """
    n = radius.size
    kept = np.sort(np.where(np.isnan(radius), -np.inf, radius)[correct])
    if n == 0:
        return np.full(eps.shape, np.nan)
    return (kept.size - np.searchsorted(kept, eps, side="right")) / n


@dataclass(frozen=True)
class RobustAccuracyBoundsResult(ResultMixin):
    """
    Certified and empirical robust accuracy over budgets ``eps`` (definitions in
    :mod:`art_geometry.bounds.accuracy`): ``certified <= true robust accuracy <= min(deepfool, attack)``.

    :param eps: ``(E,)`` the budgets, increasing, ``>= 0``.
    :param certified: ``(E,)`` fraction of the samples correct with ``lower > eps`` (a lower bound).
    :param deepfool: ``(E,)`` fraction of the samples correct with ``upper > eps`` (an upper bound: DeepFool's
                     empirical robust accuracy).
    :param lower: ``(N,)`` the certified radii (``MarginBoundsResult.lower``).
    :param upper: ``(N,)`` the DeepFool margins (``MarginBoundsResult.upper``; ``inf`` where DeepFool failed).
    :param correct: ``(N,)`` predicted correctly.
    :param attack_eps: ``(P,)`` budgets of the attack results given (``attacks=``), increasing; empty without.
    :param attack_accuracy: ``(P,)`` their robust accuracy (correct clean and under the attack).
    :param attack_correct: ``(P, N)`` per sample correct clean and under the attack; ``None`` without attacks.
    :param norm: The norm: 1, 2 or inf.
    :param params: ``norm``, ``bounds`` (the params of the margin bracket) and ``attacks`` (per attack result: its
                   name, budget and params).
    """

    eps: np.ndarray
    certified: np.ndarray
    deepfool: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    correct: np.ndarray
    attack_eps: np.ndarray
    attack_accuracy: np.ndarray
    attack_correct: "np.ndarray | None"
    norm: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def clean_accuracy(self) -> float:
        """Fraction of samples predicted correctly."""
        return float(self.correct.mean()) if self.correct.size else float("nan")

    def at(self, eps: float) -> dict[str, float]:
        """
        :param eps: A budget, finite and ``>= 0`` (need not be on the grid).
        :return: ``eps``, ``certified`` and ``deepfool`` robust accuracy at that budget.
        :raises ValueError: For a bad budget.
        """
        e = np.array([check_number(eps, "eps", minimum=0.0)])
        return {
            "eps": float(e[0]),
            "certified": float(_robust_fraction(self.lower, self.correct, e)[0]),
            "deepfool": float(_robust_fraction(self.upper, self.correct, e)[0]),
        }

    def attacks(self) -> list[dict[str, Any]]:
        """
        :return: Per attack result, in ``attack_eps`` order: ``attack`` (its name), ``eps``, ``accuracy`` (its robust
                 accuracy), ``certified`` and ``deepfool`` at its budget, ``empirical`` (the samples neither DeepFool
                 nor the attack broke: the tightest upper bound here) and ``violations`` (samples certified at that
                 budget that the attack broke: 0 for sound bounds).
        """
        out: list[dict[str, Any]] = []
        if self.attack_correct is None:
            return out
        names = [a.get("attack", "attack") for a in self.params.get("attacks", [])]
        n = max(self.correct.size, 1)
        for k, e in enumerate(self.attack_eps.tolist()):
            row = self.attack_correct[k]
            certified = self.correct & (self.lower > e)
            out.append({
                "attack": names[k] if k < len(names) else "attack",
                "eps": e,
                "accuracy": float(self.attack_accuracy[k]),
                **{key: v for key, v in self.at(e).items() if key != "eps"},
                "empirical": float((row & (self.upper > e)).sum() / n),
                "violations": int((certified & ~row).sum()),
            })
        return out

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, ``norm``, ``clean_accuracy``, the curves (``eps``, ``certified``, ``deepfool``),
                 ``attacks`` (:meth:`attacks`) and ``params``.
        """
        return {
            "n_samples": int(self.correct.size),
            "norm": self.norm,
            "clean_accuracy": self.clean_accuracy,
            "eps": self.eps.tolist(),
            "certified": self.certified.tolist(),
            "deepfool": self.deepfool.tolist(),
            "attacks": self.attacks(),
            "params": self.params,
        }


def _eps_grid(eps: Any) -> np.ndarray:
    """:return: The budgets as a float64 ``(E,)`` array: a number, or a non-empty increasing 1-D sequence of them."""
    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().numpy()
    if isinstance(eps, np.ndarray) and eps.ndim == 0:
        eps = eps.item()
    if isinstance(eps, (list, tuple, np.ndarray)):
        values = np.asarray(eps, dtype=object)
        if values.ndim != 1:
            raise ValueError(f"eps must be a number or a 1-D sequence of budgets, got shape {values.shape}")
        if values.size == 0:
            raise ValueError("eps is empty: pass at least one budget")
        grid = np.array([check_number(e, f"eps[{i}]", minimum=0.0) for i, e in enumerate(values.tolist())])
        if grid.size > 1 and not bool(np.all(np.diff(grid) > 0)):
            i = int(np.nonzero(np.diff(grid) <= 0)[0][0])
            raise ValueError(f"eps must be increasing: eps[{i + 1}] = {grid[i + 1]:g} follows eps[{i}] = {grid[i]:g}")
        return grid
    return np.array([check_number(eps, "eps", minimum=0.0)])


def _attack_results(attacks: Any) -> list[Any]:
    """
    :return: The attack results as a list: ``None``, one result, or a list / tuple of them; a result is anything
             with ``eps``, ``norm``, ``clean_correct`` and ``adv_correct`` (a ``RobustnessResult`` or
             ``RobustnessCurve`` of :mod:`art_geometry.robustness`).
    :raises TypeError: For anything else.
    """
    if attacks is None:
        return []
    items = list(attacks) if isinstance(attacks, (list, tuple)) else [attacks]
    for i, a in enumerate(items):
        if not all(hasattr(a, name) for name in ("eps", "norm", "clean_correct", "adv_correct")):
            raise TypeError(
                f"attacks[{i}] must be a RobustnessResult or RobustnessCurve (from robust_accuracy / "
                f"robustness_curve on the same x and y), got {type(a).__name__}"
            )
    return items


def _attack_budgets(items: list[Any], norm: Norm) -> list[tuple[str, np.ndarray, np.ndarray, Any]]:
    """
    The checks that need no model: each result's norm and budgets.

    :return: Per attack result: its argument name, its budgets ``(B,)`` and ``adv_correct`` as ``(B, M)``, itself.
    :raises ValueError: For a result of another norm or without a budget (an attack instance's ``eps`` is NaN).
    """
    out = []
    for i, a in enumerate(items):
        name = f"attacks[{i}]"
        if float(a.norm) != norm.p:
            raise ValueError(f"{name} was measured in norm {float(a.norm):g}, the bounds in norm {norm}: they must "
                             "agree")
        budgets = np.atleast_1d(np.asarray(a.eps, dtype=np.float64))
        if not (np.isfinite(budgets).all() and (budgets >= 0).all()):
            raise ValueError(f"{name} has no budget (eps={a.eps!r}; an attack instance keeps its own): pass results "
                             "of a named attack, whose eps is known")
        adv = np.asarray(a.adv_correct, dtype=bool)
        adv = adv.reshape(1, -1) if adv.ndim == 1 else adv
        if adv.ndim != 2 or adv.shape[0] != budgets.size:
            raise ValueError(f"{name} has {budgets.size} budget(s) but adv_correct of shape {np.shape(a.adv_correct)}")
        out.append((name, budgets, adv, a))
    return out


def _attack_rows(checked: list[tuple[str, np.ndarray, np.ndarray, Any]], labels: np.ndarray,
                 correct: np.ndarray) -> list[tuple[float, np.ndarray, dict[str, Any]]]:
    """
    :param checked: The output of :func:`_attack_budgets`.
    :return: ``(eps, adv_correct (N,), description)`` per budget of the attack results, in the order given.
    :raises ValueError: For a result of other samples (their number, labels or clean predictions differ).
    """
    n = correct.size
    rows = []
    for name, budgets, adv, a in checked:
        if adv.shape[1] != n:
            raise ValueError(f"{name} holds {adv.shape[1]} samples but x holds {n}: run it on the same x and y")
        own = getattr(a, "labels", None)
        if own is not None and not np.array_equal(np.asarray(own), labels):
            raise ValueError(f"{name} has other labels than the bounds: run it on the same x and y")
        clean = np.asarray(a.clean_correct, dtype=bool)
        if not np.array_equal(clean, correct):
            k = int((clean != correct).sum())
            raise ValueError(
                f"{name} disagrees with the bounds on which samples are classified correctly ({k} of {n}): run it on "
                "the same classifier, x and y"
            )
        params = {k: v for k, v in (getattr(a, "params", None) or {}).items() if k != "eps"}
        attack = str(getattr(a, "attack", type(a).__name__))
        rows += [(e, row, {"attack": attack, "eps": e, "params": params}) for e, row in zip(budgets.tolist(), adv)]
    return rows


def _checked_bounds(bounds: MarginBoundsResult, classifier: Any, x: Any, y: Any, batch_size: int,
                    computing: dict[str, Any]) -> MarginBoundsResult:
    """
    A given :class:`MarginBoundsResult`, checked against the data: its number of samples, its predictions (one
    forward pass over ``x``) and, with ``y``, its labels; none of the options of computing it may be given.
    """
    given = sorted(k for k, v in computing.items() if v not in (None, {}))
    if given:
        raise ValueError(f"bounds is given, so {', '.join(given)} (options of computing it) cannot apply: leave them "
                         "out, or pass bounds=None to compute the bounds with them")
    prep = prepare(classifier, x, y)
    if prep.n != bounds.lower.size:
        raise ValueError(f"bounds holds {bounds.lower.size} samples but x holds {prep.n}")
    with prep.view.evaluating():
        pred = predict_logits(prep.view, prep.x, batch_size).argmax(dim=1).cpu().numpy()
    if not np.array_equal(pred, np.asarray(bounds.predictions)):
        k = int((pred != np.asarray(bounds.predictions)).sum())
        raise ValueError(f"bounds was not computed with this classifier on this x: their predictions differ on {k} "
                         f"of {prep.n} samples")
    if prep.labels is not None and not np.array_equal(prep.labels, np.asarray(bounds.labels)):
        raise ValueError("bounds was computed with other labels than y")
    return bounds


def robust_accuracy_bounds(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    eps: "float | Sequence[float] | np.ndarray",
    norm: "int | float | str | Norm | None" = None,
    bounds: "MarginBoundsResult | None" = None,
    attacks: Any = None,
    method: "str | None" = None,
    settings: "BoundsSettings | None" = None,
    deepfool: "DeepFoolSettings | None" = None,
    batch_size: int = 128,
    verbose: bool = False,
    **options: Any,
) -> RobustAccuracyBoundsResult:
    """
    Brackets of robust accuracy over budgets ``eps``: the certified robust accuracy (correct samples whose certified
    lower bound of :func:`~art_geometry.margin_bounds` exceeds ``eps``) below the true robust accuracy, the empirical
    one of DeepFool (correct samples whose DeepFool margin exceeds ``eps``) and of the ``attacks`` given above it.
    Definitions and the strict comparison in :mod:`art_geometry.bounds.accuracy`. This is the bracket in which
    verification papers report robustness (Wong & Kolter, ICML 2018; Tjeng et al., ICLR 2019: the certified error
    from the verifier above, the error of an attack below), here from the per-sample margin bracket; the
    empirical side is the adversarial accuracy of Madry et al. (ICLR 2018).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module``.
    :param x: Inputs ``(N, *input_shape)`` (never modified).
    :param y: Labels; default the predictions (every sample counts as correct), or ``bounds.labels`` when
              ``bounds`` is given.
    :param eps: A budget or an increasing 1-D sequence of budgets, each finite and ``>= 0``.
    :param norm: 1, 2 or inf; default the norm of ``bounds``, or inf.
    :param bounds: A :class:`~art_geometry.MarginBoundsResult` of the same ``classifier``, ``x`` (and ``y``), to
                   reuse instead of computing one (checked: its norm, its number of samples, its predictions by
                   one forward pass, its labels when ``y`` is given); then ``method``, ``settings``, ``deepfool``
                   and ``options`` must be left out.
    :param attacks: Results of attacks on the same ``x`` and ``y`` in the same norm: a ``RobustnessResult``
                    (:func:`~art_geometry.robust_accuracy`, e.g. PGD through ART at one budget), a
                    ``RobustnessCurve`` (:func:`~art_geometry.robustness_curve`, several budgets), or a list of
                    them; ``None``: DeepFool only. Their budgets need not be on the ``eps`` grid.
    :param method: ``margin_bounds``' method (``"auto"``, ``"milp"``, ``"crown"``, ``"lipschitz"``).
    :param settings: ``margin_bounds``' :class:`~art_geometry.BoundsSettings`.
    :param deepfool: ``margin_bounds``' :class:`~art_geometry.DeepFoolSettings` of the upper bound; with
                     ``box=True`` DeepFool stays inside ``clip_values``, as ART's attacks do, and its curve bounds
                     the robust accuracy inside them (by default it bounds the one in all of R^D; the certified
                     curve bounds both).
    :param batch_size: Samples per batch.
    :param verbose: Show progress bars.
    :param options: Overrides of single ``BoundsSettings`` fields (e.g. ``budget=1``), for computing the bounds.
    :return: A :class:`RobustAccuracyBoundsResult`.
    :raises ValueError: For bad budgets (negative, NaN, infinite, not increasing: named ``eps`` / ``eps[i]``), a bad
                        ``norm``, ``batch_size`` or ``verbose``, what :func:`~art_geometry.margin_bounds` refuses,
                        a ``bounds`` or attack result that does not fit the data (named ``bounds`` /
                        ``attacks[i]``).
    :raises TypeError: For a ``bounds`` or attack result of the wrong type.
    :warns UserWarning: When an attack breaks a sample certified at its budget (a certified bound would be unsound).
    """
    grid = _eps_grid(eps)
    parsed = None if norm is None else Norm.parse(norm, (L1, L2, LINF))
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    if bounds is not None and not isinstance(bounds, MarginBoundsResult):
        raise TypeError(f"bounds must be a MarginBoundsResult (from margin_bounds), got {type(bounds).__name__}")
    if bounds is not None and parsed is not None and parsed.p != float(bounds.norm):
        raise ValueError(f"norm={parsed} but bounds was computed in norm {float(bounds.norm):g}")
    if parsed is None:
        parsed = LINF if bounds is None else Norm.parse(bounds.norm, (L1, L2, LINF))
    checked = _attack_budgets(_attack_results(attacks), parsed)
    if bounds is None:
        bounds = margin_bounds(classifier, x, y, norm=parsed, method=method, settings=settings, deepfool=deepfool,
                               batch_size=batch_size, verbose=verbose, **options)
    else:
        computing = {"method": method, "settings": settings, "deepfool": deepfool, "options": options}
        bounds = _checked_bounds(bounds, classifier, x, y, batch_size, computing)
    return _accuracy_bounds(bounds, grid, parsed, checked)


def _accuracy_bounds(bounds: MarginBoundsResult, grid: np.ndarray, norm: Norm,
                     checked: list[tuple[str, np.ndarray, np.ndarray, Any]]) -> RobustAccuracyBoundsResult:
    """The curves of a checked bracket, with the attack results placed and the soundness of the bounds checked."""
    lower = np.asarray(bounds.lower, dtype=np.float64)
    upper = np.asarray(bounds.upper, dtype=np.float64)
    correct = np.asarray(bounds.correct, dtype=bool)
    rows = _attack_rows(checked, np.asarray(bounds.labels), correct)
    order = sorted(range(len(rows)), key=lambda k: rows[k][0])
    rows = [rows[k] for k in order]
    adv = np.stack([r[1] for r in rows]) if rows else None
    result = RobustAccuracyBoundsResult(
        eps=grid,
        certified=_robust_fraction(lower, correct, grid),
        deepfool=_robust_fraction(upper, correct, grid),
        lower=lower.copy(),
        upper=upper.copy(),
        correct=correct.copy(),
        attack_eps=np.array([r[0] for r in rows], dtype=np.float64),
        attack_accuracy=np.array([r[1].mean() for r in rows], dtype=np.float64),
        attack_correct=adv,
        norm=norm.p,
        params=jsonable({"norm": norm.to_json(), "bounds": bounds.params, "attacks": [r[2] for r in rows]}),
    )
    for a in result.attacks():
        if a["violations"]:
            warnings.warn(
                f"robust_accuracy_bounds: {a['attack']} at eps={a['eps']:g} broke {a['violations']} sample(s) "
                "certified robust at that budget: a certified lower bound is unsound there (please report it, with "
                "the model), or the attack ran on another classifier", UserWarning, stacklevel=3,
            )
    return result

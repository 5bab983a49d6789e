"""
Certified lower bounds beside the DeepFool margins: per sample a bracket ``lower <= distance <= upper`` of the
distance to the boundary of the predicted region.

The paper measures margins with DeepFool, an upper bound of the distance (its point is adversarial), and names
the missing half as future work (Sec. 4): "apply formal verification techniques to derive lower bounds for the
margins of data points". :func:`margin_bounds` computes both halves on the same prepared data: ``upper``, the
DeepFool margin, and ``lower``, a radius certified to contain no point of another class, by

* ``"milp"`` (:mod:`~art_geometry.bounds.milp`): the exact distance of a ReLU network in L-inf or L1;
* ``"alpha-crown"`` and ``"crown"`` (:mod:`~art_geometry.bounds.crown`): linear bound propagation through the
  model's layers (:mod:`~art_geometry.bounds.propagation`), searched on the radius;
* ``"lipschitz"`` (:mod:`~art_geometry.bounds.lipschitz`): the logit gap over a certified Lipschitz constant;
* ``"auto"``: per sample the tightest that fits the budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from art_geometry.bounds._network import Chain, read_chain
from art_geometry.bounds.crown import crown_cost, crown_radii, crown_supported
from art_geometry.bounds.lipschitz import LipschitzBound
from art_geometry.bounds.milp import Layers, exact_distance, unstable_relus
from art_geometry.bounds.propagation import Propagation
from art_geometry.core.batching import batches
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.results import ResultMixin, jsonable
from art_geometry.core.settings import BoundsSettings, DeepFoolSettings
from art_geometry.core.validation import check_bool, check_positive_int
from art_geometry.margins.measure import _margins
from art_geometry.margins.results import MarginResult

__all__ = ["MarginBoundsResult", "margin_bounds"]

#: The DeepFool norm whose verified adversarial point gives the upper bound in each norm (DeepFool has no L1
#: variant here: for L1 the L2 point is measured in L1).
_DEEPFOOL_NORM = {L1: L2, L2: L2, LINF: LINF}


def _milp_seconds(binaries: int) -> float:
    """
    The estimated seconds of one sample's MILP (all classes) with ``k = binaries`` binary variables (unstable ReLUs
    and the inputs of undecided max-pool windows: :func:`~art_geometry.bounds.milp.unstable_relus`):
    ``0.1 * 2^(k / 6)``, fitted on the digits MLP 64-24-24-10 of ``benchmarks/bench_bounds.py`` (9 unstable ReLUs:
    0.3-0.6 s, 18: about 1 s, 29: 4-12 s on a shared 2-core CPU); "auto" sends a sample to the MILP when this is
    within ``budget``.
    """
    return 0.1 * 2.0 ** (binaries / 6.0)


#: The MILP searches a box of radius ``(1 + 1e-6) upper``: the DeepFool point, adversarial in the model's dtype,
#: lies on the boundary to the dtype's precision, so the float64 program must look slightly past it.
_REACH = 1e-6


@dataclass(frozen=True)
class MarginBoundsResult(ResultMixin):
    """
    Certified lower bounds and DeepFool upper bounds of the distance to the boundary of the predicted region.

    :param lower: ``(N,)`` certified: no point of another class lies strictly inside this radius (0 where nothing
                  was certified).
    :param upper: ``(N,)`` the DeepFool margin (a verified adversarial point lies at this distance; ``inf`` where
                  DeepFool failed).
    :param ratio: ``(N,)`` ``lower / upper`` in ``[0, 1]`` (1 where both are equal, NaN where ``upper`` is 0 or
                  not finite and they differ).
    :param method: ``(N,)`` the method that certified each lower bound: ``"milp"``, ``"alpha-crown"``, ``"crown"``,
                   ``"lipschitz"`` or ``"none"``.
    :param status: ``(N,)`` ``"exact"`` (the MILP's exact distance), ``"bound"`` (a certified bound),
                   ``"time_limit"`` (the MILP's dual bound at its time limit) or ``"failed"`` (``lower = 0``).
    :param predictions: ``(N,)`` the model's predictions at ``x``.
    :param labels: ``(N,)`` the labels, or the predictions when none were given.
    :param correct: ``(N,)`` ``predictions == labels``.
    :param norm: The norm: 1, 2 or inf.
    :param seconds: Wall-clock seconds per sample of each method run (``"deepfool"`` included), over the samples
                    it ran on.
    :param params: The settings used: the bound settings, the norm, the search box, the DeepFool parameters.
    """

    lower: np.ndarray
    upper: np.ndarray
    ratio: np.ndarray
    method: list[str]
    status: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    correct: np.ndarray
    norm: float
    seconds: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """
        :return: ``n_samples``, the median and 10th percentile of the finite ratios (``ratio_median``,
                 ``ratio_p10``, ``n_ratio``), the median lower and upper bounds, the count of samples per method
                 (``methods``) and per status (``status``), ``seconds`` per sample per method, and ``params``.
        """
        finite = self.ratio[np.isfinite(self.ratio)]
        nan = float("nan")
        return {
            "n_samples": int(self.lower.size),
            "ratio_median": float(np.median(finite)) if finite.size else nan,
            "ratio_p10": float(np.percentile(finite, 10)) if finite.size else nan,
            "n_ratio": int(finite.size),
            "lower_median": float(np.median(self.lower)),
            "upper_median": float(np.median(self.upper)),
            "methods": {m: self.method.count(m) for m in sorted(set(self.method))},
            "status": {s: self.status.count(s) for s in sorted(set(self.status))},
            "seconds": dict(self.seconds),
            "params": self.params,
        }


@dataclass
class _Bounds:
    """The lower bounds being assembled, per sample, with the seconds each method took."""

    lower: np.ndarray
    method: list[str]
    status: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)

    def offer(self, name: str, rows: np.ndarray, values: np.ndarray, status: "list[str] | np.ndarray") -> None:
        """
        Keep each offered value that is at least the current one (a later method is the tighter in kind), and
        every exact distance (the MILP's, which a tight bound may pass by the solver's tolerance).
        """
        for i, v, s in zip(rows, values, status):
            if self.method[i] == "none" or v >= self.lower[i] or s == "exact":
                self.lower[i], self.method[i], self.status[i] = v, name, str(s)

    def timed(self, name: str, n: int, run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = run()
        self.seconds[name] = (time.perf_counter() - start) / max(n, 1)
        return out


def _upper(res: MarginResult, norm: Norm) -> np.ndarray:
    """The DeepFool margin in ``norm`` (for L1, the L1 length of the verified L2 point)."""
    if norm != L1:
        return res.margins
    lengths = L1.measure(torch.from_numpy(res.perturbations).to(torch.float64)).numpy()
    return np.where(res.success, lengths, np.inf)


def _lipschitz(prep: Prepared, chain: Chain, norm: Norm, pred: np.ndarray, batch_size: int,
               verbose: bool) -> np.ndarray:
    bound = LipschitzBound.of(chain, norm)
    out = np.empty(prep.n, dtype=np.float64)
    with torch.no_grad():
        for b in batches(prep.view, prep.x, batch_size, labels=pred, verbose=verbose, desc="lipschitz"):
            out[b.sl] = bound.radii(chain(b.x), b.y).cpu().numpy()
    return out


def _programs(prep: Prepared, upper: np.ndarray, box: "tuple[float, float] | None", rows: np.ndarray,
              batch_size: int, verbose: bool = False) -> Iterator[tuple[int, int, np.ndarray, float]]:
    """
    :return: For each sample of ``rows`` the MILP can search (a finite upper bound, or a box): its position in
             ``rows``, its index, the flattened float64 sample and the search radius.
    """
    for b in batches(prep.view, prep.x, batch_size, order=rows, verbose=verbose, desc="milp"):
        flat = b.x.flatten(1).to(torch.float64).cpu().numpy()
        for k, pos in enumerate(range(b.sl.start, b.sl.stop)):
            i = int(rows[pos])
            radius = upper[i] * (1.0 + _REACH)
            if math.isfinite(radius) or box is not None:
                yield pos, i, flat[k], radius


def _milp(prep: Prepared, layers: Layers, norm: Norm, pred: np.ndarray, upper: np.ndarray,
          box: "tuple[float, float] | None", rows: np.ndarray, time_limit: float, batch_size: int,
          verbose: bool) -> tuple[np.ndarray, list[str]]:
    """Exact distances of the samples ``rows`` (one MILP per class each), searched within their upper bounds."""
    lower = np.zeros(len(rows), dtype=np.float64)
    status = ["failed"] * len(rows)
    for pos, i, xi, radius in _programs(prep, upper, box, rows, batch_size, verbose):
        lower[pos], status[pos] = exact_distance(layers, xi, int(pred[i]), radius, norm=norm, box=box,
                                                 time_limit=time_limit)
    return lower, status


def _milp_rows(prep: Prepared, layers: Layers, norm: Norm, upper: np.ndarray, box: "tuple[float, float] | None",
               budget: float, batch_size: int) -> np.ndarray:
    """The samples whose program "auto" expects to fit ``budget``, by their programs' binaries in the search box."""
    keep = [i for _, i, xi, radius in _programs(prep, upper, box, np.arange(prep.n), batch_size)
            if _milp_seconds(unstable_relus(layers, xi, radius, norm, box)) <= budget]
    return np.asarray(keep, dtype=np.int64)


def _crown_reason(prep: Prepared, norm: Norm) -> str:
    """:return: Why CROWN cannot bound this model in this norm, or ``""``."""
    if norm == L1:
        return "CROWN bounds support the norms 2 and inf"
    supported, why = crown_supported(prep.view, tuple(int(s) for s in prep.x.shape[1:]))
    return "" if supported else why


def _samples(prep: Prepared, rows: np.ndarray) -> "np.ndarray | torch.Tensor":
    """:return: The prepared samples ``rows``."""
    return prep.x[torch.as_tensor(rows)] if isinstance(prep.x, torch.Tensor) else prep.x[rows]


def _crown(prep: Prepared, norm: Norm, pred: np.ndarray, upper: np.ndarray, rows: np.ndarray,
           settings: BoundsSettings, alpha: bool, batch_size: int,
           propagation: "Propagation | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """(alpha-)CROWN's certified radii of the samples ``rows`` (with ``propagation`` when one is built already)."""
    return crown_radii(
        prep.view, _samples(prep, rows), torch.as_tensor(pred[rows]), norm, torch.as_tensor(upper[rows]),
        steps=settings.crown_steps, rtol=settings.crown_rtol, alpha_steps=settings.alpha_steps if alpha else 0,
        alpha_lr=settings.alpha_lr, batch_size=batch_size, propagation=propagation,
    )


def _ratio(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(upper) & (upper > 0), lower / upper, np.nan)
    return np.where(lower == upper, 1.0, ratio)


def _deepfool_settings(deepfool: Any, norm: Norm) -> DeepFoolSettings:
    wanted = _DEEPFOOL_NORM[norm]
    if deepfool is None:
        return DeepFoolSettings(norm=wanted)
    if not isinstance(deepfool, DeepFoolSettings):
        raise TypeError(f"deepfool must be a DeepFoolSettings, got {type(deepfool).__name__}")
    if deepfool.norm != wanted:
        what = "the L1 length of its L2 point bounds the L1 distance" if norm == L1 else "the norms must agree"
        raise ValueError(f"deepfool has norm={deepfool.norm} but norm={norm} needs norm={wanted} ({what})")
    return deepfool


def margin_bounds(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    norm: "int | float | str | Norm" = 2,
    method: "str | None" = None,
    settings: "BoundsSettings | None" = None,
    deepfool: "DeepFoolSettings | None" = None,
    batch_size: int = 128,
    verbose: bool = False,
    **options: Any,
) -> MarginBoundsResult:
    """
    A certified bracket ``lower <= d(x) <= upper`` of each sample's distance to the boundary of its predicted
    region: ``upper`` the DeepFool margin (Moosavi-Dezfooli et al., CVPR 2016; a verified adversarial point lies
    at that distance), ``lower`` a certified radius (the paper's future work, Sec. 4: lower bounds by formal
    verification), by

    * ``"milp"``: the exact distance of a ReLU network (affine layers, ReLUs and max-pools without
      ``ceil_mode``), L-inf or L1 only, by a mixed-integer program per class searched within the DeepFool margin
      (Tjeng et al., ICLR 2019); on time-out the solver's dual bound (status ``"time_limit"``);
    * ``"crown"``: CROWN linear bound propagation (Zhang et al., NeurIPS 2018) through the model's own layers
      (convolutions by their transposes, max-pools as tournaments of ReLUs), searched on the radius;
    * ``"alpha-crown"``: CROWN with the lower slopes of its unstable ReLUs optimised per sample and class
      (Xu et al., ICLR 2021): tighter, at ``1 + 2.5 alpha_steps`` final backward passes per evaluation;
    * ``"lipschitz"``: ``min_j (Z_pred - Z_j)(x) / L_j`` with certified Lipschitz constants of the logit
      differences (Hein & Andriushchenko, NeurIPS 2017, Theorem 2.1), for any chain of supported layers;
    * ``"auto"`` (default): the Lipschitz bound for every sample, the MILP for the samples whose program fits
      ``budget`` (ReLU and max-pool networks, L-inf and L1), for the others alpha-CROWN if its estimated cost per
      sample (:func:`~art_geometry.bounds.crown.crown_cost`, in ``result.params["estimated_seconds"]``) fits
      ``budget``, else CROWN if that fits; per sample the largest certified value, its method in
      ``result.method``. What it cannot use it names in a warning.

    With ``deepfool.box=True`` the distance is measured inside ``clip_values`` and the MILP searches inside them
    too; the CROWN and Lipschitz radii hold in all of R^D, so they bound that distance from below as well.
    ``lower <= upper`` always holds (a certified value above the verified ``upper`` is rounding: it is cut to
    ``upper``).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` (logits; a final
                       softmax is ignored, it does not change the predicted class).
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels, to split correct from incorrect samples; default: the predictions.
    :param norm: 1, 2 or inf (a :class:`~art_geometry.Norm`, ``np.inf``, ``"inf"``, ...).
    :param method: ``"auto"``, ``"milp"``, ``"alpha-crown"``, ``"crown"`` or ``"lipschitz"``; default
                   ``settings.method``.
    :param settings: A :class:`~art_geometry.BoundsSettings` (method, time_limit, budget, crown_steps,
                     crown_rtol, alpha_steps, alpha_lr); default ``BoundsSettings()``.
    :param deepfool: The :class:`~art_geometry.DeepFoolSettings` of the upper bound; default
                     ``DeepFoolSettings(norm=norm)`` (for L1: ``norm=2``, measured in L1, as DeepFool has no L1
                     variant); its norm must be that one.
    :param batch_size: Samples per batch.
    :param verbose: Show progress bars.
    :param options: Overrides of single ``BoundsSettings`` fields, e.g. ``time_limit=10``.
    :return: A :class:`MarginBoundsResult`.
    :raises ValueError: For bad options, ``method="milp"`` with L2 or on a network that is not affine + ReLU +
                        max-pool, ``method="crown"``, ``"alpha-crown"`` or ``"lipschitz"`` on unsupported layers
                        (listed), or a ``deepfool`` norm that does not fit ``norm``.
    """
    settings = BoundsSettings.build(settings, options)
    if method is not None:
        settings = dataclasses.replace(settings, method=method)
    norm = Norm.parse(norm, (L1, L2, LINF))
    deepfool = _deepfool_settings(deepfool, norm)
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    if settings.method == "milp" and norm == L2:
        raise ValueError("method='milp' supports norm=inf and norm=1; for L2 use 'crown' or 'lipschitz'")
    return _bounds(prepare(classifier, x, y), settings, norm, deepfool, batch_size, verbose)


def _bounds(prep: Prepared, settings: BoundsSettings, norm: Norm, deepfool: DeepFoolSettings, batch_size: int,
            verbose: bool) -> MarginBoundsResult:
    """:func:`margin_bounds` on prepared data with validated settings (shared with the tracker)."""
    view, n = prep.view, prep.n
    chain, layers, unsupported = None, None, ""
    if settings.method not in ("crown", "alpha-crown"):
        try:
            chain = read_chain(view, tuple(int(s) for s in prep.x.shape[1:]))
        except ValueError as err:
            if settings.method != "auto":
                raise
            unsupported = str(err)
    if chain is not None and (settings.method == "milp" or settings.method == "auto" and norm != L2):
        try:
            layers = chain.milp_layers("method='milp'")
        except ValueError:
            if settings.method == "milp":
                raise
    crown_why = _crown_reason(prep, norm) if settings.method in ("auto", "crown", "alpha-crown") else ""
    if settings.method in ("crown", "alpha-crown") and crown_why:
        raise ValueError(f"method={settings.method!r}: {crown_why}")

    bounds = _Bounds(np.zeros(n), ["none"] * n, ["failed"] * n)
    res = bounds.timed("deepfool", n, lambda: _margins(prep, deepfool, None, norm == L1, batch_size, verbose))
    pred, upper = res.predictions, _upper(res, norm)
    box = view.clip_values if deepfool.box else None
    everyone = np.arange(n)
    if settings.method == "auto":
        _auto(prep, bounds, chain, layers, unsupported, crown_why, norm, pred, upper, box, settings, batch_size,
              verbose)
    elif settings.method == "lipschitz":
        lip = bounds.timed("lipschitz", n, lambda: _lipschitz(prep, chain, norm, pred, batch_size, verbose))
        bounds.offer("lipschitz", everyone, lip, ["bound"] * n)
    elif settings.method == "milp":
        found = bounds.timed("milp", n, lambda: _milp(prep, layers, norm, pred, upper, box, everyone,
                                                       settings.time_limit, batch_size, verbose))
        bounds.offer("milp", everyone, *found)
    else:
        alpha = settings.method == "alpha-crown"
        found = bounds.timed(settings.method, n, lambda: _crown(prep, norm, pred, upper, everyone, settings, alpha,
                                                                 batch_size))
        bounds.offer(settings.method, everyone, *found)

    lower = np.minimum(bounds.lower, upper)
    params = jsonable({
        "norm": norm.to_json(), **settings.to_dict(), "box": box, "batch_size": batch_size, "deepfool": res.params,
        "estimated_seconds": bounds.estimates, **({"unsupported": unsupported} if unsupported else {}),
    })
    return MarginBoundsResult(
        lower=lower,
        upper=upper.astype(np.float64),
        ratio=_ratio(lower, upper),
        method=bounds.method,
        status=bounds.status,
        predictions=pred,
        labels=res.labels,
        correct=res.correct,
        norm=norm.p,
        seconds=bounds.seconds,
        params=params,
    )


def _auto(prep: Prepared, bounds: _Bounds, chain: "Chain | None", layers: "Layers | None", unsupported: str,
          crown_why: str, norm: Norm, pred: np.ndarray, upper: np.ndarray, box: "tuple[float, float] | None",
          settings: BoundsSettings, batch_size: int, verbose: bool) -> None:
    """
    ``method="auto"``: Lipschitz for all, MILP where it fits the budget, for the rest alpha-CROWN or else CROWN
    when its estimated cost (:func:`~art_geometry.bounds.crown.crown_cost`) fits the budget; the largest wins.
    """
    n = prep.n
    if chain is None and crown_why:
        warnings.warn(
            f"margin_bounds(method='auto'): no certified bound for this model ({unsupported}; {crown_why}): "
            "lower bounds are 0", UserWarning, stacklevel=3,
        )
        return
    everyone = np.arange(n)
    if chain is not None:
        lip = bounds.timed("lipschitz", n, lambda: _lipschitz(prep, chain, norm, pred, batch_size, verbose))
        bounds.offer("lipschitz", everyone, lip, ["bound"] * n)
    exact = np.zeros(n, dtype=bool)
    if layers is not None:
        rows = _milp_rows(prep, layers, norm, upper, box, settings.budget, batch_size)
        limit = min(settings.budget, settings.time_limit)
        if rows.size:
            lower, status = bounds.timed("milp", len(rows), lambda: _milp(prep, layers, norm, pred, upper, box, rows,
                                                                          limit, batch_size, verbose))
            bounds.offer("milp", rows, lower, status)
            exact[rows] = np.asarray(status) == "exact"
    rest = np.nonzero(~exact)[0]
    if not rest.size:
        return
    instead = "the Lipschitz bound is used instead" if chain is not None else "lower bounds are 0"
    if crown_why:
        if norm != L1:  # CROWN has no L1 ball: Lipschitz is the plan there, nothing to warn about
            warnings.warn(f"margin_bounds(method='auto'): CROWN is not used ({crown_why}); {instead}", UserWarning,
                          stacklevel=3)
        return
    cost = crown_cost(prep.view, prep.view.to_tensor(_samples(prep, rest)), torch.as_tensor(pred[rest]),
                      torch.as_tensor(upper[rest]), norm)
    steps = settings.crown_steps
    alpha_seconds, crown_seconds = cost.seconds(steps, settings.alpha_steps), cost.seconds(steps)
    bounds.estimates.update({"alpha-crown": alpha_seconds, "crown": crown_seconds})
    if crown_seconds > settings.budget:
        warnings.warn(
            f"margin_bounds(method='auto'): CROWN is not used (about {crown_seconds:.2g} s per sample, estimated on "
            f"{cost.samples} samples, over budget={settings.budget:g} s); {instead}; method='crown' forces it",
            UserWarning,
            stacklevel=3,
        )
        return
    name = "alpha-crown" if alpha_seconds <= settings.budget else "crown"
    found = bounds.timed(name, len(rest), lambda: _crown(prep, norm, pred, upper, rest, settings,
                                                         name == "alpha-crown", batch_size, cost.propagation))
    bounds.offer(name, rest, *found)

"""
Geometry over training: a callback that measures, at chosen epochs and on fixed seeded subsets of the training and
test sets, the accuracy, the populated-region-set ratio and inclusion ratio (the PRS paper: "Empirical Study of the
Decision Region and Robustness in Deep Neural Networks", ICLR 2022 submission, Figs. 5 and 9), the L2 and L-inf
DeepFool margins split by correct and incorrect samples (the margins paper: "Understanding the Decision Boundary of
Deep Neural Networks: An Empirical Study", margins of train and test samples over epochs, natural vs adversarial
training), the robust accuracy under PGD, and the transitions of samples between correct and incorrect between
consecutive tracked epochs (the data of the margins paper's Sankey diagram).

One tracker API for three ways of training:

* :class:`art_geometry.training.JacobianRegularizedTrainer`: pass the tracker in ``callbacks``;
* ART's ``PyTorchClassifier.fit`` and ART's ``AdversarialTrainer``: :func:`fit_tracked` trains one epoch at a
  time and calls the tracker after each.

The history is a JSON-safe dict (``tracker.history``; :meth:`GeometryTracker.to_json` /
:meth:`GeometryTracker.from_json`), plotted by :mod:`art_geometry.plots.training`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any, Iterable

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer

from art_geometry.core.batching import predict_logits
from art_geometry.core.modes import restoring
from art_geometry.core.norms import L2, LINF, Norm
from art_geometry.core.positional import legacy_positional
from art_geometry.core.prepare import Prepared, prepare, prepare_more
from art_geometry.core.results import jsonable
from art_geometry.core.rng import seeded
from art_geometry.core.settings import AttackSettings, BoundsSettings, DeepFoolSettings
from art_geometry.core.validation import (
    check_array,
    check_bool,
    check_int,
    check_labels,
    check_number,
    check_positive_int,
)

__all__ = ["GeometryTracker", "fit_tracked", "METRICS", "transitions"]

#: What the tracker can measure (all by default).
METRICS = ("accuracy", "regions", "margins", "robustness", "brackets")
#: The metrics computed by default (``"brackets"``, the certified lower bounds beside the margins, on request).
DEFAULT_METRICS = ("accuracy", "regions", "margins", "robustness")

_NORM_KEYS = {L2: "l2", LINF: "linf"}


def transitions(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """
    Counts of samples moving between correct and incorrect from one evaluation to the next.

    :param before: ``(N,)`` correctness at the earlier epoch.
    :param after: ``(N,)`` correctness at the later epoch (same samples).
    :return: ``{"correct->correct", "correct->incorrect", "incorrect->correct", "incorrect->incorrect"}`` counts.
    :raises ValueError: When the two are not 1-D arrays of the same length (the same samples).
    """
    b, a = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    if b.ndim != 1 or b.shape != a.shape:
        raise ValueError(
            f"before and after must be the correctness of the same samples, 1-D and of one length; got shapes "
            f"{b.shape} and {a.shape}"
        )
    return {
        "correct->correct": int((b & a).sum()),
        "correct->incorrect": int((b & ~a).sum()),
        "incorrect->correct": int((~b & a).sum()),
        "incorrect->incorrect": int((~b & ~a).sum()),
    }


def _classifier_of(obj: Any) -> Any:
    return obj.get_classifier() if isinstance(obj, Trainer) else obj


def _check_data(x: Any, y: Any, x_name: str, y_name: str) -> None:
    """
    The checks that need no model: ``x`` a batch of finite real samples, ``y`` class indices or one-hot rows for
    each of them (the range of the labels is checked against the model by :func:`prepare` at the first use).
    """
    check_array(x, x_name)
    width = y.shape[1] if getattr(y, "ndim", 0) == 2 else np.iinfo(np.int64).max
    check_labels(y, len(x), int(width), y_name)


def _take(a: "np.ndarray | torch.Tensor", idx: np.ndarray) -> "np.ndarray | torch.Tensor":
    """:return: The rows ``idx`` of an array or tensor (a copy)."""
    return a[torch.from_numpy(idx).to(a.device)] if isinstance(a, torch.Tensor) else a[idx]


def _attack_settings(settings: "AttackSettings | None", pgd_eps: Any, pgd_iter: Any, seed: int) -> AttackSettings:
    """The tracker's attack: ``settings``, or PGD L-inf eps 0.1, 10 iterations, with the tracker's seed."""
    default = AttackSettings(attack="pgd", eps=0.1, norm=LINF, max_iter=10, seed=seed)
    if pgd_eps is None and pgd_iter is None:
        return default if settings is None else AttackSettings.build(settings)
    if settings is not None:
        raise TypeError("pass either attack_settings or the deprecated pgd_eps / pgd_iter, not both")
    warnings.warn(
        "GeometryTracker: pgd_eps and pgd_iter are deprecated and will stop working in the next release; write "
        "attack_settings=AttackSettings(eps=..., max_iter=...)",
        DeprecationWarning,
        stacklevel=3,
    )
    overrides: dict[str, Any] = {}
    if pgd_eps is not None:
        overrides["eps"] = check_number(pgd_eps, "pgd_eps", minimum=0.0)
    if pgd_iter is not None:
        overrides["max_iter"] = check_positive_int(pgd_iter, "pgd_iter")
    return AttackSettings.build(default, overrides)


class GeometryTracker:
    """
    Evaluate geometry metrics at chosen epochs, on ``n_train`` training and ``n_test`` test samples drawn once with
    ``seed`` (the same samples at every epoch).

    Per tracked epoch and subset: ``accuracy`` and per-sample ``correct``; ``prs_ratio`` and ``n_regions``
    (:func:`art_geometry.regions.populated_region_set` at ``layer``); for the test subset ``inclusion_ratio``
    (regions of test samples populated by the tracked training samples; :func:`art_geometry.regions.inclusion_ratio`);
    the DeepFool margin summaries per norm (``"l2"``, ``"linf"``; :func:`art_geometry.margins.deepfool_margins`,
    median/mean/std_error overall and for ``"correct"`` / ``"incorrect"``); and for the test subset
    ``robust_accuracy`` under the attack of ``attack_settings`` (:func:`art_geometry.robustness.robust_accuracy`;
    default PGD). Each record also holds the trainer's logs and the seconds each metric took.

    :param x_train: Training inputs (the subset is drawn from them; never modified).
    :param y_train: Training labels.
    :param x_test: Test inputs.
    :param y_test: Test labels.
    :param epochs: 0-based epochs to evaluate after; ``None`` for every epoch.
    :param n_train: Size of the training subset (all samples when larger).
    :param n_test: Size of the test subset.
    :param metrics: Which of :data:`METRICS` to compute (default :data:`DEFAULT_METRICS`); ``"brackets"`` records,
                    per norm, the summary of :func:`art_geometry.margin_bounds` (certified lower bound, DeepFool
                    upper bound, their ratio) with ``bounds_settings``.
    :param norms: Norms of the margins (2 and/or ``np.inf``).
    :param margin_options: :class:`~art_geometry.DeepFoolSettings` fields for the margins (e.g. ``max_iter``,
                           ``restarts``); ``norm`` comes from ``norms``, ``seed`` defaults to the tracker's.
    :param layer: Layer of the activation regions (default: the regions module's).
    :param attack_settings: The attack of the robust accuracy, an :class:`~art_geometry.AttackSettings`; default
                            PGD, L-inf, ``eps = 0.1``, 10 iterations, the tracker's seed.
    :param bounds_settings: The certified lower bounds of the ``"brackets"`` metric, a
                            :class:`~art_geometry.BoundsSettings`; default ``BoundsSettings(method="lipschitz")``
                            (valid for any model, one forward pass; ``"auto"`` is tighter and slower).
    :param pgd_eps: Deprecated: ``attack_settings=AttackSettings(eps=...)``.
    :param pgd_iter: Deprecated: ``attack_settings=AttackSettings(max_iter=...)``.
    :param batch_size: Batch size of every evaluation.
    :param seed: Seed of the subsets (and of the margins' restarts and the default attack).
    :param verbose: Progress bars of the metrics.
    :raises ValueError: For bad data (named ``x_train``, ``y_train``, ``x_test``, ``y_test``) or options.
    """

    def __init__(
        self,
        x_train: "np.ndarray | torch.Tensor",
        y_train: "np.ndarray | torch.Tensor",
        x_test: "np.ndarray | torch.Tensor",
        y_test: "np.ndarray | torch.Tensor",
        *,
        epochs: Iterable[int] | None = None,
        n_train: int = 200,
        n_test: int = 200,
        metrics: Iterable[str] = DEFAULT_METRICS,
        norms: Iterable[Any] = (2, np.inf),
        margin_options: dict[str, Any] | None = None,
        layer: str | None = None,
        attack_settings: AttackSettings | None = None,
        bounds_settings: BoundsSettings | None = None,
        pgd_eps: float | None = None,
        pgd_iter: int | None = None,
        batch_size: int = 256,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.metrics = tuple(metrics)
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known metrics: {', '.join(METRICS)}")
        self.norms: tuple[Norm, ...] = tuple(Norm.parse(n, name="margin norms") for n in norms)
        self.seed = check_int(seed, "seed", minimum=0)
        self.margin_options = dict(margin_options or {})
        if "norm" in self.margin_options:
            raise ValueError("margin_options must not set norm: the margins' norms are given by norms")
        DeepFoolSettings.build(None, self.margin_options)
        self.epochs = None if epochs is None else sorted({check_int(e, "epochs", minimum=0) for e in epochs})
        self.layer = layer
        self.attack_settings = _attack_settings(attack_settings, pgd_eps, pgd_iter, self.seed)
        self.bounds_settings = BoundsSettings.build(
            BoundsSettings(method="lipschitz") if bounds_settings is None else bounds_settings
        )
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.verbose = check_bool(verbose, "verbose")
        rng = np.random.default_rng(self.seed)
        self._subsets = {}
        for name, x, y, n in (("train", x_train, y_train, n_train), ("test", x_test, y_test, n_test)):
            _check_data(x, y, f"x_{name}", f"y_{name}")
            n = check_positive_int(n, f"n_{name}")
            idx = np.sort(rng.permutation(len(x))[:n])
            self._subsets[name] = (_take(x, idx), _take(y, idx), idx)
        self.history: dict[str, Any] = {"config": self.config, "epochs": [], "transitions": []}

    @property
    def config(self) -> dict[str, Any]:
        """The tracker's settings (JSON-safe); ``pgd_eps`` / ``pgd_iter`` repeat the attack's budget and iterations."""
        return jsonable(
            {
                "epochs": self.epochs,
                "metrics": list(self.metrics),
                "norms": [n.to_json() for n in self.norms],
                "margin_options": self.margin_options,
                "layer": self.layer,
                "attack": self.attack_settings.to_dict(),
                "bounds": self.bounds_settings.to_dict(),
                "pgd_eps": self.attack_settings.eps,
                "pgd_iter": self.attack_settings.max_iter,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "train_indices": self._subsets["train"][2],
                "test_indices": self._subsets["test"][2],
            }
        )

    def tracks(self, epoch: int) -> bool:
        """:return: Whether ``epoch`` is evaluated."""
        return self.epochs is None or epoch in self.epochs

    def on_epoch_end(self, epoch: int, trainer: Any, logs: dict[str, float] | None = None) -> None:
        """
        The callback: evaluate after ``epoch`` when it is tracked.

        :param epoch: 0-based epoch.
        :param trainer: The trainer (an ART ``Trainer``, whose classifier is evaluated) or the classifier.
        :param logs: The trainer's figures of the epoch, stored with the record.
        """
        if self.tracks(epoch):
            self.evaluate(_classifier_of(trainer), epoch, logs)

    def evaluate(self, classifier: Any, epoch: int, logs: dict[str, float] | None = None) -> dict[str, Any]:
        """
        Measure now and append the record (and the transitions from the previous record) to the history.

        :param classifier: The classifier being trained (its mode and parameters are left as they are).
        :param epoch: The epoch number to file the record under.
        :param logs: Extra figures to store with the record.
        :return: The record.
        """
        start = time.perf_counter()
        record: dict[str, Any] = {"epoch": int(epoch), "logs": jsonable(dict(logs or {})), "timing": {}}
        x_tr, y_tr, _ = self._subsets["train"]
        x_te, y_te, _ = self._subsets["test"]
        train = prepare(classifier, x_tr, y_tr, require_labels=True, x_name="x_train", y_name="y_train")
        preps = {"train": train, "test": prepare_more(train, x_te, y_te, x_name="x_test", y_name="y_test")}
        for name, prep in preps.items():
            record[name] = self._measure(classifier, prep, train, name, record["timing"])
        record["timing"]["total"] = time.perf_counter() - start
        record = jsonable(record)
        previous = self.history["epochs"][-1] if self.history["epochs"] else None
        self.history["epochs"].append(record)
        if previous is not None:
            self.history["transitions"].append(
                {
                    "from": previous["epoch"],
                    "to": record["epoch"],
                    **{s: transitions(previous[s]["correct"], record[s]["correct"]) for s in ("train", "test")},
                }
            )
        return record

    def _measure(
        self, classifier: Any, prep: Prepared, train: Prepared, name: str, timing: dict[str, float]
    ) -> dict[str, Any]:
        """The metrics of one prepared subset (``train``: the training subset, whose regions include)."""
        from art_geometry.bounds.brackets import _bounds
        from art_geometry.margins.measure import _margins
        from art_geometry.regions.prs import _inclusion, _region_set
        from art_geometry.robustness.attacks import resolve_attack
        from art_geometry.robustness.metrics import _estimator, _robust

        view, bs, verbose = prep.view, self.batch_size, self.verbose
        out: dict[str, Any] = {}
        tic = time.perf_counter()
        with view.evaluating():
            pred = predict_logits(view, prep.x, bs).argmax(dim=1).cpu().numpy()
        out["correct"] = pred == prep.labels
        out["accuracy"] = float(out["correct"].mean())
        timing[f"{name}.accuracy"] = time.perf_counter() - tic
        if "regions" in self.metrics:
            tic = time.perf_counter()
            prs = _region_set(prep, self.layer, bs, verbose)
            out["prs_ratio"], out["n_regions"], out["layer"] = prs.ratio, prs.n_regions, prs.layer
            if name == "test":
                out["inclusion_ratio"] = _inclusion(train, prep, self.layer, bs, verbose).ratio
            timing[f"{name}.regions"] = time.perf_counter() - tic
        if "margins" in self.metrics:
            out["margins"] = {}
            for norm in self.norms:
                tic = time.perf_counter()
                settings = DeepFoolSettings.build(None, {"seed": self.seed, **self.margin_options, "norm": norm})
                res = _margins(prep, settings, None, False, bs, verbose)
                out["margins"][_NORM_KEYS[norm]] = res.summary()
                timing[f"{name}.margins_{_NORM_KEYS[norm]}"] = time.perf_counter() - tic
        if "brackets" in self.metrics:
            out["brackets"] = {}
            for norm in self.norms:
                tic = time.perf_counter()
                settings = DeepFoolSettings.build(None, {"seed": self.seed, **self.margin_options, "norm": norm})
                bracket = _bounds(prep, self.bounds_settings, norm, settings, bs, verbose)
                out["brackets"][_NORM_KEYS[norm]] = bracket.summary()
                timing[f"{name}.brackets_{_NORM_KEYS[norm]}"] = time.perf_counter() - tic
        if "robustness" in self.metrics and name == "test":
            tic = time.perf_counter()
            spec = resolve_attack(None, self.attack_settings, {})
            rob = _robust(prep, spec, _estimator(classifier, prep, spec), bs, verbose, False)
            out["robust_accuracy"] = rob.robust_accuracy
            timing[f"{name}.robustness"] = time.perf_counter() - tic
        return out

    def to_json(self, path: "str | os.PathLike[str]") -> None:
        """
        :param path: Where to write the history (JSON).
        """
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.history, f, indent=1)

    @staticmethod
    def from_json(path: "str | os.PathLike[str]") -> dict[str, Any]:
        """
        :param path: A file written by :meth:`to_json`.
        :return: The history dict (what ``tracker.history`` was).
        :raises ValueError: When the file is not JSON or not a tracker history.
        """
        with open(path, encoding="utf-8") as f:
            try:
                history = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not a GeometryTracker history: not valid JSON ({err})") from err
        if not isinstance(history, dict) or not {"config", "epochs", "transitions"} <= set(history):
            raise ValueError(f"{path} is not a GeometryTracker history (keys config, epochs, transitions)")
        return history


def _art_input(prep: Prepared) -> np.ndarray:
    """A C-contiguous copy of the validated inputs in the model's dtype, as ART's ``fit`` needs (numpy only)."""
    x = prep.x.detach().cpu().numpy() if isinstance(prep.x, torch.Tensor) else prep.x
    dtype = torch.empty((), dtype=prep.view.dtype).numpy().dtype
    return np.array(x, dtype=dtype, order="C", copy=True)


@legacy_positional("nb_epochs", "batch_size", "tracker", "seed", after=3)
def fit_tracked(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor",
    *,
    nb_epochs: int,
    batch_size: int,
    tracker: GeometryTracker,
    seed: int = 0,
    trainer: Trainer | None = None,
) -> dict[str, Any]:
    """
    Train with ART one epoch at a time and call ``tracker`` after each: ``classifier.fit(nb_epochs=1)`` (natural
    training), or ``trainer.fit(nb_epochs=1)`` for an ART trainer such as ``AdversarialTrainer`` (e.g. ratio 0.5
    with PGD; Madry et al., ICLR 2018). ART shuffles with numpy's global generator: each epoch runs under
    ``seeded(seed + epoch)``, and the user's global states are restored. The model's train/eval mode and
    ``requires_grad`` flags are restored at the end (ART's ``fit`` leaves it in train mode).

    ``x`` and ``y`` are validated first (finite samples of the classifier's input shape, one label in range per
    sample); ART gets a C-contiguous copy of ``x`` in the model's dtype and the labels as class indices, so any
    numpy stride or dtype, or a tensor, works and the user's arrays are never touched.

    :param classifier: An ART ``PyTorchClassifier`` (the one ``trainer`` trains, when given).
    :param x: Training inputs ``(N, *input_shape)``.
    :param y: Training labels, indices or one-hot.
    :param nb_epochs: Epochs, ``>= 1``.
    :param batch_size: Batch size, ``>= 1``.
    :param tracker: The tracker.
    :param seed: Seed of the shuffling (and of the attacks ART's trainer draws), ``>= 0``.
    :param trainer: An ART ``Trainer`` to train with instead of ``classifier.fit``.
    :return: The tracker's history.
    :raises ValueError: For bad inputs (named ``x`` / ``y``), options, or a trainer of another classifier.
    """
    nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_int(seed, "seed", minimum=0)
    if not callable(getattr(tracker, "on_epoch_end", None)) or not hasattr(tracker, "history"):
        raise TypeError(
            "tracker must be a GeometryTracker (an object with on_epoch_end(epoch, classifier, logs) and history), "
            f"got {type(tracker).__name__}"
        )
    if trainer is not None and trainer.get_classifier() is not classifier:
        raise ValueError("trainer trains another classifier than the one given")
    prep = prepare(classifier, x, y, require_labels=True)
    if trainer is None and not callable(getattr(classifier, "fit", None)):
        raise TypeError(
            f"fit_tracked trains with ART: the classifier must be an ART PyTorchClassifier (with fit), got "
            f"{type(classifier).__name__}"
        )
    x_art, y_art = _art_input(prep), prep.labels
    with restoring(prep.view.module):
        for epoch in range(nb_epochs):
            tic = time.perf_counter()
            with seeded(seed + epoch):
                if trainer is None:
                    classifier.fit(x_art, y_art, batch_size=batch_size, nb_epochs=1, verbose=False)
                else:
                    trainer.fit(x_art, y_art, batch_size=batch_size, nb_epochs=1)
            tracker.on_epoch_end(epoch, classifier, {"time": time.perf_counter() - tic})
    return tracker.history

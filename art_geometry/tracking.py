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
import math
import os
import time
from typing import Any, Iterable

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer

from art_geometry._batching import predict_logits
from art_geometry._model import model_view
from art_geometry._results import jsonable
from art_geometry._rng import seeded
from art_geometry._validation import check_inputs, check_labels, check_positive_int

__all__ = ["GeometryTracker", "fit_tracked", "METRICS", "transitions"]

#: What the tracker can measure (all by default).
METRICS = ("accuracy", "regions", "margins", "robustness")

_NORM_KEYS = {2.0: "l2", math.inf: "linf"}


def transitions(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """
    Counts of samples moving between correct and incorrect from one evaluation to the next.

    :param before: ``(N,)`` correctness at the earlier epoch.
    :param after: ``(N,)`` correctness at the later epoch (same samples).
    :return: ``{"correct->correct", "correct->incorrect", "incorrect->correct", "incorrect->incorrect"}`` counts.
    """
    b, a = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    return {
        "correct->correct": int((b & a).sum()),
        "correct->incorrect": int((b & ~a).sum()),
        "incorrect->correct": int((~b & a).sum()),
        "incorrect->incorrect": int((~b & ~a).sum()),
    }


def _classifier_of(obj: Any) -> Any:
    return obj.get_classifier() if isinstance(obj, Trainer) else obj


class GeometryTracker:
    """
    Evaluate geometry metrics at chosen epochs, on ``n_train`` training and ``n_test`` test samples drawn once with
    ``seed`` (the same samples at every epoch).

    Per tracked epoch and subset: ``accuracy`` and per-sample ``correct``; ``prs_ratio`` and ``n_regions``
    (:func:`art_geometry.regions.populated_region_set` at ``layer``); for the test subset ``inclusion_ratio``
    (regions of test samples populated by the tracked training samples; :func:`art_geometry.regions.inclusion_ratio`);
    the DeepFool margin summaries per norm (``"l2"``, ``"linf"``; :func:`art_geometry.margins.deepfool_margins`,
    median/mean/std_error overall and for ``"correct"`` / ``"incorrect"``); and for the test subset
    ``robust_accuracy`` under PGD (:func:`art_geometry.robustness.robust_accuracy`). Each record also holds the
    trainer's logs and the seconds each metric took.

    :param x_train: Training inputs (the subset is drawn from them; never modified).
    :param y_train: Training labels.
    :param x_test: Test inputs.
    :param y_test: Test labels.
    :param epochs: 0-based epochs to evaluate after; ``None`` for every epoch.
    :param n_train: Size of the training subset (all samples when larger).
    :param n_test: Size of the test subset.
    :param metrics: Which of :data:`METRICS` to compute.
    :param norms: Norms of the margins (2 and/or ``np.inf``).
    :param margin_options: Keyword options for ``deepfool_margins`` (e.g. ``max_iter``, ``restarts``).
    :param layer: Layer of the activation regions (default: the regions module's).
    :param pgd_eps: L-inf budget of the PGD robust accuracy.
    :param pgd_iter: PGD iterations.
    :param batch_size: Batch size of every evaluation.
    :param seed: Seed of the subsets and of the attacks.
    :param verbose: Progress bars of the metrics.
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
        metrics: Iterable[str] = METRICS,
        norms: Iterable[float] = (2, np.inf),
        margin_options: dict[str, Any] | None = None,
        layer: str | None = None,
        pgd_eps: float = 0.1,
        pgd_iter: int = 10,
        batch_size: int = 256,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.metrics = tuple(metrics)
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known metrics: {', '.join(METRICS)}")
        self.norms = tuple(float(n) for n in norms)
        bad = [n for n in self.norms if n not in _NORM_KEYS]
        if bad:
            raise ValueError(f"margin norms must be 2 or np.inf, got {bad}")
        if not (isinstance(pgd_eps, (int, float)) and pgd_eps >= 0):
            raise ValueError(f"pgd_eps must be a non-negative number, got {pgd_eps!r}")
        self.epochs = None if epochs is None else sorted({int(e) for e in epochs})
        self.margin_options = dict(margin_options or {})
        self.layer = layer
        self.pgd_eps = float(pgd_eps)
        self.pgd_iter = check_positive_int(pgd_iter, "pgd_iter")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = int(seed)
        self.verbose = verbose
        rng = np.random.default_rng(seed)
        self._subsets = {}
        for name, x, y, n in (("train", x_train, y_train, n_train), ("test", x_test, y_test, n_test)):
            n = check_positive_int(n, f"n_{name}")
            idx = np.sort(rng.permutation(len(x))[:n])
            xs = x[torch.from_numpy(idx)] if isinstance(x, torch.Tensor) else np.asarray(x)[idx]
            ys = y[torch.from_numpy(idx)] if isinstance(y, torch.Tensor) else np.asarray(y)[idx]
            self._subsets[name] = (xs, ys, idx)
        self.history: dict[str, Any] = {"config": self.config, "epochs": [], "transitions": []}

    @property
    def config(self) -> dict[str, Any]:
        """The tracker's settings (JSON-safe)."""
        return jsonable(
            {
                "epochs": self.epochs,
                "metrics": list(self.metrics),
                "norms": list(self.norms),
                "margin_options": self.margin_options,
                "layer": self.layer,
                "pgd_eps": self.pgd_eps,
                "pgd_iter": self.pgd_iter,
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
        for name in ("train", "test"):
            record[name] = self._measure(classifier, name, record["timing"])
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

    def _measure(self, classifier: Any, name: str, timing: dict[str, float]) -> dict[str, Any]:
        from art_geometry.margins import deepfool_margins
        from art_geometry.regions import inclusion_ratio, populated_region_set
        from art_geometry.robustness import robust_accuracy

        x, y, _ = self._subsets[name]
        view = model_view(classifier, x)
        check_inputs(view, x)
        labels = check_labels(y, len(x), view.nb_classes)
        out: dict[str, Any] = {}
        tic = time.perf_counter()
        with view.evaluating():
            pred = predict_logits(view, x, self.batch_size).argmax(dim=1).cpu().numpy()
        out["correct"] = pred == labels
        out["accuracy"] = float(out["correct"].mean())
        timing[f"{name}.accuracy"] = time.perf_counter() - tic
        opts = {"batch_size": self.batch_size, "verbose": self.verbose}
        if "regions" in self.metrics:
            tic = time.perf_counter()
            prs = populated_region_set(classifier, x, self.layer, **opts)
            out["prs_ratio"], out["n_regions"], out["layer"] = prs.ratio, prs.n_regions, prs.layer
            if name == "test":
                x_tr = self._subsets["train"][0]
                out["inclusion_ratio"] = inclusion_ratio(classifier, x_tr, x, self.layer, **opts).ratio
            timing[f"{name}.regions"] = time.perf_counter() - tic
        if "margins" in self.metrics:
            out["margins"] = {}
            for p in self.norms:
                tic = time.perf_counter()
                res = deepfool_margins(
                    classifier, x, labels, norm=p, seed=self.seed, **{**opts, **self.margin_options}
                )
                out["margins"][_NORM_KEYS[p]] = res.summary()
                timing[f"{name}.margins_{_NORM_KEYS[p]}"] = time.perf_counter() - tic
        if "robustness" in self.metrics and name == "test":
            tic = time.perf_counter()
            rob = robust_accuracy(
                classifier, x, labels, attack="pgd", eps=self.pgd_eps, max_iter=self.pgd_iter,
                batch_size=self.batch_size, seed=self.seed,
            )
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
        :raises ValueError: When the file is not a tracker history.
        """
        with open(path, encoding="utf-8") as f:
            history = json.load(f)
        if not isinstance(history, dict) or not {"config", "epochs", "transitions"} <= set(history):
            raise ValueError(f"{path} is not a GeometryTracker history (keys config, epochs, transitions)")
        return history


def fit_tracked(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    nb_epochs: int,
    batch_size: int,
    tracker: GeometryTracker,
    seed: int = 0,
    *,
    trainer: Trainer | None = None,
) -> dict[str, Any]:
    """
    Train with ART one epoch at a time and call ``tracker`` after each: ``classifier.fit(nb_epochs=1)`` (natural
    training), or ``trainer.fit(nb_epochs=1)`` for an ART trainer such as ``AdversarialTrainer`` (e.g. ratio 0.5
    with PGD). ART shuffles with numpy's global generator: each epoch runs under ``seeded(seed + epoch)``, and the
    user's global states are restored. The model's train/eval mode is restored at the end (ART's ``fit`` leaves it
    in train mode).

    :param classifier: An ART ``PyTorchClassifier`` (the one ``trainer`` trains, when given).
    :param x: Training inputs.
    :param y: Training labels.
    :param nb_epochs: Epochs.
    :param batch_size: Batch size.
    :param tracker: The tracker.
    :param seed: Seed of the shuffling (and of the attacks ART's trainer draws).
    :param trainer: An ART ``Trainer`` to train with instead of ``classifier.fit``.
    :return: The tracker's history.
    """
    nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
    if trainer is not None and trainer.get_classifier() is not classifier:
        raise ValueError("trainer trains another classifier than the one given")
    module = model_view(classifier, x).module
    modes = [(m, m.training) for m in module.modules()]
    try:
        for epoch in range(nb_epochs):
            tic = time.perf_counter()
            with seeded(seed + epoch):
                if trainer is None:
                    classifier.fit(x, y, batch_size=batch_size, nb_epochs=1, verbose=False)
                else:
                    trainer.fit(x, y, batch_size=batch_size, nb_epochs=1)
            tracker.on_epoch_end(epoch, classifier, {"time": time.perf_counter() - tic})
    finally:
        for m, mode in modes:
            m.training = mode
    return tracker.history

"""
The models of ``art-geometry report --demo``: small CNNs trained on one data set from the same initial weights,
so that the report compares training choices and nothing else.

* ``A: natural, batch 512`` and ``B: natural, batch 32``: the PRS paper's large- vs small-batch contrast
  (networks A and B of "Empirical Study of the Decision Region and Robustness in Deep Neural Networks");
* ``C: Jacobian-regularised``: :class:`art_geometry.training.JacobianRegularizedTrainer` with the decision-function
  penalty ``c ||dL/dx||_1`` ("Interpreting Adversarial Robustness: A View from Decision Surface in Input Space");
* ``D: PGD adversarial``: ART's ``AdversarialTrainer`` with ``ProjectedGradientDescent`` replacing half of every
  batch (ratio 0.5, as in the margins paper).

C and D use batch 32, like B, which is their natural baseline. With ``track=True`` a
:class:`art_geometry.training.GeometryTracker` follows each training, for the report's Training section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from art_geometry.core.rng import seeded
from art_geometry.datasets import Dataset, SmallCNN, make_classifier
from art_geometry.report.resume import ReportCheckpoint
from art_geometry.training import GeometryTracker, JacobianRegularizedTrainer, fit_tracked

__all__ = ["JACOBIAN_C", "PGD_EPS", "DemoModels", "demo_models"]

#: Weight of the decision-function Jacobian penalty of model C.
JACOBIAN_C = 0.03
#: L-inf budget of the PGD examples of model D (step eps / 4, 10 iterations).
PGD_EPS = 0.1


@dataclass(frozen=True)
class DemoModels:
    """
    :param models: ART classifiers by display name, in report order.
    :param histories: Tracker histories by display name (empty without tracking).
    """

    models: dict[str, Any]
    histories: dict[str, dict[str, Any]] = field(default_factory=dict)


def _tracker(data: Dataset, epochs: int, seed: int, track: bool) -> GeometryTracker:
    """
    Every third epoch and the last on 100 + 100 samples with cheap margins; with ``track=False`` no epoch at all,
    so that the models are trained by the same code (and come out the same) whether tracked or not.
    """
    tracked = sorted(set(range(0, epochs, 3)) | {epochs - 1}) if track else []
    return GeometryTracker(
        data.x_train, data.y_train, data.x_test, data.y_test, epochs=tracked, n_train=100, n_test=100,
        margin_options={"restarts": 1, "max_iter": 30}, seed=seed,
    )


def _train_natural(batch: int) -> Callable[..., None]:
    def train(clf: Any, data: Dataset, epochs: int, seed: int, tracker: GeometryTracker) -> None:
        fit_tracked(clf, data.x_train, data.y_train, nb_epochs=epochs, batch_size=batch, tracker=tracker, seed=seed)

    return train


def _train_jacobian(clf: Any, data: Dataset, epochs: int, seed: int, tracker: GeometryTracker) -> None:
    trainer = JacobianRegularizedTrainer(clf, c=JACOBIAN_C, norm=1, target="decision")
    trainer.fit(data.x_train, data.y_train, batch_size=32, nb_epochs=epochs, callbacks=[tracker], seed=seed,
                verbose=False)


def _train_adversarial(clf: Any, data: Dataset, epochs: int, seed: int, tracker: GeometryTracker) -> None:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer

    pgd = ProjectedGradientDescent(clf, eps=PGD_EPS, eps_step=PGD_EPS / 4, max_iter=10, verbose=False)
    fit_tracked(clf, data.x_train, data.y_train, nb_epochs=epochs, batch_size=32, tracker=tracker, seed=seed,
                trainer=AdversarialTrainer(clf, pgd, ratio=0.5))


_RECIPES: dict[str, Callable[..., None]] = {
    "A: natural, batch 512": _train_natural(512),
    "B: natural, batch 32": _train_natural(32),
    "C: Jacobian-regularised": _train_jacobian,
    "D: PGD adversarial": _train_adversarial,
}


def demo_models(
    data: Dataset,
    *,
    epochs: int = 15,
    seed: int = 0,
    track: bool = False,
    verbose: bool = True,
    checkpoint: "ReportCheckpoint | None" = None,
) -> DemoModels:
    """
    Train the four demo models (see the module docstring) for ``epochs`` epochs each.

    :param data: Training and test data.
    :param epochs: Epochs of every model.
    :param seed: Seed of the shared initial weights, the shuffling and the tracked subsets.
    :param track: Follow each training with a :class:`GeometryTracker` (every third epoch and the last, 100 train
                  and 100 test samples); without it, the trackers measure nothing.
    :param verbose: Print which model is training.
    :param checkpoint: Where each model is kept once trained (its weights and history); a model already there is
                       loaded instead of trained. Its manifest must hold ``epochs``, ``seed`` and ``track``.
    :return: The classifiers (in eval mode) and, with ``track``, their histories.
    """
    with seeded(seed):
        init = SmallCNN(data.input_shape, data.nb_classes).state_dict()
    models: dict[str, Any] = {}
    histories: dict[str, dict[str, Any]] = {}
    for index, (name, train) in enumerate(_RECIPES.items()):
        module = SmallCNN(data.input_shape, data.nb_classes)
        module.load_state_dict(init)
        clf = make_classifier(module, data.input_shape, data.nb_classes)
        stored = checkpoint.trained(index) if checkpoint is not None else None
        if stored is not None:
            module.load_state_dict(stored[0])
            history = stored[1]
        else:
            tracker = _tracker(data, epochs, seed, track)
            if verbose:
                print(f"training {name} for {epochs} epochs ...", file=sys.stderr)
            train(clf, data, epochs, seed, tracker)
            history = tracker.history if track else None
            if checkpoint is not None:
                checkpoint.save_trained(index, module.state_dict(), history)
        module.eval()
        models[name] = clf
        if history is not None:
            histories[name] = history
    return DemoModels(models, histories)

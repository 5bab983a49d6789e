"""
Robust training without adversarial examples: cross-entropy plus a penalty on the input gradient, through double
backpropagation.

The main method is the decision-surface regulariser of "Interpreting Adversarial Robustness: A View from Decision
Surface in Input Space" (Yu et al., 2018): the decision function

    L(x) = Z_t(x) - max_{i != t} Z_i(x)                                   (t the true label)

measures how far ``x`` sits inside its class in logit space; a flat decision surface (a small ``||dL/dx||``)
means a perturbation must be large to move ``L`` through zero. The training loss of one batch ``B`` is

    loss = mean_{b in B} CE(x_b, y_b) + c * mean_{b in B} ||dR/dx (x_b)||_p^q

with ``R = L`` (``target="decision"``) or ``R = CE`` (``target="cross_entropy"``, the input-gradient regulariser
of Ross & Doshi-Velez, AAAI 2018, whose Eq. 2 uses the squared l2 norm: ``norm=2, squared=True``), ``q = 2``
when ``squared`` else ``1``. The gradient ``dR/dx`` is taken with ``create_graph=True`` so the penalty is
differentiated with respect to the weights (double backpropagation, Drucker & LeCun 1992).

With ``projections=k`` the penalty is instead the random-projection estimate of the squared Frobenius norm of the
logit Jacobian (Hoffman, Roberts & Yaida, "Robust learning with Jacobian regularization", 2019, Alg. 1):

    ||J(x)||_F^2 ~= C / k * sum_{j=1..k} ||v_j^T J(x)||_2^2,   v_j uniform on the unit sphere of R^C,

one extra backward per projection instead of a penalty on one scalar function.

The trainer trains: it changes the classifier's parameters, buffers (BatchNorm statistics) and optimizer state,
as any trainer does. What it does not change: the input arrays, the train/eval mode of every submodule, which is
restored on exit (even on error) to what it was before ``fit``, and the global random states of Python, numpy and
torch (the model's own draws, such as dropout masks, run under :func:`art_geometry.core.rng.seeded`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from art.defences.trainer.trainer import Trainer
from tqdm.auto import tqdm

from art_geometry.core.batching import batches, predict_logits
from art_geometry.core.decision import decision_values
from art_geometry.core.model import ModelView, model_view
from art_geometry.core.modes import restoring
from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.prepare import prepare
from art_geometry.core.results import ResultMixin, describe
from art_geometry.core.rng import generator, resolve_seed, seeded
from art_geometry.core.validation import (
    check_array,
    check_bool,
    check_choice,
    check_labels,
    check_number,
    check_positive_int,
    check_seed,
)

__all__ = ["JacobianRegularizedTrainer", "TrainingHistory", "TrainingCallback"]

TARGETS = ("decision", "cross_entropy")
HISTORY_KEYS = ("loss", "ce", "reg", "accuracy", "val_loss", "val_accuracy", "lr", "time")

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingCallback:
    """
    The callback protocol (every method optional; any object with some of them works, no need to subclass).

    ``logs`` is the epoch's record: ``epoch``, ``loss``, ``ce``, ``reg``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``time``. A callback that raises stops training: the error propagates after the
    model's mode is restored, with the history so far on ``trainer.history``.
    """

    def on_train_begin(self, trainer: "JacobianRegularizedTrainer") -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, trainer: "JacobianRegularizedTrainer", logs: dict[str, float]) -> None:
        """Called after each epoch (0-based ``epoch``), after the scheduler step."""

    def on_train_end(self, trainer: "JacobianRegularizedTrainer") -> None:
        """Called once after the last epoch (not when training stopped on an error)."""


@dataclass(frozen=True)
class TrainingHistory(ResultMixin):
    """
    Per-epoch figures of one ``fit`` call (arrays of length ``nb_epochs``, or fewer when a callback stopped it).

    :param loss: Mean training loss (cross-entropy + c * penalty) over the epoch's batches.
    :param ce: Mean training cross-entropy.
    :param reg: Mean penalty (before the factor ``c``); logged even when ``c = 0``.
    :param accuracy: Training accuracy over the epoch, from the logits of the training forward passes (train mode).
    :param val_loss: Validation cross-entropy in eval mode (NaN without validation data).
    :param val_accuracy: Validation accuracy in eval mode (NaN without validation data).
    :param lr: Learning rate of the first parameter group during the epoch.
    :param time: Wall-clock seconds of the epoch's training (validation excluded).
    :param params: The trainer's settings.
    :param n_samples: Training samples per epoch.
    """

    loss: np.ndarray
    ce: np.ndarray
    reg: np.ndarray
    accuracy: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    lr: np.ndarray
    time: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 0

    @classmethod
    def from_records(
        cls, records: Sequence[dict[str, float]], params: dict[str, Any], n_samples: int = 0
    ) -> "TrainingHistory":
        """
        :param records: One dict per epoch with the keys of :data:`HISTORY_KEYS`.
        :param params: The trainer's settings.
        :param n_samples: Training samples per epoch.
        :return: The history.
        :raises ValueError: When a record lacks one of the keys.
        """
        for i, record in enumerate(records):
            missing = [k for k in HISTORY_KEYS if k not in record]
            if missing:
                raise ValueError(
                    f"records[{i}] lacks {', '.join(missing)} (every epoch needs {', '.join(HISTORY_KEYS)})"
                )
        cols = {k: np.array([r[k] for r in records], dtype=np.float64) for k in HISTORY_KEYS}
        return cls(**cols, params=dict(params), n_samples=int(n_samples))

    @property
    def nb_epochs(self) -> int:
        """Number of completed epochs."""
        return int(self.loss.size)

    def records(self) -> list[dict[str, float]]:
        """:return: One dict per epoch (``epoch`` plus the fields)."""
        return [{"epoch": i, **{k: float(getattr(self, k)[i]) for k in HISTORY_KEYS}} for i in range(self.nb_epochs)]

    def summary(self) -> dict[str, Any]:
        """:return: The last epoch's figures, the epoch-time statistics, ``n_samples`` and ``params``."""
        last = self.records()[-1] if self.nb_epochs else {}
        return {
            "n_samples": self.n_samples,
            "nb_epochs": self.nb_epochs,
            "last": last,
            "epoch_time": describe(self.time),
            "params": dict(self.params),
        }


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    if scheduler is None:
        return None
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler.LRScheduler instance (StepLR, CosineAnnealingLR, "
            f"ReduceLROnPlateau, ...), got {type(scheduler).__name__}"
        )
    if scheduler.optimizer is not optimizer:
        raise ValueError("the scheduler drives another optimizer than the classifier's (classifier.optimizer)")
    return scheduler


class JacobianRegularizedTrainer(Trainer):
    """
    Train an ART ``PyTorchClassifier`` with cross-entropy plus ``c`` times an input-gradient penalty (Yu et al.
    2018; Ross & Doshi-Velez 2018; Hoffman et al. 2019): see the module docstring for the loss.

    The model is called directly (``classifier.model`` with ART's preprocessing applied differentiably), so any
    ``nn.Module`` works, ``nn.Sequential`` included; labels may be indices or one-hot; the classifier's own
    optimizer is used on the classifier's device.

    With BatchNorm in train mode the samples of a batch are coupled, so ``dR/dx_b`` is the gradient of the
    batch's summed ``R`` with respect to ``x_b`` (what double-backprop implementations compute); without
    cross-sample layers it is exactly the per-sample gradient.

    :param classifier: An ART ``PyTorchClassifier`` with an optimizer.
    :param c: Weight of the penalty, ``>= 0``; ``0`` is natural training.
    :param norm: ``p`` of the penalty ``||dR/dx||_p``: 1, 2 or ``np.inf`` (l1 is dual to the l-inf threat model).
    :param target: ``"decision"`` (``R = L``, Yu et al.) or ``"cross_entropy"`` (``R = CE``, Ross & Doshi-Velez).
    :param squared: Penalise ``||dR/dx||_p^2`` instead of ``||dR/dx||_p`` (Ross & Doshi-Velez use ``norm=2,
                    squared=True``).
    :param projections: If set, the number ``k`` of random projections of Hoffman et al.'s Frobenius-norm estimate
                        of the logit Jacobian, which then replaces the ``norm``/``target`` penalty.
    """

    def __init__(
        self,
        classifier: Any,
        c: float = 0.01,
        norm: "int | float | str" = 1,
        target: str = "decision",
        *,
        squared: bool = False,
        projections: int | None = None,
    ) -> None:
        super().__init__(classifier)
        self.c = check_number(c, "c", minimum=0.0)
        self.norm: Norm = Norm.parse(norm, (L1, L2, LINF))
        self.target = check_choice(target, "target", TARGETS)
        self.squared = check_bool(squared, "squared")
        self.projections = None if projections is None else check_positive_int(projections, "projections")
        optimizer = getattr(classifier, "optimizer", None)
        if optimizer is None:
            raise ValueError("the classifier has no optimizer: create the PyTorchClassifier with optimizer=...")
        self.view: ModelView = model_view(classifier)
        self.history: TrainingHistory | None = None
        self._proj_gen: torch.Generator = generator(0, self.view.device)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The classifier's optimizer."""
        return self._classifier.optimizer

    @property
    def params(self) -> dict[str, Any]:
        """The trainer's settings."""
        return {
            "c": self.c,
            "norm": self.norm.to_json(),
            "target": self.target,
            "squared": self.squared,
            "projections": self.projections,
        }

    def penalty(self, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, create_graph: bool) -> torch.Tensor:
        """
        The per-sample penalty ``||dR/dx||_p`` (or ``^2``), or the Frobenius estimate with ``projections``.

        :param x: The batch, with ``requires_grad`` (the leaf ``logits`` were computed from).
        :param logits: ``(B, C)``.
        :param labels: ``(B,)`` true labels.
        :param create_graph: Keep the graph of the gradient (double backprop) so the penalty can be differentiated
                             with respect to the weights.
        :return: ``(B,)`` penalties.
        """
        if self.projections is not None:
            return self._frobenius(x, logits, create_graph)
        if self.target == "decision":
            r = decision_values(logits, labels)[0]
        else:
            r = F.cross_entropy(logits, labels, reduction="none")
        (g,) = torch.autograd.grad(r.sum(), x, create_graph=create_graph, retain_graph=True)
        value = self.norm.measure(g)
        return value.square() if self.squared else value

    def _frobenius(self, x: torch.Tensor, logits: torch.Tensor, create_graph: bool) -> torch.Tensor:
        """Hoffman et al. (2019), Alg. 1: ``C / k * sum_j ||v_j^T J||^2`` per sample, ``v_j`` uniform on the sphere."""
        k = int(self.projections or 1)
        gen = self._proj_gen
        total = torch.zeros(x.shape[0], device=x.device, dtype=logits.dtype)
        for _ in range(k):
            v = torch.randn(logits.shape, generator=gen, device=gen.device, dtype=logits.dtype)
            v = (v / v.norm(dim=1, keepdim=True)).to(logits.device)
            (jv,) = torch.autograd.grad(logits, x, v, create_graph=create_graph, retain_graph=True)
            total = total + jv.flatten(1).square().sum(dim=1)
        return total * (logits.shape[1] / k)

    def compute_loss(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """
        The training loss of one batch, differentiable with respect to the weights.

        :param x: Inputs on the model's device (not requiring grad).
        :param labels: ``(B,)`` class indices.
        :return: The scalar loss and the detached parts: ``ce``, ``reg`` (mean penalty), ``correct`` (count).
        """
        x = x.detach().requires_grad_(True)
        logits = self.view(x)
        ce = F.cross_entropy(logits, labels)
        reg = self.penalty(x, logits, labels, create_graph=self.c > 0).mean()
        loss = ce + self.c * reg if self.c > 0 else ce
        parts = {
            "ce": ce.detach(),
            "reg": reg.detach(),
            "correct": (logits.detach().argmax(dim=1) == labels).sum(),
        }
        return loss, parts

    def fit(  # type: ignore[override]
        self,
        x: "np.ndarray | torch.Tensor",
        y: "np.ndarray | torch.Tensor",
        *,
        batch_size: int = 128,
        nb_epochs: int = 10,
        validation_data: "tuple[np.ndarray, np.ndarray] | None" = None,
        callbacks: "Iterable[Any] | None" = None,
        scheduler: Any = None,
        seed: "int | None" = 0,
        verbose: bool = True,
    ) -> TrainingHistory:
        """
        Train on ``(x, y)``, reshuffled every epoch by a ``torch.Generator`` seeded with ``seed``. What the model
        draws from the global generators (``nn.Dropout`` masks, random layers) comes from Python's, numpy's and
        torch's global generators seeded with ``(seed + 2) mod 2^32`` for the call, whose previous states are
        restored on exit (even on error): the trained weights depend on ``seed`` only, and the caller's global
        random states are left bit-identical.

        :param x: Training inputs ``(N, *input_shape)``: numpy (any stride, floating or integer dtype) or torch,
                  finite, validated first; never modified (each batch is a fresh tensor in the model's dtype).
        :param y: Labels, indices ``(N,)`` or one-hot ``(N, C)``, one in range per sample.
        :param batch_size: Samples per batch (the last batch may be smaller).
        :param nb_epochs: Epochs.
        :param validation_data: ``(x_val, y_val)`` evaluated in eval mode after each epoch.
        :param callbacks: Objects with optional ``on_train_begin(trainer)``, ``on_epoch_end(epoch, trainer, logs)``,
                          ``on_train_end(trainer)``.
        :param scheduler: A ``torch.optim.lr_scheduler.LRScheduler`` on the classifier's optimizer, stepped once
                          per epoch; ``ReduceLROnPlateau`` steps on the validation loss (the training loss without
                          validation data).
        :param seed: Seed of the shuffling, of the random projections and of the model's own draws (dropout);
                     ``None`` draws one from fresh entropy. The seed used is in ``history.params["seed"]``.
        :param verbose: Show a tqdm progress bar.
        :return: The per-epoch history (also kept as ``self.history``).
        """
        seed, callbacks = _check_run(seed, callbacks)
        view = self.view
        prep = prepare(view, x, y, require_labels=True)
        batch_size = check_positive_int(batch_size, "batch_size")
        n = prep.n
        shuffle = generator(seed)

        def epoch_batches() -> Iterator[Batch]:
            perm = torch.randperm(n, generator=shuffle)
            for batch in batches(view, prep.x, batch_size, labels=prep.labels, order=perm):
                yield batch.x, batch.y

        nb_batches = math.ceil(n / batch_size)
        return self._train(
            epoch_batches, nb_batches, n, nb_epochs, validation_data, callbacks, scheduler, seed, verbose
        )

    def fit_generator(  # type: ignore[override]
        self,
        generator: Any,
        nb_epochs: int = 10,
        *,
        validation_data: "tuple[np.ndarray, np.ndarray] | None" = None,
        callbacks: "Iterable[Any] | None" = None,
        scheduler: Any = None,
        seed: "int | None" = 0,
        verbose: bool = True,
    ) -> TrainingHistory:
        """
        Train from an ART ``DataGenerator`` (``get_batch()``, ``size``, ``batch_size``): ``ceil(size /
        batch_size)`` batches per epoch, in the generator's own order.

        :param generator: The ART data generator.
        :param nb_epochs: Epochs.
        :param validation_data: As in :meth:`fit`.
        :param callbacks: As in :meth:`fit`.
        :param scheduler: As in :meth:`fit`.
        :param seed: Seed of the random projections and of the draws from the global generators (dropout masks,
                     the data generator's shuffling), run as in :meth:`fit`: the caller's global random states are
                     restored on exit.
        :param verbose: Show a tqdm progress bar.
        :return: The per-epoch history.
        """
        seed, callbacks = _check_run(seed, callbacks)
        if getattr(generator, "size", None) is None or not hasattr(generator, "get_batch"):
            raise ValueError("generator must be an ART DataGenerator with a known size")
        view = self.view
        nb_batches = math.ceil(generator.size / generator.batch_size)

        def epoch_batches() -> Iterator[Batch]:
            for _ in range(nb_batches):
                xb, yb = generator.get_batch()
                check_array(xb, "the generator's x", view.input_shape)
                labels = check_labels(yb, len(xb), view.nb_classes, "the generator's y")
                for batch in batches(view, xb, len(xb), labels=labels):
                    yield batch.x, batch.y

        return self._train(
            epoch_batches, nb_batches, int(generator.size), nb_epochs, validation_data, callbacks, scheduler, seed,
            verbose,
        )

    def _train(
        self,
        epoch_batches: Callable[[], Iterator[Batch]],
        nb_batches: int,
        n_samples: int,
        nb_epochs: int,
        validation_data: "tuple[np.ndarray, np.ndarray] | None",
        callbacks: list[Any],
        scheduler: Any,
        seed: int,
        verbose: bool,
    ) -> TrainingHistory:
        nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
        scheduler = _check_scheduler(scheduler, self.optimizer)
        val = self._validation_tensors(validation_data)
        self._proj_gen = generator(seed + 1, self.view.device)
        records: list[dict[str, float]] = []
        params = {**self.params, "seed": seed}
        self.history = TrainingHistory.from_records(records, params, n_samples)
        module = self.view.module
        bar = tqdm(total=nb_epochs * nb_batches, disable=not verbose, desc="Jacobian training", unit="batch")
        try:
            with restoring(module), seeded((seed + 2) % 2**32):
                _call(callbacks, "on_train_begin", self)
                for epoch in range(nb_epochs):
                    module.train()
                    logs = self._epoch(epoch_batches(), bar)
                    logs.update(self._validate(val))
                    self._step_scheduler(scheduler, logs)
                    records.append({"epoch": epoch, **logs})
                    self.history = TrainingHistory.from_records(records, params, n_samples)
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.3f}")
                    _call(callbacks, "on_epoch_end", epoch, self, dict(records[-1]))
                _call(callbacks, "on_train_end", self)
        finally:
            bar.close()
        return self.history

    def _epoch(self, batches: Iterator[Batch], bar: Any) -> dict[str, float]:
        optimizer = self.optimizer
        lr = float(optimizer.param_groups[0]["lr"])
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0.0}
        seen = 0
        start = time.perf_counter()
        for xb, yb in batches:
            optimizer.zero_grad()
            loss, parts = self.compute_loss(xb, yb)
            loss.backward()
            optimizer.step()
            b = len(yb)
            sums["loss"] += float(loss.detach()) * b
            sums["ce"] += float(parts["ce"]) * b
            sums["reg"] += float(parts["reg"]) * b
            sums["correct"] += float(parts["correct"])
            seen += b
            bar.update(1)
        elapsed = time.perf_counter() - start
        return {
            "loss": sums["loss"] / seen,
            "ce": sums["ce"] / seen,
            "reg": sums["reg"] / seen,
            "accuracy": sums["correct"] / seen,
            "lr": lr,
            "time": elapsed,
        }

    def _validation_tensors(self, validation_data: Any) -> "tuple[Any, torch.Tensor] | None":
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = validation_data
        check_array(x_val, "x_val", self.view.input_shape)
        return x_val, torch.from_numpy(check_labels(y_val, len(x_val), self.view.nb_classes, "y_val"))

    def _validate(self, val: "tuple[Any, torch.Tensor] | None") -> dict[str, float]:
        if val is None:
            return {"val_loss": math.nan, "val_accuracy": math.nan}
        x_val, y_val = val
        with self.view.evaluating():
            logits = predict_logits(self.view, x_val, 512)
        y_dev = y_val.to(logits.device)
        return {
            "val_loss": float(F.cross_entropy(logits, y_dev)),
            "val_accuracy": float((logits.argmax(dim=1) == y_dev).double().mean()),
        }

    @staticmethod
    def _step_scheduler(scheduler: Any, logs: dict[str, float]) -> None:
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = logs["val_loss"] if not math.isnan(logs["val_loss"]) else logs["loss"]
            scheduler.step(metric)
        else:
            scheduler.step()


def _check_run(seed: Any, callbacks: Any) -> tuple[int, list[Any]]:
    """
    :return: The seed (``None``: drawn from fresh entropy, recorded in the history's ``params``) and the callbacks
             as a list.
    :raises ValueError: For a seed that is not ``None`` or a non-negative integer.
    :raises TypeError: For callbacks that are not an iterable of objects (``callbacks=[tracker]``).
    """
    seed = resolve_seed(check_seed(seed, "seed"))
    if callbacks is None:
        return seed, []
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of callback objects, e.g. callbacks=[tracker]; got {callbacks!r}")
    return seed, list(callbacks)


def _call(callbacks: list[Any], name: str, *args: Any) -> None:
    for cb in callbacks:
        method = getattr(cb, name, None)
        if method is not None:
            method(*args)

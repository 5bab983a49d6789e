"""
Robust accuracy through the host libraries' attacks (none reimplemented here): ART's ``FastGradientMethod``,
``BasicIterativeMethod``, ``ProjectedGradientDescentPyTorch`` and ``AutoAttack``, any ART ``EvasionAttack``
instance, or any torchattacks ``Attack`` instance.

Definitions (per sample ``i`` with label ``y_i``, clean input ``x_i`` and adversarial input ``x'_i``):

* ``clean_correct_i = [f(x_i) = y_i]``, ``adv_correct_i = clean_correct_i and [f(x'_i) = y_i]``;
* accuracy = mean(clean_correct), robust accuracy = mean(adv_correct) (a sample misclassified when clean counts
  as broken, as in AutoAttack's reports);
* ``success_i = clean_correct_i and not [f(x'_i) = y_i]``.

``eps = 0`` admits no perturbation: the attack is not run and ``x' = x``, so robust accuracy equals accuracy.

The attacks draw from numpy's and torch's global generators (random initialisation); they run inside
:func:`art_geometry._rng.seeded`, so results depend on ``seed`` only and the user's global states are restored.
ART's attacks switch the model to eval mode and overwrite the parameters' ``.grad``; every call here restores the
model's modes, ``requires_grad`` flags and ``.grad`` exactly.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from art.attacks.attack import EvasionAttack
from torch import nn

from art_geometry._batching import batches, predict_logits
from art_geometry._model import ModelView, model_view
from art_geometry._results import ResultMixin
from art_geometry._rng import seeded
from art_geometry._validation import check_inputs, check_labels, check_norm, check_positive_int

__all__ = [
    "ATTACKS",
    "RobustnessResult",
    "RobustnessCurve",
    "InclusionRobustnessResult",
    "ZeroGradientResult",
    "robust_accuracy",
    "robustness_curve",
    "inclusion_robustness",
    "zero_gradient_analysis",
    "art_classifier",
    "torch_module",
]

#: Attacks known by name, and the norms each supports.
ATTACKS: dict[str, tuple[float, ...]] = {
    "fgsm": (1.0, 2.0, np.inf),
    "bim": (np.inf,),
    "pgd": (1.0, 2.0, np.inf),
    "autoattack": (1.0, 2.0, np.inf),
}


@dataclass(frozen=True)
class RobustnessResult(ResultMixin):
    """
    Per-sample outcome of one attack.

    :param labels: ``(N,)`` true labels.
    :param clean_pred: ``(N,)`` predictions on the clean inputs.
    :param adv_pred: ``(N,)`` predictions on the adversarial inputs.
    :param clean_correct: ``(N,)`` clean prediction correct.
    :param adv_correct: ``(N,)`` correct both clean and under attack.
    :param success: ``(N,)`` clean-correct samples the attack misclassified.
    :param perturbation_norm: ``(N,)`` ``||x' - x||_norm``.
    :param x_adv: The adversarial examples, when asked for (``return_adversarial=True``), else ``None``.
    :param attack: Attack name (or class name of an instance).
    :param eps: The budget (``NaN`` for an instance, whose budget is its own).
    :param norm: The norm.
    :param params: The other settings used.
    """

    labels: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    clean_correct: np.ndarray
    adv_correct: np.ndarray
    success: np.ndarray
    perturbation_norm: np.ndarray
    x_adv: np.ndarray | None
    attack: str
    eps: float
    norm: float
    params: dict[str, Any]

    @property
    def accuracy(self) -> float:
        """Clean accuracy."""
        return float(self.clean_correct.mean())

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples correct both clean and under attack."""
        return float(self.adv_correct.mean())

    def summary(self) -> dict[str, Any]:
        """:return: accuracy, robust accuracy, attack success rate over clean-correct samples."""
        n_correct = int(self.clean_correct.sum())
        return {
            "n": int(self.labels.size),
            "accuracy": self.accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": float(self.success.sum() / n_correct) if n_correct else float("nan"),
            "attack": self.attack,
            "eps": self.eps,
            "norm": self.norm,
        }


@dataclass(frozen=True)
class RobustnessCurve(ResultMixin):
    """
    Robust accuracy over a range of budgets.

    :param eps: ``(E,)`` budgets.
    :param clean_correct: ``(N,)``.
    :param adv_correct: ``(E, N)`` correct both clean and under the attack with budget ``eps[e]``.
    :param attack: Attack name.
    :param norm: The norm.
    :param params: The other settings used.
    """

    eps: np.ndarray
    clean_correct: np.ndarray
    adv_correct: np.ndarray
    attack: str
    norm: float
    params: dict[str, Any]

    @property
    def accuracy(self) -> float:
        """Clean accuracy."""
        return float(self.clean_correct.mean())

    @property
    def robust_accuracy(self) -> np.ndarray:
        """``(E,)`` robust accuracy per budget."""
        return self.adv_correct.mean(axis=1)

    def summary(self) -> dict[str, Any]:
        """:return: accuracy and the robust accuracy per eps."""
        return {
            "accuracy": self.accuracy,
            "eps": self.eps.tolist(),
            "robust_accuracy": self.robust_accuracy.tolist(),
            "attack": self.attack,
            "norm": self.norm,
        }


@dataclass(frozen=True)
class InclusionRobustnessResult(ResultMixin):
    """
    Robust accuracy of the test samples whose activation region holds a training sample ("inclusion") against
    the others ("exclusion"), PRS paper Fig. 9.

    :param included: ``(N,)`` region of the test sample is in PRS(X_train).
    :param robustness: The attack's per-sample result.
    :param layer: The layer of the regions.
    """

    included: np.ndarray
    robustness: RobustnessResult
    layer: str

    def group(self, included: bool) -> dict[str, float]:
        """
        :param included: Which group.
        :return: ``n``, ``accuracy`` and ``robust_accuracy`` of the group (NaN when empty).
        """
        mask = self.included == included
        n = int(mask.sum())
        nan = float("nan")
        return {
            "n": n,
            "accuracy": float(self.robustness.clean_correct[mask].mean()) if n else nan,
            "robust_accuracy": float(self.robustness.adv_correct[mask].mean()) if n else nan,
        }

    def summary(self) -> dict[str, Any]:
        """:return: The inclusion ratio and both groups' figures."""
        return {
            "inclusion_ratio": float(self.included.mean()),
            "inclusion": self.group(True),
            "exclusion": self.group(False),
            "layer": self.layer,
            "attack": self.robustness.attack,
            "eps": self.robustness.eps,
        }


@dataclass(frozen=True)
class ZeroGradientResult(ResultMixin):
    """
    Which failures of an attack sit where the loss gradient vanishes (PRS paper, Fig. 6).

    :param robustness: The attack's per-sample result.
    :param grad_norm: ``(N,)`` ``||grad_x CE(f(x), y)||_inf`` at the clean input.
    :param zero_gradient: ``(N,)`` ``grad_norm <= tol``.
    :param failed: ``(N,)`` clean-correct samples the attack did not misclassify.
    :param tol: The threshold.
    """

    robustness: RobustnessResult
    grad_norm: np.ndarray
    zero_gradient: np.ndarray
    failed: np.ndarray
    tol: float

    @property
    def fraction(self) -> float:
        """Fraction of the attack's failures with a zero gradient (NaN when the attack never failed)."""
        n = int(self.failed.sum())
        return float((self.zero_gradient & self.failed).sum() / n) if n else float("nan")

    def summary(self) -> dict[str, Any]:
        """:return: Failures, zero-gradient failures, their fraction, and the fraction over all samples."""
        return {
            "n_failed": int(self.failed.sum()),
            "n_failed_zero_gradient": int((self.zero_gradient & self.failed).sum()),
            "fraction": self.fraction,
            "zero_gradient_overall": float(self.zero_gradient.mean()),
            "tol": self.tol,
            "attack": self.robustness.attack,
            "eps": self.robustness.eps,
        }


class _ViewModule(nn.Module):
    """A ``ModelView`` as an ``nn.Module``: the user's model behind its preprocessing, in the user's input space."""

    def __init__(self, view: ModelView):
        super().__init__()
        self.inner = view.module
        self._view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._view(x)


def torch_module(classifier: Any, x: "np.ndarray | torch.Tensor | None" = None) -> nn.Module:
    """
    The classifier as a plain ``nn.Module`` from the user's input space to logits (preprocessing included), for
    building torchattacks attacks: ``torchattacks.PGD(torch_module(clf), eps=8/255)``.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module``.
    :param x: Example inputs (needed for a plain module or foolbox model).
    :return: A module sharing the user's parameters (its mode is the user's module's mode).
    """
    view = model_view(classifier, x)
    return view.module if view.preprocess is None else _ViewModule(view)


def art_classifier(classifier: Any, x: "np.ndarray | torch.Tensor | None" = None) -> Any:
    """
    The classifier as an ART ``PyTorchClassifier`` (returned as is when it already is an ART classifier).

    A plain module or foolbox model is wrapped with cross-entropy loss on its device; its clip values come from the
    foolbox bounds, or default to ``(0, 1)`` with a warning for a plain module.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module``.
    :param x: Example inputs (needed for a plain module or foolbox model).
    :return: The ART classifier.
    """
    from art.estimators.classification import PyTorchClassifier

    if isinstance(classifier, PyTorchClassifier):
        return classifier
    view = model_view(classifier, x)
    clip = view.clip_values
    if clip is None:
        warnings.warn("the model declares no valid input range: assuming clip_values=(0, 1)", UserWarning, stacklevel=3)
        clip = (0.0, 1.0)
    shape = view.input_shape if view.input_shape is not None else tuple(x.shape[1:])  # type: ignore[union-attr]
    return PyTorchClassifier(
        model=_ViewModule(view),
        loss=nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=view.nb_classes,
        clip_values=clip,
        device_type="cpu" if view.device.type == "cpu" else "gpu",
    )


@contextlib.contextmanager
def _untouched(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Restore every submodule's mode and every parameter's ``requires_grad`` and ``.grad`` on exit."""
    subs = [m for module in modules for m in module.modules()]
    params = [p for module in modules for p in module.parameters()]
    modes = [(m, m.training) for m in subs]
    state = [(p, p.requires_grad, None if p.grad is None else p.grad.clone()) for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in state:
            p.requires_grad_(flag)
            p.grad = grad


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not np.isfinite(eps):
        raise ValueError(f"eps must be a finite non-negative number, got {eps!r}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps!r}")
    return float(eps)


def _named_attack(
    name: str,
    estimator: Any,
    eps: float,
    norm: float,
    eps_step: float | None,
    max_iter: int,
    batch_size: int,
    verbose: bool,
) -> EvasionAttack:
    from art.attacks.evasion import (
        AutoAttack,
        BasicIterativeMethod,
        FastGradientMethod,
        ProjectedGradientDescentPyTorch,
    )

    step = eps_step if eps_step is not None else (eps if name == "fgsm" else 2.5 * eps / max_iter)
    art_norm: Any = "inf" if norm == np.inf else int(norm)
    if name == "fgsm":
        return FastGradientMethod(estimator, norm=art_norm, eps=eps, eps_step=step, batch_size=batch_size)
    if name == "bim":
        return BasicIterativeMethod(
            estimator, eps=eps, eps_step=step, max_iter=max_iter, batch_size=batch_size, verbose=verbose
        )
    if name == "pgd":
        return ProjectedGradientDescentPyTorch(
            estimator, norm=art_norm, eps=eps, eps_step=step, max_iter=max_iter, num_random_init=1,
            batch_size=batch_size, verbose=verbose,
        )
    return AutoAttack(estimator, norm=art_norm, eps=eps, eps_step=step, batch_size=batch_size)


def _is_torchattacks(attack: Any) -> bool:
    """:return: Whether ``attack`` is a torchattacks ``Attack`` instance (recognised without importing torchattacks)."""
    return type(attack).__module__.startswith("torchattacks") and callable(attack)


def _resolve_attack(attack: Any, norm: Any) -> tuple[str, float]:
    if isinstance(attack, str):
        name = attack.lower()
        if name not in ATTACKS:
            raise ValueError(
                f"unknown attack {attack!r}; known attacks: {', '.join(ATTACKS)} "
                "(or pass an ART EvasionAttack or torchattacks Attack instance)"
            )
        return name, check_norm(norm, ATTACKS[name])
    if isinstance(attack, EvasionAttack):
        if getattr(attack, "targeted", False):
            raise ValueError("a targeted attack does not measure robust accuracy: pass an untargeted attack")
        raw = getattr(attack, "norm", norm)
        return type(attack).__name__, np.inf if raw in ("inf", np.inf) else float(raw)
    if _is_torchattacks(attack):
        return type(attack).__name__, check_norm(norm, (1.0, 2.0, np.inf))
    raise TypeError(
        f"attack must be one of {', '.join(ATTACKS)}, an ART EvasionAttack or a torchattacks Attack; "
        f"got {type(attack).__name__}"
    )


def _to_numpy(x: "np.ndarray | torch.Tensor") -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.array(arr, dtype=np.float32, copy=True)


def _generate(
    attack: Any,
    name: str,
    view: ModelView,
    estimator: Any,
    x: "np.ndarray | torch.Tensor",
    labels: np.ndarray,
    eps: float,
    norm: float,
    eps_step: float | None,
    max_iter: int,
    batch_size: int,
    seed: int,
    verbose: bool,
) -> torch.Tensor:
    """:return: Adversarial examples on the model's device, in the model's dtype."""
    if isinstance(attack, str) and eps == 0.0:
        return view.to_tensor(x).clone()
    modules: list[nn.Module] = [view.module]
    att_est = getattr(attack, "estimator", None)
    if isinstance(getattr(att_est, "model", None), nn.Module) and att_est.model is not view.module:
        modules.append(att_est.model)
    with _untouched(modules), seeded(seed):
        if isinstance(attack, str) or isinstance(attack, EvasionAttack):
            art_attack = attack
            if isinstance(attack, str):
                art_attack = _named_attack(name, estimator, eps, norm, eps_step, max_iter, batch_size, verbose)
            onehot = np.eye(view.nb_classes, dtype=np.float32)[labels]
            x_adv = art_attack.generate(_to_numpy(x), y=onehot)
            return view.to_tensor(x_adv)
        y_t = torch.from_numpy(labels).to(view.device)
        out = [attack(xb, y_t[sl]).detach() for sl, xb, _ in batches(view, x, batch_size)]
        return torch.cat(out).to(device=view.device, dtype=view.dtype)


def _outcome(
    view: ModelView,
    x: "np.ndarray | torch.Tensor",
    x_adv: torch.Tensor,
    labels: np.ndarray,
    norm: float,
    batch_size: int,
    clean_pred: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    with view.evaluating():
        if clean_pred is None:
            clean_pred = predict_logits(view, x, batch_size).argmax(dim=1).cpu().numpy()
        adv_pred = predict_logits(view, x_adv, batch_size).argmax(dim=1).cpu().numpy()
    delta = (x_adv - view.to_tensor(x)).flatten(1)
    clean_correct = clean_pred == labels
    return {
        "clean_pred": clean_pred,
        "adv_pred": adv_pred,
        "clean_correct": clean_correct,
        "adv_correct": clean_correct & (adv_pred == labels),
        "success": clean_correct & (adv_pred != labels),
        "perturbation_norm": delta.norm(p=norm, dim=1).double().cpu().numpy(),
    }


def robust_accuracy(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor",
    *,
    attack: Any = "pgd",
    eps: float = 0.3,
    norm: "int | float | str" = np.inf,
    eps_step: float | None = None,
    max_iter: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    return_adversarial: bool = False,
    verbose: bool = False,
) -> RobustnessResult:
    """
    Accuracy and robust accuracy under an attack run by ART or torchattacks (definitions in the module
    docstring).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module`` (wrapped in an ART
                       ``PyTorchClassifier`` for ART's attacks, clip values ``(0, 1)`` assumed with a warning).
    :param x: Inputs ``(N, *input_shape)`` (never modified).
    :param y: Labels, indices or one-hot.
    :param attack: ``"fgsm"`` (ART ``FastGradientMethod``), ``"bim"`` (``BasicIterativeMethod``, L-inf),
                   ``"pgd"`` (``ProjectedGradientDescentPyTorch`` with one random start, on the classifier's
                   device), ``"autoattack"`` (ART ``AutoAttack``), an ART ``EvasionAttack`` instance (used with its
                   own budget; ``eps``, ``eps_step`` and ``max_iter`` are ignored) or a torchattacks ``Attack``
                   instance (called on batches on the model's device; inputs must lie in [0, 1]).
    :param eps: Budget ``||x' - x||_norm <= eps`` of the named attacks, ``>= 0``.
    :param norm: 1, 2 or ``np.inf`` (BIM: ``np.inf`` only); for an instance, the norm in which the perturbation
                 is measured.
    :param eps_step: Step of the iterative attacks; default ``2.5 * eps / max_iter`` (Madry et al.), ``eps`` for
                     FGSM.
    :param max_iter: Iterations of BIM and PGD.
    :param batch_size: Batch size of the attack and of the predictions.
    :param seed: Seed of the attacks' randomness (global states restored afterwards).
    :param return_adversarial: Keep the adversarial examples in the result.
    :param verbose: Show the progress bars of ART's BIM and PGD.
    :return: The per-sample result.
    :raises ValueError: For an unknown attack name (the message lists the known ones), a negative eps, a norm the
                        attack does not support, or a targeted attack instance.
    """
    view = model_view(classifier, x)
    check_inputs(view, x)
    labels = check_labels(y, len(x), view.nb_classes)
    eps = _check_eps(eps)
    name, p = _resolve_attack(attack, norm)
    max_iter = check_positive_int(max_iter, "max_iter")
    batch_size = check_positive_int(batch_size, "batch_size")
    estimator = art_classifier(classifier, x) if isinstance(attack, str) and eps > 0 else None
    x_adv = _generate(
        attack, name, view, estimator, x, labels, eps, p, eps_step, max_iter, batch_size, seed, verbose
    )
    parts = _outcome(view, x, x_adv, labels, p, batch_size)
    params = {"eps_step": eps_step, "max_iter": max_iter, "batch_size": batch_size, "seed": seed}
    return RobustnessResult(
        labels=labels,
        **parts,
        x_adv=x_adv.cpu().numpy() if return_adversarial else None,
        attack=name,
        eps=eps if isinstance(attack, str) else float("nan"),
        norm=p,
        params=params,
    )


def robustness_curve(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor",
    *,
    attack: "str | Callable[[float], Any]" = "pgd",
    eps_values: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
    norm: "int | float | str" = np.inf,
    max_iter: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> RobustnessCurve:
    """
    Robust accuracy for each budget in ``eps_values`` (step ``2.5 * eps / max_iter`` for each named attack).

    :param classifier: As in :func:`robust_accuracy`.
    :param x: Inputs.
    :param y: Labels.
    :param attack: A named attack (``fgsm``, ``bim``, ``pgd``, ``autoattack``), or a factory ``eps -> attack``
                   returning an ART ``EvasionAttack`` or a torchattacks ``Attack`` with that budget (e.g.
                   ``lambda eps: CarliniLInfMethod(...)`` or a custom loss); at ``eps = 0`` no attack runs (the
                   clean accuracy), so the factory is called for positive budgets only.
    :param eps_values: Budgets, each ``>= 0``.
    :param norm: The norm of the named attacks, or the norm in which a factory's perturbations are measured.
    :param max_iter: Iterations of BIM and PGD (named attacks).
    :param batch_size: Batch size.
    :param seed: Seed (the same for every budget).
    :param verbose: Show a progress bar over the budgets.
    :return: The curve.
    :raises TypeError: For an attack instance (its budget is fixed: pass a factory) or anything else.
    """
    from tqdm.auto import tqdm

    instance = isinstance(attack, EvasionAttack) or _is_torchattacks(attack)
    if not isinstance(attack, str) and (instance or not callable(attack)):
        raise TypeError(
            "robustness_curve varies the budget: pass a named attack or a factory eps -> attack instance, got "
            f"{type(attack).__name__}"
        )
    eps_arr = np.array([_check_eps(e) for e in eps_values], dtype=np.float64)
    if eps_arr.size == 0:
        raise ValueError("eps_values is empty")
    common = {"norm": norm, "max_iter": max_iter, "batch_size": batch_size, "seed": seed}

    def at(eps: float) -> RobustnessResult:
        if isinstance(attack, str):
            return robust_accuracy(classifier, x, y, attack=attack, eps=eps, **common)
        if eps == 0.0:
            # no perturbation whatever the attack: the clean accuracy (a named attack at eps 0 runs nothing)
            return robust_accuracy(classifier, x, y, attack="fgsm", eps=0.0, **common)
        return robust_accuracy(classifier, x, y, attack=attack(eps), **common)

    results = [at(float(e)) for e in tqdm(eps_arr, disable=not verbose, desc="eps")]
    # the attack's name and norm from a budget it ran at (a factory is never called at eps 0)
    ran = next((r for r, e in zip(results, eps_arr) if isinstance(attack, str) or e > 0), None)
    return RobustnessCurve(
        eps=eps_arr,
        clean_correct=results[0].clean_correct,
        adv_correct=np.stack([r.adv_correct for r in results]),
        attack=ran.attack if ran else getattr(attack, "__name__", type(attack).__name__),
        norm=(ran or results[0]).norm,
        params={"max_iter": max_iter, "batch_size": batch_size, "seed": seed},
    )


def inclusion_robustness(
    classifier: Any,
    x_train: "np.ndarray | torch.Tensor",
    x_test: "np.ndarray | torch.Tensor",
    y_test: "np.ndarray | torch.Tensor",
    *,
    attack: Any = "pgd",
    eps: float = 0.3,
    norm: "int | float | str" = np.inf,
    layer: str | None = None,
    max_iter: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> InclusionRobustnessResult:
    """
    Robust accuracy of the test samples whose activation region (sign pattern at ``layer``) is populated by a
    training sample, against the others (PRS paper, Sec. 4.3, Fig. 9): the paper finds the inclusion group more
    robust.

    :param classifier: As in :func:`robust_accuracy`.
    :param x_train: Training inputs that populate the regions.
    :param x_test: Test inputs.
    :param y_test: Test labels.
    :param attack: As in :func:`robust_accuracy`.
    :param eps: Budget.
    :param norm: The norm.
    :param layer: Layer of the regions (default: :func:`art_geometry.regions.inclusion_ratio`'s).
    :param max_iter: Iterations of BIM and PGD.
    :param batch_size: Batch size.
    :param seed: Seed of the attack.
    :param verbose: Progress bars.
    :return: The groups and the attack's per-sample result.
    """
    from art_geometry.regions import inclusion_ratio

    inc = inclusion_ratio(classifier, x_train, x_test, layer, batch_size=batch_size, verbose=verbose)
    rob = robust_accuracy(
        classifier, x_test, y_test, attack=attack, eps=eps, norm=norm, max_iter=max_iter, batch_size=batch_size,
        seed=seed,
    )
    return InclusionRobustnessResult(included=np.asarray(inc.included, dtype=bool), robustness=rob, layer=inc.layer)


def zero_gradient_analysis(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor",
    *,
    attack: Any = "pgd",
    eps: float = 0.3,
    norm: "int | float | str" = np.inf,
    tol: float = 1e-12,
    max_iter: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> ZeroGradientResult:
    """
    Among the clean-correct samples the attack fails on, the fraction whose cross-entropy input gradient is
    (numerically) zero at the clean point: ``||grad_x CE(f(x), y)||_inf <= tol`` (PRS paper, Sec. 4.2, Fig. 6,
    gradient masking by zero-gradient regions). In float32 the softmax saturates (``p_y`` rounds to 1) once the
    logit margin exceeds about 17, and the gradient underflows to exact zeros once it exceeds about 104; gradient
    attacks then have no direction to follow from the clean point.

    :param classifier: As in :func:`robust_accuracy`.
    :param x: Inputs.
    :param y: Labels.
    :param attack: As in :func:`robust_accuracy` (default PGD).
    :param eps: Budget.
    :param norm: The norm.
    :param tol: Threshold on the largest absolute gradient entry, ``>= 0``.
    :param max_iter: Iterations of BIM and PGD.
    :param batch_size: Batch size.
    :param seed: Seed of the attack.
    :param verbose: Progress bars.
    :return: Per-sample gradient norms and flags.
    """
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    rob = robust_accuracy(
        classifier, x, y, attack=attack, eps=eps, norm=norm, max_iter=max_iter, batch_size=batch_size, seed=seed
    )
    view = model_view(classifier, x)
    y_t = torch.from_numpy(rob.labels).to(view.device)
    norms = []
    with view.evaluating():
        for sl, xb, _ in batches(view, x, batch_size, verbose=verbose, desc="gradients"):
            xb.requires_grad_(True)
            loss = F.cross_entropy(view(xb), y_t[sl], reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
            norms.append(g.flatten(1).abs().amax(dim=1))
    grad_norm = torch.cat(norms).double().cpu().numpy()
    return ZeroGradientResult(
        robustness=rob,
        grad_norm=grad_norm,
        zero_gradient=grad_norm <= tol,
        failed=rob.adv_correct.copy(),
        tol=float(tol),
    )

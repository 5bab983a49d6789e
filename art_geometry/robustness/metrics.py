"""
Robust accuracy through the host libraries' attacks (none reimplemented here; :mod:`.attacks`), over a range of
budgets, split by activation-region inclusion, and against the input gradient at the clean point.

Definitions (per sample ``i`` with label ``y_i``, clean input ``x_i`` and adversarial input ``x'_i``):

* ``clean_correct_i = [f(x_i) = y_i]``, ``adv_correct_i = clean_correct_i and [f(x'_i) = y_i]``;
* accuracy = mean(clean_correct), robust accuracy = mean(adv_correct) (a sample misclassified when clean counts
  as broken, as in AutoAttack's reports);
* ``success_i = clean_correct_i and not [f(x'_i) = y_i]``.

``eps = 0`` admits no perturbation: the attack is not run and ``x' = x``, so robust accuracy equals accuracy.

The attacks draw from numpy's and torch's global generators (random initialisation); they run inside
:func:`art_geometry.core.rng.seeded`, so results depend on ``seed`` only and the user's global states are restored.
ART's attacks switch the model to eval mode and overwrite the parameters' ``.grad``; every call here restores the
model's modes, ``requires_grad`` flags and ``.grad`` exactly (:func:`art_geometry.core.modes.restoring`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_geometry.core.batching import batches, predict_logits
from art_geometry.core.gradients import input_gradients
from art_geometry.core.modes import restoring
from art_geometry.core.norms import Norm
from art_geometry.core.prepare import Prepared, prepare, prepare_more
from art_geometry.core.rng import seeded
from art_geometry.core.settings import AttackSettings
from art_geometry.core.validation import check_bool, check_number, check_positive_int
from art_geometry.regions import prs
from art_geometry.robustness.attacks import (
    AttackSpec,
    art_estimator,
    build_art_attack,
    is_attack_instance,
    is_torchattacks,
    resolve_attack,
)
from art_geometry.robustness.results import (
    InclusionRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
    ZeroGradientResult,
)
from art_geometry.sweep.distributed import world
from art_geometry.sweep.loop import Chunk, SweepOptions, chunk_seed, shared_seed, stack, sweep, sweep_keywords

__all__ = ["robust_accuracy", "robustness_curve", "inclusion_robustness", "zero_gradient_analysis"]


def _to_numpy(x: "np.ndarray | torch.Tensor") -> np.ndarray:
    """A float32 C-contiguous copy for ART (whatever the strides, dtype or device of ``x``)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def _estimator(classifier: Any, prep: Prepared, spec: AttackSpec) -> Any:
    """:return: The ART classifier a named attack runs on, or ``None`` when none is needed."""
    if not spec.needs_estimator:
        return None
    return art_estimator(classifier, prep.view, prep.sample_shape, stacklevel=4)


def _adversarial(chunk: Prepared, attack: Any, estimator: Any, batch_size: int) -> torch.Tensor:
    """
    Run the attack on one chunk of prepared data under the attack's seed, with every model it touches (the
    user's, the ART estimator's, the torchattacks attack's) restored on exit: modes, ``requires_grad`` and
    ``.grad``.

    :return: Adversarial examples on the model's device, in the model's dtype (``x`` itself when none runs).
    """
    view, x = chunk.view, chunk.x
    if attack is None:
        return view.to_tensor(x)
    owners = (estimator, getattr(attack, "estimator", None), attack)
    models = [getattr(owner, "model", None) for owner in owners]
    modules = [view.module] + [m for m in models if isinstance(m, nn.Module)]
    with restoring(*modules, grads=True, freeze=True):
        if is_torchattacks(attack):
            parts = [attack(b.x, b.y).detach() for b in batches(view, x, batch_size, labels=chunk.labels)]
            return torch.cat(parts).to(device=view.device, dtype=view.dtype)
        onehot = np.eye(view.nb_classes, dtype=np.float32)[chunk.labels]
        return view.to_tensor(attack.generate(_to_numpy(x), y=onehot))


def _predictions(prep: Prepared, x: "np.ndarray | torch.Tensor", batch_size: int) -> np.ndarray:
    with prep.view.evaluating():
        return predict_logits(prep.view, x, batch_size).argmax(dim=1).cpu().numpy()


def _instance_settings(attack: Any) -> "str | None":
    """A description of an attack instance's own hyper-parameters, for the checkpoint manifest."""
    if attack is None:
        return None
    names = getattr(attack, "attack_params", None)
    if names is not None:
        return repr({name: repr(getattr(attack, name, None)) for name in names})
    return repr(attack)


def _robust(
    prep: Prepared,
    spec: AttackSpec,
    estimator: Any,
    batch_size: int,
    verbose: bool,
    return_adversarial: bool,
    options: SweepOptions = SweepOptions(),
) -> RobustnessResult:
    """
    :func:`robust_accuracy` on prepared, labelled data (shared with the curve, the analyses and the tracker): one
    sweep over chunks (:mod:`art_geometry.sweep.loop`); the attack of chunk ``c`` runs under a seed derived from
    ``(seed, c)``, so results do not depend on which rank runs which chunk.
    """
    view = prep.view
    key = "robust_accuracy"
    spec = dataclasses.replace(spec, seed=shared_seed(spec.settings.seed, options, key, spec.seed))
    attack = spec.instance
    if attack is None and spec.runs:
        attack = build_art_attack(estimator, spec.settings, batch_size, verbose and world()[0] == 0)
    norm: Norm = spec.norm

    def compute(chunk: Prepared, index: int) -> Chunk:
        if chunk.labels is None:
            raise ValueError("labels are required: the data must yield (inputs, labels) pairs")
        with seeded(chunk_seed(spec.seed, index)):
            x_adv = _adversarial(chunk, attack, estimator, batch_size)
        clean_pred = _predictions(chunk, chunk.x, batch_size)
        adv_pred = _predictions(chunk, x_adv, batch_size)
        arrays = {"labels": chunk.labels, "clean_pred": clean_pred, "adv_pred": adv_pred,
                  "perturbation_norm": norm.measure(x_adv - view.to_tensor(chunk.x)).double().cpu().numpy()}
        if return_adversarial:
            arrays["x_adv"] = x_adv.cpu().numpy()
        return arrays

    params = spec.params(batch_size)
    chunks = sweep(prep, compute, batch_size=batch_size, options=options, key=key, verbose=verbose, desc="attack",
                   settings={**params, "instance": _instance_settings(spec.instance),
                             "return_adversarial": return_adversarial})
    labels, clean_pred, adv_pred = (stack(chunks, name) for name in ("labels", "clean_pred", "adv_pred"))
    clean_correct = clean_pred == labels
    return RobustnessResult(
        labels=labels,
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        clean_correct=clean_correct,
        adv_correct=clean_correct & (adv_pred == labels),
        success=clean_correct & (adv_pred != labels),
        perturbation_norm=stack(chunks, "perturbation_norm"),
        x_adv=stack(chunks, "x_adv") if return_adversarial else None,
        attack=spec.name,
        eps=spec.eps,
        norm=norm.p,
        params=params,
    )


def robust_accuracy(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    attack: Any = None,
    settings: AttackSettings | None = None,
    batch_size: int = 128,
    verbose: bool = False,
    return_adversarial: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> RobustnessResult:
    """
    Accuracy and robust accuracy under an attack run by ART or torchattacks (definitions in the module
    docstring; robust accuracy as in Madry et al., ICLR 2018, and Croce & Hein, ICML 2020).

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``nn.Module`` (wrapped in an ART
                       ``PyTorchClassifier`` for ART's attacks, clip values ``(0, 1)`` assumed with a warning).
    :param x: Inputs ``(N, *input_shape)`` (never modified).
    :param y: Labels, indices or one-hot (required).
    :param attack: ``None`` (the settings' attack, default ``"pgd"``), a name: ``"fgsm"`` (ART
                   ``FastGradientMethod``), ``"bim"`` (``BasicIterativeMethod``, L-inf), ``"pgd"``
                   (``ProjectedGradientDescentPyTorch`` with one random start, on the classifier's device),
                   ``"autoattack"`` (ART ``AutoAttack``); an ART ``EvasionAttack`` instance (used with its own
                   budget) or a torchattacks ``Attack`` instance (called on batches on the model's device; inputs
                   must lie in [0, 1]). With an instance only the settings' ``norm`` (the norm the perturbations are
                   measured in, where an ART attack has no ``norm`` of its own) and ``seed`` apply.
    :param settings: An :class:`~art_geometry.AttackSettings` (attack, eps, norm, eps_step, max_iter, seed);
                     default ``AttackSettings()``: PGD, L-inf, ``eps = 0.3``, 10 iterations, seed 0.
    :param batch_size: Batch size of the attack and of the predictions.
    :param verbose: Show the progress bars of ART's BIM and PGD.
    :param return_adversarial: Keep the adversarial examples in the result.
    :param checkpoint: Directory for finished chunks, so an interrupted run resumes (docs/scale_out.md); the
                       samples are sharded over the ranks of an initialised ``torch.distributed`` process group,
                       and ``x`` may be a ``Dataset`` / ``DataLoader`` yielding ``(inputs, labels)``.
    :param chunk_size: Samples per chunk (default ``batch_size``: one batch per chunk); the attack of each chunk runs under its own
                       seed derived from ``seed`` (the first chunk under ``seed`` itself).
    :param options: Overrides of single settings fields, e.g. ``eps=0.1, norm=2, max_iter=20``.
    :return: The per-sample result; ``params`` holds the settings used (with the seed drawn for ``seed=None``)
             and the batch size.
    :raises TypeError: For an attack that is neither a name nor an instance, or an unknown option.
    :raises ValueError: For an unknown attack name (the message lists the known ones), a bad setting (negative
                        eps, a norm the attack does not support, ...), a targeted attack instance, or bad inputs.
    """
    spec = resolve_attack(attack, settings, options)
    batch_size, verbose, sweep_options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    return_adversarial = check_bool(return_adversarial, "return_adversarial")
    prep = prepare(classifier, x, y, require_labels=True, stream=True, batch_size=batch_size)
    return _robust(
        prep, spec, _estimator(classifier, prep, spec), batch_size, verbose, return_adversarial, sweep_options
    )


def _eps_values(eps_values: Any) -> np.ndarray:
    """:return: The budgets as float64, checked: a non-empty sequence of finite numbers ``>= 0``."""
    values = eps_values.tolist() if isinstance(eps_values, np.ndarray) and eps_values.ndim == 1 else eps_values
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"eps_values must be a non-empty sequence of budgets (numbers >= 0), got {eps_values!r}")
    if not values:
        raise ValueError("eps_values is empty: pass at least one budget")
    return np.array([check_number(e, f"eps_values[{i}]", minimum=0.0) for i, e in enumerate(values)])


def robustness_curve(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    attack: "str | Callable[[float], Any] | None" = None,
    eps_values: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
    settings: AttackSettings | None = None,
    batch_size: int = 128,
    verbose: bool = False,
    **options: Any,
) -> RobustnessCurve:
    """
    Robust accuracy for each budget in ``eps_values``, the same seed for every budget (step ``2.5 * eps /
    max_iter`` for each named attack unless ``eps_step`` is set).

    :param classifier: As in :func:`robust_accuracy`.
    :param x: Inputs.
    :param y: Labels (required).
    :param attack: ``None`` (the settings' attack), a named attack (``fgsm``, ``bim``, ``pgd``, ``autoattack``),
                   or a factory ``eps -> attack`` returning an ART ``EvasionAttack`` or a torchattacks ``Attack``
                   with that budget (e.g. ``lambda eps: CarliniLInfMethod(...)`` or a custom loss); at ``eps = 0``
                   no attack runs (the clean accuracy), so the factory is called for positive budgets only.
    :param eps_values: Budgets: a non-empty sequence of finite numbers, each ``>= 0``.
    :param settings: An :class:`~art_geometry.AttackSettings` (its ``eps`` is replaced by each budget); with a
                     factory only ``norm`` (where an ART attack has none) and ``seed`` apply.
    :param batch_size: Batch size.
    :param verbose: Show a progress bar over the budgets.
    :param options: Overrides of single settings fields (``norm``, ``max_iter``, ``eps_step``, ``seed``).
    :return: The curve.
    :raises TypeError: For an attack instance (its budget is fixed: pass a factory) or anything else.
    :raises ValueError: For bad ``eps_values`` (named in the message) or settings.
    """
    factory = callable(attack) and not isinstance(attack, str) and not is_attack_instance(attack)
    if attack is not None and not isinstance(attack, str) and not factory:
        raise TypeError(
            "robustness_curve varies the budget: pass a named attack or a factory eps -> attack instance, got "
            f"{type(attack).__name__}"
        )
    eps = _eps_values(eps_values)
    base = resolve_attack(None if factory else attack, settings, options)
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    prep = prepare(classifier, x, y, require_labels=True)
    estimator = None if factory else _estimator(classifier, prep, base.at(float(eps.max())))
    specs: list[AttackSpec] = []
    results = []
    for e in tqdm(eps, disable=not verbose, desc="eps"):
        spec = base.with_instance(attack(float(e))) if factory and e > 0 else base.at(float(e))
        specs.append(spec)
        results.append(_robust(prep, spec, estimator, batch_size, False, False))
    # the attack's name, norm and settings from a budget it ran at (a factory is never called at eps 0)
    ran = next((s for s in specs if s.instance is not None), None) if factory else specs[0]
    shown = ran if ran is not None else base
    return RobustnessCurve(
        eps=eps,
        clean_correct=results[0].clean_correct,
        adv_correct=np.stack([r.adv_correct for r in results]),
        attack=shown.name if ran is not None else getattr(attack, "__name__", type(attack).__name__),
        norm=shown.norm.p,
        params={k: v for k, v in shown.params(batch_size).items() if k != "eps"},
    )


def inclusion_robustness(
    classifier: Any,
    x_train: "np.ndarray | torch.Tensor",
    x_test: "np.ndarray | torch.Tensor",
    y_test: "np.ndarray | torch.Tensor | None" = None,
    *,
    attack: Any = None,
    settings: AttackSettings | None = None,
    layer: str | None = None,
    batch_size: int = 128,
    verbose: bool = False,
    **options: Any,
) -> InclusionRobustnessResult:
    """
    Robust accuracy of the test samples whose activation region (sign pattern at ``layer``) is populated by a
    training sample, against the others (PRS paper, Sec. 4.3, Fig. 9): the paper finds the inclusion group more
    robust.

    :param classifier: As in :func:`robust_accuracy`.
    :param x_train: Training inputs that populate the regions.
    :param x_test: Test inputs.
    :param y_test: Test labels (required).
    :param attack: As in :func:`robust_accuracy`.
    :param settings: As in :func:`robust_accuracy`.
    :param layer: Layer of the regions (default: :func:`art_geometry.regions.inclusion_ratio`'s).
    :param batch_size: Batch size.
    :param verbose: Progress bars.
    :param options: Overrides of single settings fields (``eps``, ``norm``, ``max_iter``, ...).
    :return: The groups and the attack's per-sample result.
    """
    spec = resolve_attack(attack, settings, options)
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    train = prepare(classifier, x_train, x_name="x_train")
    prep = prepare_more(train, x_test, y_test, x_name="x_test", y_name="y_test", require_labels=True)
    inc = prs._inclusion(train, prep, layer, batch_size, verbose)
    rob = _robust(prep, spec, _estimator(classifier, prep, spec), batch_size, verbose, False)
    return InclusionRobustnessResult(included=np.asarray(inc.included, dtype=bool), robustness=rob, layer=inc.layer)


def _cross_entropy(logits: torch.Tensor, labels: "torch.Tensor | None") -> torch.Tensor:
    """The per-sample cross-entropy ``CE(f(x), y)``."""
    assert labels is not None
    return F.cross_entropy(logits, labels, reduction="none")


def zero_gradient_analysis(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: "np.ndarray | torch.Tensor | None" = None,
    *,
    attack: Any = None,
    settings: AttackSettings | None = None,
    tol: float = 1e-12,
    batch_size: int = 128,
    verbose: bool = False,
    **options: Any,
) -> ZeroGradientResult:
    """
    Among the clean-correct samples the attack fails on, the fraction whose cross-entropy input gradient is
    (numerically) zero at the clean point: ``||grad_x CE(f(x), y)||_inf <= tol`` (PRS paper, Sec. 4.2, Fig. 6,
    gradient masking by zero-gradient regions). In float32 the softmax saturates (``p_y`` rounds to 1) once the
    logit margin exceeds about 17, and the gradient underflows to exact zeros once it exceeds about 104; gradient
    attacks then have no direction to follow from the clean point.

    :param classifier: As in :func:`robust_accuracy`.
    :param x: Inputs.
    :param y: Labels (required).
    :param attack: As in :func:`robust_accuracy` (default PGD).
    :param settings: As in :func:`robust_accuracy`.
    :param tol: Threshold on the largest absolute gradient entry, finite and ``>= 0``.
    :param batch_size: Batch size.
    :param verbose: Progress bars.
    :param options: Overrides of single settings fields (``eps``, ``norm``, ``max_iter``, ...).
    :return: Per-sample gradient norms and flags.
    """
    spec = resolve_attack(attack, settings, options)
    tol = check_number(tol, "tol", minimum=0.0)
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_bool(verbose, "verbose")
    prep = prepare(classifier, x, y, require_labels=True)
    rob = _robust(prep, spec, _estimator(classifier, prep, spec), batch_size, verbose, False)
    view = prep.view
    with view.evaluating():
        norms = [
            g.grad.flatten(1).abs().amax(dim=1)
            for g in input_gradients(
                view, prep.x, batch_size, _cross_entropy, labels=prep.labels, verbose=verbose, desc="gradients"
            )
        ]
    grad_norm = torch.cat(norms).double().cpu().numpy()
    return ZeroGradientResult(
        robustness=rob,
        grad_norm=grad_norm,
        zero_gradient=grad_norm <= tol,
        failed=rob.adv_correct.copy(),
        tol=tol,
    )

"""
Frozen, validated settings objects, one per algorithm (in the spirit of foolbox's attack objects): the defaults
are written once, here, and every consumer (the function, its variants, the ART / foolbox / torchattacks
wrappers, the tracker, the report, ``result.params``) takes the object.

Construction validates every field with a message naming it; :meth:`Settings.build` merges keyword overrides
into a given object (or the defaults) and names unknown options; ``to_dict`` / ``from_dict`` round-trip through
JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, TypeVar

from art_geometry.core.norms import L1, L2, LINF, Norm
from art_geometry.core.validation import check_bool, check_choice, check_int, check_number, check_seed

__all__ = [
    "Settings",
    "DeepFoolSettings",
    "AttackSettings",
    "HessianSettings",
    "BoundsSettings",
    "NAMED_ATTACKS",
    "BOUND_METHODS",
]

S = TypeVar("S", bound="Settings")


class Settings:
    """Shared behaviour of the settings dataclasses: building from overrides, dict round trip."""

    #: The argument name the settings object is passed as.
    argument: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        for name, value in self._checked().items():
            object.__setattr__(self, name, value)

    def _checked(self) -> dict[str, Any]:
        """:return: Every field validated and normalised (e.g. the norm parsed); raises with the field's name."""
        raise NotImplementedError

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """:return: The names of the settings' fields, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def build(cls: type[S], settings: "S | None" = None, options: "Mapping[str, Any] | None" = None) -> S:
        """
        :param settings: A settings object, or ``None`` for the defaults.
        :param options: Field overrides (keyword options of a function).
        :return: ``settings`` with the overrides applied, validated.
        :raises TypeError: For a ``settings`` of another type, or an unknown option (the message lists the known).
        """
        if settings is None:
            settings = cls()
        elif not isinstance(settings, cls):
            raise TypeError(f"{cls.argument} must be a {cls.__name__}, got {type(settings).__name__}")
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; {cls.__name__} options: {list(cls.field_names())}")
        return dataclasses.replace(settings, **options) if options else settings  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """:return: The fields, JSON-safe (the norm as ``2.0`` or ``"inf"``)."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = value.to_json() if isinstance(value, Norm) else value
        return out

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """
        :param data: Output of :meth:`to_dict` (extra keys are refused).
        :return: The settings object.
        """
        return cls.build(None, data)


@dataclass(frozen=True)
class DeepFoolSettings(Settings):
    """
    Hyper-parameters of batched DeepFool (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2) with the crossing
    refinement and noisy restarts of :func:`art_geometry.deepfool_margins`.

    :param norm: The norm of the margin: 2 or inf (a :class:`~art_geometry.Norm`, or ``2``, ``np.inf``, ``"inf"``).
    :param candidates: Top classes by logit at ``x`` considered, the predicted one included (as foolbox), ``>= 2``.
    :param overshoot: Overshoot of the iterate ``x + (1 + overshoot) r_total``, ``>= 0``.
    :param max_iter: DeepFool iterations per attempt, ``>= 1``.
    :param refine: Refine the crossing on the segment by a bracketing search.
    :param refine_steps: Target relative precision ``2^-refine_steps`` of the refined margin, ``>= 1``.
    :param boundary_steps: Steps of the boundary stage after DeepFool and the refinement, ``>= 0``: a
                           minimum-norm attack (FMN-style, Pintor et al., NeurIPS 2021) started at the DeepFool
                           point, one forward and one backward pass per step; the closest adversarial point it
                           finds is refined, verified and kept where shorter; ``0`` turns the stage off.
    :param restarts: Noisy restarts for the samples where DeepFool fails, ``>= 0``.
    :param restart_noise: Standard deviation per coordinate of the restart noise, ``> 0``, in input units.
    :param box: Keep every iterate inside the classifier's ``clip_values`` (margins inside the valid input
                box): each DeepFool step is the shortest move to a linearised boundary within the box
                (:func:`art_geometry.margins.step.box_step`; in a subspace, the subspace step clamped).
    :param seed: Seed of the restart noise: a non-negative int, or ``None`` for fresh entropy (the seed drawn is
                 recorded in ``result.params``).
    """

    norm: Norm = L2
    candidates: int = 10
    overshoot: float = 0.02
    max_iter: int = 50
    refine: bool = True
    refine_steps: int = 32
    boundary_steps: int = 0
    restarts: int = 3
    restart_noise: float = 1e-2
    box: bool = False
    seed: "int | None" = 0

    def _checked(self) -> dict[str, Any]:
        return {
            "norm": Norm.parse(self.norm),
            "candidates": check_int(self.candidates, "candidates", minimum=2),
            "overshoot": check_number(self.overshoot, "overshoot", minimum=0.0),
            "max_iter": check_int(self.max_iter, "max_iter", minimum=1),
            "refine": check_bool(self.refine, "refine"),
            "refine_steps": check_int(self.refine_steps, "refine_steps", minimum=1),
            "boundary_steps": check_int(self.boundary_steps, "boundary_steps", minimum=0),
            "restarts": check_int(self.restarts, "restarts", minimum=0),
            "restart_noise": check_number(self.restart_noise, "restart_noise", minimum=0.0, strict=True),
            "box": check_bool(self.box, "box"),
            "seed": check_seed(self.seed),
        }

    @property
    def p(self) -> float:
        """The norm's order, ``2.0`` or ``inf``."""
        return self.norm.p

    def describe(self) -> str:
        """:return: The settings that matter in one short line (for ``print(result)``)."""
        parts = [f"L{self.norm}", f"candidates={self.candidates}", f"max_iter={self.max_iter}"]
        parts.append("refined" if self.refine else "unrefined")
        if self.boundary_steps:
            parts.append(f"boundary_steps={self.boundary_steps}")
        parts.append("clipped" if self.box else "unclipped")
        if self.restarts:
            parts.append(f"restarts={self.restarts}")
        return ", ".join(parts)


#: The attacks known by name (ART's, built by :mod:`art_geometry.robustness.attacks`) and the norms each supports.
NAMED_ATTACKS: dict[str, tuple[Norm, ...]] = {
    "fgsm": (L1, L2, LINF),
    "bim": (LINF,),
    "pgd": (L1, L2, LINF),
    "autoattack": (L1, L2, LINF),
}


@dataclass(frozen=True)
class AttackSettings(Settings):
    """
    Budget and hyper-parameters of a named attack of :func:`art_geometry.robust_accuracy`, each run by ART: FGSM
    (Goodfellow et al., ICLR 2015), BIM (Kurakin et al., ICLR 2017 workshop), PGD with one random start (Madry et
    al., ICLR 2018) and AutoAttack (Croce & Hein, ICML 2020). With an attack instance instead of a name only
    ``norm`` (the norm the perturbations are measured in) and ``seed`` apply.

    :param attack: ``"fgsm"``, ``"bim"``, ``"pgd"`` or ``"autoattack"`` (any case).
    :param eps: Budget ``||x' - x||_norm <= eps``, finite and ``>= 0``; at ``0`` no attack runs and ``x' = x``.
    :param norm: 1, 2 or inf (a :class:`~art_geometry.Norm`, or ``np.inf``, ``"inf"``, ...); BIM: inf only.
    :param eps_step: Step of the attack, ``> 0``; ``None``: ``2.5 * eps / max_iter`` (Madry et al.), ``eps`` for
                     FGSM.
    :param max_iter: Iterations of BIM and PGD, ``>= 1``.
    :param seed: Seed of the attack's randomness (run under :func:`art_geometry.core.rng.seeded`): a non-negative int,
                 or ``None`` for fresh entropy (the seed drawn is recorded in ``result.params``).
    """

    attack: str = "pgd"
    eps: float = 0.3
    norm: Norm = LINF
    eps_step: "float | None" = None
    max_iter: int = 10
    seed: "int | None" = 0

    def _checked(self) -> dict[str, Any]:
        name = self.attack.lower() if isinstance(self.attack, str) else None
        if name not in NAMED_ATTACKS:
            raise ValueError(
                f"unknown attack {self.attack!r}: attack must be one of the known attacks: "
                f"{', '.join(NAMED_ATTACKS)} (or an ART EvasionAttack or torchattacks Attack instance)"
            )
        return {
            "attack": name,
            "eps": check_number(self.eps, "eps", minimum=0.0),
            "norm": Norm.parse(self.norm, NAMED_ATTACKS[name]),
            "eps_step": None if self.eps_step is None else check_number(
                self.eps_step, "eps_step", minimum=0.0, strict=True
            ),
            "max_iter": check_int(self.max_iter, "max_iter", minimum=1),
            "seed": check_seed(self.seed),
        }

    def describe(self) -> str:
        """:return: The attack in a few words, e.g. ``PGD L-inf eps=0.1 (10 steps)``."""
        norm = "L-inf" if self.norm.p == float("inf") else f"L{self.norm}"
        steps = f" ({self.max_iter} steps)" if self.attack in ("bim", "pgd") else ""
        return f"{self.attack.upper() if self.attack != 'autoattack' else 'AutoAttack'} {norm} eps={self.eps:g}{steps}"

    @property
    def step(self) -> float:
        """The step used: ``eps_step``, or ``eps`` for FGSM and ``2.5 * eps / max_iter`` otherwise."""
        if self.eps_step is not None:
            return self.eps_step
        return self.eps if self.attack == "fgsm" else 2.5 * self.eps / self.max_iter


@dataclass(frozen=True)
class HessianSettings(Settings):
    """
    Hyper-parameters of the input-Hessian spectrum of :func:`art_geometry.hessian_eigenvalues` and
    :func:`art_geometry.robustness_indicator` (Yu et al., ICLR 2019 submission, Eq. 6-9): Lanczos runs with full
    reorthogonalisation and locking on Hessian-vector products, or the dense spectrum.

    :param k: Eigenvalues per sample, largest magnitude first, ``>= 1`` (at most the input dimension, checked by
              the function that knows it); ignored with ``full=True``.
    :param of: ``"decision"`` (Hessian of ``L = Z_t - Z_m``) or ``"loss"`` (of the cross-entropy).
    :param full: Compute the whole spectrum (dense, small inputs only).
    :param zero_tol: Magnitude below which an eigenvalue counts as zero (the paper's sparsity), ``>= 0``.
    :param tol: Relative residual ``||H y - theta y|| / ||H||`` at which a Ritz pair counts as converged, ``> 0``.
    :param seed: Seed of the Lanczos start vectors: a non-negative int, or ``None`` for fresh entropy (recorded).
    """

    k: int = 20
    of: str = "decision"
    full: bool = False
    zero_tol: float = 1e-10
    tol: float = 1e-6
    seed: "int | None" = 0

    def _checked(self) -> dict[str, Any]:
        return {
            "k": check_int(self.k, "k", minimum=1),
            "of": check_choice(self.of, "of", ("decision", "loss")),
            "full": check_bool(self.full, "full"),
            "zero_tol": check_number(self.zero_tol, "zero_tol", minimum=0.0),
            "tol": check_number(self.tol, "tol", minimum=0.0, strict=True),
            "seed": check_seed(self.seed),
        }


#: The certified lower-bound methods of :func:`art_geometry.margin_bounds`.
BOUND_METHODS = ("auto", "milp", "alpha-crown", "crown", "lipschitz")


@dataclass(frozen=True)
class BoundsSettings(Settings):
    """
    How :func:`art_geometry.margin_bounds` certifies a lower bound on each sample's distance to the boundary
    (the paper's future work, Sec. 4: "formal verification techniques to derive lower bounds for the margins").

    :param method: ``"milp"`` (exact mixed-integer program, networks of affine layers, ReLUs and max-pools,
                   L-inf and L1), ``"alpha-crown"`` (CROWN with optimised ReLU slopes), ``"crown"`` (linear bound
                   propagation), ``"lipschitz"`` (global Lipschitz constant, any supported layers) or ``"auto"`` (the
                   tightest that fits ``budget``, per sample).
    :param time_limit: Seconds the MILP may spend on one sample, finite and ``> 0``; on time-out the
                       solver's dual bound is reported (status ``"time_limit"``).
    :param budget: Seconds per sample ``"auto"`` allows a method, ``> 0``: samples whose MILP is estimated (by
                   its binary variables: unstable ReLUs, undecided max-pools) not to fit go to CROWN /
                   Lipschitz, a MILP run by ``"auto"`` stops after ``min(budget, time_limit)``, and alpha-CROWN,
                   else CROWN, runs when its estimated cost per sample (on 4 samples:
                   :func:`~art_geometry.bounds.crown.crown_cost`) fits the budget; neither: a warning.
    :param crown_steps: Evaluations of the (alpha-)CROWN radius search at most, ``>= 1``.
    :param crown_rtol: Relative width of the radius bracket at which the search stops, ``> 0`` and ``< 1``.
    :param alpha_steps: alpha-CROWN's projected Adam steps on the slopes per evaluation, ``>= 1``.
    :param alpha_lr: alpha-CROWN's Adam learning rate, ``> 0``.
    """

    method: str = "auto"
    time_limit: float = 60.0
    budget: float = 5.0
    crown_steps: int = 10
    crown_rtol: float = 1e-2
    alpha_steps: int = 20
    alpha_lr: float = 0.5

    def _checked(self) -> dict[str, Any]:
        return {
            "method": check_choice(self.method, "method", BOUND_METHODS),
            "time_limit": check_number(self.time_limit, "time_limit", minimum=0.0, strict=True),
            "budget": check_number(self.budget, "budget", minimum=0.0, strict=True),
            "crown_steps": check_int(self.crown_steps, "crown_steps", minimum=1),
            "crown_rtol": check_number(self.crown_rtol, "crown_rtol", minimum=0.0, maximum=1.0, strict=True),
            "alpha_steps": check_int(self.alpha_steps, "alpha_steps", minimum=1),
            "alpha_lr": check_number(self.alpha_lr, "alpha_lr", minimum=0.0, strict=True),
        }

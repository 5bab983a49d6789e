"""Eigenvalues of the input Hessian of the decision function or of the loss (Yu et al., Sec. 4.1 and 5)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from art_geometry.core.batching import batches
from art_geometry.core.decision import decision_labels
from art_geometry.core.prepare import Prepared, prepare
from art_geometry.core.rng import generator, resolve_seed
from art_geometry.core.settings import HessianSettings
from art_geometry.core.validation import check_positive_int
from art_geometry.indicators.eigen import FULL_SPECTRUM_MAX_DIM, _full_spectrum, _InputHessian, _lanczos
from art_geometry.indicators.results import HessianResult
from art_geometry.sweep.loop import Chunk, chunk_seed, shared_seed, stack, sweep, sweep_keywords


@dataclass(frozen=True)
class _Run:
    """Hessian settings with the seed drawn, and the loop's batch size and progress flag."""

    settings: HessianSettings
    seed: int
    batch_size: int
    verbose: bool

    @classmethod
    def of(cls, settings: HessianSettings, batch_size: int, verbose: bool) -> "_Run":
        return cls(settings, resolve_seed(settings.seed), batch_size, verbose)

    def params(self, k: int) -> dict[str, Any]:
        """:return: The settings as used (``k`` as run, the seed drawn) and the batch size, JSON-safe."""
        return {**self.settings.to_dict(), "k": k, "seed": self.seed, "batch_size": self.batch_size}


def _check_k(k: Any, dim: int) -> int:
    k = check_positive_int(k, "k")
    if k > dim:
        raise ValueError(f"k={k} eigenvalues asked for, but the input has only {dim} dimensions")
    return k


def hessian_eigenvalues(
    classifier: Any,
    x: "np.ndarray | torch.Tensor",
    y: Any = None,
    *,
    settings: HessianSettings | None = None,
    batch_size: int = 16,
    verbose: bool = False,
    checkpoint: "str | os.PathLike[str] | None" = None,
    chunk_size: "int | None" = None,
    **options: Any,
) -> HessianResult:
    """
    Eigenvalues of the Hessian with respect to the input of ``L = Z_t - Z_m`` (``of="decision"``, ``m`` the
    maximising competitor at ``x``) or of the cross-entropy (``of="loss"``) per sample (Yu et al. 2019, eq. 6-9).

    ``full=False``: the top-``k`` by magnitude, by Lanczos runs with full reorthogonalisation on Hessian-vector
    products, batched over the samples of a chunk: the ``k`` wanted Ritz pairs of a run are locked once their
    residuals are ``<= tol * ||H||`` (an eigenvalue error bound), and a sample is done when a further run in the
    orthogonal complement of the locked vectors, from a fresh random vector, converges its largest magnitude at
    ``<= |lambda_k| + tol * ||H||`` (so second copies of repeated eigenvalues and unresolved cluster members, absent
    from one Krylov space, are found). ``full=True``: all ``D`` eigenvalues from ``D`` batched products with the
    identity and ``torch.linalg.eigvalsh`` (``D <= FULL_SPECTRUM_MAX_DIM``).

    For piecewise-linear (ReLU, max-pool) networks the decision Hessian is zero almost everywhere; a warning says
    so when every eigenvalue is zero, and ``of="loss"`` gives the non-zero softmax curvature.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel`` or ``torch.nn.Module`` returning logits.
    :param x: Inputs ``(N, *input_shape)``.
    :param y: Labels ``t``; ``None`` uses the model's predictions.
    :param settings: A :class:`~art_geometry.HessianSettings` (``k`` eigenvalues, ``of`` ``"decision"`` or
                     ``"loss"``, ``full``, ``zero_tol``, ``tol``, ``seed``); default ``HessianSettings()``.
    :param batch_size: Samples per chunk (each chunk keeps its double-backward graph in memory).
    :param verbose: Show progress bars.
    :param checkpoint: Directory for finished chunks, so an interrupted sweep resumes (docs/scale_out.md); ``x`` may
                       be a ``Dataset`` / ``DataLoader``, and the samples are sharded over the ranks of an
                       initialised ``torch.distributed`` process group.
    :param chunk_size: Samples per chunk of the sweep (default ``batch_size``: one batch per chunk).
    :param options: Overrides of single settings fields, e.g. ``k=5, of="loss"``.
    :return: A :class:`HessianResult`; ``params`` holds the settings used (the seed drawn for ``seed=None``).
    """
    settings = HessianSettings.build(settings, options)
    batch_size, verbose, sweep_options = sweep_keywords(batch_size, verbose, checkpoint, chunk_size)
    run = _Run.of(settings, batch_size, verbose)
    prep = prepare(classifier, x, y, stream=True, batch_size=run.batch_size)
    key = "hessian_eigenvalues"
    run = replace(run, seed=shared_seed(settings.seed, sweep_options, key, run.seed))
    view = prep.view
    of, full, zero_tol, tol = settings.of, settings.full, settings.zero_tol, settings.tol
    batch_size = run.batch_size
    dim = int(np.prod(prep.sample_shape))
    if full and dim > FULL_SPECTRUM_MAX_DIM:
        raise ValueError(
            f"full=True builds the {dim} x {dim} Hessian; inputs of more than {FULL_SPECTRUM_MAX_DIM} dimensions "
            "need the top-k solver (full=False)"
        )
    k = dim if full else _check_k(settings.k, dim)

    def compute(chunk: Prepared, index: int) -> Chunk:
        gen = generator(chunk_seed(run.seed, index))
        eigs, products = [], 0
        with view.evaluating():
            labels = decision_labels(chunk, batch_size)
            for batch in batches(view, chunk.x, batch_size, labels=labels):
                op = _InputHessian(view, batch.x, batch.y, of)
                if full:
                    eigs.append(_full_spectrum(op, max(1, 512 // len(batch.x))))
                    products = dim
                else:
                    top, steps = _lanczos(op, k, tol, gen)
                    eigs.append(top)
                    products = max(products, steps)
        return {"eigenvalues": torch.cat(eigs).double().cpu().numpy(), "labels": labels,
                "products": np.full(len(labels), products, dtype=np.int64)}

    chunks = sweep(prep, compute, batch_size=batch_size, options=sweep_options, key=key, settings=run.params(k=k),
                   verbose=run.verbose, desc="hessian")
    labels, products = stack(chunks, "labels"), int(stack(chunks, "products").max())
    lam = stack(chunks, "eigenvalues")
    if of == "decision" and np.all(np.abs(lam) <= zero_tol):
        warnings.warn(
            "every eigenvalue of the decision-function Hessian is zero: the model is piecewise linear (ReLU) "
            "around these inputs, where the Hessian of L vanishes almost everywhere; use of='loss' for the "
            "softmax curvature",
            UserWarning,
            stacklevel=2,
        )
    return HessianResult(
        eigenvalues=lam,
        l1=np.abs(lam).sum(axis=1),
        sparsity=(np.abs(lam) < zero_tol).mean(axis=1),
        labels=labels,
        of=of,
        full=full,
        zero_tol=zero_tol,
        n_products=int(products),
        params=run.params(k=k),
    )

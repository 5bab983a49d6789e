"""
Build ``examples/RESULTS.md``: the papers' claims side by side with our numbers, one row per claim ID of issue 13.

Each full run of an example script leaves its JSON under ``examples/results/SCRIPT/`` (one file per run; a run may
hold several seeds). For every claim this module has one function that reads those JSONs, computes our number with
its spread over the seeds, and decides the verdict — exactly one of ``reproduced``, ``partly reproduced``,
``not reproduced`` — by a criterion written here before the full runs were made (each function's docstring states
it). A claim with no JSON yet is listed as ``not run yet``; the table always has every ID.

Commands::

    python examples/make_results.py                       # examples/results -> examples/RESULTS.md
    python examples/make_results.py --results DIR --output FILE
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
VERDICTS = ("reproduced", "partly reproduced", "not reproduced")
NOT_RUN = "not run yet"
#: How the ``--data`` values of the scripts are named in the table.
DATA_NAMES = {"digits": "digits", "fashion-mnist": "Fashion-MNIST"}
Reports = list[dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """
    What our runs say about one claim.

    :param ours: Our number(s) with their spread over the seeds.
    :param verdict: One of :data:`VERDICTS`.
    :param why: One line: which part of the criterion held or failed.
    """

    ours: str
    verdict: str
    why: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(frozen=True)
class Claim:
    """
    One row of the table.

    :param id: The claim ID of issue 13.
    :param where: Paper and section / figure / table.
    :param paper: The paper's statement and number, quoted.
    :param script: The example script whose JSONs hold our runs (``None``: no script yet).
    :param judge: Reads the script's reports and returns the outcome.
    """

    id: str
    where: str
    paper: str
    script: str | None
    judge: Callable[[Reports], Outcome] | None


def spread(values: Sequence[float], digits: int = 3, unit: str = "seeds") -> str:
    """
    :param values: One value per seed, or per ``unit`` (``inf`` allowed).
    :param digits: Significant digits.
    :param unit: What the values are one per.
    :return: ``"mean (min-max, n unit)"``, or the value alone for one value.
    """
    v = np.asarray(values, dtype=float)
    fmt = f"{{:.{digits}g}}"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ({fmt.format(v.min())}-{fmt.format(v.max())}, {v.size} {unit})"


def grade(all_hold: bool, some_hold: bool) -> str:
    """
    :param all_hold: Every part of the criterion held.
    :param some_hold: The weaker (partial) criterion held.
    :return: The verdict.
    """
    return VERDICTS[0] if all_hold else VERDICTS[1] if some_hold else VERDICTS[2]


def median(stats: dict[str, Any]) -> float:
    """
    :param stats: Percentile statistics of ``hold_me_tight_synthetic`` (``None`` = infinite).
    :return: The median, ``inf`` for ``None``.
    """
    return float("inf") if stats["p50"] is None else float(stats["p50"])


def hmt_runs(reports: Reports) -> list[dict[str, Any]]:
    """:return: The per-seed runs of every ``hold_me_tight_synthetic`` report."""
    return [run for report in reports for run in report["runs"]]


def judge_hmt_t1(reports: Reports) -> Outcome:
    """
    Criterion: (1) the median margin along ``u1`` is within 20% of ``epsilon / 2``; (2) the median in
    ``span{u1}^perp`` is at least twice the one along ``u1``; (3) the median in ``S_orth`` exceeds the one in
    ``S_rand``. All three in every seed: reproduced; (1) in every seed but not all of (2)-(3): partly; else not.
    """
    runs = hmt_runs(reports)
    half = reports[0]["settings"]["t1_epsilon"] / 2
    med = {name: [median(r["t1"]["margins"][name]) for r in runs]
           for name in ("u1", "span(u1)^perp", "S_orth", "S_rand")}
    c1 = all(abs(m - half) <= 0.2 * half for m in med["u1"])
    c2 = all(p >= 2 * u for p, u in zip(med["span(u1)^perp"], med["u1"]))
    c3 = all(o > r for o, r in zip(med["S_orth"], med["S_rand"]))
    ours = "; ".join(f"{name} {spread(v)}" for name, v in med.items())
    why = (f"u1 within 20% of eps/2 = {half:g}: {c1}; perp >= 2x u1: {c2}; S_orth > S_rand: {c3} "
           f"(test accuracy {spread([r['t1']['accuracy'] for r in runs])})")
    return Outcome(f"medians: {ours}", grade(c1 and c2 and c3, c1), why)


def judge_hmt_f6(reports: Reports) -> Outcome:
    """
    Criterion (``epsilon`` on our scale, class centres ``±epsilon / 2``): small regime — for every
    ``epsilon <= 0.2`` the median margin along ``u2`` is below the one along ``u1`` (separated along ``u2``); large
    regime — for every ``epsilon > 0.5`` the median along ``u1`` is below the one along ``u2``; the switch (the
    smallest ``epsilon`` from which on ``u1 < u2``) lies in ``[0.35, 0.7]``. All three in every seed: reproduced;
    both regimes in every seed but the switch elsewhere: partly; else not.
    """
    runs = hmt_runs(reports)
    small, large, switches = True, True, []
    for run in runs:
        recs = sorted(run["f6"], key=lambda r: r["epsilon"])
        u1 = [median(r["margins"]["u1"]) for r in recs]
        u2 = [median(r["margins"]["u2"]) for r in recs]
        eps = [r["epsilon"] for r in recs]
        small &= all(b < a for e, a, b in zip(eps, u1, u2) if e <= 0.2)
        large &= all(a < b for e, a, b in zip(eps, u1, u2) if e > 0.5)
        by_u1 = [a < b for a, b in zip(u1, u2)]
        switch = next((e for i, e in enumerate(eps) if all(by_u1[i:])), float("inf"))
        switches.append(switch)
    in_window = all(0.35 <= s <= 0.7 for s in switches)
    table = []
    for i, rec in enumerate(sorted(runs[0]["f6"], key=lambda r: r["epsilon"])):
        u1 = [median(sorted(r["f6"], key=lambda q: q["epsilon"])[i]["margins"]["u1"]) for r in runs]
        u2 = [median(sorted(r["f6"], key=lambda q: q["epsilon"])[i]["margins"]["u2"]) for r in runs]
        table.append(f"eps {rec['epsilon']:g}: u1 {spread(u1, 2)} / u2 {spread(u2, 2)}")
    why = (f"u2 < u1 for eps <= 0.2: {small}; u1 < u2 for eps > 0.5: {large}; switch at eps "
           f"{', '.join(f'{s:g}' for s in switches)} (printed-formula scale: "
           f"{', '.join(f'{s / 2:g}' for s in switches)}), in [0.35, 0.7]: {in_window}")
    return Outcome("median margins " + "; ".join(table), grade(small and large and in_window, small and large), why)


def dct_medians(report: dict[str, Any], model: str) -> np.ndarray:
    """:return: The per-block median margins of one model of a ``hold_me_tight_dct`` report (``inf`` for ``None``)."""
    return np.array([np.inf if m is None else m for m in report["results"][model]["medians"]], dtype=float)


def ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """
    :return: ``a / b`` for margins that may be infinite (no boundary found): ``1`` where both are infinite (no
        measurable change), ``inf`` where only ``a`` is.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.isinf(a) & np.isinf(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both, 1.0, a / np.where(both, 1.0, b))


def judge_hmt_f2(reports: Reports) -> Outcome:
    """
    Criterion (standard model): median margin in the highest-frequency block over the one in the lowest at least
    3 in every seed: reproduced; above 1: partly; else not.
    """
    ratios = [float(ratio(dct_medians(r, "standard")[-1], dct_medians(r, "standard")[0])) for r in reports]
    return Outcome(f"median margin highest / lowest DCT block {spread(ratios)}",
                   grade(all(q >= 3 for q in ratios), all(q > 1 for q in ratios)), "criterion: >= 3 reproduced")


def judge_hmt_f2d(reports: Reports) -> Outcome:
    """
    Criterion (model trained and measured on flipped data): median margin in the lowest-frequency block over the
    one in the highest at least 3 in every seed (the distribution flipped): reproduced; above 1: partly; else not.
    """
    ratios = [float(ratio(dct_medians(r, "flipped")[0], dct_medians(r, "flipped")[-1])) for r in reports]
    return Outcome(f"flipped model: median margin lowest / highest DCT block {spread(ratios)}",
                   grade(all(q >= 3 for q in ratios), all(q > 1 for q in ratios)), "criterion: >= 3 reproduced")


def judge_hmt_f4(reports: Reports) -> Outcome:
    """
    Criterion: in every DCT block entirely outside the low-pass band, the median margin of the low-pass model is at
    least 3x the standard model's; for the model trained from scratch and the fine-tuned one, every seed:
    reproduced; for one of them: partly; else not. An infinite low-pass median (no boundary found) counts as
    invariant.
    """
    held = {"low_pass": True, "low_pass_finetuned": True}
    ratios = []
    for report in reports:
        s = report["settings"]
        outside = [j for j in range(len(dct_medians(report, "standard"))) if j * s["stride"] >= s["bandwidth"]]
        for kind in held:
            lp = dct_medians(report, kind)[outside]
            q = ratio(lp, dct_medians(report, "standard")[outside])
            ratios.extend(q.tolist())
            held[kind] &= bool(outside) and bool(np.all(np.isinf(lp) | (q >= 3)))
    return Outcome(f"low-pass / standard median margin outside the band {spread(ratios, unit='blocks x models')}",
                   grade(all(held.values()), any(held.values())),
                   f"from scratch: {held['low_pass']}; fine-tuned: {held['low_pass_finetuned']} (the paper shows "
                   "this on CIFAR-10; for MNIST its footnote 8 says the standard network already has high margins "
                   "at high frequencies, as our standard Fashion-MNIST model does: HMT-F2)")


def judge_hmt_f7(reports: Reports) -> Outcome:
    """
    Criterion: (a) the adversarial / standard median-margin ratio is larger in the highest-frequency block than in
    the lowest; (b) more of the PGD perturbations' DCT energy lies in the lower half of the diagonal blocks than in
    the upper half. Both in every seed: reproduced; one: partly; else not.
    """
    a = b = True
    gains, low = [], []
    for report in reports:
        gain = ratio(dct_medians(report, "adversarial"), dct_medians(report, "standard"))
        energy = np.array(report["results"]["adversarial"]["perturbation_energy"])
        half = len(energy) // 2
        gains.append((gain[0], gain[-1]))
        low.append(energy[:half].sum() / energy.sum())
        a &= bool(gain[-1] > gain[0])
        b &= bool(energy[:half].sum() > energy[-half:].sum())
    ours = (f"adversarial / standard median margin: lowest block {spread([g[0] for g in gains])}, highest "
            f"{spread([g[1] for g in gains])}; perturbation energy in the lower half of the blocks {spread(low)}")
    return Outcome(ours, grade(a and b, a or b),
                   f"largest gain at high frequency: {a}; low-frequency perturbations: {b}")


def mdb_epochs(report: dict[str, Any], training: str) -> list[dict[str, Any]]:
    """
    :return: The tracked epochs after training began (epoch >= 0) of one training (``natural`` / ``adversarial``)
             of a margins report.
    """
    return [r for r in report["results"][training]["epochs"] if r["epoch"] >= 0]


def mdb_initial(report: dict[str, Any], training: str) -> "dict[str, Any] | None":
    """:return: The record of the initialised network (epoch -1), or ``None`` for a run made before it existed."""
    return next((r for r in report["results"][training]["epochs"] if r["epoch"] < 0), None)


def judge_mdb_o1(reports: Reports) -> Outcome:
    """
    Criterion (natural training; mean margins of all tracked samples, L2 and L-inf): (a) downward trend — the
    mean at the last tracked epoch is below the one after the first epoch and the least-squares slope over the
    tracked epochs is negative, train and test; (b) standard errors small and stable — at every epoch below 10% of
    the mean, and max / min over the epochs at most 3; (c) train ~ test — at the last epoch the two means differ by
    at most 20%; (d) the jump — the mean after the first epoch is above the initialised network's (epoch -1), L2
    and L-inf, train and test. (a)-(d) in every seed: reproduced; (a) in every seed: partly; else not. Until
    2026-12-02 the runs had no point before training and (d) was not judged (best verdict partly); (d) was added
    with the initial point, before the reruns that have it.
    """
    trend = stable = close = jump = True
    first, last, initial = [], [], []
    for report in reports:
        rows = mdb_epochs(report, "natural")
        start = mdb_initial(report, "natural")
        if start is None:
            jump = False
        else:
            initial.append(start["train_l2_all_mean"])
            jump &= all(rows[0][f"{subset}_{norm}_all_mean"] > start[f"{subset}_{norm}_all_mean"]
                        for norm in ("l2", "linf") for subset in ("train", "test"))
        epochs = np.array([r["epoch"] for r in rows], dtype=float)
        for norm in ("l2", "linf"):
            for subset in ("train", "test"):
                mean = np.array([r[f"{subset}_{norm}_all_mean"] for r in rows])
                se = np.array([r[f"{subset}_{norm}_all_std_error"] for r in rows])
                trend &= bool(mean[-1] < mean[0] and np.polyfit(epochs, mean, 1)[0] < 0)
                stable &= bool(np.all(se < 0.1 * mean) and se.max() <= 3 * se.min())
            tr, te = rows[-1][f"train_{norm}_all_mean"], rows[-1][f"test_{norm}_all_mean"]
            close &= abs(tr - te) <= 0.2 * te
        first.append(rows[0]["train_l2_all_mean"])
        last.append(rows[-1]["train_l2_all_mean"])
    ours = (f"mean L2 margin of the tracked training samples at initialisation: "
            f"{spread(initial) if len(initial) == len(reports) else 'not measured'}, after epoch 1: {spread(first)}, "
            f"last: {spread(last)}")
    why = (f"downward trend (L2 and L-inf, train and test): {trend}; standard errors < 10% of the mean and "
           f"stable within 3x: {stable}; train ~ test within 20%: {close}; jump after epoch 1 over the "
           f"initialisation: {jump}")
    return Outcome(ours, grade(trend and stable and close and jump, trend), why)


def judge_mdb_o2(reports: Reports) -> Outcome:
    """
    Criterion (mean margins of all tracked samples at the last epoch): (a) adversarial training's mean exceeds
    natural training's for L2 and L-inf, train and test (L-inf PGD training, so L2 is the transfer across norms);
    (b) it stays high — the adversarial mean at the last epoch is at least 80% of its maximum over the epochs, both
    norms, test. Both in every seed: reproduced; (a) only: partly; else not.
    """
    higher = stays = True
    ratios = {"l2": [], "linf": []}
    for report in reports:
        nat, adv = mdb_epochs(report, "natural"), mdb_epochs(report, "adversarial")
        for norm, values in ratios.items():
            for subset in ("train", "test"):
                higher &= adv[-1][f"{subset}_{norm}_all_mean"] > nat[-1][f"{subset}_{norm}_all_mean"]
            series = [r[f"test_{norm}_all_mean"] for r in adv]
            stays &= series[-1] >= 0.8 * max(series)
            values.append(adv[-1][f"test_{norm}_all_mean"] / nat[-1][f"test_{norm}_all_mean"])
    ours = (f"adversarial / natural mean test margin at the last epoch: L2 {spread(ratios['l2'])}, "
            f"L-inf {spread(ratios['linf'])}")
    why = f"adversarial above natural (both norms, train and test): {higher}; stays >= 80% of its peak: {stays}"
    return Outcome(ours, grade(higher and stays, higher), why)


def judge_mdb_o3(reports: Reports) -> Outcome:
    """
    Criterion (natural training, test samples, L2): (a) at every tracked epoch with at least 5 misclassified
    samples their mean margin is at most half the correct ones'; (b) their mean margin at the last epoch is below
    the one after the first epoch; (c) over all consecutive tracked epochs, more than half of the misclassified
    samples stay misclassified. All in every seed: reproduced; (a) in every seed: partly; else not.
    """
    closer = shrinks = stay = True
    ratios, stay_fracs = [], []
    for report in reports:
        rows = mdb_epochs(report, "natural")
        for r in rows:
            if (r["test_l2_incorrect_n"] or 0) >= 5:
                ratios.append(r["test_l2_incorrect_mean"] / r["test_l2_correct_mean"])
                closer &= ratios[-1] <= 0.5
        shrinks &= rows[-1]["test_l2_incorrect_mean"] < rows[0]["test_l2_incorrect_mean"]
        moves = [t for t in report["results"]["natural"]["transitions"] if t["from"] >= 0]
        kept = sum(t["test"]["incorrect->incorrect"] for t in moves)
        left = sum(t["test"]["incorrect->correct"] for t in moves)
        stay_fracs.append(kept / max(kept + left, 1))
        stay &= stay_fracs[-1] > 0.5
    ours = (f"mean L2 margin incorrect / correct (test): {spread(ratios, unit='epochs x seeds')}; misclassified "
            "staying "
            f"misclassified between epochs: {spread(stay_fracs)}")
    n_close = sum(q <= 0.5 for q in ratios)
    why = (f"incorrect <= half of correct at every epoch: {closer} ({n_close} of {len(ratios)}); incorrect margins "
           f"shrink: {shrinks}; most stay incorrect: {stay}")
    return Outcome(ours, grade(closer and shrinks and stay, closer), why)


def prs_nets(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:return: Networks A (the larger batch) and B (the smaller) of a ``prs_batch_size`` report."""
    large, small = report["settings"]["batch_sizes"]
    return report["results"][f"batch_{large}"], report["results"][f"batch_{small}"]


def judge_prs_f2(reports: Reports) -> Outcome:
    """
    Criterion: (a) similar test accuracy (within 0.03); (b) PRS ratio of A at least twice B's at the penultimate
    layer; (c) Fig. 2a: at every other ReLU layer the two ratios differ by at most 0.1. All in every seed:
    reproduced; A's ratio above B's in every seed: partly; else not.
    """
    acc = prs_a = prs_b = ()
    similar = double = others = above = True
    for report in reports:
        a, b = prs_nets(report)
        fa, fb = a["final"], b["final"]
        acc += (fa["test_accuracy"] - fb["test_accuracy"],)
        prs_a += (fa["prs_ratio"],)
        prs_b += (fb["prs_ratio"],)
        similar &= abs(acc[-1]) <= 0.03 + 1e-9  # accuracies are multiples of 1 / n_test: no round-off verdicts
        double &= fa["prs_ratio"] >= 2 * fb["prs_ratio"]
        above &= fa["prs_ratio"] > fb["prs_ratio"]
        layers = list(fa["layerwise_prs"])[:-1]
        others &= all(abs(fa["layerwise_prs"][k] - fb["layerwise_prs"][k]) <= 0.1 for k in layers)
    ours = f"PRS ratio A {spread(prs_a)}, B {spread(prs_b)}; test accuracy A - B {spread(acc)}"
    why = f"similar accuracy: {similar}; A >= 2x B: {double}; other layers within 0.1: {others}; A > B: {above}"
    return Outcome(ours, grade(similar and double and others, above), why)


def judge_prs_f3(reports: Reports) -> Outcome:
    """
    Criterion: B's robust test accuracy above A's under FGSM, BIM-5, PGD-20 and PGD-100 (same eps). Every attack
    in every seed: reproduced; in most (attack, seed) pairs: partly; else not. The why line also counts the seeds
    in which B has the lower PRS ratio, the paper's premise ("Network B (low PRS ratio) is more robust than Network
    A (high PRS ratio)"); the verdict does not depend on it.
    """
    wins, total, b_lower = 0, 0, 0
    per_attack: dict[str, list[float]] = {}
    for report in reports:
        a, b = prs_nets(report)
        b_lower += b["final"]["prs_ratio"] < a["final"]["prs_ratio"]
        for name, ra in a["final"]["attacks"].items():
            rb = b["final"]["attacks"][name]
            per_attack.setdefault(name, []).append(rb - ra)
            wins += rb > ra
            total += 1
    ours = "robust accuracy B - A: " + "; ".join(f"{k} {spread(v)}" for k, v in per_attack.items())
    why = (f"B above A in {wins} of {total} (attack, seed); B has the lower PRS ratio (the paper's premise) in "
           f"{b_lower} of {len(reports)} seeds")
    return Outcome(ours, grade(wins == total, wins > total / 2), why)


def judge_prs_f4(reports: Reports) -> Outcome:
    """
    Criterion: least-squares regression of the PGD robust test accuracy on the PRS ratio over the grid batch size x
    seed x tracked epoch, keeping the tracked epochs whose test accuracy is within 0.05 of that network's final one
    (trained models, as the paper compares): slope < 0 with p < 0.05: reproduced; slope < 0: partly; else not.
    """
    from scipy.stats import linregress

    prs, rob = [], []
    for report in reports:
        for net in prs_nets(report):
            c = net["curves"]
            for p, r, acc in zip(c["prs_ratio"], c["robust_accuracy"], c["test_accuracy"]):
                if acc >= c["test_accuracy"][-1] - 0.05:
                    prs.append(p)
                    rob.append(r)
    fit = linregress(prs, rob)
    return Outcome(f"slope {fit.slope:.3f}, p = {fit.pvalue:.2g} over {len(prs)} (batch size, seed, epoch) points",
                   grade(fit.slope < 0 and fit.pvalue < 0.05, fit.slope < 0),
                   "a grid of 2 batch sizes only, not the paper's many architectures and data sets")


def judge_prs_f5(reports: Reports) -> Outcome:
    """
    Criterion, per network and seed: after the test accuracy converges (the first tracked epoch within 0.01 of
    the final test accuracy), the PRS ratio at the last epoch is lower and the PGD robust accuracy higher than at
    convergence. Both for every network and seed: reproduced; for at least one (network, seed): partly; else not.
    """
    held = []
    for report in reports:
        for net in prs_nets(report):
            c = net["curves"]
            conv = next(i for i, acc in enumerate(c["test_accuracy"]) if acc >= c["test_accuracy"][-1] - 0.01)
            held.append(c["prs_ratio"][-1] < c["prs_ratio"][conv]
                        and c["robust_accuracy"][-1] > c["robust_accuracy"][conv])
    return Outcome(f"PRS falls and robust accuracy rises after convergence in {sum(held)} of {len(held)} "
                   "(network, seed)", grade(all(held), any(held)), "checked on networks A and B of every seed")


def judge_prs_f6(reports: Reports) -> Outcome:
    """
    Criterion: among the failed PGD attacks, the fraction with a zero input gradient is higher on the network with
    the lower PRS ratio. Every seed: reproduced; some seeds: partly; none: not.
    """
    held, low, high = [], [], []
    for report in reports:
        lo, hi = sorted(prs_nets(report), key=lambda n: n["final"]["prs_ratio"])
        low.append(lo["final"]["zero_gradient"]["fraction"])
        high.append(hi["final"]["zero_gradient"]["fraction"])
        held.append(low[-1] > high[-1])
    return Outcome(f"zero-gradient fraction of the failures: low-PRS net {spread(low)}, high-PRS net "
                   f"{spread(high)}", grade(all(held), any(held)), f"low-PRS net higher in {sum(held)} of "
                   f"{len(held)} seeds")


def pooled_spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """:return: Spearman's rank correlation of two equally long sequences (ties by average rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def judge_pooled(reports: Reports, key: str, label: str) -> Outcome:
    """
    Criterion for a PRS-vs-statistic claim with a negative relation: Spearman's correlation between the PRS ratio
    and ``key`` over all networks (A and B of every seed) at most -0.6 over at least 6 networks: reproduced; below
    0: partly; else not.

    :param reports: The ``prs_batch_size`` reports.
    :param key: The statistic in ``final``.
    :param label: Its name in the table.
    """
    prs, stat = [], []
    for report in reports:
        for net in prs_nets(report):
            prs.append(net["final"]["prs_ratio"])
            stat.append(net["final"][key])
    rho = pooled_spearman(prs, stat)
    return Outcome(f"Spearman(PRS ratio, {label}) = {rho:.2f} over {len(prs)} networks; {label} "
                   f"{spread(stat, unit='networks')}", grade(rho <= -0.6 and len(prs) >= 6, rho < 0),
                   "criterion: <= -0.6 over >= 6 networks reproduced, < 0 partly")


def judge_prs_f7(reports: Reports) -> Outcome:
    """Criterion: :func:`judge_pooled` on the mean off-diagonal cosine similarity of the final layer's rows."""
    return judge_pooled(reports, "final_layer_similarity", "final-layer cosine similarity")


def judge_prs_f12(reports: Reports) -> Outcome:
    """Criterion: :func:`judge_pooled` on the mean feature sparsity (CNN6 is the paper's CNN-6 shape)."""
    return judge_pooled(reports, "feature_sparsity", "feature sparsity")


def judge_prs_f9(reports: Reports) -> Outcome:
    """
    Criterion: (a) on each network with at least 10 test samples in each group, the inclusion group's PGD robust
    accuracy exceeds the exclusion group's; (b) the network with the larger PRS ratio has the smaller inclusion
    ratio. Both in every seed: reproduced; one of them in every seed: partly; else not.
    """
    robust_ok = inverse_ok = True
    gaps, checked = [], 0
    for report in reports:
        nets = prs_nets(report)
        for net in nets:
            inc = net["final"]["inclusion_robustness"]
            if min(inc["inclusion"]["n"], inc["exclusion"]["n"]) >= 10:
                checked += 1
                gaps.append(inc["inclusion"]["robust_accuracy"] - inc["exclusion"]["robust_accuracy"])
                robust_ok &= gaps[-1] > 0
        hi, lo = sorted(nets, key=lambda n: -n["final"]["prs_ratio"])
        inverse_ok &= hi["final"]["inclusion_ratio"] < lo["final"]["inclusion_ratio"]
    robust_ok &= checked > 0
    ours = (f"robust accuracy inclusion - exclusion {spread(gaps, unit='networks') if gaps else 'n/a'} on "
            f"{checked} networks with "
            "both groups >= 10")
    why = f"inclusion group more robust: {robust_ok}; larger PRS -> smaller inclusion ratio: {inverse_ok}"
    return Outcome(ours, grade(robust_ok and inverse_ok, robust_ok or inverse_ok), why)


def ds_results(reports: Reports) -> list[dict[str, Any]]:
    """:return: The per-model results of every ``decision_surface_table1`` report."""
    return [report["results"] for report in reports]


def judge_ds_t1(reports: Reports) -> Outcome:
    """
    Criterion (robust accuracy averaged over the seeds, FGSM / BIM / C&W at eps 0.2 and 0.3): the Jacobian model
    above the natural, adversarial and CE-gradient models in every cell: reproduced; above natural and
    CE-gradient in every cell: partly; else not.
    """
    runs = ds_results(reports)
    eps = reports[0]["settings"]["eps"]
    cells = [(attack, i) for attack in ("fgsm", "bim", "cw") for i, e in enumerate(eps) if e >= 0.2]

    def mean(model: str, attack: str, i: int) -> float:
        return float(np.mean([r[model]["robust_accuracy"][attack][i] for r in runs]))

    beats = {m: all(mean("jacobian", a, i) > mean(m, a, i) for a, i in cells) for m in ("natural", "adv", "ce_grad")}
    ours = "; ".join(f"{a.upper()} {eps[i]:g}: jac {spread([r['jacobian']['robust_accuracy'][a][i] for r in runs], 2)}"
                     f" vs adv {spread([r['adv']['robust_accuracy'][a][i] for r in runs], 2)}" for a, i in cells)
    why = ("Jacobian above " + ", ".join(f"{m}: {v}" for m, v in beats.items())
           + " (adversarial training here is PGD, the paper's is Kurakin's)")
    return Outcome(ours, grade(all(beats.values()), beats["natural"] and beats["ce_grad"]), why)


def judge_ds_f8(reports: Reports) -> Outcome:
    """
    Criterion (natural vs adversarially trained model), written before the loss-Hessian runs: (a) natural / robust
    mean Jacobian l1 at least 5 (the paper: about 10); (b) natural / robust mean Hessian eigenvalue l1 at least 1.5
    (the paper: 1.26 / 0.53 = 2.4), the Hessian of the loss, the paper's ``F(theta, x)`` (Sec. 4.1; the decision
    function's Hessian vanishes on ReLU networks and is reported beside it); (c) the robust model's fraction of
    zero Jacobian entries at least 20 points above the natural one's (the paper: 54.0% vs 1.1%); (d) the robust
    model's fraction of zero Hessian eigenvalues above the natural one's (the paper: 97.1% vs 65.6%). All four in
    every seed: reproduced; at least one in every seed: partly; else not.
    """
    runs = ds_results(reports)
    jac = [r["natural"]["jacobian_l1_mean"] / r["adv"]["jacobian_l1_mean"] for r in runs]
    loss_l1 = [(r["natural"]["hessian_loss_l1_mean"], r["adv"]["hessian_loss_l1_mean"]) for r in runs]
    hess = [n / a if a > 0 else float("nan") for n, a in loss_l1]
    zeros = [(r["natural"]["jacobian_zero_fraction"], r["adv"]["jacobian_zero_fraction"]) for r in runs]
    eig_zeros = [(r["natural"]["hessian_loss_zero_fraction"], r["adv"]["hessian_loss_zero_fraction"]) for r in runs]
    a = all(j >= 5 for j in jac)
    b = all(h >= 1.5 for h in hess)
    c = all(z[1] - z[0] >= 0.2 for z in zeros)
    d = all(z[1] > z[0] for z in eig_zeros)
    decision = max(r[m]["hessian_l1_mean"] for r in runs for m in ("natural", "adv"))
    ours = (f"Jacobian l1 natural / robust {spread(jac)}; zero Jacobian entries natural "
            f"{spread([z[0] for z in zeros])}, robust {spread([z[1] for z in zeros])}; loss-Hessian l1 natural "
            f"{spread([v[0] for v in loss_l1])}, robust {spread([v[1] for v in loss_l1])} (ratio {spread(hess)}); "
            f"zero loss-Hessian eigenvalues natural {spread([z[0] for z in eig_zeros])}, robust "
            f"{spread([z[1] for z in eig_zeros])}; decision-function Hessian l1 at most {decision:.3g} (ReLU nets)")
    why = (f"Jacobian ratio >= 5: {a}; loss-Hessian ratio >= 1.5: {b}; zero Jacobian entries +20 pts: {c}; "
           f"more zero eigenvalues robust: {d}")
    return Outcome(ours, grade(a and b and c and d, a or b or c or d), why)


def as_distance(value: float | None) -> float:
    """:return: A median distance of ``decision_surface_geometry``, ``inf`` for ``None`` (beyond the grid)."""
    return float("inf") if value is None else float(value)


def judge_ds_f2(reports: Reports) -> Outcome:
    """
    Criterion: (a) parameter space alike — the robust model's mean loss rise over the parameter grid is within a
    factor 2 of the natural one's; (b) input space different — the natural model's fraction of misclassified points
    on the random input-space grid is at least twice the robust one's. Both in every seed: reproduced; one in every
    seed: partly; else not.
    """
    rise, mis = [], []
    for report in reports:
        nat, rob = report["results"]["natural"], report["results"]["robust"]
        rise.append(rob["parameter_loss_rise"] / nat["parameter_loss_rise"])
        mis.append((nat["input_misclassified_fraction"], rob["input_misclassified_fraction"]))
    a = all(0.5 <= q <= 2 for q in rise)
    b = all(n >= 2 * r for n, r in mis)
    ours = (f"parameter-space loss rise robust / natural {spread(rise)}; input-space misclassified grid fraction "
            f"natural {spread([m[0] for m in mis])}, robust {spread([m[1] for m in mis])}")
    return Outcome(ours, grade(a and b, a or b), f"parameter surfaces alike: {a}; input surfaces differ: {b}")


def judge_ds_f4(reports: Reports) -> Outcome:
    """
    Criterion (natural model): for each adversarial objective (CE, least-likely, C&W) the median distance to the
    boundary along the adversarial direction is at most half the one along a random direction (a random line that
    never leaves the grid counts as infinitely far). All three in every seed: reproduced; some: partly; else not.
    """
    held = []
    med: dict[str, list[float]] = {}
    for report in reports:
        nat = report["results"]["natural"]
        rnd = as_distance(nat["random_boundary_median"])
        for loss in ("ce", "least_likely", "cw"):
            d = as_distance(nat[f"{loss}_boundary_median"])
            med.setdefault(loss, []).append(d)
            held.append(bool(np.isfinite(d) and d <= 0.5 * rnd))
        med.setdefault("random", []).append(rnd)
    ours = "median l2 distance to the boundary: " + "; ".join(f"{k} {spread(v)}" for k, v in med.items())
    return Outcome(ours, grade(all(held), any(held)), f"adversarial <= half of random in {sum(held)} of {len(held)}")


def judge_ds_time(reports: Reports) -> Outcome:
    """
    Criterion: training time of the Jacobian-regularised model over the natural one's (same epochs) within
    [1.5, 3.0] (the paper: 2.1) in every seed: reproduced; above 1 in every seed: partly; else not. Timed on a
    shared 2-core machine: indicative only.
    """
    ratios = [r["jacobian"]["train_seconds"] / r["natural"]["train_seconds"] for r in ds_results(reports)]
    return Outcome(f"regularised / natural training time {spread(ratios)}",
                   grade(all(1.5 <= q <= 3.0 for q in ratios), all(q > 1 for q in ratios)),
                   "wall-clock on a shared, busy CPU (not a quiet benchmark)")


HMT = "Hold me tight (NeurIPS 2020)"
MDB = "Margins paper (Understanding the Decision Boundary)"
PRS = "PRS paper (Decision Region and Robustness)"
DS = "Decision surface paper (ICLR 2019 sub.)"

CLAIMS: tuple[Claim, ...] = (
    Claim("HMT-T1", f"{HMT}, Sec. 3.1, Table 1",
          "MLP on T1(eps=5, sigma=1), N=10,000, M=1,000, S=3: medians 2.50 (u1), 12.36 (span{u1}-perp), 102.0 "
          "(S_orth), 27.90 (S_rand); \"only creating a boundary in u1 with median margin eps/2\"",
          "hold_me_tight_synthetic", judge_hmt_t1),
    Claim("HMT-F6", f"{HMT}, Sec. 4.1, Fig. 6",
          "T2(rho=20, eps, sigma=1, K=3): \"for eps < 0.2, the network is almost invariant in u1\" and uses u2; "
          "\"at eps > 0.5 we notice a sharp transition\" to separating \"using only u1\"",
          "hold_me_tight_synthetic", judge_hmt_f6),
    Claim("HMT-F2", f"{HMT}, Sec. 3.2, Fig. 2",
          "test margins along diagonal DCT blocks small at low and large at high frequency (LeNet, MNIST)",
          "hold_me_tight_dct", judge_hmt_f2),
    Claim("HMT-F2d", f"{HMT}, Sec. 3.2.1, Fig. 2d-f",
          "trained on DCT-flipped data, the margin distribution flips", "hold_me_tight_dct", judge_hmt_f2d),
    Claim("HMT-F4", f"{HMT}, Sec. 3.2.2, Fig. 4",
          "trained or fine-tuned on low-pass data, the network becomes invariant at high frequencies (CIFAR-10, "
          "T_LP: \"we have forced the network to become invariant along these directions\")",
          "hold_me_tight_dct", judge_hmt_f4),
    Claim("HMT-F7", f"{HMT}, Sec. 4.2, Fig. 7-8",
          "adversarial training raises the margins most at high frequencies; its perturbations are low-frequency",
          "hold_me_tight_dct", judge_hmt_f7),
    Claim("MDB-O1", f"{MDB}, Obs. 1, Fig. 1",
          "natural training: margins \"jump to a higher level\" after epoch 1, then \"have a clear downward "
          "trend\"; standard errors \"remain relatively small and stable\"; no significant train/test difference",
          "margins_over_training", judge_mdb_o1),
    Claim("MDB-O2", f"{MDB}, Obs. 2, Fig. 2",
          "50% PGD adversarial training: margins \"remain at a relatively high level compared to standard "
          "training\" (L-inf and L2)", "margins_over_training", judge_mdb_o2),
    Claim("MDB-O3", f"{MDB}, Obs. 3, Fig. 3-6",
          "misclassified images \"lie significantly closer to the decision boundary\" and move closer over "
          "training; Sankey: most incorrect samples stay incorrect", "margins_over_training", judge_mdb_o3),
    Claim("PRS-F2", f"{PRS}, Sec. 3, Fig. 2",
          "CNN-6, batch 2048 (A) vs 128 (B): similar accuracy, \"PRS ratio of Network A: 0.99, and Network B: "
          "0.007\" at the penultimate layer; only that layer differs (2a)", "prs_batch_size", judge_prs_f2),
    Claim("PRS-F3", f"{PRS}, Sec. 4.1, Fig. 3",
          "\"Network B (low PRS ratio) is more robust than Network A (high PRS ratio) under all adversarial "
          "attacks\" (FGSM, BIM-5, PGD-20, PGD-100)", "prs_batch_size", judge_prs_f3),
    Claim("PRS-F4", f"{PRS}, Sec. 4.1, Fig. 4",
          "over many models, PRS ratio vs PGD-20 robust accuracy: negative slope, significant p-values",
          "prs_batch_size", judge_prs_f4),
    Claim("PRS-F5", f"{PRS}, Sec. 4.1, Fig. 5",
          "\"Although the test accuracy of each model converges after the 50th epoch, the PRS ratio continues to "
          "decrease ... and the RA continues to increase\"", "prs_batch_size", judge_prs_f5),
    Claim("PRS-F6", f"{PRS}, Sec. 4.2, Fig. 6",
          "more failed PGD attacks with zero gradient on the low-PRS network B", "prs_batch_size", judge_prs_f6),
    Claim("PRS-F7", f"{PRS}, Sec. 4.2, Fig. 7-8",
          "\"the PRS ratio has an inverse correlation for the cosine similarity between each parameter in the "
          "final layer\"", "prs_batch_size", judge_prs_f7),
    Claim("PRS-F9", f"{PRS}, Sec. 5, Fig. 9-10",
          "\"the inclusion group is more robust against all types of attacks\"; \"the PRS ratio and the inclusion "
          "ratio exist in inversely correlated relationship\"", "prs_batch_size", judge_prs_f9),
    Claim("PRS-F12", f"{PRS}, Sec. 6, Fig. 12",
          "\"CNN-6 and VGG-16 show an inversely correlated relationship\" between PRS ratio and average sparsity",
          "prs_batch_size", judge_prs_f12),
    Claim("DS-F2", f"{DS}, Sec. 2, Fig. 2-3",
          "parameter-space loss surfaces of natural and robust models look alike; input-space surfaces differ",
          "decision_surface_geometry", judge_ds_f2),
    Claim("DS-F4", f"{DS}, Sec. 3, Fig. 4",
          "along adversarial directions (CE, least-likely, C&W) the boundary is far closer than along random ones",
          "decision_surface_geometry", judge_ds_f4),
    Claim("DS-F8", f"{DS}, Sec. 4.3, Fig. 8",
          "robust vs natural (MNIST): Jacobian l1 \"about ~50, ten times less than ~500\"; Hessian l1 \"0.53, "
          "two times less than 1.26\"; \"ratio of zeros in Jacobian are 1.1% and 54.0%\"; \"ratio of zeros in "
          "eigenvalues for natural and robust models are 65.6% and 97.1%\" (H: of F(theta, x), Sec. 4.1)",
          "decision_surface_table1", judge_ds_f8),
    Claim("DS-T1", f"{DS}, Sec. 5, Table 1",
          "robust accuracy under FGSM / BIM / C&W at eps 0.1 / 0.2 / 0.3: the Jacobian regulariser above "
          "natural, adversarial (Kurakin) and CE-gradient training, most clearly at 0.2-0.3",
          "decision_surface_table1", judge_ds_t1),
    Claim("DS-TIME", f"{DS}, Sec. 5.2", "the regularised epoch costs 2.1x a natural one",
          "decision_surface_table1", judge_ds_time),
)


def load_reports(results: Path, script: str) -> Reports:
    """
    :param results: The results folder.
    :param script: A script name.
    :return: Every JSON under ``results/script/``, sorted by file name (empty when none).
    """
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((results / script).glob("*.json"))]


def scale(reports: Reports) -> str:
    """:return: The run's data, size and seeds in a few words, from the reports' settings."""
    s = reports[0]["settings"]
    seeds = sorted({r["seed"] for rep in reports for r in rep.get("runs", [])} or
                   {rep["settings"]["seed"] for rep in reports})
    size = s.get("n_train_used", s.get("n_train"))
    n_test = s.get("n_test_used", s.get("n_test"))
    counts = [f"{size} training" if size else "", f"{n_test} test" if n_test else ""]
    counts_text = " / ".join(c for c in counts if c)
    data = DATA_NAMES.get(s.get("data", "synthetic"), s.get("data", "synthetic"))
    data += f" ({counts_text} samples)" if counts_text else ""
    model = f", {s['model']}" if "model" in s else ""
    epochs = f", {s['epochs']} epochs" if "epochs" in s else ""
    minutes = sum(rep["wall_seconds"] for rep in reports) / 60
    return f"{data}{model}{epochs}, seeds {', '.join(map(str, seeds))}, {minutes:.0f} min in all"


def row(claim: Claim, results: Path) -> tuple[str, ...]:
    """:return: The table cells of one claim."""
    reports = load_reports(results, claim.script) if claim.script else []
    if not reports or claim.judge is None:
        where = f"`{claim.script}.py`" if claim.script else "no script yet"
        return claim.id, claim.where, claim.paper, f"({where})", NOT_RUN, "no full run in examples/results"
    outcome = claim.judge(reports)
    return (claim.id, claim.where, claim.paper, f"{outcome.ours} [`{claim.script}.py`; {scale(reports)}]",
            outcome.verdict, outcome.why)


def build(results: Path) -> str:
    """:return: The Markdown of ``RESULTS.md``."""
    lines = [
        "# The papers' claims against our runs",
        "",
        "Generated by `examples/make_results.py` from the JSONs under `examples/results/` (do not edit by hand).",
        "Each verdict comes from a criterion written in that script before the full runs (its docstring per",
        "claim); \"not run yet\" marks a claim without a full run. Settings, scales and run times are in the",
        "scripts' docstrings and the JSONs. Fashion-MNIST stands in for MNIST and CIFAR-10.",
        "",
        "| ID | where | the paper | ours | verdict | why |",
        "|---|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        cells = [c.replace("|", "\\|") for c in row(claim, results)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """
    Write ``RESULTS.md``.

    :param argv: Command-line arguments (``None``: ``sys.argv``).
    :return: The Markdown written.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results", help="folder of the runs' JSONs")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="the Markdown file to write")
    args = p.parse_args(argv)
    text = build(args.results)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return text


if __name__ == "__main__":
    main()

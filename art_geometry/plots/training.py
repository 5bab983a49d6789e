"""
Figures of a :class:`art_geometry.training.GeometryTracker` history: margins over epochs, train and test, correct
against incorrect samples (the margins paper's Figs. 1-2); PRS ratio, inclusion ratio, accuracy and robust
accuracy over epochs (the PRS paper's Fig. 5); the correct/incorrect transitions between tracked epochs; and one
quantity of several histories on one axis, to compare trainings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from art_geometry.core.settings import AttackSettings

__all__ = ["plot_history_comparison", "plot_margin_curves", "plot_prs_curves", "plot_transitions"]

_GROUPS = (("all", None), ("correct", "correct"), ("incorrect", "incorrect"))
#: The tracker numbers epochs from 0 (epoch 0 = after the first epoch of training).
_EPOCH = "epoch (0 = after the first)"


def _epochs(history: dict[str, Any]) -> np.ndarray:
    return np.array([r["epoch"] for r in history["epochs"]], dtype=float)


def _num(value: Any) -> float:
    """A number of a JSON history (``jsonable`` writes non-finite floats as "inf", "-inf", "nan")."""
    return float(value)


def plot_margin_curves(
    history: dict[str, Any],
    norm: str = "l2",
    stat: str = "median",
    *,
    axes: Sequence[Any] | None = None,
    label: str = "",
    linestyle: str = "-",
) -> Any:
    """
    Margins over epochs: one panel per subset (train, test), one line per group (all, correct, incorrect), with
    a band of +- one standard error around the mean when ``stat="mean"``. Several trainings can share the panels
    (e.g. natural vs adversarial): pass the same ``axes`` with a ``label`` and a ``linestyle`` each.

    :param history: A tracker history.
    :param norm: ``"l2"`` or ``"linf"``.
    :param stat: ``"median"`` or ``"mean"``.
    :param axes: Two axes (train, test) to draw on; a new figure when ``None``.
    :param label: Prefix of the legend entries.
    :param linestyle: Line style of this history's lines.
    :return: The matplotlib figure.
    :raises ValueError: When the history holds no margins in that norm.
    """
    import matplotlib.pyplot as plt

    records = history["epochs"]
    if not records or "margins" not in records[0]["train"] or norm not in records[0]["train"]["margins"]:
        raise ValueError(f"the history holds no {norm} margins (track with metrics including 'margins')")
    epochs = _epochs(history)
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True, layout="constrained")[1]
    prefix = f"{label}: " if label else ""
    for ax, subset in zip(axes, ("train", "test")):
        for (group, key), color in zip(_GROUPS, ("C0", "C2", "C3")):
            stats = [r[subset]["margins"][norm] if key is None else r[subset]["margins"][norm][key] for r in records]
            values = np.array([_num(s[stat]) for s in stats])
            line = ax.plot(epochs, values, marker="o", color=color, ls=linestyle, label=prefix + group)[0]
            if stat == "mean":
                err = np.array([_num(s["std_error"]) for s in stats])
                ax.fill_between(epochs, values - err, values + err, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{subset}: {stat} {norm} margin")
        ax.set_xlabel(_EPOCH)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("DeepFool margin")
    axes[0].legend(fontsize=8)
    return axes[0].figure


def plot_prs_curves(history: dict[str, Any], *, ax: Any = None) -> Any:
    """
    PRS ratio (train and test subsets) and inclusion ratio on the left axis, accuracy and PGD robust accuracy on
    the right axis, over epochs (PRS paper, Fig. 5).

    :param history: A tracker history.
    :param ax: Axes to draw on (a twin axis is added for the accuracies); a new figure when ``None``.
    :return: The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    records = history["epochs"]
    epochs = _epochs(history)
    if ax is None:
        ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")[1]
    right = ax.twinx()
    if records and "prs_ratio" in records[0]["train"]:
        for subset in ("train", "test"):
            ax.plot(epochs, [r[subset]["prs_ratio"] for r in records], marker="o", label=f"PRS ratio ({subset})")
        ax.plot(epochs, [r["test"]["inclusion_ratio"] for r in records], marker="s", label="inclusion ratio")
    for subset in ("train", "test"):
        right.plot(epochs, [r[subset]["accuracy"] for r in records], ls="--", label=f"accuracy ({subset})")
    if records and "robust_accuracy" in records[0]["test"]:
        attack = AttackSettings.from_dict(history["config"]["attack"]).describe()
        right.plot(epochs, [r["test"]["robust_accuracy"] for r in records], ls=":", marker="^",
                   label=f"robust accuracy ({attack})")
    ax.set_xlabel(_EPOCH)
    ax.set_ylabel("ratio")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_transitions(history: dict[str, Any], subset: str = "test", *, ax: Any = None) -> Any:
    """
    Stacked bars of the correct/incorrect transitions between consecutive tracked epochs (the counts behind the
    margins paper's Sankey diagram).

    :param history: A tracker history.
    :param subset: ``"train"`` or ``"test"``.
    :param ax: Axes to draw on; a new figure when ``None``.
    :return: The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    moves = history["transitions"]
    keys = ("correct->correct", "incorrect->correct", "correct->incorrect", "incorrect->incorrect")
    if ax is None:
        ax = plt.subplots(figsize=(6.5, 3.5), layout="constrained")[1]
    names = [f"{m['from']}->{m['to']}" for m in moves]
    bottom = np.zeros(len(moves))
    for key in keys:
        counts = np.array([m[subset][key] for m in moves], dtype=float)
        ax.bar(names, counts, bottom=bottom, label=key)
        bottom += counts
    ax.set_xlabel("tracked epochs (0-based)")
    ax.set_ylabel(f"{subset} samples")
    ax.legend(fontsize=8)
    return ax.figure


def _lookup(record: dict[str, Any], path: Sequence[str]) -> float:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return float("nan")
        value = value[key]
    return _num(value)


def plot_history_comparison(
    histories: Mapping[str, dict[str, Any]], path: Sequence[str], label: str, *, ax: Any = None
) -> Any:
    """
    One quantity of several tracker histories over epochs, one line per history (e.g. the test accuracy of every
    model of a report).

    :param histories: Tracker histories by name.
    :param path: Keys from an epoch record to the number, e.g. ``("test", "accuracy")`` or
                 ``("test", "margins", "l2", "median")``; epochs without it are left out of the line.
    :param label: The quantity in words (y axis).
    :param ax: Axes to draw on; a new figure when ``None``.
    :return: The matplotlib figure.
    :raises ValueError: When ``histories`` is empty.
    """
    import matplotlib.pyplot as plt

    if not histories:
        raise ValueError("histories is empty: pass at least one tracker history")
    if ax is None:
        ax = plt.subplots(figsize=(6.0, 3.4), layout="constrained")[1]
    for name, history in histories.items():
        values = np.array([_lookup(r, path) for r in history["epochs"]])
        keep = np.isfinite(values)
        ax.plot(_epochs(history)[keep], values[keep], marker="o", label=name)
    ax.set_xlabel(_EPOCH)
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure

"""
A resumable report: the finished parts of ``art-geometry report --checkpoint DIR`` (or ``write_report(...,
checkpoint=DIR)``) kept in ``DIR/report/`` so that a rerun after an interruption recomputes only what had not
finished.

What is kept, each file written atomically with a SHA-256 trailer by :class:`art_geometry.sweep.checkpoint.Checkpoint`:

* ``manifest.json``: the report's settings (data set name and a hash of its four arrays, seed, ``n_samples``,
  ``batch_size``, and for ``--demo`` the epochs and whether the training is tracked). A directory written with
  other settings is refused, naming every difference.
* ``model-<i>.pt`` / ``history-<i>.json``: each ``--demo`` model's trained ``state_dict`` and tracker history, as
  soon as it has trained (the ``i``-th model of the demo's fixed order), so an interrupted demo retrains only the
  models that had not finished.
* ``section-<key>.json``: each finished section's data and seconds, with the hashes of the models it was computed
  on (``model_hash``: every parameter and buffer); a stored section computed on other models is refused. Sections
  with ``resumable = False`` (the Training section, which only reads ``ctx.extras``) are always recomputed.

A corrupt or truncated file fails its checksum, is reported with a warning and recomputed. Under a process group
rank 0 reads and writes the files and broadcasts what it read, so every rank takes the same branch.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import torch

from art_geometry.core.model import adapt
from art_geometry.datasets import Dataset
from art_geometry.sweep.checkpoint import Checkpoint, data_hash, model_hash
from art_geometry.sweep.distributed import agree, world

__all__ = ["ReportCheckpoint", "models_hash", "report_settings"]


def report_settings(
    data: Dataset, *, seed: int, n_samples: int, batch_size: int, demo: "dict[str, Any] | None" = None
) -> dict[str, Any]:
    """
    :param data: The report's data set.
    :param seed: The report's seed.
    :param n_samples: Test samples of the per-sample metrics.
    :param batch_size: Batch size of model evaluation.
    :param demo: For ``--demo``: the training settings (e.g. ``{"epochs": 15, "track": True}``); ``None`` otherwise.
    :return: The JSON-safe settings that determine the report's numbers (the manifest of its checkpoint).
    """
    return {
        "data": data.name,
        "data_hash": {"train": data_hash(data.x_train, data.y_train), "test": data_hash(data.x_test, data.y_test)},
        "seed": seed,
        "n_samples": n_samples,
        "batch_size": batch_size,
        "demo": demo,
    }


def models_hash(models: dict[str, Any]) -> dict[str, str]:
    """
    :param models: Classifiers by report name.
    :return: :func:`~art_geometry.sweep.checkpoint.model_hash` of each, by name.
    """
    return {name: model_hash(adapt(clf)) for name, clf in models.items()}


class ReportCheckpoint:
    """
    The finished parts of one report (see the module docstring).

    :param root: The checkpoint directory the user passed.
    :param settings: :func:`report_settings` of this run.
    :raises ValueError: When the directory is a file or not writable, or holds a report with other settings.
    """

    def __init__(self, root: "str | os.PathLike[str]", settings: dict[str, Any]):
        self._store = Checkpoint(root, "report")
        self._store.bind({"function": "report", "settings": settings})
        self.loaded: list[str] = []

    def _read(self, name: str) -> "bytes | None":
        return agree(self._store.read(name) if world()[0] == 0 else None)

    def _write(self, name: str, payload: bytes) -> None:
        if world()[0] == 0:
            self._store.write(name, payload)

    def trained(self, index: int) -> "tuple[dict[str, torch.Tensor], dict[str, Any] | None] | None":
        """
        :param index: The model's position in the demo's order.
        :return: Its stored ``state_dict`` and tracker history (``None`` when untracked), or ``None`` when it had
                 not finished training.
        """
        weights = self._read(f"model-{index}.pt")
        history = self._read(f"history-{index}.json")
        if weights is None or history is None:
            return None
        self.loaded.append(f"model {index}")
        return torch.load(io.BytesIO(weights), weights_only=True), json.loads(history)

    def save_trained(self, index: int, state_dict: dict[str, torch.Tensor], history: "dict[str, Any] | None") -> None:
        """
        :param index: The model's position in the demo's order.
        :param state_dict: Its trained weights.
        :param history: Its tracker history, or ``None``.
        """
        buf = io.BytesIO()
        torch.save(state_dict, buf)
        self._write(f"model-{index}.pt", buf.getvalue())
        self._write(f"history-{index}.json", json.dumps(history).encode())

    def section(self, key: str, models: dict[str, str]) -> "dict[str, Any] | None":
        """
        :param key: The section's key.
        :param models: :func:`models_hash` of this run's models.
        :return: The stored ``{"title", "seconds", "data"}`` entry, or ``None`` when the section had not finished.
        :raises ValueError: When it was computed on other models.
        """
        payload = self._read(f"section-{key}.json")
        if payload is None:
            return None
        stored = json.loads(payload)
        differ = sorted(name for name in set(stored["models"]) | set(models)
                        if stored["models"].get(name) != models.get(name))
        if differ:
            raise ValueError(
                f"checkpoint {str(self._store.dir)!r}: section {key!r} was computed on other models than this run's "
                f"(differ: {', '.join(differ)}); start a new directory"
            )
        self.loaded.append(f"section {key}")
        return stored["entry"]

    def save_section(self, key: str, models: dict[str, str], entry: dict[str, Any]) -> None:
        """
        :param key: The section's key.
        :param models: :func:`models_hash` of the models it was computed on.
        :param entry: Its ``{"title", "seconds", "data"}`` entry (JSON-safe).
        """
        self._write(f"section-{key}.json", json.dumps({"models": models, "entry": entry}).encode())

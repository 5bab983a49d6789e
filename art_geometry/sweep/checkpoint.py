"""
Resumable sweeps: a checkpoint directory holding one file per finished chunk and a manifest of what was computed.

Layout of ``checkpoint/<key>/``: ``manifest.json`` (the function, its settings, a hash of the model's parameters
and buffers, the chunk size and the seed actually used) and ``chunk-000012.npz`` per finished chunk: the chunk's
per-sample arrays as an ``.npz`` archive, a hash of the chunk's input data inside it, and a SHA-256 of the archive
appended as its last 32 bytes. Every file is written to a temporary name and renamed (atomic on POSIX), so a run
killed at any point (``kill -9`` included) leaves only whole files.

On a rerun, a finished chunk is loaded instead of computed when its checksum holds and its data hash equals the
hash of the data now at its position; a corrupt or truncated file is reported with a warning and recomputed
(never trusted). A manifest written with other settings, another model or another chunk size is refused with a
message naming what differs; a chunk computed on other data is refused likewise. Chunks are numbered over the
whole data set, whatever the number of ranks, so a sweep can resume under another world size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_geometry.core.model import ModelView
from art_geometry.sweep.distributed import barrier, world

__all__ = ["Checkpoint", "model_hash", "data_hash", "stored_manifest"]

logger = logging.getLogger("art_geometry.checkpoint")

_FORMAT = 1
_DIGEST = 32
#: Floats converted to float64 at a time when hashing data.
_HASH_FLOATS = 1 << 20


def model_hash(view: ModelView) -> str:
    """
    :param view: The model view.
    :return: SHA-256 (hex) over the module's class and every parameter and buffer (name, dtype, shape, bytes),
             plus the view's clip values and preprocessing kind.
    """
    h = hashlib.sha256(f"{type(view.module).__qualname__}|{view.clip_values}|{view.source}".encode())
    for name, tensor in view.module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def data_hash(x: "np.ndarray | torch.Tensor", labels: "np.ndarray | None") -> str:
    """
    :param x: The chunk's inputs, any stride.
    :param labels: Their validated labels, or ``None``.
    :return: SHA-256 (hex) of the inputs' values (as float64, so the dtype they arrive in does not matter) and
             labels.
    """
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    h = hashlib.sha256(str(tuple(arr.shape)).encode())
    blocks = arr.reshape((1,) + arr.shape) if arr.ndim == 0 else arr
    rows = max(1, _HASH_FLOATS // max(1, math.prod(blocks.shape[1:])))
    for start in range(0, len(blocks), rows):  # a block of samples at a time: never a float64 copy of all of x
        h.update(np.ascontiguousarray(blocks[start:start + rows], dtype=np.float64).data)
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def _write_atomic(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stored_manifest(root: "str | os.PathLike[str]", key: str) -> "dict[str, Any] | None":
    """
    :param root: A checkpoint directory.
    :param key: A sweep's sub-directory.
    :return: That sweep's manifest, or ``None`` when there is none yet (nothing is created).
    :raises ValueError: When the manifest exists but cannot be read.
    """
    path = Path(root) / key / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"checkpoint manifest {str(path)!r} cannot be read: {err}") from err


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "<absent>"), wanted.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint has {a!r}, this run {b!r}")
    return out


class Checkpoint:
    """
    One sweep's checkpoint directory (see the module docstring).

    :param root: The directory the user passed.
    :param key: The sweep's sub-directory (e.g. ``"deepfool_margins"``, ``"inclusion_ratio/train"``).
    """

    def __init__(self, root: "str | os.PathLike[str]", key: str):
        self.root, self.key = Path(root), key
        self.dir = self.root / key
        self.loaded = 0
        self.computed = 0
        self._ensure_writable()

    def _ensure_writable(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"checkpoint {str(self.root)!r} exists and is not a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.dir, prefix=".probe.", delete=True)
            probe.close()
        except OSError as err:
            raise ValueError(f"checkpoint directory {str(self.dir)!r} is not writable: {err}") from err

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def stored(self) -> "dict[str, Any] | None":
        """:return: The manifest already in the directory, or ``None``."""
        return stored_manifest(self.root, self.key)

    def bind(self, manifest: dict[str, Any]) -> None:
        """
        Write the manifest of this sweep (rank 0, when the directory has none), or check it against the stored one.

        :param manifest: JSON-safe description of the sweep (function, settings, model hash, chunk size, seed).
        :raises ValueError: When the stored manifest differs; the message lists every difference.
        """
        wanted = {"format": _FORMAT, **manifest}
        stored = self.stored()
        if stored is None and world()[0] == 0:
            _write_atomic(self.manifest_path, json.dumps(wanted, indent=1, sort_keys=True).encode())
        barrier()
        stored = self.stored()
        if stored is None:
            raise ValueError(f"checkpoint manifest {str(self.manifest_path)!r} was not written (shared directory?)")
        diff = _differences(stored, json.loads(json.dumps(wanted)))
        if diff:
            raise ValueError(
                f"checkpoint {str(self.dir)!r} belongs to another sweep; start a new directory or rerun with the "
                "same model, settings and data. Differences: " + "; ".join(diff)
            )

    def _chunk_path(self, index: int) -> Path:
        return self.dir / f"chunk-{index:06d}.npz"

    def read(self, name: str) -> "bytes | None":
        """
        :param name: A file name inside the sweep's directory.
        :return: The file's payload, or ``None`` when it does not exist or its checksum fails (then warned: the
                 caller recomputes it, never trusts it).
        """
        path = self.dir / name
        if not path.exists():
            return None
        blob = path.read_bytes()
        payload, check = blob[:-_DIGEST], blob[-_DIGEST:]
        if len(blob) <= _DIGEST or hashlib.sha256(payload).digest() != check:
            warnings.warn(f"checkpoint file {str(path)!r} is corrupt or truncated (checksum): recomputed",
                          stacklevel=3)
            return None
        return payload

    def write(self, name: str, payload: bytes) -> None:
        """
        Write ``payload`` with its SHA-256 appended, atomically (temporary file, fsync, rename).

        :param name: A file name inside the sweep's directory.
        :param payload: The bytes to store.
        """
        _write_atomic(self.dir / name, payload + hashlib.sha256(payload).digest())

    def load(self, index: int, digest: str, span: str) -> "dict[str, np.ndarray] | None":
        """
        :param index: The chunk's index.
        :param digest: :func:`data_hash` of the chunk's data in this run.
        :param span: ``"samples a..b"``, for messages.
        :return: The stored arrays, or ``None`` when the chunk is not finished (or its file is corrupt: warned).
        :raises ValueError: When the chunk was computed on other data.
        """
        payload = self.read(self._chunk_path(index).name)
        if payload is None:
            return None
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        stored_digest = str(arrays.pop("__data_hash__"))
        if stored_digest != digest:
            raise ValueError(
                f"checkpoint {str(self.dir)!r}: chunk {index} ({span}) was computed on other data than this run's"
            )
        self.loaded += 1
        return arrays

    def save(self, index: int, arrays: dict[str, np.ndarray], digest: str) -> None:
        """
        :param index: The chunk's index.
        :param arrays: The chunk's per-sample arrays.
        :param digest: :func:`data_hash` of the chunk's data.
        """
        buf = io.BytesIO()
        np.savez(buf, __data_hash__=np.array(digest), **arrays)
        self.write(self._chunk_path(index).name, buf.getvalue())
        self.computed += 1
        logger.debug("checkpoint chunk %d written to %s", index, self.dir)

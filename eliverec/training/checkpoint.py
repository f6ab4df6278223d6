"""Checkpoints written atomically, with everything needed to continue a run exactly.

A checkpoint holds the model, optimizer, loss-module (adaptive MTL) and gradient-scaler states, the
position in the data (epoch, batch within the epoch, global step), the early-stopping state, the RNG
states of torch, numpy and python, the MLflow run id, the resolved config and the feature spec.
Files are written to a temporary name in the same folder, flushed, then renamed over the old one
(``os.replace`` is atomic), so a run killed while saving leaves the previous checkpoint intact.

Everything saved is plain data (tensors, numbers, strings, lists, tuples, dicts; numpy values are
converted on save), so every file is read with ``torch.load(weights_only=True)``: loading a
checkpoint or a model blob never runs code from the file.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eliverec.errors import EliverecError

LATEST = "latest.pt"
BEST = "best.pt"


class CheckpointError(EliverecError):
    """A checkpoint or model file that cannot be read as plain data."""


def rng_state() -> dict[str, Any]:
    """The state of every random generator the training loop draws from (plain types only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``.

    >>> import tempfile
    >>> p = save_atomic({"a": 1}, Path(tempfile.mkdtemp()) / "x.pt")
    >>> torch.load(p)["a"]
    1
    """
    path = Path(path)
    obj = plain(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a save a killed process did not finish
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and numpy arrays as tensors (what
    ``weights_only`` loading accepts); containers are rebuilt, tensors kept.

    >>> plain({"a": np.float32(0.5), "b": [np.int64(2)], "c": (np.arange(2),)})
    {'a': 0.5, 'b': [2], 'c': (tensor([0, 1]),)}
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return type(obj)((k, plain(v)) for k, v in obj.items())
    if type(obj) in (list, tuple):  # exactly: subclasses (torch.Size, named tuples) are kept as they are
        return type(obj)(plain(v) for v in obj)
    return obj


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint or model blob: ``weights_only=True``, so the file can carry data, never code."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: not a plain-data checkpoint ({str(exc).splitlines()[0]}); files written "
                              "before weights-only loading must be re-created (retrain or re-export), they are "
                              "not unpickled") from exc

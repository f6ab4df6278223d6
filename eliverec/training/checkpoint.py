"""Checkpoints written atomically, with everything needed to continue a run exactly.

A checkpoint holds the model, optimizer, loss-module (adaptive MTL) and gradient-scaler states, the
position in the data (epoch, batch within the epoch, global step), the early-stopping state, the RNG
states of torch, numpy and python, the MLflow run id, the resolved config and the feature spec.
Files are written to a temporary name in the same folder, flushed, then renamed over the old one
(``os.replace`` is atomic), so a run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"
BEST = "best.pt"


def rng_state() -> dict[str, Any]:
    """The state of every random generator the training loop draws from."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
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
    path.parent.mkdir(parents=True, exist_ok=True)
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


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by this module (our own files, so full unpickling is allowed)."""
    return torch.load(Path(path), map_location="cpu", weights_only=False)

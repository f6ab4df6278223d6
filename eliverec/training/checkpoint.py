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

import random
from typing import Any

import numpy as np
import torch

# the plain-data file format (also the model blob's) lives with the saved network
from eliverec.artifact import CheckpointError, load, plain, save_atomic

__all__ = ["BEST", "LATEST", "CheckpointError", "load", "plain", "rng_state", "save_atomic", "set_rng_state"]

LATEST = "latest.pt"
BEST = "best.pt"


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

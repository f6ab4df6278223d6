"""Task scores of a feature dataset, and the frame the metrics read.

:func:`predict` scores every row of an :class:`~eliverec.features.dataset.ArrayDataset` with a
network (through :func:`eliverec.artifact.predict_batch`, the call the logged model makes);
:func:`at_position` moves every row to one feed position (the serving position); :func:`scored_frame`
lays ids, labels and predictions out as :func:`eliverec.scoring.metrics.compute_metrics` reads them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from eliverec.config import Settings
from eliverec.features.batch import LABELS
from eliverec.features.dataset import ArrayDataset
from eliverec.scoring.metrics import LOGGED_WATCH


def set_threads(settings: Settings) -> None:
    """Torch intra-op threads per process (``train.threads``; 0 leaves torch's default)."""
    if settings.train.threads > 0:
        torch.set_num_threads(settings.train.threads)


@torch.no_grad()
def predict(model: nn.Module, ds: ArrayDataset, batch_size: int, device: torch.device) -> dict[str, np.ndarray]:
    """Every task output for every row of ``ds`` (probabilities for binary tasks), in dataset order."""
    from eliverec.artifact import predict_batch  # mlflow's import is slow: only when scoring

    was_training = model.training
    model.eval()
    parts = [
        predict_batch(model, {k: v.numpy() for k, v in ds[list(range(s, min(s + batch_size, len(ds))))].items()},
                      device)
        for s in range(0, len(ds), batch_size)
    ]
    model.train(was_training)
    if not parts:
        return {k: np.zeros(0, dtype=np.float32) for k in LABELS}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def at_position(ds: ArrayDataset, position: int) -> ArrayDataset:
    """``ds`` with every row's feed position replaced by ``position`` (as serving scores; other columns shared)."""
    parts = [{**part, "position": np.full_like(np.asarray(part["position"]), position)} for part in ds.parts]
    return ArrayDataset(parts, ds.index)


def scored_frame(ds: ArrayDataset, preds: pd.DataFrame, logged: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ids, labels and ``pred_<label>`` columns, as :func:`~eliverec.scoring.metrics.compute_metrics` reads them.

    ``preds`` are the scores the metrics read (the serving position in evaluation and the gate);
    ``logged`` (optional) the scores at the logged position, whose watch column becomes ``pred_watch_logged``.
    """
    frame = pd.DataFrame({"user": ds.column("user"), "channel": ds.column("channel")[:, 0]})
    for label in LABELS:
        frame[label] = ds.column(label)
        frame[f"pred_{label}"] = preds[label].to_numpy()
    if logged is not None:
        frame[LOGGED_WATCH] = logged["watch"].to_numpy()
    return frame

"""Ranking models: eLiveRec, its ablations, the paper's baselines, and the multi-task loss.

``build_model(settings)`` makes the model named by ``settings.model.name`` (see
``eliverec.models.registry`` for the names); ``MultiTaskLoss(settings)`` (``eliverec.models.losses``)
is the matching training objective (eq. 11-15).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from eliverec.config import Settings
from eliverec.models.base import RankingModel
from eliverec.models.losses import MultiTaskLoss
from eliverec.models.registry import MODELS, effective_model_config, list_models


def build_model(settings: Settings, vocab: Mapping[str, int] | None = None, seq_len: int | None = None) -> RankingModel:
    """Construct ``settings.model.name`` with its preset applied; vocab and sequence length default to
    ``settings.features``. Initialisation is deterministic for ``settings.seed`` (the global RNG is
    left untouched).

    >>> from eliverec.config import load_settings
    >>> model = build_model(load_settings("tiny"))
    >>> model.name, model.cfg.dim
    ('eliverec', 8)
    """
    cfg = effective_model_config(settings.model)
    cls = MODELS[cfg.name]
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        return cls(cfg, dict(vocab or settings.features.vocab), int(seq_len or settings.features.seq_len))


__all__ = ["MODELS", "MultiTaskLoss", "RankingModel", "build_model", "effective_model_config", "list_models"]

"""A small model and loss that follow the model interface, and synthetic feature folders.

They stand in for ``eliverec.models`` in the trainer's tests: fast, deterministic, with dropout (so
RNG restore matters on resume) and a learnable loss parameter (so the loss module's state matters).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eliverec.config import Settings
from eliverec.features.batch import random_batch

BUILDER = "tests.training.toy:build_toy_model"
LOSS = "tests.training.toy:ToyLoss"


class ToyModel(nn.Module):
    """Embeddings of user, target channel and the mean of the watched-channel sequence; an MLP; four heads."""

    def __init__(self, vocab: Mapping[str, int], dim: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.user = nn.Embedding(vocab["user"], dim)
        self.channel = nn.Embedding(vocab["channel"], dim, padding_idx=0)
        self.position = nn.Embedding(vocab["position"], dim)
        self.body = nn.Sequential(nn.Linear(4 * dim, 16), nn.ReLU(), nn.Dropout(dropout))
        self.heads = nn.Linear(16, 4)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seq = self.channel(batch["channel_seq"][..., 0])  # (B, L, d)
        n = batch["channel_len"].clamp(min=1).unsqueeze(-1).float()
        hist = seq.sum(1) / n
        target = self.channel(batch["channel"][:, 0])
        x = torch.cat([self.user(batch["user"]), target, self.position(batch["position"]), hist * target], -1)
        shared = self.body(x)
        out = self.heads(shared)
        reg = 1e-4 * target.pow(2).mean()
        return {"watch": out[:, 0], "stay_time": out[:, 1], "goods_bag": out[:, 2], "product_click": out[:, 3],
                "reg": reg, "reg/l2": reg, "shared": shared}

    def score(self, batch: Mapping[str, torch.Tensor], share_user: bool = False) -> dict[str, torch.Tensor]:
        """``RankingModel.score``'s interface; the toy has no user state to share."""
        out = self.forward(batch)
        return {"watch": torch.sigmoid(out["watch"])}


def build_toy_model(settings: Settings, vocab: Mapping[str, int] | None = None, seq_len: int | None = None) -> ToyModel:
    """Builder with the interface of ``eliverec.models.build_model``."""
    if settings.model.name not in ("toy", "eliverec"):
        raise KeyError(f"unknown model '{settings.model.name}' (known: toy)")
    return ToyModel(dict(vocab or settings.features.vocab), dim=settings.model.dim)


class ToyLoss(nn.Module):
    """BCE on watch + uncertainty-weighted aux losses (learnable log-variances) + the model's regulariser."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(3))

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        bce = nn.functional.binary_cross_entropy_with_logits
        watch = bce(outputs["watch"], batch["watch"])
        aux = torch.stack([
            nn.functional.mse_loss(outputs["stay_time"], batch["stay_time"]),
            bce(outputs["goods_bag"], batch["goods_bag"]),
            bce(outputs["product_click"], batch["product_click"]),
        ])
        w = torch.exp(-self.log_var)
        total = watch + (w * aux + self.log_var).sum() * 0.5 + outputs["reg"]
        aux = aux.detach()
        parts = {"watch": float(watch.detach()), "stay_time": float(aux[0]), "goods_bag": float(aux[1]),
                 "product_click": float(aux[2])}
        parts.update({f"mtl/{n}": float(v) for n, v in zip(("stay_time", "goods_bag", "product_click"), w.detach(),
                                                              strict=True)})
        return total, parts


def tiny_vocab(settings: Settings) -> dict[str, int]:
    """Small vocabularies (fast embeddings) with the contract's keys."""
    return {k: min(v, 60) for k, v in settings.features.vocab.items()}


def synthetic_day(vocab: Mapping[str, int], n: int, seq_len: int, seed: int) -> dict[str, np.ndarray]:
    """Random samples with a learnable signal: watch is likely when the target channel is in the history."""
    b = random_batch(vocab, n, seq_len, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    hit = (b["channel_seq"][..., 0] == b["channel"][:, :1]).any(1)
    parity = (b["channel"][:, 0] % 2 == 0)
    p = 0.05 + 0.5 * hit.float() + 0.3 * parity.float()
    watch = (torch.rand(n, generator=g) < p).float()
    b["watch"] = watch
    b["stay_time"] = watch * (1.0 + torch.rand(n, generator=g))
    b["goods_bag"] = watch * (torch.rand(n, generator=g) < 0.4).float()
    b["product_click"] = watch * (torch.rand(n, generator=g) < 0.2).float()
    arrays = {k: v.numpy() for k, v in b.items()}
    arrays["ts"] = np.sort(np.random.default_rng(seed).integers(0, 86_400_000, n))
    return arrays


def write_features(data_dir: Path, start: str, days: int, rows: int, vocab: Mapping[str, int], seq_len: int,
                   seed: int = 0) -> list[str]:
    """Write ``days`` synthetic feature folders (``<key>.npy`` + ``feature_spec.json``); returns the dates."""
    dates = []
    for i in range(days):
        date = (dt.date.fromisoformat(start) + dt.timedelta(days=i)).isoformat()
        folder = Path(data_dir) / "features" / date
        folder.mkdir(parents=True, exist_ok=True)
        day = synthetic_day(vocab, rows, seq_len, seed + 100 * i)
        day["ts"] = day["ts"] + int(dt.datetime.fromisoformat(date).timestamp() * 1000)
        for key, value in day.items():
            np.save(folder / f"{key}.npy", value)
        spec: dict[str, Any] = {"vocab": dict(vocab), "seq_len": seq_len, "date": date}
        (folder / "feature_spec.json").write_text(json.dumps(spec))
        dates.append(date)
    return dates


def toy_settings(tmp_path: Path, *overrides: str) -> Settings:
    """Tiny-profile settings in ``tmp_path`` tuned for the toy model (learning rate, short logging)."""
    from eliverec.config import load_settings
    from tests.conftest import tracking_uri

    base = [f"tracking.uri={tracking_uri(tmp_path / 'mlruns')}", "train.lr=0.01", "train.epochs=2",
            "train.checkpoint_every=5", "train.log_every=3", "features.train_days=2", "model.dim=8"]
    return load_settings("tiny", overrides=[*base, *overrides], params=Path(__file__).resolve().parents[2]
                         / "params.yaml", data_dir=tmp_path / "data")


def toy_world(tmp_path: Path, *overrides: str, rows: int = 900, days: int = 3) -> tuple[Settings, list[str]]:
    """Settings plus ``days`` synthetic feature days; the last day is the test day."""
    s = toy_settings(tmp_path, *overrides)
    dates = write_features(s.data_dir, "2026-09-01", days, rows, tiny_vocab(s), 12)
    return s, dates

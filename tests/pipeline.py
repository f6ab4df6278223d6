"""A tiny end-to-end data pipeline for tests that need real samples or trained models."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from eliverec.config import Settings, load_settings
from tests.conftest import PARAMS, tracking_uri


def tiny(root: Path, *overrides: str) -> Settings:
    """Tiny-profile settings with the data root and MLflow store under ``root``."""
    return load_settings("tiny", overrides=[f"tracking.uri={tracking_uri(root / 'mlruns')}", *overrides],
                         params=PARAMS, data_dir=root / "data")


def build(settings: Settings) -> dict[str, Any]:
    """simulate -> ingest (every day) -> features; returns the dates and the test day."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import simulate

    sim = simulate(settings, progress=False)
    for date in sim["dates"]:
        ingest_day(settings, date)
    test_day = sim["dates"][-1]
    feats = build_features(settings, test_day)
    return {"dates": sim["dates"], "test_day": test_day, "train_days": feats["train_days"]}


def shuffled_copy(src: Settings, dst_root: Path, days: list[str], seed: int = 0) -> Settings:
    """A copy of ``src``'s feature days whose labels are permuted (a sabotaged training set)."""
    dst = tiny(dst_root)
    rng = np.random.default_rng(seed)
    for day in days:
        target = dst.data_dir / "features" / day
        shutil.copytree(src.data_dir / "features" / day, target)
        tensors = target / "tensors"
        n = len(np.load(tensors / "watch.npy", mmap_mode="r"))
        perm = rng.permutation(n)
        for label in ("watch", "stay_time", "goods_bag", "product_click"):
            values = np.load(tensors / f"{label}.npy")
            np.save(tensors / f"{label}.npy", values[perm])
    return dst

"""A tiny monitored world for the monitoring and monitor-flow tests: a planted intent shift or its quiet twin."""

from __future__ import annotations

from pathlib import Path

from eliverec.config import Settings, load_settings
from tests.conftest import PARAMS

SHIFT = "2026-09-07"
QUIET = ("2026-09-05", "2026-09-06")
REFERENCE_DAYS = 4  # 6 day pairs (monitor.min_null_draws); the tiny profile's 2 training days give 1: untested
SHIFTED = (f"world.shift_days=['{SHIFT}']", "world.shift_strength=0.5")  # half of every user's intents move


def overrides(root: Path, *extra: str) -> list[str]:
    """The settings of a monitored tiny world under ``root`` (2 warm-up + 8 days, 4 reference days)."""
    return ["world.days=8", f"monitor.reference_days={REFERENCE_DAYS}", f"monitor.workspace={root / 'workspace'}",
            *extra]


def tiny_world(root: Path, *extra: str) -> Settings:
    """Simulate, ingest and featurise every day of the world; its settings (data under ``root / 'data'``)."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import simulate

    s = load_settings("tiny", overrides=overrides(root, *extra), params=PARAMS, data_dir=root / "data")
    dates = simulate(s, progress=False)["dates"]
    for d in dates:
        ingest_day(s, d)
    build_features(s, dates[-1], train_days=len(dates) - s.world.warmup_days - 1)
    return s

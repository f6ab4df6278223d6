"""Channel and impression frames from hand-made bronze tables: exposure history, tiers, variants, segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eliverec.data.schemas import DIMENSIONS, bronze_schema
from eliverec.errors import DataError
from eliverec.monitoring import frames

D = "2026-09-10"


def _write(data_dir: Path, date: str, name: str, rows: dict, schema: pa.Schema) -> None:
    folder = data_dir / "bronze" / date
    folder.mkdir(parents=True, exist_ok=True)
    cols = {f.name: rows.get(f.name, [None] * len(next(iter(rows.values())))) for f in schema}
    pq.write_table(pa.table(cols, schema=schema), folder / f"{name}.parquet")


def _impressions(data_dir: Path, date: str, users: list[str], channels: list[str], variants=None) -> None:
    n = len(users)
    _write(data_dir, date, "impression", {
        "event_id": [f"e{date}-{i}" for i in range(n)], "ts": [0] * n, "user_id": users,
        "request_id": [f"r{date}-{i}" for i in range(n)], "channel_id": channels, "position": [0] * n,
        "scene": ["homepage"] * n, "variant": variants or [None] * n}, bronze_schema("impression"))


def _empty_day(data_dir: Path, date: str, channels: list[str]) -> None:
    _write(data_dir, date, "channels", {"channel_id": channels, "anchor_id": channels,
                                        "top_category": ["c"] * len(channels)}, DIMENSIONS["channels"])
    for e in ("enter", "leave", "goods_bag_click", "channel_product_click", "product_click"):
        _write(data_dir, date, e, {f.name: [] for f in bronze_schema(e)}, bronze_schema(e))


@pytest.fixture
def bronze(tmp_path: Path) -> Path:
    """Catalogue c0..c5. History: c0 every day, c1 eight days before D, c2 twenty days before, c3..c5 never."""
    chans = [f"c{i}" for i in range(6)]
    for lag in (1, 2, 3, 8, 20):
        day = frames.days_before(D, lag)[0]
        _empty_day(tmp_path, day, chans)
        _impressions(tmp_path, day, ["u1", "u1"] if lag < 8 else ["u2"], ["c0", "c0"] if lag < 8 else
                     ["c1" if lag == 8 else "c2"])
    _empty_day(tmp_path, D, chans)
    # D: u1 (active) sees c0, c1; u2 sees c2, c3 in variant B; u3 (new) sees c3
    _impressions(tmp_path, D, ["u1", "u1", "u2", "u2", "u3"], ["c0", "c1", "c2", "c3", "c3"],
                 ["A", "A", "B", "B", None])
    rid = [f"r{D}-{i}" for i in (0, 1, 3)]
    _write(tmp_path, D, "enter", {"event_id": ["x1", "x2", "x3"], "ts": [1, 1, 1], "user_id": ["u1", "u1", "u2"],
                                  "request_id": rid, "channel_id": ["c0", "c1", "c3"]}, bronze_schema("enter"))
    _write(tmp_path, D, "leave", {"event_id": ["y1", "y2", "y3"], "ts": [2, 2, 2], "user_id": ["u1", "u1", "u2"],
                                  "request_id": rid, "channel_id": ["c0", "c1", "c3"],
                                  "stay_ms": [60_000, 1_000, 9_000]}, bronze_schema("leave"))
    _write(tmp_path, D, "channel_product_click", {"event_id": ["z1"], "ts": [3], "user_id": ["u1"],
                                                  "request_id": [rid[0]], "channel_id": ["c0"], "product_id": ["p"]},
           bronze_schema("channel_product_click"))
    return tmp_path


def test_channel_frame_history_tiers_and_variants(bronze: Path):
    f, info = frames.channel_frame(bronze, D, 30, 7)
    f = f.set_index("channel_id")
    assert info["history_days"] == 5 and info["variants"] == ["A", "B"]
    assert f.loc["c0", "days_since_exposure"] == 1 and f.loc["c1", "days_since_exposure"] == 8
    assert f.loc["c2", "days_since_exposure"] == 20 and np.isnan(f.loc["c4", "days_since_exposure"])
    assert list(f["impressions"]) == [1, 1, 1, 2, 0, 0]
    assert list(f["impressions:B"]) == [0, 0, 1, 1, 0, 0]
    # c0 has 6 trailing impressions: the only popular one by volume; the rest tie at 0 and split by id
    assert f.loc["c0", "tier"] == "popular" and (f["tier"] == "unpopular").sum() == 3
    assert list(f.index[f["tier"] == "unpopular"]) == ["c1", "c2", "c3"]


def test_channel_frame_names_missing_bronze(tmp_path: Path):
    with pytest.raises(DataError, match="channels.parquet: missing"):
        frames.channel_frame(tmp_path, D, 7, 7)


def test_impression_frame_labels_segments_and_variants(bronze: Path):
    f, info = frames.impression_frame(bronze, D, 3000, 10, 0.5)  # 10 days: u2's exposure 8 days ago counts
    assert info["users"] == 3 and info["low_users"] == 1 and info["activity_days_available"] == 4
    seg = f.groupby("user_id")["segment"].first().to_dict()
    assert seg == {"u1": "high", "u2": "high", "u3": "low"}  # u3 has no history: lowest activity
    assert list(f["variant"]) == ["A", "A", "B", "B", "none"]
    assert list(f["watch"]) == [1.0, 0.0, 0.0, 1.0, 0.0]  # the 1 s stay on c1 is not a watch
    assert list(f["product_click"]) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert f["stay_time"].iloc[0] == pytest.approx(np.log1p(60.0))
    f7, _ = frames.impression_frame(bronze, D, 3000, 7, 0.5)  # 7 days: u2 and u3 tie at 0, split by id
    assert f7.groupby("user_id")["segment"].first().to_dict() == {"u1": "high", "u2": "low", "u3": "high"}


def test_drift_frame_missing_samples_names_the_fix(tmp_path: Path):
    with pytest.raises(DataError, match="eliverec features --end-date 2026-09-09"):
        frames.drift_frame(tmp_path, ["2026-09-09"], 100, 0)


def test_cli_monitor_reports_bad_input(tmp_path: Path):
    from typer.testing import CliRunner

    from eliverec.cli import app
    from tests.conftest import PARAMS

    common = ["--profile", "tiny", "--params", str(PARAMS), "--data-dir", str(tmp_path)]
    bad = CliRunner().invoke(app, ["monitor", "--date", "2026-13-01", *common])
    assert bad.exit_code == 1 and "bad date" in bad.output
    missing = CliRunner().invoke(app, ["monitor", "--date", D, *common])
    assert missing.exit_code == 1 and "eliverec ingest --date 2026-09-10" in missing.output

"""Bring-your-own-log import: hand-built logs, both real samples, and bad mappings."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pandas as pd
import pytest

from eliverec.data.importer import import_logs
from eliverec.data.ingest import ingest_day
from eliverec.data.suites import validate_day
from eliverec.errors import DataError
from tests.conftest import REPO, SHARED_DATA

REAL = SHARED_DATA / "real"
MAPPINGS = REPO / "mappings"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real samples not found at {REAL} (../shared/data/real)")


def _events(settings, date: str) -> list[dict]:
    data = gzip.decompress((settings.data_dir / "raw" / date / "events-import.jsonl.gz").read_bytes())
    return [orjson.loads(x) for x in data.splitlines()]


def _live_mapping(tmp_path: Path, **over: str) -> Path:
    fields = {"user": "who", "channel": "room", "time": "t", "time_unit": "ms", "negatives": "2",
              "assume_stay_ms": "5000"} | over  # fmt: skip
    body = "name: t\nlive:\n" + "".join(f"  {k}: {v}\n" for k, v in fields.items())
    path = tmp_path / "m.yaml"
    path.write_text(body)
    return path


def test_hand_built_live_log_derives_honest_impressions(tiny_settings, tmp_path):
    t0 = 1788220800000
    log = pd.DataFrame({"who": ["a", "b", "a", "c", "b"], "room": ["r1", "r2", "r3", "r1", "r9"],
                        "t": [t0 + 1000, t0 + 2000, t0 + 3000, t0 + 4000, t0 + 7_200_000]})  # fmt: skip
    log.to_parquet(tmp_path / "live.parquet")
    r = import_logs(tiny_settings, live=tmp_path / "live.parquet", mapping=_live_mapping(tmp_path))
    assert r["dates"] == ["2026-09-01"] and r["events"]["enter"] == 5 and r["derived"]["leave"] == 5
    rows = _events(tiny_settings, "2026-09-01")
    for req in {e["request_id"] for e in rows if "request_id" in e}:
        imps = [e for e in rows if e.get("request_id") == req and e["event"] == "impression"]
        (enter,) = [e for e in rows if e.get("request_id") == req and e["event"] == "enter"]
        assert all(e["derived"] is True and e["ts"] < enter["ts"] for e in imps) and "derived" not in enter
        shown = [e["channel_id"] for e in imps]
        assert shown[0] == enter["channel_id"] and len(set(shown)) == len(shown)
        assert sorted(e["position"] for e in imps) == list(range(len(imps)))
        if enter["ts"] < t0 + 10_000:  # negatives are rooms with an entry within 30 min: r1, r2, r3
            assert set(shown) <= {"r1", "r2", "r3"} and len(shown) == 3
        else:  # r9 alone in its window: no negative available
            assert shown == ["r9"]
    ingest_day(tiny_settings, "2026-09-01")
    assert validate_day(tiny_settings, "2026-09-01")["success"]


def test_bad_mappings_name_the_file_and_key(tiny_settings, tmp_path):
    pd.DataFrame({"who": ["a"], "room": ["r"], "t": [1]}).to_csv(tmp_path / "live.csv", index=False)
    live = tmp_path / "live.csv"
    with pytest.raises(
        DataError, match=r"m.yaml: live.channel: column 'chan' not in live.csv \(columns: who, room, t\)"
    ):
        import_logs(tiny_settings, live=live, mapping=_live_mapping(tmp_path, channel="chan"))
    with pytest.raises(DataError, match=r"m.yaml: live.time_unit: unknown unit 'hours'"):
        import_logs(tiny_settings, live=live, mapping=_live_mapping(tmp_path, time_unit="hours"))
    with pytest.raises(DataError, match=r"m.yaml: invalid mapping: live.colour: unknown key"):
        import_logs(tiny_settings, live=live, mapping=_live_mapping(tmp_path, colour="red"))
    with pytest.raises(DataError, match=r"m.yaml: --products given but the mapping has no 'products' section"):
        import_logs(tiny_settings, products=live, mapping=_live_mapping(tmp_path))
    with pytest.raises(DataError, match="cannot read the mapping"):
        import_logs(tiny_settings, live=live, mapping=tmp_path / "missing.yaml")


@needs_real
def test_taobao_sample_imports_with_its_defects_counted(tiny_settings):
    r = import_logs(tiny_settings, products=REAL / "taobao_userbehavior_head" / "UserBehavior_head.csv",
                    mapping=MAPPINGS / "taobao_userbehavior.yaml")  # fmt: skip
    assert r["dropped"]["products_incomplete"] == 1  # the truncated last line
    assert r["dropped"]["products_outside_window"] == 35
    assert r["events"] == {"product_click": 84475 - 35} and r["users"] == 815
    assert r["dates"][0] == "2017-11-24" and r["dates"][-1] == "2017-12-03"  # UTC days of a UTC+8 window
    m = ingest_day(tiny_settings, "2017-11-26")
    assert m["totals"]["quarantined"] == 0 and m["tables"]["product_click"]["rows"] > 0
    assert validate_day(tiny_settings, "2017-11-26")["success"]


@needs_real
@pytest.mark.slow
def test_driver_and_taobao_two_domain_import_runs_through_ingest_and_validation(tiny_settings):
    r = import_logs(tiny_settings, live=REAL / "driver" / "interactions.csv",
                    products=REAL / "taobao_userbehavior_head" / "UserBehavior_head.csv",
                    mapping=MAPPINGS / "driver_taobao.yaml")  # fmt: skip
    assert r["events"]["enter"] == 87906 and r["derived"]["leave"] == 87906
    assert r["events"]["impression"] == r["derived"]["impression"] <= 5 * 87906
    assert len(r["dates"]) == 21 and r["dates"][0] == "2026-09-01"
    assert r["dropped"]["products_unpaired_user"] == 0  # 815 product users < 17,406 live users
    rows = _events(tiny_settings, "2026-09-02")
    users = {e["user_id"] for e in rows if e["event"] == "product_click"}
    assert users and all(u.startswith("dv-") for u in users)  # paired onto live users
    m = ingest_day(tiny_settings, "2026-09-02")
    assert m["totals"]["quarantined"] == 0
    assert validate_day(tiny_settings, "2026-09-02")["success"]


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is not present")
def test_imported_real_logs_run_through_features_and_training(tiny_settings):
    """The issue's promise: the rest of the pipeline runs on imported logs (driver + Taobao, 4 days)."""
    from eliverec.features.build import build_features
    from eliverec.training.trainer import train

    r = import_logs(tiny_settings, live=REAL / "driver" / "interactions.csv",
                    products=REAL / "taobao_userbehavior_head" / "UserBehavior_head.csv",
                    mapping=MAPPINGS / "driver_taobao.yaml")  # fmt: skip
    days = r["dates"][:4]
    for day in days:
        assert ingest_day(tiny_settings, day)["totals"]["quarantined"] == 0
    feats = build_features(tiny_settings, days[-1], train_days=2)
    assert feats["train_rows"] > 0 and feats["test_rows"] > 0
    s = tiny_settings.model_copy(update={"train": tiny_settings.train.model_copy(update={"max_steps": 5})})
    result = train(s, model_name="eta_dual", end_date=days[-1], run_name="imported")
    assert result.steps == 5 and result.model_uri
    assert 0.0 <= result.metrics["val/auc"] <= 1.0

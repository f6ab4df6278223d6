"""benchmarks/real_logs.py: the untrained references are right, and the whole run works on a slice of the
real DRIVER log (import -> ingest -> features -> train -> paired bootstrap), and refuses a missing file."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from tests.benchmarks.helpers import load_script
from tests.conftest import SHARED_DATA

DRIVER = SHARED_DATA / "real" / "driver" / "interactions.csv"


@pytest.fixture(scope="module")
def rl() -> ModuleType:
    return load_script("real_logs")


def test_earlier_counts_the_users_own_entries_into_that_room_strictly_before(rl: ModuleType) -> None:
    rng = np.random.default_rng(0)
    history = pd.DataFrame({"user_id": rng.choice(["a", "b", "c"], 300), "channel_id": rng.choice(["x", "y"], 300),
                            "ts": rng.integers(0, 50, 300)})
    rows = pd.DataFrame({"user_id": rng.choice(["a", "b", "d"], 80), "channel_id": rng.choice(["x", "y", "z"], 80),
                         "ts": rng.integers(0, 60, 80)})
    brute = [((history.user_id == r.user_id) & (history.channel_id == r.channel_id) & (history.ts < r.ts)).sum()
             for r in rows.itertuples()]
    assert rl._earlier(history, rows, ["user_id", "channel_id"]).tolist() == brute
    assert max(brute) > 0 and min(brute) == 0  # both cases occur
    recent = [((history.channel_id == r.channel_id) & (history.ts < r.ts) & (history.ts >= r.ts - 7)).sum()
              for r in rows.itertuples()]
    assert rl._earlier(history, rows, ["channel_id"], 7).tolist() == recent and max(recent) > 0


def test_paired_verdicts(rl: ModuleType) -> None:
    a = {"auc": 0.7, "_reps": {"auc": np.linspace(0.69, 0.71, 101)}}
    b = {"auc": 0.6, "_reps": {"auc": np.linspace(0.59, 0.61, 101)}}
    assert rl.paired(a, b, "auc")["verdict"] == "above" and rl.paired(b, a, "auc")["verdict"] == "below"
    assert rl.paired(a, a, "auc")["verdict"] == "n.s."


def test_a_missing_log_is_refused_with_where_to_find_it(rl: ModuleType, tmp_path: Path) -> None:
    args = rl.parse(["--live", str(tmp_path / "nope.csv"), "--data-root", str(tmp_path / "root")])
    with pytest.raises(SystemExit, match="nope.csv: not found"):
        rl.prepare(args, tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_a_data_root_it_did_not_make_is_never_replaced(rl: ModuleType, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text("name: m\n")
    live = tmp_path / "live.csv"
    live.write_text("user_id,room_id,ts_sec\n")
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / "mine.txt").write_text("a user's own file")
    args = rl.parse(["--live", str(live), "--mapping", str(mapping), "--data-root", str(root)])
    with pytest.raises(SystemExit, match="was not made by this benchmark"):
        rl.prepare(args, root)
    assert (root / "data" / "mine.txt").read_text() == "a user's own file"


@pytest.mark.slow
@pytest.mark.skipif(not DRIVER.is_file(), reason=f"real samples not found at {DRIVER}")
def test_the_benchmark_runs_on_a_slice_of_the_real_log(rl: ModuleType, tmp_path: Path) -> None:
    live = tmp_path / "interactions.csv"
    live.write_text("".join(DRIVER.read_text().splitlines(keepends=True)[:14001]))  # about the first 3.5 days
    (tmp_path / "room_state.csv").symlink_to(DRIVER.with_name("room_state.csv"))  # the mapping's stats file
    out = tmp_path / "results"
    args = ["--live", str(live), "--models", "wdl_dual", "--train-days", "2", "--max-minutes", "0.1",
            "--bootstrap", "50", "--profile", "tiny", "--data-root", str(tmp_path / "root"), "--out", str(out)]
    assert rl.main(args) == 0
    report = json.loads((out / "real_logs_driver.json").read_text())
    rows = report["seeds"]["0"]["rows"]
    assert set(rows) == {"popularity", "recent", "repeat", "trees", "wdl_dual"}
    assert all(0.0 <= r["auc"] <= 1.0 for r in rows.values()) and rows["wdl_dual"]["training"]["steps"] > 0
    pairs = report["seeds"]["0"]["pairs"]
    assert {(p["a"], p["b"]) for p in pairs} == {("wdl_dual", r) for r in ("popularity", "recent", "repeat", "trees")}
    assert all(p["lo"] <= p["diff"] <= p["hi"] or p["verdict"] != "n.s." for p in pairs)
    assert report["data"]["vocab"]["user"] > 2 * report["data"]["import"]["users"]
    assert "| wdl_dual - repeat | auc |" in (out / "real_logs_driver.md").read_text()
    scores = list((tmp_path / "root" / "scores").glob("wdl_dual-seed0-*.npz"))
    assert len(scores) == 1  # a second report reuses the trained model's scores
    assert rl.main(args) == 0 and json.loads((out / "real_logs_driver.json").read_text())["seeds"]["0"]["rows"] == rows


def test_combined_averages_the_seeds_draw_by_draw(rl: ModuleType) -> None:
    reps = np.linspace(-1, 1, 201)
    seeds = {str(k): {"pairs": [{"a": "m", "b": "r", "metric": "auc"}],
                      "rows": {"m": {"auc": 0.8 + 0.01 * k}, "r": {"auc": 0.7}},
                      "_reps": {"m": {"auc": 0.8 + 0.01 * k + 0.001 * reps}, "r": {"auc": 0.7 + 0.0 * reps}}}
             for k in (0, 1)}
    (c,) = rl.combined(seeds)
    assert c["diff"] == pytest.approx(0.105) and c["per_seed"] == pytest.approx([0.1, 0.11])
    assert c["lo"] == pytest.approx(0.105 - 0.001 * 0.95, abs=1e-4) and c["verdict"] == "above"

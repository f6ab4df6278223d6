"""benchmarks/monitor_backtest.py --quick for real (tiny worlds): quiet days, a planted shift, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.helpers import load_script

pytestmark = pytest.mark.slow


def test_quick_backtest_counts_quiet_days_and_detects_the_planted_shift(tmp_path: Path) -> None:
    bt = load_script("monitor_backtest")
    result = bt.run(True, tmp_path / "worlds", tmp_path / "results")
    q = result["quiet"]
    assert q["days"] == 4 and len(q["by_day"]) == 4 and q["alarms"] == len(q["alarm_days"])
    assert all(d["top_ratio"] == pytest.approx(d["top_distance"] / d["top_threshold"], rel=0.01) for d in q["by_day"])
    (shift,) = result["shifted"]
    assert shift["strength"] == 0.5 and len(shift["reference_days"]) == bt.QUICK_REFERENCE
    assert [d["date"] for d in shift["days"]][0] == shift["shift_day"] and len(shift["days"]) == bt.DETECT_DAYS
    assert shift["detected_first_day"] and shift["days_to_detect"] == 0 and result["detection_met"]
    assert "product_novelty" in shift["days"][0]["drifted"]
    assert json.loads((tmp_path / "results" / "monitor_backtest_quick.json").read_text())["quiet"] == q
    md = (tmp_path / "results" / "monitor_backtest_quick.md").read_text()
    assert f"| quiet | 1 | {q['alarms']} of 4 |" in md and "detected on its first day: met" in md
    again = bt.run(True, tmp_path / "worlds", tmp_path / "results")  # --work-dir: worlds reused, same verdicts
    assert again["worlds_reused"] and again["quiet"]["by_day"] == [{**d, "seconds": a["seconds"]} for d, a in
                                                                   zip(q["by_day"], again["quiet"]["by_day"],
                                                                       strict=True)]

"""Benchmark: wall time of ``monitor_day`` on one day of the default profile (target: under a minute on 2 cores).

Usage: ``.venv/bin/python benchmarks/monitor.py [--quick] [--data-dir DIR --date D]``.
Without ``--data-dir`` it simulates a world (default profile, 2 warm-up + 4 days; ``--quick``: tiny
profile), ingests it and builds the samples in a temporary folder first (not timed). Writes
``benchmarks/results/monitor.json`` and ``monitor.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import psutil
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

from eliverec.config import load_settings
from eliverec.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[1]


def prepare(profile: str, data_dir: Path) -> str:
    """Simulate, ingest and featurise a world; return its last day."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import simulate

    s = load_settings(profile, overrides=["world.days=4"], params=ROOT / "params.yaml", data_dir=data_dir)
    dates = simulate(s, progress=False)["dates"]
    for d in dates:
        ingest_day(s, d)
    build_features(s, dates[-1], train_days=len(dates) - 1)
    return dates[-1]


def run(profile: str, data_dir: Path, date: str, workspace: Path) -> dict:
    """Time the three reports alone, then the whole stage (reports, HTML, workspace snapshots)."""
    from eliverec.monitoring.monitor import discoverability_report, drift_report, monitor_day, segments_report

    s = load_settings(profile, overrides=[f"monitor.workspace={workspace}"], params=ROOT / "params.yaml",
                      data_dir=data_dir)
    parts = {}
    for name, fn in (("drift", drift_report), ("discoverability", discoverability_report), ("ab", segments_report)):
        t = time.perf_counter()
        fn(s, date)
        parts[name] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    try:
        summary, verdict = monitor_day(s, date), "passed"
    except ValidationFailed as exc:
        summary, verdict = None, f"failed: {str(exc).splitlines()[0]}"
    total = round(time.perf_counter() - t, 2)
    out = json.loads(s.layout.report_files("monitoring", "summary", date)["json"].read_text())
    return {"profile": profile, "date": date, "seconds_monitor_day": total, "seconds_by_report": parts,
            "verdict": verdict, "reference": out["drift"]["reference"]["note"],
            "current": out["drift"]["current"]["note"],
            "channels": out["discoverability"]["channels"], "users_with_feed": out["ab"]["users"],
            "impressions": out["ab"]["by"]["all/all"]["impressions"], "passed_summary": summary is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny profile (seconds) instead of default")
    ap.add_argument("--data-dir", type=Path, help="existing data root with bronze + samples for --date")
    ap.add_argument("--date", help="day to monitor (with --data-dir)")
    args = ap.parse_args()
    profile = "tiny" if args.quick else "default"
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, date = args.data_dir, args.date
        prep = None
        if data_dir is None:
            data_dir = Path(tmp) / "data"
            t = time.perf_counter()
            date = prepare(profile, data_dir)
            prep = round(time.perf_counter() - t, 1)
        result = run(profile, Path(data_dir), date, Path(tmp) / "workspace")
    result.update({"prepare_seconds": prep, "cores": os.cpu_count(), "cpu": platform.processor() or cpu_model(),
                   "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
                   "note": "shared machine: other jobs ran at the same time; read times as upper bounds"})
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "monitor.json").write_text(json.dumps(result, indent=2))
    (res / "monitor.md").write_text(
        "# monitor_day benchmark\n\n| profile | day | impressions | channels | monitor_day s | drift s | "
        "discoverability s | ab s | verdict |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {profile} | {result['date']} | {result['impressions']} | {result['channels']} | "
        f"{result['seconds_monitor_day']} | {result['seconds_by_report']['drift']} | "
        f"{result['seconds_by_report']['discoverability']} | {result['seconds_by_report']['ab']} | "
        f"{result['verdict']} |\n\n{result['reference']}; {result['current']}.\n\n"
        f"{result['cores']} cores, {result['cpu']}; {result['note']}.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

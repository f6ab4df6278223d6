"""Benchmark of the world simulator: events/s and peak memory by users; Table I calibration.

Each size runs in its own process (peak RSS is that process's ``ru_maxrss``): one day, no warm-up.
The largest size keeps all its users but has 10x fewer feeds and product clicks per user
("sampled"), so it finishes in a minute on 2 cores. The calibration runs the default profile
(8 days + warm-up) and measures Table I statistics from the written logs of the last 2 days.

    .venv/bin/python benchmarks/simulate.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def child(users: int, sample: float, data_dir: str) -> None:
    """Simulate one day for ``users`` users and print a JSON line with speed and peak memory."""
    from eliverec.config import load_settings
    from eliverec.world import simulate

    s = load_settings("default", params=ROOT / "params.yaml", data_dir=data_dir, overrides=[
        "world.days=1", "world.warmup_days=0", f"world.n_users={users}",
        f"world.feeds_per_day={s_default('feeds_per_day') * sample}",
        f"world.product_clicks_per_day={s_default('product_clicks_per_day') * sample}"])
    r = simulate(s, progress=False)
    use = resource.getrusage(resource.RUSAGE_SELF)
    rss, cpu = use.ru_maxrss / 1024, use.ru_utime + use.ru_stime
    size = sum(p.stat().st_size for p in Path(r["raw_dir"]).rglob("*") if p.is_file())
    print(json.dumps({"users": users, "sampled": sample, "events": r["events"], "seconds": r["seconds"],
                      "events_per_s": r["events_per_s"], "peak_rss_mb": round(rss, 1),
                      "cpu_seconds": round(cpu, 1), "events_per_cpu_s": round(r["events"] / max(cpu, 1e-9), 1),
                      "bytes_on_disk": size, "feeds": r["days"][0]["requests"]}))


def s_default(key: str) -> float:
    from eliverec.config import load_settings

    return float(getattr(load_settings("default", params=ROOT / "params.yaml").world, key))


def calibration(users: int | None) -> dict:
    """Default profile, full run; Table I stats from the logs of the last two days."""
    from eliverec.config import load_settings
    from eliverec.world import calibration_stats, simulate

    with tempfile.TemporaryDirectory() as tmp:
        over = [f"world.n_users={users}"] if users else []
        s = load_settings("default", params=ROOT / "params.yaml", data_dir=tmp, overrides=over)
        t0 = time.perf_counter()
        r = simulate(s, progress=False)
        sim_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        st = calibration_stats(r["raw_dir"], r["dates"], r["dates"][-2:], s.features.min_stay_ms, s.features.seq_len)
        st.update(users=r["users"], days=len(r["dates"]), warmup_days=len(r["warmup_dates"]), events=r["events"],
                  simulate_seconds=round(sim_s, 1), stats_seconds=round(time.perf_counter() - t0, 1))
        return st


TARGETS = {"impressions_per_feed": (7.2, 8.2), "watches_per_feed": (0.75, 1.05), "product_seq_mean": (45, 50),
           "channel_seq_mean": (35, 45), "channel_seq_repeat_share": (0.25, 0.40),
           "top10pct_channel_impression_share": (0.5, 1.0)}


def machine() -> dict:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "load_avg_1m_at_start": os.getloadavg()[0], "note": "see load_avg_1m_at_start"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (2k, 20k, 200k sampled; 3k-user calibration)")
    ap.add_argument("--child", nargs=2, metavar=("USERS", "SAMPLE"), help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), float(a.child[1]), a.data_dir)
        return
    sizes = [(2_000, 1.0), (20_000, 1.0), (200_000, 0.1)] if a.quick else [(10_000, 1.0), (100_000, 1.0),
                                                                          (1_000_000, 0.1)]
    result = {"machine": machine(), "quick": a.quick, "scale": []}
    for users, sample in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--child", str(users), str(sample), "--data-dir", tmp],
                                 check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(row, flush=True)
        result["scale"].append(row)
    cal = calibration(3_000 if a.quick else None)
    cal["within_target"] = {k: lo <= cal[k] <= hi for k, (lo, hi) in TARGETS.items()}
    result["calibration"] = cal
    result["targets"] = TARGETS
    print(cal, flush=True)
    name = "simulate_quick" if a.quick else "simulate"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    (OUT / f"{name}.md").write_text(markdown(result))
    print(f"wrote {OUT / name}.json and .md")


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# World simulator benchmark{' (quick)' if r['quick'] else ''}", "",
             f"{m['cores']} cores, {m['cpu']}; {m['note']} (1-min load at start {m['load_avg_1m_at_start']:.1f}).", "",
             "| users (one day) | feeds/clicks per user | events | seconds | events/s | events/CPU-s | peak RSS MB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for x in r["scale"]:
        lines.append(f"| {x['users']:,} | {'x' + str(x['sampled'])} | {x['events']:,} | {x['seconds']:.1f} | "
                     f"{x['events_per_s']:,.0f} | {x['events_per_cpu_s']:,.0f} | {x['peak_rss_mb']:.0f} |")
    c = r["calibration"]
    lines += ["", f"Calibration: {c['users']:,} users, {c['days']} days ({c['warmup_days']} warm-up), "
              f"measured on the last 2 days from the written logs.", "",
              "| statistic | measured | target | ok |", "| --- | ---: | --- | --- |"]
    for k, (lo, hi) in r["targets"].items():
        lines.append(f"| {k} | {c[k]:.3f} | {lo}-{hi} | {'yes' if c['within_target'][k] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Peak memory of each task of the sharded feature build, each task alone in a fresh process (issue 18).

On one synthetic window (``eliverec.features.synthetic``; ``--scale`` times the 5M window of
``benchmarks/features.py``), without Dask or Prefect (``benchmarks/features.py`` measures the
same tasks on a local Dask cluster, with cluster start-up): the one-process build, then at each
shard count of ``--shards`` every channel-stats task (``build_stats_shard``), user-shard task
(``build_shard``) and per-day merge (``merge_day``) of this code, and with ``--baseline REF`` the
same tasks of git revision ``REF`` (a worktree, same venv) at the largest count, for before/after in
one run. Every task runs in its own process, so its peak (VmHWM) is its own; CPU seconds are the
task's (the load inflates wall time, much less CPU time). The merges overwrite the one-process
build's feature days; every code's merged window is checked byte for byte against it.

    .venv/bin/python benchmarks/shard_memory.py [--scale 0.2 [0.4 ...]] [--shards 2 4] [--baseline REF]

Writes ``benchmarks/results/shard_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _baseline import baseline_tree, drop_tree, revision  # sibling modules: run as `python benchmarks/<name>.py`
from _machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRAIN_DAYS, LOOKBACK = 4, 1
TASK = r"""
import json, sys, time
from pathlib import Path
from eliverec.config import load_settings
from eliverec.features.build import plan_window
import eliverec.features.shards as sh
kind, data, end, root = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[6])
k, n = int(sys.argv[4]), int(sys.argv[5])
s = load_settings("default", overrides=[f"features.lookback_days={sys.argv[7]}"], params="params.yaml", data_dir=data)
train_days = int(sys.argv[8])
t, c = time.perf_counter(), time.process_time()
if kind == "stats":
    rows = sh.build_stats_shard(s, end, train_days, k, n, root)["impressions"]
elif kind == "user shard":
    rows = sh.build_shard(s, end, train_days, k, n, root)["rows"]
elif kind == "merge":
    train, test, _ = plan_window(s, end, train_days)
    window = [*train, test]
    rows = sh.merge_day(s, window[k], "test" if k == len(train) else "train", window, n, root)["rows"]
else:
    from eliverec.features.build import build_features
    rows = build_features(s, end, train_days)["rows"]
print(json.dumps({"peak_rss_mb": sh._peak_rss_mb(), "seconds": round(time.perf_counter() - t, 2),
                  "cpu_seconds": round(time.process_time() - c, 2), "impressions": rows}))
"""


def task(code: Path, label: str, kind: str, data: Path, end: str, k: int, n: int, root: Path) -> dict:
    """One task in a fresh process with the checkout at ``code``; its peak RSS, times and load."""
    env = os.environ | {"PYTHONPATH": str(code)}
    load = os.getloadavg()[0]
    args = [kind, data, end, k, n, root, LOOKBACK, TRAIN_DAYS]
    out = subprocess.run([sys.executable, "-c", TASK, *map(str, args)], capture_output=True, text=True, cwd=code,
                         env=env)
    if out.returncode:
        raise RuntimeError(f"{label} {kind} {k}/{n} failed: {out.stderr[-2000:]}")
    row = {"code": label, "task": kind, "shard": k, "shards": n, "load": round(load, 1),
           **json.loads(out.stdout.strip().splitlines()[-1])}
    print(row, flush=True)
    return row


def sharded(code: Path, label: str, data: Path, end: str, n: int, root: Path, single: str) -> list[dict]:
    """Every task of ``code``'s sharded build at ``n`` shards (stats, user shards, a merge per window day),
    each in a fresh process; the merged window checked against the one-process build's digest ``single``."""
    rows = [task(code, label, "stats", data, end, j, n, root) for j in range(n)]
    rows += [task(code, label, "user shard", data, end, k, n, root) for k in range(n)]
    rows += [task(code, label, "merge", data, end, d, n, root) for d in range(TRAIN_DAYS + 1)]
    same = window_digest(data, end) == single
    for r in rows:
        r["byte_identical"] = same if r["task"] == "merge" else None
    shutil.rmtree(root, ignore_errors=True)
    return rows


def window_digest(data: Path, end: str) -> str:
    """sha256 of the window's feature days (``benchmarks/features.py``'s check)."""
    import datetime as dt

    from features import features_digest  # benchmarks/features.py, a sibling module

    last = dt.date.fromisoformat(end)
    return features_digest(data, [(last - dt.timedelta(days=i)).isoformat() for i in range(TRAIN_DAYS, -1, -1)])


def run_window(scale: float, counts: list[int], tmp: Path, tree: Path | None, label: str) -> tuple[dict, list[dict]]:
    """One synthetic window (``scale`` times the 5M one): the one-process build, then every task of this
    code at each shard count and of the baseline ``tree`` at the largest."""
    from eliverec.features.synthetic import SyntheticSize, write_days

    size = SyntheticSize(impressions_per_day=round(1_000_000 * scale), clicks_per_day=round(600_000 * scale),
                         n_users=round(200_000 * scale), n_products=round(400_000 * scale),
                         n_channels=round(10_000 * scale))
    data = tmp / "data"
    end = write_days(data, "2026-09-01", TRAIN_DAYS + 1 + LOOKBACK, size, seed=1)[-1]
    rows = [task(REPO, "this", "one process", data, end, 0, 1, tmp / "single")]
    single = window_digest(data, end)
    for n in counts:
        rows += sharded(REPO, "this", data, end, n, tmp / f"this-{n}", single)
    if tree:
        rows += sharded(tree, label, data, end, max(counts), tmp / "base", single)
    shutil.rmtree(data, ignore_errors=True)
    window = {"impressions_per_day": size.impressions_per_day, "users": size.n_users, "channels": size.n_channels,
              "products": size.n_products, "window_days": TRAIN_DAYS + 1, "lookback_days": LOOKBACK}
    for r in rows:
        r["impressions_per_day"] = size.impressions_per_day
    return window, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, nargs="+", default=[0.2],
                    help="times the 5M window of benchmarks/features.py (several: one window each)")
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--baseline", metavar="REF", help="also every task of git revision REF at the largest count")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="eliverec-bench-shardmem-"))
    load0 = os.getloadavg()[0]
    tree = baseline_tree(a.baseline, tmp) if a.baseline else None
    label = f"baseline {revision(a.baseline)}" if a.baseline else ""
    windows, rows = [], []
    try:
        for i, f in enumerate(a.scale):
            window, got = run_window(f, a.shards, tmp / f"w{i}", tree, label)
            windows.append(window)
            rows += got
    finally:
        if tree:
            drop_tree(tree)
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "revision": revision(), "note": f"1-min load average at start {load0:.1f}, at the end "
                                               f"{os.getloadavg()[0]:.1f}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shard_memory.json").write_text(json.dumps({"machine": machine, "windows": windows, "tasks": rows},
                                                          indent=2) + "\n")
    (RESULTS / "shard_memory.md").write_text("\n".join(table(machine, windows, rows)) + "\n")
    print("\n".join(table(machine, windows, rows)))


def table(machine: dict, windows: list[dict], rows: list[dict]) -> list[str]:
    """The markdown: the windows, the largest peak per kind of task, then every task."""
    lines = ["# Peak memory per task of the sharded feature build", "",
             f"{machine['cores']} cores, {machine['cpu']} ({machine['note']}; code {machine['revision']}). "
             "Each task alone in a fresh process. Windows: " + "; ".join(
                 f"{w['window_days']} days + {w['lookback_days']} look-back, {w['impressions_per_day']:,} "
                 f"impressions a day, {w['users']:,} users, {w['channels']:,} channels, {w['products']:,} products"
                 for w in windows) + ".", "",
             "| impressions a day | code | shards | peak RSS MB (largest): one process / stats / user shard / merge | "
             "merge impressions per CPU s | merged window byte-identical |", "| ---: | --- | ---: | --- | ---: | --- |"]
    groups = sorted({(r["impressions_per_day"], r["code"], r["shards"]) for r in rows if r["task"] != "one process"},
                    key=lambda g: (g[0], g[1] != "this", g[2]))
    for day, code, n in groups:
        mine = [r for r in rows if (r["impressions_per_day"], r["code"], r["shards"]) == (day, code, n)]
        one = [r["peak_rss_mb"] for r in rows if r["impressions_per_day"] == day and r["task"] == "one process"]
        peak = {t: max((r["peak_rss_mb"] for r in mine if r["task"] == t), default="-")
                for t in ("stats", "user shard", "merge")}
        merges = [r for r in mine if r["task"] == "merge"]
        rate = round(sum(r["impressions"] for r in merges) / sum(r["cpu_seconds"] for r in merges))
        lines.append(f"| {day:,} | {code} | {n} | {max(one)} / {peak['stats']} / {peak['user shard']} / "
                     f"{peak['merge']} | {rate:,} | {merges[0].get('byte_identical')} |")
    lines += ["", "Every task (a merge's shard column is its window day, 0 = first; its impressions are that day's):",
              "", "| impressions a day | code | task | shards | shard | impressions | peak RSS MB | CPU s | s | "
              "impressions per CPU s | load |", "| ---: | --- | --- " + "| ---: " * 8 + "|"]
    lines += [f"| {r['impressions_per_day']:,} | {r['code']} | {r['task']} | {r['shards']} | {r['shard']} | "
              f"{r['impressions']:,} | {r['peak_rss_mb']} | {r['cpu_seconds']} | {r['seconds']} | "
              f"{round(r['impressions'] / max(r['cpu_seconds'], 0.01)):,} | {r['load']} |" for r in rows]
    return lines


if __name__ == "__main__":
    main()

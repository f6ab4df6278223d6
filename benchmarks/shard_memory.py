"""Peak memory of each task of the sharded feature build, each task alone in a fresh process (issue 18).

On one synthetic window (``eliverec.features.synthetic``; ``--scale`` times the 5M window of
``benchmarks/features.py``), without Dask or Prefect (``benchmarks/features.py`` measures the
same tasks on a local Dask cluster, with cluster start-up and merges): the one-process build, then
at each shard count of ``--shards`` every channel-stats task (``build_stats_shard``) and user-shard
task (``build_shard``) of this code, and with ``--baseline REF`` the first user shard of git revision
``REF`` (a worktree, same venv) at each count. Every task runs in its own process, so its peak
(VmHWM) is its own; CPU seconds are the task's (the load inflates wall time, much less CPU time).

    .venv/bin/python benchmarks/shard_memory.py [--scale 0.2] [--shards 2 4] [--baseline REF]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.2, help="times the 5M window of benchmarks/features.py")
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--baseline", metavar="REF", help="also user shard 0 of git revision REF at each count")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from eliverec.features.synthetic import SyntheticSize, write_days

    f = a.scale
    size = SyntheticSize(impressions_per_day=round(1_000_000 * f), clicks_per_day=round(600_000 * f),
                         n_users=round(200_000 * f), n_products=round(400_000 * f), n_channels=round(10_000 * f))
    tmp = Path(tempfile.mkdtemp(prefix="eliverec-bench-shardmem-"))
    load0 = os.getloadavg()[0]
    tree = baseline_tree(a.baseline, tmp) if a.baseline else None
    rows = []
    try:
        data = tmp / "data"
        end = write_days(data, "2026-09-01", TRAIN_DAYS + 1 + LOOKBACK, size, seed=1)[-1]
        rows.append(task(REPO, "this", "one process", data, end, 0, 1, tmp / "single"))
        for n in a.shards:
            rows += [task(REPO, "this", "stats", data, end, j, n, tmp / f"this-{n}") for j in range(n)]
            rows += [task(REPO, "this", "user shard", data, end, k, n, tmp / f"this-{n}") for k in range(n)]
        if tree:
            label = f"baseline {revision(a.baseline)}"
            rows += [task(tree, label, "user shard", data, end, 0, n, tmp / f"base-{n}") for n in a.shards]
    finally:
        if tree:
            drop_tree(tree)
        shutil.rmtree(tmp, ignore_errors=True)
    window = {"impressions_per_day": size.impressions_per_day, "users": size.n_users, "channels": size.n_channels,
              "products": size.n_products, "window_days": TRAIN_DAYS + 1, "lookback_days": LOOKBACK}
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "revision": revision(), "note": f"1-min load average at start {load0:.1f}, at the end "
                                               f"{os.getloadavg()[0]:.1f}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shard_memory.json").write_text(json.dumps({"machine": machine, "window": window, "tasks": rows},
                                                          indent=2) + "\n")
    lines = ["# Peak memory per task of the sharded feature build", "",
             f"{machine['cores']} cores, {machine['cpu']} ({machine['note']}; code {machine['revision']}). Window: "
             f"{window['window_days']} days + {window['lookback_days']} look-back, "
             f"{window['impressions_per_day']:,} impressions a day, {window['users']:,} users, "
             f"{window['channels']:,} channels, {window['products']:,} products. Each task alone in a fresh process.",
             "", "| code | task | shards | shard | impressions (window) | peak RSS MB | CPU s | s | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['code']} | {r['task']} | {r['shards']} | {r['shard']} | {r['impressions']:,} | "
              f"{r['peak_rss_mb']} | {r['cpu_seconds']} | {r['seconds']} | {r['load']} |" for r in rows]
    (RESULTS / "shard_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

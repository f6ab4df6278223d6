"""Feature-stage benchmark: impressions/s and peak memory of ``build_features``, and loader batches/s.

Two windows of synthetic bronze days (``eliverec.features.synthetic``, written first, not timed):
a default-profile-sized one (the default profile's users/channels/products, 6 train days + the
test day + 7 look-back days) and a 5M-impression window. Each build runs in a fresh process so
its peak RSS is its own. Each window is built twice in the same run (issue 18): in one process
(``build_features``), then sharded by user on a 2-worker local Dask cluster through Prefect
(``flows/scale.py``), whose output is checked byte for byte against the first; the sharded rows
give the per-shard and per-merge rates and each worker's peak RSS. Then ``load_days``
batches/s (shuffled, batch 2048) on the big window. Writes ``benchmarks/results/features.json``
and ``.md``.

    .venv/bin/python benchmarks/features.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def worker(args: argparse.Namespace) -> None:
    """Build one window in this process (or sharded on a local Dask cluster); print a JSON line."""
    from eliverec.config import load_settings
    from eliverec.features.build import build_features

    overrides = [f"features.lookback_days={args.lookback}", f"features.shards={args.shards}",
                 "flows.cluster=local", f"flows.cluster_workers={CLUSTER_WORKERS}"]
    s = load_settings("default", overrides=overrides, params=REPO / "params.yaml", data_dir=args.data_dir)
    t0 = time.perf_counter()
    if args.shards:
        from flows import scale
        from flows.common import Target

        r = scale.run(Target.of(s), args.end_date, args.train_days)["features"]
    else:
        r = build_features(s, args.end_date, args.train_days)
    wall = time.perf_counter() - t0
    out = {"rows": r["rows"], "seconds": round(wall, 2), "impressions_per_s": round(r["rows"] / wall),
           "impressions_per_min": round(60 * r["rows"] / wall),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "chunk_rows": s.features.chunk_rows, "seq_len": s.features.seq_len, "shards": r.get("shards")}
    print(json.dumps(out))


CLUSTER_WORKERS = 2


def features_digest(data: Path, window: list[str]) -> str:
    """sha256 over every file of the window's feature days (names and bytes)."""
    import hashlib

    from eliverec.layout import DataLayout

    h = hashlib.sha256()
    for d in window:
        for f in sorted(DataLayout(data).features(d).rglob("*")):
            if f.is_file():
                h.update(f.relative_to(data).as_posix().encode())
                with f.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
    return h.hexdigest()


def build_in_subprocess(data_dir: Path, end_date: str, train_days: int, lookback: int, shards: int = 0) -> dict:
    from eliverec.layout import DataLayout

    cmd = [sys.executable, __file__, "--worker", "--data-dir", str(data_dir), "--end-date", end_date,
           "--train-days", str(train_days), "--lookback", str(lookback), "--shards", str(shards)]
    env = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        "PREFECT_HOME": str(DataLayout(data_dir).prefect_home()),
                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode:
        raise RuntimeError(f"build failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loader_speed(data_dir: Path, dates: list[str], batch: int, n_batches: int) -> dict:
    import torch

    from eliverec.features.dataset import load_days

    ds = load_days(data_dir, dates)
    out = {"rows": len(ds), "batch_size": batch}
    for name, make in (("iter_batches", lambda: ds.iter_batches(batch, shuffle=True, seed=0)),
                       ("dataloader", lambda: iter(ds.loader(batch, shuffle=True, seed=0)))):
        it = make()
        next(it)  # warm up (page cache, first allocation)
        t0 = time.perf_counter()
        n = 0
        for b in it:
            n += 1
            assert b["product_seq"].dtype == torch.int64
            if n >= n_batches:
                break
        dt = time.perf_counter() - t0
        out[f"{name}_batches_per_s"] = round(n / dt, 1)
        out[f"{name}_samples_per_s"] = round(n * batch / dt)
    return out


def run_case(root: Path, name: str, size, days: int, train_days: int, lookback: int, shards: int) -> dict:
    from eliverec.features.synthetic import write_days
    from eliverec.layout import DataLayout

    data = root / name
    t0 = time.perf_counter()
    dates = write_days(data, "2026-09-01", days, size, seed=1)
    gen = time.perf_counter() - t0
    res = build_in_subprocess(data, dates[-1], train_days, lookback)
    window = dates[-(train_days + 1):]
    disk = sum(f.stat().st_size for d in window for f in DataLayout(data).features(d).rglob("*") if f.is_file())
    single = features_digest(data, window)
    sharded = build_in_subprocess(data, dates[-1], train_days, lookback, shards=shards)
    sharded["byte_identical"] = features_digest(data, window) == single
    sh = sharded.pop("shards")
    sharded |= {"shard_count": sh["count"], "shard_rows": sh["rows"], "shard_seconds": sh["seconds"],
                "shard_peak_rss_mb": sh["peak_rss_mb"], "merge": sh["merge"],
                "shard_impressions_per_s": round(sum(sh["rows"]) / sum(sh["seconds"])),
                "merge_impressions_per_s": round(sum(sh["rows"]) / sum(m["seconds"] for m in sh["merge"].values()))}
    res.pop("shards", None)
    return {"case": name, "users": size.n_users, "channels": size.n_channels, "products": size.n_products,
            "impressions_per_day": size.impressions_per_day, "clicks_per_day": size.clicks_per_day,
            "window_days": train_days + 1, "lookback_days": lookback, "generate_seconds": round(gen, 1),
            "output_mb_per_1k_impressions": round(disk / 1e6 / max(res["rows"], 1) * 1000, 2), **res,
            "sharded": sharded, "_data": str(data), "_window": window}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--end-date")
    ap.add_argument("--train-days", type=int)
    ap.add_argument("--lookback", type=int)
    ap.add_argument("--shards", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(REPO))
    from eliverec.features.synthetic import SyntheticSize

    q = args.quick
    default = SyntheticSize(impressions_per_day=20_000 if q else 100_000, clicks_per_day=12_000 if q else 60_000)
    big = SyntheticSize(impressions_per_day=100_000 if q else 1_000_000, clicks_per_day=60_000 if q else 600_000,
                        n_users=20_000 if q else 200_000, n_products=40_000 if q else 400_000, n_channels=1_500
                        if q else 10_000)
    root = Path(tempfile.mkdtemp(prefix="eliverec-bench-features-"))
    try:
        cases = [run_case(root, "default_profile_window", default, days=14, train_days=6, lookback=7, shards=2),
                 run_case(root, "5M_window" if not q else "500k_window", big, days=6, train_days=4, lookback=1,
                          shards=4)]
        loader = loader_speed(Path(cases[1]["_data"]), cases[1]["_window"], 2048, 50 if q else 300)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for c in cases:
        c.pop("_data"), c.pop("_window")
    import numpy
    import torch

    result = {"benchmark": "features", "quick": q, "machine": {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": numpy.__version__, "torch": torch.__version__,
        "note": f"1-min load average at start {os.getloadavg()[0]:.1f} (other jobs slow it down)"},
        "target_impressions_per_min": 1_000_000, "cases": cases, "loader": loader}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "features_quick" if q else "features"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Feature stage benchmark", "", f"{result['machine']['cpu']}, {result['machine']['cores']} cores "
             f"({result['machine']['note']}).", "",
             "| window | impressions | seconds | impressions/min | peak RSS (MB) | MB per 1k samples |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c['case']} ({c['window_days']} days + {c['lookback_days']} look-back, {c['users']} users) | "
              f"{c['rows']:,} | {c['seconds']} | {c['impressions_per_min']:,} | {c['peak_rss_mb']} | "
              f"{c['output_mb_per_1k_impressions']} |" for c in cases]
    lines += ["", f"Sharded by user on a {CLUSTER_WORKERS}-worker local Dask cluster through Prefect "
              "(`flows/scale.py`), same run, same windows:", "",
              "| window | shards | seconds (incl. cluster start) | impressions/min | byte-identical | shard "
              "impressions/s (per task) | merge impressions/s | peak RSS MB: driver / shard tasks / merges |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
    lines += [f"| {c['case']} | {s['shard_count']} | {s['seconds']} | {s['impressions_per_min']:,} | "
              f"{s['byte_identical']} | {s['shard_impressions_per_s']:,} | {s['merge_impressions_per_s']:,} | "
              f"{s['peak_rss_mb']} / {max(s['shard_peak_rss_mb'])} / "
              f"{max(m['peak_rss_mb'] for m in s['merge'].values())} |" for c in cases for s in [c["sharded"]]]
    lines += ["", f"Loader ({loader['rows']:,} rows, batch {loader['batch_size']}, shuffled): "
              f"`iter_batches` {loader['iter_batches_batches_per_s']} batches/s "
              f"({loader['iter_batches_samples_per_s']:,} samples/s), `DataLoader` "
              f"{loader['dataloader_batches_per_s']} batches/s.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

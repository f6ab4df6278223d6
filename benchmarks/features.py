"""Feature-stage benchmark: impressions/s and peak memory of ``build_features``, and loader batches/s.

Two windows of synthetic bronze days (``eliverec.features.synthetic``, written first, not timed):
a default-profile-sized one (the default profile's users/channels/products, 6 train days + the
test day + 7 look-back days) and a 5M-impression window. Each build runs in a fresh process so
its peak RSS is its own. Then ``FeatureDataset`` batches/s (shuffled, batch 2048) on the big
window. Writes ``benchmarks/results/features.json`` and ``.md``.

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
    """Build one window in this process; print a JSON line with the timing and peak RSS."""
    from eliverec.config import load_settings
    from eliverec.features.build import build_features

    s = load_settings("default", overrides=[f"features.lookback_days={args.lookback}"],
                      params=REPO / "params.yaml", data_dir=args.data_dir)
    t0 = time.perf_counter()
    r = build_features(s, args.end_date, args.train_days)
    wall = time.perf_counter() - t0
    print(json.dumps({"rows": r["rows"], "seconds": round(wall, 2), "impressions_per_s": round(r["rows"] / wall),
                      "impressions_per_min": round(60 * r["rows"] / wall),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "chunk_rows": s.features.chunk_rows, "seq_len": s.features.seq_len}))


def build_in_subprocess(data_dir: Path, end_date: str, train_days: int, lookback: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--data-dir", str(data_dir), "--end-date", end_date,
           "--train-days", str(train_days), "--lookback", str(lookback)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loader_speed(data_dir: Path, dates: list[str], batch: int, n_batches: int) -> dict:
    import torch

    from eliverec.features.dataset import FeatureDataset

    ds = FeatureDataset(data_dir, dates)
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


def run_case(root: Path, name: str, size, days: int, train_days: int, lookback: int) -> dict:
    from eliverec.features.synthetic import write_days

    data = root / name
    t0 = time.perf_counter()
    dates = write_days(data, "2026-09-01", days, size, seed=1)
    gen = time.perf_counter() - t0
    res = build_in_subprocess(data, dates[-1], train_days, lookback)
    window = dates[-(train_days + 1):]
    disk = sum(f.stat().st_size for d in window for f in (data / "features" / d).rglob("*") if f.is_file())
    return {"case": name, "users": size.n_users, "channels": size.n_channels, "products": size.n_products,
            "impressions_per_day": size.impressions_per_day, "clicks_per_day": size.clicks_per_day,
            "window_days": train_days + 1, "lookback_days": lookback, "generate_seconds": round(gen, 1),
            "output_mb_per_1k_impressions": round(disk / 1e6 / max(res["rows"], 1) * 1000, 2), **res,
            "_data": str(data), "_window": window}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--end-date")
    ap.add_argument("--train-days", type=int)
    ap.add_argument("--lookback", type=int)
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
        cases = [run_case(root, "default_profile_window", default, days=14, train_days=6, lookback=7),
                 run_case(root, "5M_window" if not q else "500k_window", big, days=6, train_days=4, lookback=1)]
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
    lines += ["", f"Loader ({loader['rows']:,} rows, batch {loader['batch_size']}, shuffled): "
              f"`iter_batches` {loader['iter_batches_batches_per_s']} batches/s "
              f"({loader['iter_batches_samples_per_s']:,} samples/s), `DataLoader` "
              f"{loader['dataloader_batches_per_s']} batches/s.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

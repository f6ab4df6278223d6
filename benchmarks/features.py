"""Feature-stage benchmark: impressions/s and peak memory of ``build_features``, and loader batches/s.

Two windows of synthetic bronze days (``eliverec.features.synthetic``, written first, not timed):
a default-profile-sized one (the default profile's users/channels/products, 6 train days + the
test day + 7 look-back days) and a 5M-impression window. Each build runs in a fresh process so
its peak RSS is its own. Each window is built in the same run (issue 18) in one process
(``build_features``), then sharded by user on a 2-worker local Dask cluster through Prefect
(``flows/scale.py``) at each shard count of ``--shards`` (the big window; the default one at the
first), each output checked byte for byte against the first; the sharded rows give the
per-task rates and each task's own peak RSS (channel-stats shards, user shards, merges).
``--baseline REF`` adds the sharded build of git revision ``REF`` (a worktree, same venv) at the
largest shard count, for before/after in one run (code without the per-task peak reset of
``eliverec.features.shards`` reports a task's worker process's high-water mark, which can include an
earlier task on that worker). Then ``load_days``
batches/s (shuffled, batch 2048) on the big window. Writes ``benchmarks/results/features.json``
and ``.md`` (``features_default.*`` with ``--default-only``).

    .venv/bin/python benchmarks/features.py [--quick] [--shards 2 4] [--baseline REF] [--big-only | --default-only]
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

from _baseline import baseline_tree, drop_tree, revision  # sibling modules: run as `python benchmarks/<name>.py`
from _machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def worker(args: argparse.Namespace) -> None:
    """Build one window in this process (or sharded on a local Dask cluster); print a JSON line."""
    from eliverec.config import load_settings
    from eliverec.features.build import build_features

    overrides = [f"features.lookback_days={args.lookback}", f"features.shards={args.shards}",
                 "flows.cluster=local", f"flows.cluster_workers={CLUSTER_WORKERS}"]
    s = load_settings("default", overrides=overrides, params=REPO / "params.yaml", data_dir=args.data_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.shards:
        from flows import scale
        from flows.common import Target

        r = scale.run(Target.of(s), args.end_date, args.train_days)["features"]
    else:
        r = build_features(s, args.end_date, args.train_days)
    wall = time.perf_counter() - t0
    out = {"rows": r["rows"], "seconds": round(wall, 2), "impressions_per_s": round(r["rows"] / wall),
           "cpu_seconds": round(time.process_time() - c0, 2),  # this process (the sharded build's driver)
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


def build_in_subprocess(data_dir: Path, end_date: str, train_days: int, lookback: int, shards: int = 0,
                        code: Path = REPO) -> dict:
    """One build in a fresh process, with the code of the checkout at ``code`` (this one or a baseline)."""
    from eliverec.layout import DataLayout

    cmd = [sys.executable, str(code / "benchmarks" / "features.py"), "--worker", "--data-dir", str(data_dir),
           "--end-date", end_date, "--train-days", str(train_days), "--lookback", str(lookback), "--shards",
           str(shards)]
    home = DataLayout(data_dir).prefect_home()
    home.mkdir(parents=True, exist_ok=True)  # Prefect's temporary server cannot open its database otherwise
    env = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(home),
                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONPATH": str(code)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env)
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


def sharded_row(data: Path, dates: list[str], train_days: int, lookback: int, shards: int, single: str,
                code: Path = REPO, label: str = "this") -> dict:
    """The sharded build at ``shards`` shards: rates and each task's peak RSS, bytes checked against ``single``."""
    window = dates[-(train_days + 1):]
    row = build_in_subprocess(data, dates[-1], train_days, lookback, shards=shards, code=code)
    row["byte_identical"] = features_digest(data, window) == single
    sh = row.pop("shards")
    st = sh.get("stats") or {"impressions": [], "seconds": [], "peak_rss_mb": []}
    per_cpu = lambda rows, cpu: round(rows / sum(cpu)) if cpu and None not in cpu else None  # noqa: E731
    row |= {"code": label, "shard_count": sh["count"], "shard_rows": sh["rows"], "shard_seconds": sh["seconds"],
            "shard_peak_rss_mb": sh["peak_rss_mb"], "merge": sh["merge"], "stats": st,
            "shard_impressions_per_s": round(sum(sh["rows"]) / sum(sh["seconds"])),
            "stats_impressions_per_s": round(sum(st["impressions"]) / sum(st["seconds"])) if st["seconds"] else None,
            "merge_impressions_per_s": round(sum(sh["rows"]) / sum(m["seconds"] for m in sh["merge"].values())),
            # per CPU-second of the tasks (the load inflates wall time, much less CPU time)
            "stats_impressions_per_cpu_s": per_cpu(sum(st["impressions"]), st.get("cpu_seconds")),
            "shard_impressions_per_cpu_s": per_cpu(sum(sh["rows"]), sh.get("cpu_seconds")),
            "merge_impressions_per_cpu_s": per_cpu(sum(sh["rows"]), [m.get("cpu_seconds") for m in
                                                                     sh["merge"].values()])}
    return row


def run_case(root: Path, name: str, size, days: int, train_days: int, lookback: int, shard_counts: list[int],
             baseline: tuple[Path, str] | None = None) -> dict:
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
    sharded = [sharded_row(data, dates, train_days, lookback, n, single) for n in shard_counts]
    if baseline is not None:
        sharded.append(sharded_row(data, dates, train_days, lookback, max(shard_counts), single, *baseline))
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
    ap.add_argument("--shards", type=int, nargs="*", default=None,
                    help="shard counts of the big window's sharded builds (default 2 4; the worker: one count)")
    ap.add_argument("--baseline", metavar="REF", help="also the sharded build of git revision REF (largest count)")
    ap.add_argument("--big-only", action="store_true", help="only the big window (no default-profile one)")
    ap.add_argument("--default-only", action="store_true",
                    help="only the default-profile window (one process, sharded at the first count and --baseline's "
                         "at it); the loader on it")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="the big window's impressions, clicks, users, products and channels times this (1: 5M)")
    args = ap.parse_args()
    if args.worker:
        args.shards = args.shards[0] if args.shards else 0
        worker(args)
        return
    counts = args.shards or [2, 4]
    if not args.quick and args.scale <= 0:
        raise SystemExit("--scale must be > 0")
    sys.path.insert(0, str(REPO))
    from eliverec.features.synthetic import SyntheticSize

    q = args.quick
    default = SyntheticSize(impressions_per_day=20_000 if q else 100_000, clicks_per_day=12_000 if q else 60_000)
    f = 0.1 if q else args.scale
    big = SyntheticSize(impressions_per_day=round(1_000_000 * f), clicks_per_day=round(600_000 * f),
                        n_users=round(200_000 * f), n_products=round(400_000 * f),
                        n_channels=1_500 if q else round(10_000 * f))
    big_name = f"{5 * big.impressions_per_day / 1e6:g}M_window"
    root = Path(tempfile.mkdtemp(prefix="eliverec-bench-features-"))
    tree = baseline_tree(args.baseline, root) if args.baseline else None
    base = (tree, f"baseline {revision(args.baseline)}") if tree else None
    load0 = os.getloadavg()[0]
    try:
        cases = [] if args.big_only else [run_case(root, "default_profile_window", default, days=14, train_days=6,
                                                   lookback=7, shard_counts=counts[:1],
                                                   baseline=base if args.default_only else None)]
        if not args.default_only:
            cases.append(run_case(root, big_name, big, days=6, train_days=4, lookback=1, shard_counts=counts,
                                  baseline=base))
        loader = loader_speed(Path(cases[-1]["_data"]), cases[-1]["_window"], 2048, 50 if q else 300)
    finally:
        if tree:
            drop_tree(tree)
        shutil.rmtree(root, ignore_errors=True)
    for c in cases:
        c.pop("_data"), c.pop("_window")
    import numpy
    import torch

    result = {"benchmark": "features", "quick": q, "machine": {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": numpy.__version__, "torch": torch.__version__,
        "note": f"1-min load average at start {load0:.1f}, at the end {os.getloadavg()[0]:.1f} (other jobs "
                "slow it down)", "revision": revision()},
        "target_impressions_per_min": 1_000_000, "cases": cases, "loader": loader}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "features_quick" if q else "features_default" if args.default_only else "features"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Feature stage benchmark", "", f"{result['machine']['cpu']}, {result['machine']['cores']} cores "
             f"({result['machine']['note']}).", "",
             "| window | impressions | seconds | CPU s | impressions/min | peak RSS (MB) | MB per 1k samples |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c['case']} ({c['window_days']} days + {c['lookback_days']} look-back, {c['users']} users) | "
              f"{c['rows']:,} | {c['seconds']} | {c.get('cpu_seconds', '-')} | {c['impressions_per_min']:,} | "
              f"{c['peak_rss_mb']} | {c['output_mb_per_1k_impressions']} |" for c in cases]
    lines += ["", f"Sharded by user on a {CLUSTER_WORKERS}-worker local Dask cluster through Prefect "
              f"(`flows/scale.py`), same run, same windows (code: this revision {result['machine']['revision']}, "
              "or the baseline's; a baseline task's peak is its worker's high-water mark):", "",
              "| window | code | shards | seconds (incl. cluster start) | impressions/min | byte-identical | "
              "impressions/s per task: stats / user shard / merge | the same per CPU-second | peak RSS MB per "
              "task (max): stats / user shard / merge | driver peak MB |",
              "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | ---: |"]
    lines += [f"| {c['case']} | {s['code']} | {s['shard_count']} | {s['seconds']} | {s['impressions_per_min']:,} | "
              f"{s['byte_identical']} | {s['stats_impressions_per_s'] or '-'} / {s['shard_impressions_per_s']:,} / "
              f"{s['merge_impressions_per_s']:,} | {s['stats_impressions_per_cpu_s'] or '-'} / "
              f"{s['shard_impressions_per_cpu_s'] or '-'} / {s['merge_impressions_per_cpu_s'] or '-'} | "
              f"{max(s['stats']['peak_rss_mb'], default='-')} / "
              f"{max(s['shard_peak_rss_mb'])} / {max(m['peak_rss_mb'] for m in s['merge'].values())} | "
              f"{s['peak_rss_mb']} |" for c in cases for s in c["sharded"]]
    lines += ["", f"Loader ({loader['rows']:,} rows, batch {loader['batch_size']}, shuffled): "
              f"`iter_batches` {loader['iter_batches_batches_per_s']} batches/s "
              f"({loader['iter_batches_samples_per_s']:,} samples/s), `DataLoader` "
              f"{loader['dataloader_batches_per_s']} batches/s.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The data stages sharded on a Dask cluster through Prefect's task runner (issue 18).

Every shard is a Prefect task that Prefect's ``DaskTaskRunner`` (``prefect-dask``) sends to a Dask
worker process; ``flows.cluster`` picks the cluster: ``local`` starts a ``LocalCluster`` of
``flows.cluster_workers`` processes (one thread each) for the run, an address
(``tcp://host:8786``) uses a running scheduler whose workers see the same data root.

- ingest: one task per day (:func:`~eliverec.data.ingest.ingest_day`; a day's chunks still use
  ``ingest.workers`` processes on that worker);
- features: one task per channel shard that looks up every impression's channel stats
  (:func:`~eliverec.features.shards.build_stats_shard`), then one per user shard
  (:func:`~eliverec.features.shards.build_shard`), then one per window day that merges the shards
  (:func:`~eliverec.features.shards.merge_day`, a k-way merge of the shards' files): byte-identical
  samples and tensors to the single-process build; every shard task reads only its shard's rows and
  a merge a chunk at a time, so memory per worker follows the shard size (``features.shards``) and
  ``features.chunk_rows``, not the day;
- monitoring: one task per day (:func:`~eliverec.monitoring.monitor.monitor_day`, reports and
  gates; the Evidently workspace is written by ``flows.monitor``, a single writer).

The settings reach the workers as a :class:`~flows.common.Target`: the path of the settings file the
flow wrote under the data root and its hash (no secret travels to the scheduler or the workers).

Run it: ``python -m flows.scale --profile tiny --end-date 2026-09-04 [--ingest] [--monitor]``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import Target, target_parser


def task_runner(settings: Any) -> Any:
    """Prefect's Dask task runner for ``flows.cluster`` (a local cluster, or a scheduler by address)."""
    from prefect_dask import DaskTaskRunner

    if settings.flows.cluster != "local":
        return DaskTaskRunner(address=settings.flows.cluster)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": settings.flows.cluster_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def shard_count(settings: Any, window: list[str]) -> int:
    """``features.shards``, or (0) enough shards that none gets more than ``features.shard_rows`` impressions
    of a day (row counts from the bronze files' metadata), and at least one per local worker."""
    import pyarrow.parquet as pq

    if settings.features.shards:
        return int(settings.features.shards)
    rows = max(pq.ParquetFile(settings.layout.bronze_table(d, "impression")).metadata.num_rows for d in window)
    workers = settings.flows.cluster_workers if settings.flows.cluster == "local" else 1
    return max(workers, math.ceil(rows / settings.features.shard_rows))


@task(name="ingest-day")
def ingest_task(target: Target, date: str) -> dict[str, Any]:
    from eliverec.data.ingest import ingest_day

    return ingest_day(target.settings(), date)["totals"]


@task(name="features-stats-shard")
def stats_task(target: Target, end_date: str, train_days: int | None, j: int, n: int, root: str) -> dict[str, Any]:
    from eliverec.features.shards import build_stats_shard

    return build_stats_shard(target.settings(), end_date, train_days, j, n, Path(root))


@task(name="features-shard")
def shard_task(target: Target, end_date: str, train_days: int | None, k: int, n: int, root: str) -> dict[str, Any]:
    from eliverec.features.shards import build_shard

    return build_shard(target.settings(), end_date, train_days, k, n, Path(root))


@task(name="features-merge")
def merge_task(target: Target, day: str, split: str, window: list[str], n: int, root: str) -> dict[str, Any]:
    from eliverec.features.shards import merge_day
    from eliverec.layout import as_date

    return merge_day(target.settings(), as_date(day), split, [as_date(d) for d in window], n, Path(root))


@task(name="monitor-day")
def monitor_task(target: Target, date: str) -> dict[str, Any]:
    from eliverec.monitoring.monitor import monitor_day

    return monitor_day(target.settings(), date, workspace=False, raise_on_alarm=False)


@flow(name="data-sharded", log_prints=True)
def data_sharded(target: Target, end_date: str, train_days: int | None = None, ingest: list[str] | None = None,
                 monitor: list[str] | None = None) -> dict[str, Any]:
    """Ingest ``ingest`` days, build the window ending ``end_date`` by user shards, monitor ``monitor`` days."""
    from eliverec.data.atomic import stage_lock
    from eliverec.features.build import _remove_leftovers, plan_window
    from eliverec.features.shards import finish_sharded, shard_root

    out: dict[str, Any] = {}
    if ingest:
        futures = {d: ingest_task.submit(target, d) for d in ingest}
        out["ingest"] = {d: f.result() for d, f in futures.items()}
    s = target.settings()
    with stage_lock(Path(s.data_dir), "features"):
        _remove_leftovers(s.layout.features())
        started = time.perf_counter()
        train, test, history = plan_window(s, end_date, train_days)
        window = [d.isoformat() for d in [*train, test]]
        n = shard_count(s, window)
        root = shard_root(s, f"{os.getpid()}-{int(time.time())}")
        try:
            stats = [f.result() for f in [stats_task.submit(target, end_date, train_days, j, n, str(root))
                                          for j in range(n)]]
            shards = [f.result() for f in [shard_task.submit(target, end_date, train_days, k, n, str(root))
                                           for k in range(n)]]
            merges = {d: merge_task.submit(target, d, "test" if d == window[-1] else "train", window, n, str(root))
                      for d in window}
            days = {d: f.result() for d, f in merges.items()}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        out["features"] = finish_sharded(s, train, test, history, days, shards, time.perf_counter() - started, False,
                                         stats)
    if monitor:
        futures = {d: monitor_task.submit(target, d) for d in monitor}
        out["monitor"] = {d: f.result() for d, f in futures.items()}
    return out


def run(target: Target, end_date: str, train_days: int | None = None, ingest: list[str] | None = None,
        monitor: list[str] | None = None) -> dict[str, Any]:
    """:func:`data_sharded` on the cluster of ``flows.cluster``."""
    runner = task_runner(target.settings())
    return data_sharded.with_options(task_runner=runner)(target, end_date, train_days, ingest, monitor)


def main() -> None:
    ap = target_parser(__doc__)
    ap.add_argument("--end-date", required=True, help="the window's test day (YYYY-MM-DD)")
    ap.add_argument("--train-days", type=int)
    ap.add_argument("--ingest", nargs="*", metavar="DATE", help="days to ingest first")
    ap.add_argument("--monitor", nargs="*", metavar="DATE", help="days to monitor after")
    a = ap.parse_args()
    target = Target.resolve(a.profile, a.overrides, a.data_dir, a.params)  # params.yaml read here, once
    out = run(target, a.end_date, a.train_days, a.ingest, a.monitor)
    f = out["features"]
    print(f"features: {f['rows']} rows in {f['seconds']} s over {f['shards']['count']} shards "
          f"(peak RSS per shard task {f['shards']['peak_rss_mb']} MB)")


if __name__ == "__main__":
    main()

"""The feature build sharded by user (issue 18): shards in parallel, then one merge per day.

A user's samples depend on that user's events only (clicks, watches, impressions, visits) plus the
channels' stats and the dimension snapshots. The stats are the one input keyed by channel, so they
are looked up first, by channel shard, for every impression; then the window splits by a hash of
``user_id`` (:func:`~eliverec.data.partition.string_partition`) into ``n`` shards that build
independently. Every task reads its bronze tables a batch at a time, keeping only its rows, so its
memory follows its shard, not the day:

1. :func:`build_stats_shard` (channel shard ``j`` of ``n``) scans the days' channel stats of its
   channels (with the products on sale in them), carries each channel's last stats across days as
   the single-process build does, and looks up, for every window-day impression on its channels,
   the latest stats before it (:func:`~eliverec.features.pointintime.latest_stats`; a channel's
   stats depend on that channel only, so the values are those of the single-process build). They
   go to ``<root>/stats/channels-<j>/<date>/users-<k>.npz`` by the impression's user shard ``k``,
   with the impression's row index in the bronze file.
2. :func:`build_shard` runs the ordinary day scan (:func:`~eliverec.features.build.scan_days`)
   over the shard's users: their events, profile rows and clicked products, and the stats of
   step 1 for their impressions, into ``<root>/shard-<k>/<date>/``. Its memory: its users'
   histories, one day of their events, the channels snapshot.
3. :func:`merge_day` writes one window day: the global row order is the single-process order
   (impressions sorted by ts, request, position, channel, ties in bronze order); since a stable
   sort of a subset is the subset of the stable sort, each shard's rows arrive in that order, and
   the day is written chunk by chunk (``features.chunk_rows``) from the shards' files, read as
   streams. ``samples.parquet``, the tensors and the day summary are byte-identical to
   :func:`~eliverec.features.build.build_features` (tested). Its memory: the day's impression keys
   (about 50 bytes per impression) and one chunk.

:func:`build_sharded` runs both steps in this process (tests, no cluster); ``flows/scale.py`` runs
them as Prefect tasks on a Dask cluster (``flows.cluster``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eliverec.data.atomic import stage_lock
from eliverec.data.partition import string_partition
from eliverec.features.bronze import ROW, of_partition, read_dimension, read_event
from eliverec.features.build import (
    IMPRESSION_ORDER,
    STATS_COLUMNS,
    NpyWriter,
    Stats,
    _Accumulator,
    _parquet_schema,
    _product_filter,
    _remove_leftovers,
    _shapes,
    _swap_in,
    collisions,
    day_stats_log,
    finish_build,
    plan_window,
    scan_days,
)
from eliverec.features.hashing import FeatureSpec
from eliverec.features.pointintime import AsOfIndex, EventLog, latest_stats
from eliverec.features.samples import DISK_DTYPES, empty_log
from eliverec.layout import DAY_SUMMARY, FEATURE_SPEC, SAMPLES, TENSORS, day_start_ms


def shard_root(settings: Any, run: str) -> Path:
    """Scratch folder of one sharded build (under the features folder; removed when the build ends)."""
    return settings.layout.feature_shards(run)


def _stats_file(root: Path, j: int, day: dt.date, k: int) -> Path:
    return root / "stats" / f"channels-{j:04d}" / day.isoformat() / f"users-{k:04d}.npz"


def build_stats_shard(settings: Any, end_date: str, train_days: int | None, j: int, n: int, root: Path
                      ) -> dict[str, Any]:
    """Channel shard ``j`` of ``n``: the channel stats of every window-day impression on its channels,
    by the impression's user shard (step 1 of the module docstring)."""
    started, cpu = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    train, test, history = plan_window(settings, end_date, train_days)
    spec = FeatureSpec.from_settings(settings)
    data_dir, tol = Path(settings.data_dir), int(settings.ingest.ts_tolerance_ms)
    where = of_partition("channel_id", j, n) if n > 1 else None
    carry, rows, stats_rows = empty_log("stats", spec), 0, 0
    for day in [*history, *train, test]:
        if day in history and not settings.layout.bronze(day).is_dir():
            continue  # as the day scan does (it warns)
        st = read_event(data_dir, day, "channel_stats", STATS_COLUMNS, where)
        on_sale = pc.list_flatten(st["products_on_sale"].combine_chunks())
        products = read_dimension(data_dir, day, "products", _product_filter(on_sale))
        index = AsOfIndex(EventLog.concat([carry, day_stats_log(spec, st, products)]), tie="viewers")
        stats_rows += st.num_rows
        if day not in history:
            imp = read_event(data_dir, day, "impression", ["user_id", "channel_id", "ts"], where, row_index=True)
            found = latest_stats(index, imp["channel_id"].combine_chunks(),
                                 imp["ts"].to_numpy().astype(np.int64), spec.dynamic_cats)
            user_shard = string_partition(imp["user_id"], n)
            row = imp[ROW].to_numpy()
            for k in range(n):
                sel = user_shard == k
                path = _stats_file(root, j, day, k)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, row=row[sel], dynamic=found[0][sel], cats=found[1][sel], has=found[2][sel])
            rows += imp.num_rows
        carry = index.compact(day_start_ms(day + dt.timedelta(days=1)) - tol, 1)
    return {"channel_shard": j, "impressions": rows, "stats_rows": stats_rows,
            "seconds": round(time.perf_counter() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3),
            "peak_rss_mb": _peak_rss_mb()}


def shard_stats(root: Path, k: int, n: int) -> Callable[[dt.date, np.ndarray], Stats]:
    """User shard ``k``'s stats lookup: the channel shards' rows for it, in the order of ``rows``."""

    def lookup(day: dt.date, rows: np.ndarray) -> Stats:
        parts = [np.load(_stats_file(root, j, day, k)) for j in range(n)]
        have = np.concatenate([p["row"] for p in parts])
        order = np.argsort(have, kind="stable")
        at = order[np.minimum(np.searchsorted(have[order], rows), max(len(have) - 1, 0))] if len(have) else rows[:0]
        if len(have) != len(rows) or not np.array_equal(have[at], rows):
            raise RuntimeError(f"{root}: the channel shards' stats of {day} do not cover user shard {k}'s "
                               "impressions (a bronze table changed during the build?); rebuild")
        return tuple(np.concatenate([p[name] for p in parts])[at]  # type: ignore[return-value]
                     for name in ("dynamic", "cats", "has"))

    return lookup


def build_shard(settings: Any, end_date: str, train_days: int | None, k: int, n: int, root: Path) -> dict[str, Any]:
    """User shard ``k`` of ``n``: every window day's samples of its users under ``root/shard-<k>``
    (after every :func:`build_stats_shard` of the same ``root``)."""
    started, cpu = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    train, test, history = plan_window(settings, end_date, train_days)
    out = root / f"shard-{k:04d}"
    days, used = scan_days(settings, train, test, history, shard=(k, n), out=out, stats=shard_stats(root, k, n))
    return {"shard": k, "rows": sum(d["rows"] for d in days.values()), "used_history": used,
            "seconds": round(time.perf_counter() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3),
            "peak_rss_mb": _peak_rss_mb()}


class _Stream:
    """Rows of one shard's ``samples.parquet`` and tensors, taken in order, a chunk at a time."""

    def __init__(self, folder: Path, keys: list[str], chunk: int) -> None:
        self.batches = pq.ParquetFile(folder / SAMPLES).iter_batches(batch_size=chunk)
        self.pending: list[pa.RecordBatch] = []
        self.buffered = 0
        self.arrays = {k: np.load(folder / TENSORS / f"{k}.npy", mmap_mode="r") for k in keys}
        self.at = 0

    def take(self, count: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
        while self.buffered < count:
            batch = next(self.batches)
            self.pending.append(batch)
            self.buffered += batch.num_rows
        table = pa.Table.from_batches(self.pending, schema=_parquet_schema()) if self.pending else None
        table = table if table is not None else _parquet_schema().empty_table()
        head, rest = table.slice(0, count), table.slice(count)
        self.pending, self.buffered = rest.to_batches(), rest.num_rows
        arrays = {k: v[self.at : self.at + count] for k, v in self.arrays.items()}
        self.at += count
        return head, arrays


def day_order(settings: Any, day: dt.date, n: int) -> np.ndarray:
    """Shard of each row of ``day``'s samples, in the single-process row order."""
    t = read_event(Path(settings.data_dir), day, "impression", ["ts", "request_id", "position", "channel_id",
                                                                 "user_id"])
    t = t.sort_by(IMPRESSION_ORDER)
    return string_partition(t["user_id"], n).astype(np.int32)


def merge_day(settings: Any, day: dt.date, split: str, window: list[dt.date], n: int, root: Path) -> dict[str, Any]:
    """Write window day ``day`` from the shards' outputs (byte-identical to the single-process build)."""
    started, cpu = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    spec = FeatureSpec.from_settings(settings)
    src = day_order(settings, day, n)
    rows = len(src)
    shapes = _shapes(spec, rows)
    chunk = int(settings.features.chunk_rows)
    final = settings.layout.features(day)
    tmp = final.parent / f".{day.isoformat()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / TENSORS).mkdir(parents=True)
    streams = [_Stream(root / f"shard-{k:04d}" / day.isoformat(), list(shapes), chunk) for k in range(n)]
    mm = {k: NpyWriter(tmp / TENSORS / f"{k}.npy", DISK_DTYPES[k], s) for k, s in shapes.items()}
    acc = _Accumulator()
    with pq.ParquetWriter(tmp / SAMPLES, _parquet_schema(), compression="zstd") as writer:
        for a in range(0, rows, chunk):
            table, arrays = _gather(src[a : a + chunk], streams, shapes)
            for k, v in arrays.items():
                mm[k].write(v)
            writer.write_table(table)
            acc.add(arrays, table["has_stats"].to_numpy(zero_copy_only=False))
    for m in mm.values():
        m.close()
    users, channels = (read_dimension(Path(settings.data_dir), day, d) for d in ("users", "channels"))
    summary = {"date": day.isoformat(), "split": split, "window": [window[0].isoformat(), window[-1].isoformat()],
               "spec_hash": spec.spec_hash, "rows": rows, **acc.result(),
               "hash_collisions": collisions(spec, users, channels)}
    (tmp / FEATURE_SPEC).write_text(spec.to_json())
    (tmp / DAY_SUMMARY).write_text(json.dumps(summary, indent=2))
    _swap_in(tmp, final)
    return summary | {"peak_rss_mb": _peak_rss_mb(), "seconds": round(time.perf_counter() - started, 3),
                      "cpu_seconds": round(time.process_time() - cpu, 3)}


def _gather(src: np.ndarray, streams: list[_Stream], shapes: dict[str, tuple[int, ...]]
            ) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """One output chunk: row ``i`` comes from shard ``src[i]`` (each shard's rows in their order)."""
    m = len(src)
    arrays = {k: np.empty((m, *s[1:]), DISK_DTYPES[k]) for k, s in shapes.items()}
    parts: list[pa.Table] = []
    perm = np.empty(m, np.int64)
    offset = 0
    for k, stream in enumerate(streams):
        at = np.flatnonzero(src == k)
        if not len(at):
            continue
        table, shard_arrays = stream.take(len(at))
        for key, v in shard_arrays.items():
            arrays[key][at] = v
        perm[at] = offset + np.arange(len(at))
        offset += len(at)
        parts.append(table)
    whole = pa.concat_tables(parts) if parts else _parquet_schema().empty_table()
    return whole.take(pa.array(perm)).combine_chunks(), arrays


def build_sharded(settings: Any, end_date: str, train_days: int | None, n: int, validate: bool = False
                  ) -> dict[str, Any]:
    """The whole sharded build in this process (shards one after the other): the cluster's result, for tests."""
    with stage_lock(Path(settings.data_dir), "features"):
        _remove_leftovers(settings.layout.features())
        started = time.perf_counter()
        train, test, history = plan_window(settings, end_date, train_days)
        root = shard_root(settings, f"{os.getpid()}")
        try:
            stats = [build_stats_shard(settings, end_date, train_days, j, n, root) for j in range(n)]
            shards = [build_shard(settings, end_date, train_days, k, n, root) for k in range(n)]
            window = [*train, test]
            days = {d.isoformat(): merge_day(settings, d, "test" if d == test else "train", window, n, root)
                    for d in window}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return finish_sharded(settings, train, test, history, days, shards, time.perf_counter() - started, validate,
                              stats)


def finish_sharded(settings: Any, train: list[dt.date], test: dt.date, history: list[dt.date],
                   days: dict[str, dict[str, Any]], shards: list[dict[str, Any]], elapsed: float, validate: bool,
                   stats: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The build record of a sharded build (as the single-process one, plus the shards' sizes, times and
    peak memory: user shards, channel-stats shards, merges)."""
    merges = {d: {"peak_rss_mb": s.pop("peak_rss_mb"), "seconds": s.pop("seconds"),
                  "cpu_seconds": s.pop("cpu_seconds", None)} for d, s in days.items()}
    result = finish_build(settings, train, test, history, days, shards[0]["used_history"], elapsed, validate)
    result["shards"] = {"count": len(shards), "rows": [s["rows"] for s in shards],
                        "seconds": [s["seconds"] for s in shards], "cpu_seconds": [s["cpu_seconds"] for s in shards],
                        "peak_rss_mb": [s["peak_rss_mb"] for s in shards], "merge": merges,
                        "stats": {k: [s[k] for s in stats or []]
                                  for k in ("impressions", "stats_rows", "seconds", "cpu_seconds", "peak_rss_mb")}}
    return result


def _reset_peak_rss() -> None:
    """Start this process's peak-memory count afresh (Linux: ``5`` to ``/proc/self/clear_refs``), so a
    task's peak is its own and not that of an earlier task on the same worker; a no-op elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> int:
    """This process's peak resident memory since :func:`_reset_peak_rss` (VmHWM), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) // 1024

"""The offline feature stage: point-in-time samples for a window of days (DESIGN section 3, "Samples").

Days stream in time order from ``window_start - lookback_days`` to ``end_date``. A *carry*
holds, per user, the last ``seq_len`` product clicks and watches (per channel, the last
stats) known before the next day's earliest possible impression (its start minus the
ingestion tolerance), plus everything after that cut-off; each day's events are added to
it, the day's impressions are featurised in chunks of ``features.chunk_rows``, and the
carry is compacted again. Memory is bounded by one day's events, the carry (users x
seq_len) and one chunk of output, never by the window length.

History for an impression in partition ``d`` comes from partitions ``<= d`` only, and only
events known strictly before its ``ts`` (see :mod:`eliverec.features.pointintime`); labels
come from the visit events of partitions ``d`` and ``d + 1`` when ``d + 1`` is in the window
(a visit that crosses midnight), so a rebuild never depends on days outside the window.

Outputs per window day ``<data_dir>/features/<date>/``: ``samples.parquet`` (one row per
impression, row ``i`` = tensor row ``i``), ``tensors/<key>.npy`` per batch key,
``feature_spec.json`` and ``_summary.json``; written to a temporary folder and swapped in.
``<data_dir>/features/_build.json`` records the window, the split and every day's summary.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eliverec.data.atomic import publish_dir, stage_lock, write_bytes_atomic
from eliverec.errors import DataError
from eliverec.features import batch
from eliverec.features.bronze import ROW, RowFilter, of_partition, read_dimension, read_event, require_window
from eliverec.features.hashing import UNKNOWN, FeatureSpec
from eliverec.features.pointintime import EventLog, visit_labels
from eliverec.features.samples import (
    DISK_DTYPES,
    IMPRESSION_COLUMNS,
    Context,
    dim_take,
    empty_log,
    impression_features,
    index_logs,
    product_log,
    stats_log,
    watch_log,
)
from eliverec.layout import DAY_SUMMARY, FEATURE_SPEC, SAMPLES, TENSORS, as_date, day_start_ms

log = logging.getLogger(__name__)
VISIT_EVENTS: dict[str, list[str]] = {
    "enter": ["user_id", "request_id", "channel_id"],
    "leave": ["user_id", "request_id", "channel_id", "stay_ms"],
    "goods_bag_click": ["user_id", "request_id", "channel_id"],
    "channel_product_click": ["user_id", "request_id", "channel_id"],
}


def window_days(end_date: str, train_days: int) -> tuple[list[dt.date], dt.date]:
    """``(train days, test day)``: the ``train_days`` days before ``end_date``, and ``end_date``.

    >>> train, test = window_days("2026-09-08", 2)
    >>> [d.isoformat() for d in train], test.isoformat()
    (['2026-09-06', '2026-09-07'], '2026-09-08')
    """
    end = as_date(end_date)
    return [end - dt.timedelta(days=i) for i in range(train_days, 0, -1)], end


#: ``(k, n)``: shard ``k`` of ``n`` by user hash (:func:`~eliverec.data.partition.string_partition`).
Shard = tuple[int, int]
#: Per impression: ``(dynamic (n, 4) f32, dynamic_cats (n, K) i32, has_stats (n,) bool)`` (see
#: :func:`~eliverec.features.pointintime.latest_stats`), computed before the user shards run.
Stats = tuple[np.ndarray, np.ndarray, np.ndarray]
STATS_COLUMNS = ["channel_id", "ts", "viewers", "revenue_window", "products_on_sale"]
IMPRESSION_ORDER = [("ts", "ascending"), ("request_id", "ascending"), ("position", "ascending"),
                    ("channel_id", "ascending")]


def _product_filter(ids: pa.Array) -> RowFilter:
    """Rows of the products snapshot whose id is among ``ids``."""
    wanted = pc.unique(ids)
    return lambda batch: pc.is_in(batch.column("product_id"), value_set=wanted).to_numpy(zero_copy_only=False)


def day_stats_log(spec: FeatureSpec, st: pa.Table, products: pa.Table) -> EventLog:
    """The channel stats of ``st`` (:data:`STATS_COLUMNS`) as a hashed log, on-sale products' categories
    looked up in ``products`` (the day's snapshot, or at least its rows for those products)."""
    on_sale = st["products_on_sale"].combine_chunks()
    if isinstance(on_sale, pa.ChunkedArray):
        on_sale = on_sale.combine_chunks()
    flat_cat = dim_take(pc.list_flatten(on_sale), products, "product_id", "category_id")
    offsets = pc.fill_null(on_sale.offsets, 0) if len(on_sale) else pa.array([0], pa.int32())
    cats = pa.ListArray.from_arrays(offsets, flat_cat.cast(pa.string()))
    return stats_log(spec, st["channel_id"].combine_chunks(), st["ts"].to_numpy(), st["viewers"].to_numpy(),
                     st["revenue_window"].to_numpy(), cats)


class _Day:
    """One day's bronze inputs, read lazily.

    With ``shard`` (a user shard, :mod:`eliverec.features.shards`), only what its users need, each
    table read a batch at a time and filtered by user hash: their clicks, watches, impressions and
    profile rows, and the products they clicked; no channel stats (they come precomputed per
    impression). The channels snapshot is read whole (small: one row per channel).
    """

    def __init__(self, data_dir: Path, day: dt.date, shard: Shard | None = None) -> None:
        self.data_dir, self.day, self.shard = data_dir, day, shard
        self.where = of_partition("user_id", *shard) if shard is not None and shard[1] > 1 else None
        self.users = read_dimension(data_dir, day, "users", self.where)
        self.channels = read_dimension(data_dir, day, "channels")
        self._products = read_dimension(data_dir, day, "products") if shard is None else None

    def products(self, ids: pa.Array) -> pa.Table:
        """The products snapshot (in a shard: only the rows of ``ids``)."""
        if self._products is not None:
            return self._products
        return read_dimension(self.data_dir, self.day, "products", _product_filter(ids))

    def logs(self, spec: FeatureSpec) -> tuple[EventLog, EventLog, EventLog]:
        """Product clicks, watches and stats of this day, hashed with this day's dimension snapshots
        (in a shard: no stats)."""
        pc_t = read_event(self.data_dir, self.day, "product_click", ["user_id", "ts", "product_id"], self.where)
        prod = pc_t["product_id"].combine_chunks()
        dim = self.products(prod)
        products = product_log(spec, pc_t["user_id"].combine_chunks(), pc_t["ts"].to_numpy(), prod,
                               dim_take(prod, dim, "product_id", "category_id"),
                               dim_take(prod, dim, "product_id", "brand_id"))
        lv = read_event(self.data_dir, self.day, "leave", ["user_id", "ts", "channel_id", "stay_ms"], self.where)
        ch = lv["channel_id"].combine_chunks()
        watches = watch_log(spec, lv["user_id"].combine_chunks(), lv["ts"].to_numpy(), ch,
                            dim_take(ch, self.channels, "channel_id", "anchor_id"),
                            dim_take(ch, self.channels, "channel_id", "top_category"), lv["stay_ms"].to_numpy())
        if self.shard is not None:
            return products, watches, empty_log("stats", spec)
        st = read_event(self.data_dir, self.day, "channel_stats", STATS_COLUMNS)
        return products, watches, day_stats_log(spec, st, self.products(prod))

    def impressions(self) -> pa.Table:
        """The day's impressions, in a deterministic order (ts, request, position, channel); in a shard,
        its users' only, with their row index in the bronze file (column ``_row``)."""
        t = read_event(self.data_dir, self.day, "impression", IMPRESSION_COLUMNS, self.where,
                       row_index=self.shard is not None)
        return t.sort_by(IMPRESSION_ORDER)


def build_features(settings: Any, end_date: str, train_days: int | None = None, validate: bool = False
                   ) -> dict[str, Any]:
    """Build point-in-time samples for ``end_date - train_days .. end_date``; return the build summary.

    Train split: the ``train_days`` days before ``end_date``; test split: ``end_date``. Raises
    :class:`~eliverec.errors.DataError` when a window day's bronze folder or table is missing or
    malformed; a missing look-back day is skipped with a warning. ``validate`` runs the samples
    suite (:mod:`eliverec.features.expectations`) on every day afterwards and raises
    :class:`~eliverec.errors.ValidationFailed` if any day fails (the samples stay on disk).

    The build holds the ``features`` stage lock of the data root and first removes the temporary
    and half-swapped day folders a killed build left (:mod:`eliverec.data.atomic`).
    """
    data_dir = Path(settings.data_dir)
    with stage_lock(data_dir, "features"):
        _remove_leftovers(settings.layout.features())
        return _build(settings, end_date, train_days, validate)


def _remove_leftovers(out: Path) -> None:
    """Temporary day folders/files and half-swapped old folders of a killed build (under the lock)."""
    for stale in [*out.glob(".*.tmp-*"), *out.glob(".*.old-*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def plan_window(settings: Any, end_date: str, train_days: int | None) -> tuple[list[dt.date], dt.date, list[dt.date]]:
    """``(train days, test day, look-back days)`` of a build, after checking the window's bronze exists."""
    f = settings.features
    n_train = int(train_days if train_days is not None else f.train_days)
    if n_train < 1:
        raise ValueError(f"train_days must be >= 1 (got {n_train})")
    train, test = window_days(end_date, n_train)
    window = [*train, test]
    history = [window[0] - dt.timedelta(days=i) for i in range(f.lookback_days, 0, -1)]
    require_window(Path(settings.data_dir), window)
    return train, test, history


def _build(settings: Any, end_date: str, train_days: int | None, validate: bool) -> dict[str, Any]:
    train, test, history = plan_window(settings, end_date, train_days)
    started = time.perf_counter()
    days, used_history = scan_days(settings, train, test, history)
    return finish_build(settings, train, test, history, days, used_history, time.perf_counter() - started,
                        validate)


def scan_days(settings: Any, train: list[dt.date], test: dt.date, history: list[dt.date],
              shard: Shard | None = None, out: Path | None = None,
              stats: Callable[[dt.date, np.ndarray], Stats] | None = None, batch_rows: int | None = None,
              users: Callable[[dt.date, pa.Table], None] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Stream the days in time order and write every window day's samples; ``(day summaries, look-back days used)``.

    With ``shard``, only that shard's users (their impressions, clicks, watches and visits) are read,
    ``stats(day, rows)`` gives the channel stats of the shard's impressions of a window day (``rows``:
    their row indices in the bronze file, in sample order), and the days are written under
    ``out/<date>`` instead of the data root (:mod:`eliverec.features.shards` merges the shards);
    ``batch_rows``: write the samples as :data:`SHARD_SAMPLES` in record batches of at most that many
    rows (a shard's, read by the merge a batch at a time; see :func:`_samples_writer`); ``users(day, table)``
    gets each window day's users snapshot as read (in a shard: its users' rows).
    """
    from rich.progress import Progress

    f = settings.features
    window = [*train, test]
    data_dir = Path(settings.data_dir)
    spec = FeatureSpec.from_settings(settings)
    tol = int(settings.ingest.ts_tolerance_ms)
    carry = [empty_log(k, spec) for k in ("product", "watch", "stats")]
    used_history: list[str] = []
    days: dict[str, Any] = {}
    visit_cache: dict[dt.date, dict[str, pa.Table]] = {}
    with Progress(transient=True, disable=shard is not None) as progress:
        task = progress.add_task("features", total=len(history) + len(window))
        for day in [*history, *window]:
            if day in history and not settings.layout.bronze(day).is_dir():
                log.warning("look-back day %s has no bronze folder %s: skipped", day, settings.layout.bronze(day))
                progress.advance(task)
                continue
            bronze = _Day(data_dir, day, shard)
            logs = bronze.logs(spec)
            indexes = index_logs(*(EventLog.concat([c, d]) for c, d in zip(carry, logs, strict=True)))
            if day in history:
                used_history.append(day.isoformat())
            else:
                ctx = Context(spec, *indexes, bronze.users, bronze.channels)
                labels = _labels_source(data_dir, day, window, visit_cache, shard)
                final = settings.layout.features(day) if out is None else out / day.isoformat()
                imp = bronze.impressions()
                pre = stats(day, imp[ROW].to_numpy()) if stats is not None else None
                if users is not None:
                    users(day, bronze.users)
                summary = _write_day(settings, spec, ctx, imp, labels, day, "test" if day == test else "train",
                                     window, progress, final, pre, batch_rows)
                days[day.isoformat()] = summary
            cutoff = day_start_ms(day + dt.timedelta(days=1)) - tol
            carry = [indexes[0].compact(cutoff, f.seq_len), indexes[1].compact(cutoff, f.seq_len),
                     indexes[2].compact(cutoff, 1)]
            progress.advance(task)
    return days, used_history


def finish_build(settings: Any, train: list[dt.date], test: dt.date, history: list[dt.date], days: dict[str, Any],
                 used_history: list[str], elapsed: float, validate: bool) -> dict[str, Any]:
    """Write the window's ``feature_spec.json`` and build record, validate if asked; return the record."""
    spec = FeatureSpec.from_settings(settings)
    rows = sum(s["rows"] for s in days.values())
    result = {
        "end_date": test.isoformat(), "train_days": [d.isoformat() for d in train], "test_day": test.isoformat(),
        "history_days": used_history, "missing_history_days": [d.isoformat() for d in history
                                                               if d.isoformat() not in used_history],
        "spec_hash": spec.spec_hash, "rows": rows,
        "train_rows": sum(s["rows"] for d, s in days.items() if d != test.isoformat()),
        "test_rows": days[test.isoformat()]["rows"], "seconds": round(elapsed, 3),
        "impressions_per_s": round(rows / elapsed, 1) if elapsed > 0 else None, "days": days,
    }
    _atomic_text(settings.layout.feature_spec(), spec.to_json())
    _atomic_text(settings.layout.build_record(), json.dumps(result, indent=2))
    if validate:
        from eliverec.features.expectations import validate_window

        result["validation"] = validate_window(settings, list(days))
    return result


def _labels_source(data_dir: Path, day: dt.date, window: list[dt.date], cache: dict[dt.date, dict[str, pa.Table]],
                   shard: Shard | None = None) -> dict[str, pa.Table]:
    """Visit events of ``day`` and of the next day when it is in the window (cached, old days dropped)."""
    for old in [d for d in cache if d < day]:
        del cache[old]
    if day not in cache:
        cache[day] = _visits_of(data_dir, day, shard)
    nxt = day + dt.timedelta(days=1)
    if nxt in window and nxt not in cache:
        cache[nxt] = _visits_of(data_dir, nxt, shard)
    parts = [cache[d] for d in (day, nxt) if d in cache]
    return {e: pa.concat_tables(p[e] for p in parts) for e in VISIT_EVENTS}


def _visits_of(data_dir: Path, day: dt.date, shard: Shard | None = None) -> dict[str, pa.Table]:
    """The visit events of one day that carry labels (of ``shard``'s users only, if given)."""
    where = of_partition("user_id", *shard) if shard is not None and shard[1] > 1 else None
    return {e: read_event(data_dir, day, e, cols, where) for e, cols in VISIT_EVENTS.items()}


def _write_day(settings: Any, spec: FeatureSpec, ctx: Context, imp: pa.Table, visits: dict[str, pa.Table],
               day: dt.date, split: str, window: list[dt.date], progress: Any, final: Path,
               stats: Stats | None = None, batch_rows: int | None = None) -> dict[str, Any]:
    """Featurise one day in chunks into a temporary folder, then swap it in as ``final``; return its summary.

    ``stats``: the impressions' channel stats, precomputed (else read from ``ctx.stats``); ``batch_rows``:
    see :func:`scan_days`."""
    n = imp.num_rows
    earliest = day_start_ms(day) - int(settings.ingest.ts_tolerance_ms)
    if n and int(pc.min(imp["ts"]).as_py()) < earliest:
        path = settings.layout.bronze_table(day, "impression")
        raise DataError(f"{path}: impressions before {day} minus ingest.ts_tolerance_ms; "
                        "re-ingest the day (`eliverec ingest`) or raise the tolerance")
    tmp = final.parent / f".{day.isoformat()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / TENSORS).mkdir(parents=True)
    shapes = _shapes(spec, n)
    mm = {k: NpyWriter(tmp / TENSORS / f"{k}.npy", DISK_DTYPES[k], s) for k, s in shapes.items()}
    acc = _Accumulator()
    chunk = int(settings.features.chunk_rows)
    task = progress.add_task(f"  {day.isoformat()} ({split})", total=max(n, 1))
    with _samples_writer(tmp, batch_rows) as writer:
        for a in range(0, n, chunk):
            block = imp.slice(a, chunk)
            pre = None if stats is None else tuple(x[a : a + chunk] for x in stats)
            arrays, extras = impression_features(ctx, block, pre)  # type: ignore[arg-type]
            arrays.update(visit_labels(block["user_id"].combine_chunks(), block["request_id"].combine_chunks(),
                                       block["channel_id"].combine_chunks(), visits, spec.min_stay_ms))
            for k, v in arrays.items():
                mm[k].write(v)
            writer.write_table(_parquet_block(day, block, arrays, extras))
            acc.add(arrays, extras["has_stats"].to_numpy(zero_copy_only=False))
            progress.advance(task, len(block))
            del arrays, extras  # before the next chunk is made: one chunk at a time, not two
    for m in mm.values():
        m.close()
    progress.remove_task(task)
    summary = {"date": day.isoformat(), "split": split, "window": [window[0].isoformat(), window[-1].isoformat()],
               "spec_hash": spec.spec_hash, "rows": n, **acc.result(),
               "hash_collisions": collisions(spec, ctx.users, ctx.channels)}
    (tmp / FEATURE_SPEC).write_text(spec.to_json())
    (tmp / DAY_SUMMARY).write_text(json.dumps(summary, indent=2))
    _swap_in(tmp, final)
    return summary


#: A user shard's samples (:mod:`eliverec.features.shards`): an Arrow IPC file, not parquet, because a
#: parquet footer holds metadata per row group and the merge needs small pieces of many shards at once.
SHARD_SAMPLES = "samples.arrow"


class _IpcSamples:
    """An Arrow IPC file of the day's samples in record batches of at most ``batch_rows`` rows (lz4)."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.writer = pa.ipc.new_file(path, _parquet_schema(), options=pa.ipc.IpcWriteOptions(compression="lz4"))

    def write_table(self, table: pa.Table) -> None:
        self.writer.write_table(table, max_chunksize=self.batch_rows)

    def __enter__(self) -> _IpcSamples:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()


def _samples_writer(folder: Path, batch_rows: int | None) -> Any:
    """The day's ``samples.parquet`` (zstd, a row group per chunk), or with ``batch_rows`` a shard's
    :data:`SHARD_SAMPLES`."""
    if batch_rows is None:
        return pq.ParquetWriter(folder / SAMPLES, _parquet_schema(), compression="zstd")
    return _IpcSamples(folder / SHARD_SAMPLES, batch_rows)


class NpyWriter:
    """Write a ``.npy`` file of known shape sequentially, chunk by chunk (read back with ``mmap_mode="r"``).

    Plain appends instead of writes through ``open_memmap``: no page faults on fresh pages,
    and the result is the same ``.npy`` format that ``np.load(..., mmap_mode="r")`` maps.
    """

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self.rows = 0
        self.file = open(path, "wb")  # noqa: SIM115 (closed in close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self.file, header)

    def write(self, block: np.ndarray) -> None:
        """Append rows (their trailing shape must match)."""
        if block.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: block shape {block.shape} does not fit {self.shape}")
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self.rows += len(block)

    def close(self) -> None:
        """Close; every declared row must have been written."""
        self.file.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows of {self.shape[0]}")


def _shapes(spec: FeatureSpec, n: int) -> dict[str, tuple[int, ...]]:
    L, K = spec.seq_len, spec.dynamic_cats
    return {
        "user": (n,), "profile": (n, len(batch.PROFILE_FIELDS)), "context": (n, len(batch.CONTEXT_FIELDS)),
        "position": (n,), "channel": (n, len(batch.CHANNEL_FIELDS)), "dynamic": (n, batch.DYNAMIC_DENSE),
        "dynamic_cats": (n, K), "product_seq": (n, L, len(batch.PRODUCT_FIELDS)), "product_len": (n,),
        "channel_seq": (n, L, len(batch.CHANNEL_FIELDS)), "channel_len": (n,),
        **{k: (n,) for k in batch.LABELS},
    }


_PARQUET_FIELDS: list[tuple[str, pa.DataType]] = [
    ("date", pa.string()), ("ts", pa.int64()), ("user_id", pa.string()), ("request_id", pa.string()),
    ("channel_id", pa.string()), ("anchor_id", pa.string()), ("top_category", pa.string()), ("scene", pa.string()),
    ("position", pa.int32()), ("hour", pa.int32()), ("weekday", pa.int32()),
    ("user_h", pa.int32()), ("gender_h", pa.int32()), ("age_bucket_h", pa.int32()), ("city_tier_h", pa.int32()),
    ("register_bucket", pa.int32()), ("scene_h", pa.int32()), ("position_id", pa.int32()),
    ("channel_h", pa.int32()), ("anchor_h", pa.int32()), ("category_h", pa.int32()),
    ("has_stats", pa.bool_()), ("log_viewers", pa.float32()), ("log_revenue_window", pa.float32()),
    ("log_n_on_sale", pa.float32()), ("log_stats_age_min", pa.float32()),
    ("dynamic_cats_n", pa.int32()), ("dynamic_cats_max", pa.int32()),
    ("product_len", pa.int32()), ("channel_len", pa.int32()),
    ("product_seq_nonpad", pa.int32()), ("channel_seq_nonpad", pa.int32()),
    ("product_seq_max", pa.int32()), ("category_seq_max", pa.int32()), ("brand_seq_max", pa.int32()),
    ("channel_seq_max", pa.int32()), ("anchor_seq_max", pa.int32()), ("channel_category_seq_max", pa.int32()),
    ("watch", pa.float32()), ("stay_time", pa.float32()), ("goods_bag", pa.float32()), ("product_click", pa.float32()),
]


def _parquet_schema() -> pa.Schema:
    return pa.schema(_PARQUET_FIELDS)


def _parquet_block(day: dt.date, imp: pa.Table, a: dict[str, np.ndarray], extras: dict[str, pa.Array]) -> pa.Table:
    """Readable ids, hashed fields, dense context, sequence summaries (for validation) and labels."""
    ps, cs = a["product_seq"], a["channel_seq"]
    cols: dict[str, Any] = {
        "date": pa.array([day.isoformat()] * imp.num_rows, pa.string()), "ts": imp["ts"],
        "user_id": imp["user_id"], "request_id": imp["request_id"], "channel_id": imp["channel_id"],
        "anchor_id": extras["anchor_id"], "top_category": extras["top_category"], "scene": imp["scene"],
        "position": imp["position"], "hour": a["context"][:, 0] - 1, "weekday": a["context"][:, 1] - 1,
        "user_h": a["user"], "gender_h": a["profile"][:, 0], "age_bucket_h": a["profile"][:, 1],
        "city_tier_h": a["profile"][:, 2], "register_bucket": a["profile"][:, 3], "scene_h": a["context"][:, 2],
        "position_id": a["position"], "channel_h": a["channel"][:, 0], "anchor_h": a["channel"][:, 1],
        "category_h": a["channel"][:, 2], "has_stats": extras["has_stats"],
        "log_viewers": a["dynamic"][:, 0], "log_revenue_window": a["dynamic"][:, 1],
        "log_n_on_sale": a["dynamic"][:, 2], "log_stats_age_min": a["dynamic"][:, 3],
        "dynamic_cats_n": (a["dynamic_cats"] > 0).sum(1), "dynamic_cats_max": a["dynamic_cats"].max(1, initial=0),
        "product_len": a["product_len"], "channel_len": a["channel_len"],
        "product_seq_nonpad": (ps[:, :, 0] > 0).sum(1), "channel_seq_nonpad": (cs[:, :, 0] > 0).sum(1),
        "product_seq_max": ps[:, :, 0].max(1, initial=0), "category_seq_max": ps[:, :, 1].max(1, initial=0),
        "brand_seq_max": ps[:, :, 2].max(1, initial=0), "channel_seq_max": cs[:, :, 0].max(1, initial=0),
        "anchor_seq_max": cs[:, :, 1].max(1, initial=0), "channel_category_seq_max": cs[:, :, 2].max(1, initial=0),
        **{k: a[k] for k in batch.LABELS},
    }
    schema = _parquet_schema()
    return pa.table({name: pa.array(np.asarray(v)).cast(schema.field(name).type) if isinstance(v, np.ndarray)
                     else v.cast(schema.field(name).type) for name, v in cols.items()}, schema=schema)


class _Accumulator:
    """Running sums for the day summary (counts, label rates, mean sequence lengths)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, float] = {}

    def add(self, a: dict[str, np.ndarray], has_stats: np.ndarray) -> None:
        self.n += len(a["user"])
        L = a["product_seq"].shape[1]
        parts = {**{k: a[k].sum(dtype=np.float64) for k in batch.LABELS},
                 "product_len": a["product_len"].sum(dtype=np.float64),
                 "channel_len": a["channel_len"].sum(dtype=np.float64),
                 "product_full": float((a["product_len"] == L).sum()),
                 "channel_full": float((a["channel_len"] == L).sum()),
                 "has_stats": float(has_stats.sum())}
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def result(self) -> dict[str, Any]:
        d = max(self.n, 1)
        return {"label_rates": {k: round(self.sums.get(k, 0.0) / d, 6) for k in ("watch", "goods_bag",
                                                                                  "product_click")},
                "mean_stay_time": round(self.sums.get("stay_time", 0.0) / d, 6),
                "mean_product_len": round(self.sums.get("product_len", 0.0) / d, 3),
                "mean_channel_len": round(self.sums.get("channel_len", 0.0) / d, 3),
                "share_product_full": round(self.sums.get("product_full", 0.0) / d, 4),
                "share_channel_full": round(self.sums.get("channel_full", 0.0) / d, 4),
                "share_with_stats": round(self.sums.get("has_stats", 0.0) / d, 4)}


#: The hash-collision count's vocabulary spaces and their columns in the users / channels snapshots.
USER_SPACES = (("gender", "gender"), ("age_bucket", "age_bucket"), ("city_tier", "city_tier"), ("user", "user_id"))
CHANNEL_SPACES = (("channel", "channel_id"), ("anchor", "anchor_id"), ("category", "top_category"))


def _distinct(table: pa.Table, column: str) -> pa.Array:
    return pc.unique(pc.fill_null(table[column].combine_chunks().cast(pa.string()), UNKNOWN))


def users_part(spec: FeatureSpec, users: pa.Table) -> dict[str, np.ndarray]:
    """What :func:`collisions` needs of (a part of) a users snapshot, parts split by user id: the
    distinct values of the small spaces, the number of distinct user ids and their hash slots."""
    out = {space: np.asarray(_distinct(users, column).to_pylist(), dtype=str) for space, column in USER_SPACES[:3]}
    ids = _distinct(users, "user_id")
    return out | {"user_count": np.int64(len(ids)), "user_slots": np.unique(spec.hash(ids, "user"))}


def collisions(spec: FeatureSpec, users: pa.Table | None, channels: pa.Table,
               parts: Iterable[Mapping[str, np.ndarray]] | None = None) -> dict[str, int]:
    """Distinct raw values that share a hash slot with another, per space, in this day's dimension tables
    (``parts``: instead of ``users``, the :func:`users_part` of each part of it, taken one at a time)."""
    small: dict[str, set[str]] = {space: set() for space, _ in USER_SPACES[:3]}
    seen, count = np.zeros(spec.vocab["user"], bool), 0
    for part in parts if parts is not None else [users_part(spec, users)]:  # type: ignore[arg-type]
        for space, values in small.items():
            values.update(part[space].tolist())
        count += int(part["user_count"])
        seen[part["user_slots"]] = True
    out = {space: int(len(values) - len(np.unique(spec.hash(pa.array(sorted(values), pa.string()), space))))
           for space, values in small.items()}
    out["user"] = count - int(seen.sum())
    for space, column in CHANNEL_SPACES:
        uniq = _distinct(channels, column)
        out[space] = int(len(uniq) - len(np.unique(spec.hash(uniq, space))))
    few = {k: v for k, v in out.items() if v and k in ("gender", "age_bucket", "city_tier")}
    if few:
        log.warning("hash collisions in small vocabularies %s: raise features.vocab for them", few)
    return out


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` with ``tmp`` (contents fsynced, then a rename; the old folder removed after)."""
    publish_dir(tmp, final)


def _atomic_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())

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
   sort of a subset is the subset of the stable sort, each shard's rows arrive in that order, so
   the day is a k-way merge of the shards' files, read as streams a record batch at a time (keys
   from their samples, an Arrow IPC file, plus the bronze row index each shard saved; tensors by
   plain file reads), and written chunk by chunk (``features.chunk_rows``). ``samples.parquet``, the tensors
   and the day summary are byte-identical to :func:`~eliverec.features.build.build_features`
   (tested). Its memory: about three chunks (the output chunk, the shards' pending batches of
   :func:`batch_rows` rows each), not the day; the summary's hash-collision count comes from each
   user shard's part of the users snapshot (:func:`~eliverec.features.build.users_part`), read one
   at a time.

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
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eliverec.data.atomic import stage_lock
from eliverec.data.partition import string_partition
from eliverec.errors import DataError
from eliverec.features.bronze import ROW, of_partition, read_dimension, read_event
from eliverec.features.build import (
    IMPRESSION_ORDER,
    SHARD_SAMPLES,
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
    users_part,
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
    (after every :func:`build_stats_shard` of the same ``root``), with their bronze row indices
    (:func:`_rows_file`) and in record batches of :func:`batch_rows` rows, for the merge."""
    started, cpu = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    train, test, history = plan_window(settings, end_date, train_days)
    out = root / f"shard-{k:04d}"
    out.mkdir(parents=True, exist_ok=True)
    lookup = shard_stats(root, k, n)

    def stats(day: dt.date, rows: np.ndarray) -> Stats:  # called once per window day, rows in sample order
        np.save(_rows_file(root, k, day), rows.astype(np.int64, copy=False))
        return lookup(day, rows)

    spec = FeatureSpec.from_settings(settings)

    def users(day: dt.date, table: pa.Table) -> None:  # the merge's hash-collision count takes it by shard
        np.savez(_users_file(root, k, day), **users_part(spec, table))

    days, used = scan_days(settings, train, test, history, shard=(k, n), out=out, stats=stats,
                           batch_rows=batch_rows(int(settings.features.chunk_rows), n), users=users)
    return {"shard": k, "rows": sum(d["rows"] for d in days.values()), "used_history": used,
            "seconds": round(time.perf_counter() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3),
            "peak_rss_mb": _peak_rss_mb()}


#: The single-process row order (:data:`~eliverec.features.build.IMPRESSION_ORDER`), ties in bronze order.
MERGE_ORDER = [*IMPRESSION_ORDER, (ROW, "ascending")]
_KEYS = [name for name, _ in IMPRESSION_ORDER]
_REBUILD = "the shard task did not finish or its scratch folder changed: rebuild the window (`python -m flows.scale`)"
_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _rows_file(root: Path, k: int, day: dt.date) -> Path:
    """User shard ``k``'s bronze row index of every sample of ``day``, in sample order (the merge's tie-break)."""
    return root / f"shard-{k:04d}" / f"{day.isoformat()}.rows.npy"


def _users_file(root: Path, k: int, day: dt.date) -> Path:
    """User shard ``k``'s part of ``day``'s users snapshot for the hash-collision count (:func:`users_part`)."""
    return root / f"shard-{k:04d}" / f"{day.isoformat()}.users.npz"


def _users_parts(files: list[Path]) -> Iterator[dict[str, np.ndarray]]:
    """The shards' :func:`users_part` files, one at a time (the merge never holds the users snapshot)."""
    for path in files:
        try:
            with np.load(path) as part:
                yield {k: part[k] for k in part.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: missing or unreadable ({exc}); {_REBUILD}") from exc


def batch_rows(chunk: int, n: int) -> int:
    """Rows per record batch of a shard's samples: a share of a merge chunk, so that the merge holds
    about one chunk of all the shards together, whatever their number."""
    return min(chunk, max(-(-chunk // n), 256))


class _NpyReader:
    """Rows of a ``.npy`` file read in order with plain file reads (no memory map: the merge's resident
    memory is what it holds, not the page cache of the files it has read). Checks the shape, dtype and
    size first: a missing or truncated file raises :class:`DataError` naming it."""

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...] | None) -> None:
        """``shape``: the one expected (None: any number of rows, one dimension)."""
        self.path, self.dtype = path, np.dtype(dtype)
        try:
            self.file = open(path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise DataError(f"{path}: missing ({exc.strerror}); {_REBUILD}") from exc
        try:
            found, _, found_dtype = _HEADERS[np.lib.format.read_magic(self.file)](self.file)
        except (ValueError, KeyError) as exc:
            self.file.close()
            raise DataError(f"{path}: not a .npy file this code writes ({exc}); {_REBUILD}") from exc
        if shape is None:
            shape = tuple(found) if len(found) == 1 else (-1,)  # (-1,): refused below
        self.shape = shape
        self.row = int(np.prod(shape[1:], dtype=np.int64))
        size, need = os.fstat(self.file.fileno()).st_size, self.file.tell() + shape[0] * self.row * self.dtype.itemsize
        if tuple(found) != tuple(shape) or found_dtype != self.dtype or size != need:
            self.file.close()
            raise DataError(f"{path}: shape {tuple(found)} {found_dtype}, {size} bytes; expected {tuple(shape)} "
                            f"{self.dtype}, {need} bytes (truncated?); {_REBUILD}")

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` rows."""
        out = np.fromfile(self.file, self.dtype, count * self.row)
        if len(out) != count * self.row:
            raise DataError(f"{self.path}: ended early (changed while the merge read it); {_REBUILD}")
        return out.reshape((count, *self.shape[1:]))

    def close(self) -> None:
        self.file.close()


class _Stream:
    """One shard's samples of one day, read in order a record batch at a time with plain file reads:
    the pending rows' sort keys (:data:`MERGE_ORDER`), their sample rows, and their tensors when taken."""

    def __init__(self, folder: Path, rows_file: Path, shapes: dict[str, tuple[int, ...]]) -> None:
        self.path = folder / SHARD_SAMPLES
        with contextlib.ExitStack() as opened:  # closes what was opened if a file is refused
            self.index = _NpyReader(rows_file, "int64", None)
            opened.callback(self.index.close)
            self.rows = self.index.shape[0]
            self.tensors: dict[str, _NpyReader] = {}
            for k, s in shapes.items():
                self.tensors[k] = _NpyReader(folder / TENSORS / f"{k}.npy", DISK_DTYPES[k], (self.rows, *s[1:]))
                opened.callback(self.tensors[k].close)
            try:
                self.file = pa.ipc.open_file(opened.enter_context(pa.OSFile(str(self.path))))
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"{self.path}: missing or not an Arrow IPC file ({exc}); {_REBUILD}") from exc
            if not self.file.schema.equals(_parquet_schema()):
                raise DataError(f"{self.path}: not a samples file of this code ({self.file.schema}); {_REBUILD}")
            self._opened = opened.pop_all()
        self.batches = (self.file.get_batch(i) for i in range(self.file.num_record_batches))
        self.pending: list[pa.RecordBatch] = []
        self.order = np.empty(0, np.int64)  # bronze row index of the pending rows
        self.read = 0

    @property
    def buffered(self) -> int:
        return len(self.order)

    @property
    def done(self) -> bool:
        """Every row of the file is pending or taken."""
        return self.read == self.rows

    def fill(self, want: int) -> None:
        """Read record batches until ``want`` rows are pending or the file is read."""
        parts, have = [self.order], len(self.order)
        while have < want and not self.done:
            batch = next(self.batches, None)
            if batch is None:
                raise DataError(f"{self.path}: ended after {self.read} of {self.rows} rows; {_REBUILD}")
            self.pending.append(batch)
            self.read += batch.num_rows
            have += batch.num_rows
            parts.append(self.index.read(batch.num_rows))
        self.order = np.concatenate(parts)

    def keys(self) -> pa.Table:
        """The pending rows' sort keys, in file order."""
        table = pa.Table.from_batches(self.pending, schema=_parquet_schema()).select(_KEYS)
        return table.append_column(ROW, pa.array(self.order))

    def take(self, count: int, out: dict[str, np.ndarray], at: np.ndarray) -> pa.Table:
        """The next ``count`` rows (pending ones): their tensors into rows ``at`` of ``out`` (one tensor
        read at a time), their sample rows returned."""
        table = pa.Table.from_batches(self.pending, schema=_parquet_schema())
        head, rest = table.slice(0, count), table.slice(count)
        self.pending, self.order = rest.to_batches(), self.order[count:]
        for k, r in self.tensors.items():
            out[k][at] = r.read(count)
        return head

    def close(self) -> None:
        self._opened.close()


def _next_rows(streams: list[_Stream], want: int, ahead: int) -> np.ndarray:
    """Shard of each of the day's next rows in the single-process order (at most ``want``, at least one).

    Every shard's rows come in that order, so a k-way merge: the pending rows (``ahead`` per shard) in
    :data:`MERGE_ORDER`, up to and including the first row that is the last pending one of a shard
    with rows still unread (a later row might come from there)."""
    for s in streams:
        s.fill(ahead)
    live = [k for k, s in enumerate(streams) if s.buffered]
    if not live:
        raise RuntimeError("the shards ran out of rows before the day was written")
    keys = pa.concat_tables([streams[k].keys() for k in live])
    shard = np.repeat(np.asarray(live), [streams[k].buffered for k in live])
    bound = np.zeros(len(shard), bool)
    ends = np.cumsum([streams[k].buffered for k in live]) - 1
    bound[ends] = [not streams[k].done for k in live]
    order = pc.sort_indices(keys, sort_keys=MERGE_ORDER).to_numpy()
    cut = np.flatnonzero(bound[order])
    return shard[order[: min(want, cut[0] + 1 if len(cut) else len(order))]]


def _merge_chunk(streams: list[_Stream], m: int, shapes: dict[str, tuple[int, ...]], ahead: int
                 ) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The day's next ``m`` rows from the shards (one merge step or, when a step falls short, several)."""
    arrays = {k: np.empty((m, *s[1:]), DISK_DTYPES[k]) for k, s in shapes.items()}
    tables: list[pa.Table] = []
    done = 0
    while done < m:
        tables.append(_gather(_next_rows(streams, m - done, ahead), streams, {k: v[done:] for k, v in arrays.items()}))
        done += tables[-1].num_rows
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()), arrays


def merge_day(settings: Any, day: dt.date, split: str, window: list[dt.date], n: int, root: Path) -> dict[str, Any]:
    """Write window day ``day`` from the shards' outputs (byte-identical to the single-process build),
    a chunk at a time: memory follows ``features.chunk_rows``, not the day (module docstring, step 3)."""
    started, cpu = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    spec = FeatureSpec.from_settings(settings)
    chunk = int(settings.features.chunk_rows)
    streams: list[_Stream] = []
    try:
        for k in range(n):
            streams.append(_Stream(root / f"shard-{k:04d}" / day.isoformat(), _rows_file(root, k, day),
                                   _shapes(spec, 0)))
        rows = sum(s.rows for s in streams)
        users = [_users_file(root, k, day) for k in range(n)]
        summary = _write_merged(settings, spec, day, split, window, streams, rows, 2 * batch_rows(chunk, n), users)
    finally:
        for s in streams:
            s.close()
    return summary | {"peak_rss_mb": _peak_rss_mb(), "seconds": round(time.perf_counter() - started, 3),
                      "cpu_seconds": round(time.process_time() - cpu, 3)}


def _write_merged(settings: Any, spec: FeatureSpec, day: dt.date, split: str, window: list[dt.date],
                  streams: list[_Stream], rows: int, ahead: int, users: list[Path]) -> dict[str, Any]:
    """Write the day's folder from the shards' streams, as :func:`~eliverec.features.build._write_day` does
    (the hash-collision count from the shards' parts of the users snapshot, ``users``)."""
    shapes = _shapes(spec, rows)
    chunk = int(settings.features.chunk_rows)
    final = settings.layout.features(day)
    tmp = final.parent / f".{day.isoformat()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / TENSORS).mkdir(parents=True)
    mm = {k: NpyWriter(tmp / TENSORS / f"{k}.npy", DISK_DTYPES[k], s) for k, s in shapes.items()}
    acc = _Accumulator()
    with pq.ParquetWriter(tmp / SAMPLES, _parquet_schema(), compression="zstd") as writer:
        for a in range(0, rows, chunk):
            table, arrays = _merge_chunk(streams, min(chunk, rows - a), shapes, ahead)
            for k, v in arrays.items():
                mm[k].write(v)
            writer.write_table(table)
            acc.add(arrays, table["has_stats"].to_numpy(zero_copy_only=False))
            del table, arrays  # before the next chunk is made: one chunk at a time, not two
    for m in mm.values():
        m.close()
    channels = read_dimension(Path(settings.data_dir), day, "channels")
    summary = {"date": day.isoformat(), "split": split, "window": [window[0].isoformat(), window[-1].isoformat()],
               "spec_hash": spec.spec_hash, "rows": rows, **acc.result(),
               "hash_collisions": collisions(spec, None, channels, _users_parts(users))}
    (tmp / FEATURE_SPEC).write_text(spec.to_json())
    (tmp / DAY_SUMMARY).write_text(json.dumps(summary, indent=2))
    _swap_in(tmp, final)
    return summary


def _gather(src: np.ndarray, streams: list[_Stream], out: dict[str, np.ndarray]) -> pa.Table:
    """Rows from the shards, row ``i`` from shard ``src[i]`` (each shard's rows in their order): their
    tensors into the first ``len(src)`` rows of ``out``, their sample rows returned."""
    m = len(src)
    parts: list[pa.Table] = []
    perm = np.empty(m, np.int64)
    offset = 0
    for k, stream in enumerate(streams):
        at = np.flatnonzero(src == k)
        if not len(at):
            continue
        parts.append(stream.take(len(at), out, at))
        perm[at] = offset + np.arange(len(at))
        offset += len(at)
    whole = pa.concat_tables(parts) if parts else _parquet_schema().empty_table()
    return whole.take(pa.array(perm)).combine_chunks()


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

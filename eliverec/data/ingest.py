"""Raw logs to bronze with quarantine (DESIGN section 3; ``eliverec ingest --date D``).

:func:`ingest_day` reads ``raw/<D>/events-*.jsonl[.gz]`` (files in name order) and the dimension
snapshots, and writes

- ``bronze/<D>/<event>.parquet`` for every event type (:func:`~eliverec.data.schemas.bronze_schema`,
  sorted by ``(ts, event_id)``), ``bronze/<D>/<dimension>.parquet`` (sorted by id) and
  ``bronze/<D>/_manifest.json``;
- ``quarantine/<D>/quarantine.parquet`` (file, line, reason, field, the raw line's first 4 KB, its
  length) and a copy of the manifest.

Every line read ends in exactly one place: a bronze table, the quarantine, or the duplicate count
(``accepted + quarantined + duplicates == lines_read`` per file, checked before publishing).
Lines are checked by :mod:`eliverec.data.parse`; the reader adds two reasons:

- ``line_too_long``: a line longer than ``ingest.chunk_bytes`` (kept as its first 4 KB and
  its length; the reader skips the rest, so memory stays bounded);
- ``corrupt_gzip``: a gzip file that is not gzip, fails its CRC, or ends early. Every line
  decompressed before the damage is processed as usual; the unreadable rest counts as one line,
  quarantined with the partial last line (if any) as its raw text, and the manifest names the
  file's error.

Duplicates: the first occurrence of an ``event_id`` (over all event types, in file-name then
line order) is kept; later ones are dropped and counted, and ``duplicates_conflicting`` counts
those whose typed content differs from the kept one.

Scale: each file is cut into parse tasks of about :data:`TASK_BYTES` of whole lines (gzip inflated by
ISA-L) that ``ingest.workers`` threads parse (the chunk parser's work is in pyarrow and numpy; the
line-by-line parser uses processes); accepted rows are spilled to Arrow IPC files partitioned by a hash
of ``event_id`` (one partition per ``ingest.chunk_bytes`` of input); deduplication then runs one
partition at a time, and the final sort one time range at a time (``ingest.workers`` of each at
once), so memory follows the chunk size times the workers, not the day's size. Bronze bytes do not
depend on the task size, the chunk size or the number of workers, nor do the quarantine's and the
manifest's on the task size or the workers: re-ingesting a day gives byte-identical files. Nothing is
published unless the whole day succeeded (staging folder, then rename); a quarantine rate above
``ingest.max_quarantine_rate`` publishes the quarantine (to inspect) but keeps the previous bronze,
and raises :class:`IngestFailed`.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from isal import isal_zlib

from eliverec.config import Settings
from eliverec.data.atomic import publish_dir, staging, write_bytes_atomic
from eliverec.data.fastparse import parse_chunk
from eliverec.data.parse import (
    LINEAGE,
    QUARANTINE_SCHEMA,
    REASONS,
    ParsedChunk,
    Rules,
    parse_lines,
    quarantine_rows,
)
from eliverec.data.partition import sampled_partition
from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, bronze_schema
from eliverec.errors import DataError
from eliverec.layout import (
    DAY_MS,
    MANIFEST,
    QUARANTINE_TABLE,
    day_start_ms,
    event_logs,
    ingest_stage,
    spill_file,
    table_file,
)

ROW_GROUP_ROWS = 262_144  # fixed, so that output bytes do not depend on chunking
#: Bytes of lines per parse task (at most ``ingest.chunk_bytes``): small enough that the threads share a
#: day's work evenly and the first task starts early; outputs do not depend on it.
TASK_BYTES = 8 << 20
_READ_BYTES = 1 << 20
#: Columns of (nearly) unique values, written plain: building their parquet dictionary costs more CPU
#: than the whole write of the other columns and is thrown away past 1 MB (smaller files, too).
_NO_DICTIONARY = frozenset({"event_id", "ts", "request_id", "stay_ms", "score", "propensity", "line", "raw", "raw_bytes"})
_INFLATE_ERRORS = (zlib.error, isal_zlib.error)
_SPILL_IPC = ipc.IpcWriteOptions()  # uncompressed: spills are read back memory-mapped, without a copy


class IngestFailed(DataError):
    """Too many bad lines: the day is not published to bronze (its quarantine is)."""


# --------------------------------------------------------------------------- paths
def raw_dir(settings: Settings, date: str) -> Path:
    """``<data_dir>/raw/<date>``."""
    return settings.layout.raw(date)


def bronze_dir(settings: Settings, date: str) -> Path:
    """``<data_dir>/bronze/<date>``."""
    return settings.layout.bronze(date)


def quarantine_dir(settings: Settings, date: str) -> Path:
    """``<data_dir>/quarantine/<date>``."""
    return settings.layout.quarantine(date)


def event_files(settings: Settings, date: str) -> list[Path]:
    """The day's raw event files in name order (``events-*.jsonl`` and ``events-*.jsonl.gz``)."""
    folder = raw_dir(settings, date)
    if not folder.is_dir():
        raise DataError(f"{folder}: no raw logs for {date} (run `eliverec simulate` or `eliverec import` first)")
    files = event_logs(folder)
    if not files:
        raise DataError(f"{folder}: no events-*.jsonl[.gz] files for {date}")
    return files


# --------------------------------------------------------------------------- reading
@dataclass
class Block:
    """A run of complete lines of one file, or one special line (too long, corrupt rest).

    ``data`` holds the lines joined by ``\\n`` (no final newline); for a special line, its raw text.
    """

    file_idx: int
    first_line: int
    data: bytes
    special: str | None = None  # "line_too_long" | "corrupt_gzip"
    length: int = 0  # full length of a too-long line
    error: str | None = None

    @cached_property
    def n_lines(self) -> int:
        """Number of lines in the block."""
        return 1 if self.special else self.data.count(b"\n") + 1


def _pieces(path: Path, size: int) -> Iterator[bytes]:
    """Pieces of at most ``size`` decompressed bytes; raises ``_Corrupt`` where a gzip stream is damaged.

    gzip is inflated by ISA-L (``isal``: zlib's API at about twice its speed)."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc}); check the file and its permissions") from exc
    with f:
        if not path.name.endswith(".gz"):
            while piece := f.read(size):
                yield piece
            return
        dec = isal_zlib.decompressobj(wbits=31)
        started = False
        while True:
            data = f.read(min(size, _READ_BYTES))
            if not data:
                if started and not dec.eof:
                    raise _Corrupt("gzip stream ends early (truncated file)")
                return
            while data:
                try:
                    out = dec.decompress(data, size)
                except _INFLATE_ERRORS as exc:
                    raise _Corrupt(f"not a valid gzip stream ({exc})") from exc
                started = True
                if out:
                    yield out
                if dec.eof:  # a new member may follow (concatenated gzip)
                    data = dec.unused_data
                    dec = isal_zlib.decompressobj(wbits=31)
                    started = bool(data)
                else:
                    data = dec.unconsumed_tail


class _Corrupt(Exception):
    pass


def read_blocks(path: Path, file_idx: int, chunk_bytes: int, block_bytes: int | None = None) -> Iterator[Block]:
    """Blocks of about ``block_bytes`` (default and at most ``chunk_bytes``) of complete lines, in order,
    with their line numbers; a line longer than ``chunk_bytes`` is one ``line_too_long`` block. One copy
    per block: the decompressed pieces since the last cut are joined once, up to the last newline."""
    block_bytes = min(block_bytes or chunk_bytes, chunk_bytes)
    held: list[bytes] = []  # pieces since the last cut (they start a line)
    size = 0
    last_nl = (-1, -1)  # (piece in held, offset) of the last newline in held
    line_no = 1
    long_len = -1  # >= 0 while skipping the rest of a too-long line
    long_prefix = b""
    pieces = _pieces(path, block_bytes)
    while True:
        try:
            piece = next(pieces, None)
        except _Corrupt as exc:
            tail = long_prefix if long_len >= 0 else b"".join(held)
            cut = tail.rfind(b"\n") if long_len < 0 else -1
            if cut >= 0:  # the complete lines before the damage are ordinary lines
                block = Block(file_idx, line_no, tail[:cut])
                yield block
                line_no += block.n_lines
                tail = tail[cut + 1 :]
            yield Block(file_idx, line_no, tail, special="corrupt_gzip", length=len(tail), error=str(exc))
            return
        if piece is None:
            break
        if long_len >= 0:
            cut = piece.find(b"\n")
            if cut < 0:
                long_len += len(piece)
                continue
            yield Block(file_idx, line_no, long_prefix, special="line_too_long", length=long_len + cut)
            line_no += 1
            long_len = -1
            piece = piece[cut + 1 :]
        if (at := piece.rfind(b"\n")) >= 0:
            last_nl = (len(held), at)
        held.append(piece)
        size += len(piece)
        if size < block_bytes:
            continue
        k, cut = last_nl
        if k < 0:  # held is one line so far
            if size > chunk_bytes:  # a line longer than a chunk: keep its head, skip the rest
                long_len, long_prefix = size, b"".join(held)[:4096]
                held, size = [], 0
            continue
        block = Block(file_idx, line_no, b"".join([*held[:k], memoryview(held[k])[:cut]]))
        held = [held[k][cut + 1 :], *held[k + 1 :]]
        size, last_nl = sum(map(len, held)), (-1, -1)
        yield block
        line_no += block.n_lines
    if long_len >= 0:
        yield Block(file_idx, line_no, long_prefix, special="line_too_long", length=long_len)
    elif size:
        data = b"".join(held)
        yield Block(file_idx, line_no, data[:-1] if data.endswith(b"\n") else data)


# --------------------------------------------------------------------------- pass A: parse and spill
@dataclass
class BlockResult:
    """What the parent needs back from one parsed block."""

    file_idx: int
    lines: int
    counts: dict[str, int]
    quarantine: pa.Table
    spills: dict[str, tuple[str, dict[int, int]]] = field(default_factory=dict)  # event -> (path, bucket -> rg)
    error: str | None = None


def _buckets_of(ids: pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Partition of each event id among ``n`` (:func:`~eliverec.data.partition.sampled_partition`: the
    partition only groups an id's copies for deduplication, the output does not depend on it)."""
    return sampled_partition(ids, n)


def write_partitioned(table: pa.Table, part: np.ndarray, path: Path) -> dict[int, int]:
    """Spill ``table`` with one record batch per partition value; returns partition -> batch.

    Spills are uncompressed Arrow IPC files: read back memory-mapped (no copy, no decoding), several
    times cheaper than lz4 IPC and far cheaper than parquet; they live only in the staging folder.
    """
    small = part.astype(np.uint16) if len(part) and part.max() < 1 << 16 else part
    order = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    sorted_part = part[order]
    table = table.take(pa.array(order))
    starts = np.flatnonzero(np.r_[True, sorted_part[1:] != sorted_part[:-1]])
    ends = np.r_[starts[1:], len(sorted_part)]
    groups: dict[int, int] = {}
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema, options=_SPILL_IPC) as w:
        for rg, (a, b) in enumerate(zip(starts, ends, strict=True)):
            w.write_table(table.slice(a, b - a), max_chunksize=max(1, int(b - a)))
            groups[int(sorted_part[a])] = rg
    return groups


def _parse_block(
    block: Block, name: str, rules: Rules, spill: Path, task: int, n_buckets: int, fast: bool = True,
    threads: bool = True,
) -> BlockResult:
    """Worker body: parse one block (``fast``: :func:`~eliverec.data.fastparse.parse_chunk`, on the
    reader's threads when ``threads``; else line by line), spill its accepted rows by event id partition."""
    if block.special:
        raw = block.data
        q = quarantine_rows(name, [raw], [block.first_line], [block.special], [None])
        q = q.set_column(q.schema.get_field_index("raw_bytes"), "raw_bytes", pa.array([block.length], pa.int64()))
        q = q.set_column(
            q.schema.get_field_index("raw_truncated"), "raw_truncated", pa.array([block.length > len(raw)], pa.bool_())
        )
        return BlockResult(block.file_idx, 1, {block.special: 1}, q, error=block.error)
    if fast:
        parsed: ParsedChunk = parse_chunk(block.data, rules, name, block.file_idx, block.first_line, threads)
    else:
        parsed = parse_lines(block.data.split(b"\n"), rules, name, block.file_idx, block.first_line)
    out = BlockResult(block.file_idx, block.n_lines, parsed.counts, parsed.quarantine)
    for event, table in parsed.tables.items():
        path = spill_file(spill, "a", task, event)
        out.spills[event] = (str(path), write_partitioned(table, _buckets_of(table["event_id"], n_buckets), path))
    return out


def _estimate_bytes(files: list[Path]) -> int:
    """Uncompressed size estimate (gzip ISIZE trailer, or 8x the size when it looks wrong)."""
    total = 0
    for p in files:
        size = p.stat().st_size
        if p.name.endswith(".gz") and size >= 18:
            with p.open("rb") as f:
                f.seek(-4, 2)
                isize = struct.unpack("<I", f.read(4))[0]
            total += isize if isize >= size else 8 * size
        else:
            total += size
    return total


@dataclass
class _Accounting:
    files: list[dict[str, Any]]

    def add(self, r: BlockResult) -> None:
        f = self.files[r.file_idx]
        f["lines_read"] += r.lines
        for k, v in r.counts.items():
            f["quarantined"][k] = f["quarantined"].get(k, 0) + v
        if r.error:
            f["error"] = r.error


def _pass_a(
    files: list[Path],
    names: list[str],
    settings: Settings,
    rules: Rules,
    spill: Path,
    n_buckets: int,
    q_path: Path,
    acct: _Accounting,
    tick: Callable[[int], None],
) -> list[BlockResult]:
    """Parse every block (in parallel when ``ingest.workers > 1``), write the quarantine in order.

    The chunk parser runs on threads (its work is in pyarrow and numpy, which release the GIL: no
    process start-up, no copy of the blocks); the line-by-line parser (orjson, Python per line) on
    processes.
    """
    results: list[BlockResult] = []
    workers = settings.ingest.workers
    pool: Executor | None = None
    if workers > 1 and settings.ingest.fast_parse:
        pool = ThreadPoolExecutor(workers)
    elif workers > 1 and _estimate_bytes(files) > settings.ingest.chunk_bytes:
        import multiprocessing

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[Future[BlockResult] | BlockResult] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            item = pending.popleft()
            r = item.result() if isinstance(item, Future) else item
            acct.add(r)
            if r.quarantine.num_rows:
                qw.write(r.quarantine)
            r.quarantine = r.quarantine.slice(0, 0)
            results.append(r)
            tick(r.lines)

    try:
        qw = _FixedGroupWriter(q_path, QUARANTINE_SCHEMA)  # row groups independent of the task size
        try:
            task = 0
            for i, path in enumerate(files):
                for block in read_blocks(path, i, settings.ingest.chunk_bytes, TASK_BYTES):
                    args = (block, names[i], rules, spill, task, n_buckets, settings.ingest.fast_parse, not pool)
                    pending.append(pool.submit(_parse_block, *args) if pool else _parse_block(*args))
                    task += 1
                    drain(2 * workers if pool else 0)
            drain(0)
        finally:
            qw.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


# --------------------------------------------------------------------------- pass B: deduplicate
def _read_parts(parts: list[tuple[str, int]], schema: pa.Schema) -> pa.Table:
    batches = [ipc.open_file(pa.memory_map(p)).get_batch(rg) for p, rg in parts]
    return pa.Table.from_batches(batches, schema=batches[0].schema) if batches else schema.empty_table()


def _rows_equal(table: pa.Table, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows ``a[i]`` and ``b[i]`` of ``table`` hold the same bronze values."""
    same = np.ones(len(a), bool)
    for name in table.column_names:
        if name in LINEAGE:
            continue
        col = table[name]
        if pa.types.is_list(col.type):
            col = pc.binary_join(col, "\x1f")
        x, y = col.take(pa.array(a)), col.take(pa.array(b))
        eq = pc.equal(x, y).fill_null(False)
        both_null = pc.and_(x.is_null(), y.is_null())
        same &= np.asarray(pc.or_(eq, both_null).to_numpy(zero_copy_only=False), bool)
    return same


def _dedup_bucket(tables: dict[str, pa.Table], n_files: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Keep masks per event type (first occurrence of each event id) and per-file counts.

    Returns ``(keep, counts)``, counts of shape (3, n_files): accepted, duplicates, conflicting.
    """
    events = [e for e in tables if tables[e].num_rows]
    counts = np.zeros((3, n_files), np.int64)
    if not events:
        return {}, counts
    sizes = [tables[e].num_rows for e in events]
    keys = pa.table(
        {
            "event_id": pa.concat_arrays([tables[e]["event_id"].combine_chunks() for e in events]),
            "_file": pa.concat_arrays([tables[e]["_file"].combine_chunks() for e in events]),
            "_line": pa.concat_arrays([tables[e]["_line"].combine_chunks() for e in events]),
        }
    )
    # ids as integer codes (one hash pass); the rows of an id seen more than once then go through one
    # integer sort by (id, file, line): in read order, its first occurrence first (no string comparisons)
    codes = keys["event_id"].combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)
    repeated = np.bincount(codes)[codes] > 1
    keep_all = ~repeated
    cand = np.flatnonzero(repeated)
    line = keys["_file"].to_numpy()[cand].astype(np.int64) << 40 | keys["_line"].to_numpy()[cand]
    order = cand[np.lexsort((line, codes[cand]))]
    sorted_codes = codes[order]
    first = np.ones(len(order), bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    keep_all[order[first]] = True
    run_first = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    ev_of = np.repeat(np.arange(len(events)), sizes)
    offsets = np.r_[0, np.cumsum(sizes)]
    files = keys["_file"].to_numpy()
    dup = order[~first]
    dup_first = run_first[~first]
    conflicting = ev_of[dup] != ev_of[dup_first]
    for k, e in enumerate(events):
        both = (ev_of[dup] == k) & (ev_of[dup_first] == k)
        if both.any():
            same = _rows_equal(tables[e], dup[both] - offsets[k], dup_first[both] - offsets[k])
            conflicting[np.flatnonzero(both)[~same]] = True
    counts[0] = np.bincount(files[keep_all], minlength=n_files)
    counts[1] = np.bincount(files[dup], minlength=n_files)
    counts[2] = np.bincount(files[dup[conflicting]], minlength=n_files)
    keep = {e: keep_all[offsets[k] : offsets[k + 1]] for k, e in enumerate(events)}
    return keep, counts


def _pass_b(
    results: list[BlockResult], rules: Rules, spill: Path, n_buckets: int, n_files: int, workers: int = 1
) -> tuple[dict[str, list[tuple[str, int, int]]], np.ndarray]:
    """Deduplicate one event-id partition at a time (``workers`` partitions at once, on threads: the
    work is in pyarrow and numpy, which release the GIL); spill kept rows by time range."""
    counts = np.zeros((3, n_files), np.int64)
    by_ts: dict[str, list[tuple[str, int, int]]] = {e: [] for e in EVENT_TYPES}
    span = rules.ts_max - rules.ts_min + 1

    def bucket(b: int) -> tuple[dict[str, list[tuple[str, int, int]]], np.ndarray]:
        tables, out = {}, {}
        for e in EVENT_TYPES:
            parts = [(r.spills[e][0], r.spills[e][1][b]) for r in results if e in r.spills and b in r.spills[e][1]]
            if parts:
                tables[e] = _read_parts(parts, bronze_schema(e))
        keep, c = _dedup_bucket(tables, n_files)
        for e, mask in keep.items():
            kept = tables[e] if mask.all() else tables[e].filter(pa.array(mask))
            if not kept.num_rows:
                continue
            ts = kept["ts"].to_numpy()
            part = np.clip((ts - rules.ts_min) * n_buckets // span, 0, n_buckets - 1)
            path = spill_file(spill, "b", b, e)
            out[e] = [(str(path), rg, t) for t, rg in write_partitioned(kept, part, path).items()]
        return out, c

    for out, c in _threads(bucket, range(n_buckets), workers):  # in partition order: same lists every run
        counts += c
        for e, parts in out.items():
            by_ts[e] += parts
    return by_ts, counts


def _threads(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(fn, items)``, on ``workers`` threads when more than one (results in ``items`` order)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(fn, items)


# --------------------------------------------------------------------------- pass C: sort and write
class _FixedGroupWriter:
    """Parquet writer whose row groups always hold ``ROW_GROUP_ROWS`` rows (the last fewer), each
    written from one contiguous Arrow chunk per column: the writer's pages and its fallback from
    dictionary to plain encoding follow the input's chunks, so the file's bytes then depend on the
    rows alone, not on how many tables (tasks, partitions, time ranges) they arrived in."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        dictionary = [c for c in schema.names if c not in _NO_DICTIONARY]
        self.writer = pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=dictionary)
        self.schema = schema
        self.buf: list[pa.Table] = []
        self.rows = 0  # buffered
        self.total = 0  # written or buffered

    def write(self, table: pa.Table) -> None:
        self.buf.append(table)
        self.rows += table.num_rows
        self.total += table.num_rows
        if self.rows >= ROW_GROUP_ROWS:
            whole = pa.concat_tables(self.buf)
            n_full = (whole.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
            for start in range(0, n_full, ROW_GROUP_ROWS):
                self._write(whole.slice(start, ROW_GROUP_ROWS))
            rest = whole.slice(n_full)
            self.buf, self.rows = [rest], rest.num_rows

    def _write(self, group: pa.Table) -> None:
        if any(c.num_chunks > 1 for c in group.columns):
            group = group.combine_chunks()
        self.writer.write_table(group, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.rows:
            self._write(pa.concat_tables(self.buf))
        self.writer.close()


def _pass_c(by_ts: dict[str, list[tuple[str, int, int]]], n_buckets: int, out: Path, workers: int = 1
            ) -> dict[str, int]:
    """Sort each time range by (ts, event_id) and append it to the event's bronze table (``workers``
    event types at once, on threads)."""

    def write(e: str) -> int:
        schema = bronze_schema(e)
        w = _FixedGroupWriter(table_file(out, e), schema)
        for t in range(n_buckets):
            parts = [(p, rg) for p, rg, tb in by_ts[e] if tb == t]
            if not parts:
                continue
            table = _read_parts(parts, schema)
            table = table.take(pc.sort_indices(table, [("ts", "ascending"), ("event_id", "ascending")]))
            w.write(table.select(schema.names).cast(schema))
        w.close()
        return w.total

    return dict(zip(EVENT_TYPES, _threads(write, EVENT_TYPES, workers), strict=True))


# --------------------------------------------------------------------------- dimensions
def copy_dimensions(settings: Settings, date: str, out: Path) -> dict[str, int]:
    """Type the day's dimension snapshots per :data:`DIMENSIONS`, sort by id, write to ``out``."""
    rows = {}
    for name, schema in DIMENSIONS.items():
        path = settings.layout.raw_table(date, name)
        try:
            table = pq.read_table(path)
        except FileNotFoundError as exc:
            raise DataError(f"{path}: dimension snapshot missing (every raw day needs {name}.parquet)") from exc
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{path}: cannot read the dimension snapshot ({exc})") from exc
        missing = [c for c in schema.names if c not in table.column_names]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(schema.names)})")
        try:
            table = table.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"{path}: a column does not have the contract's type ({exc})") from exc
        table = table.take(pc.sort_indices(table, [(schema.names[0], "ascending")]))
        pq.write_table(table, table_file(out, name), compression="zstd", row_group_size=ROW_GROUP_ROWS)
        rows[name] = table.num_rows
    return rows


# --------------------------------------------------------------------------- the stage
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


def _n_buckets(day_bytes: int, chunk_bytes: int, workers: int) -> int:
    """Dedup partitions and time ranges: one per ``chunk_bytes`` of input (memory), rounded up to a
    multiple of ``workers`` so that the threads of passes B and C finish together (bronze bytes do
    not depend on it)."""
    need = max(1, math.ceil(day_bytes / chunk_bytes))
    return need if need == 1 else workers * math.ceil(need / workers)


def ingest_day(settings: Settings, date: str, progress: bool = False) -> dict[str, Any]:
    """Ingest one day's raw logs into bronze and quarantine; returns the manifest.

    Raises :class:`~eliverec.errors.DataError` when the day has no raw files or a file cannot be
    opened, and :class:`IngestFailed` when the quarantine rate exceeds
    ``ingest.max_quarantine_rate``. See the module docstring for the outputs.
    """
    start = day_start_ms(date)
    tol = settings.ingest.ts_tolerance_ms
    rules = Rules(settings.ingest.max_id_len, start - tol, start + DAY_MS - 1 + tol, settings.ingest.chunk_bytes)
    files = event_files(settings, date)
    names = [p.relative_to(settings.data_dir).as_posix() for p in files]
    n_buckets = _n_buckets(_estimate_bytes(files), settings.ingest.chunk_bytes, settings.ingest.workers)
    acct = _Accounting(
        [
            {"file": n, "bytes": p.stat().st_size, "lines_read": 0, "accepted": 0, "quarantined": {}, "duplicates": 0}
            | {"duplicates_conflicting": 0, "error": None}
            for n, p in zip(names, files, strict=True)
        ]
    )
    with staging(settings.data_dir, f"ingest-{date}") as stage, _progress(progress, files) as tick:
        spill, bronze, quarantine = ingest_stage(stage)
        for d in (spill, bronze, quarantine):
            d.mkdir()
        results = _pass_a(
            files, names, settings, rules, spill, n_buckets, table_file(quarantine, QUARANTINE_TABLE), acct, tick
        )
        workers = settings.ingest.workers
        by_ts, counts = _pass_b(results, rules, spill, n_buckets, len(files), workers)
        tables = _pass_c(by_ts, n_buckets, bronze, workers)
        dims = copy_dimensions(settings, date, bronze)
        manifest = _manifest(settings, date, acct, counts, tables, dims, bronze)
        blob = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
        write_bytes_atomic(quarantine / MANIFEST, blob)
        publish_dir(quarantine, quarantine_dir(settings, date))
        if manifest["status"] != "ok":
            raise IngestFailed(_failure_message(settings, date, manifest))
        write_bytes_atomic(bronze / MANIFEST, blob)
        publish_dir(bronze, bronze_dir(settings, date))
    return manifest


def _manifest(
    settings: Settings,
    date: str,
    acct: _Accounting,
    counts: np.ndarray,
    tables: dict[str, int],
    dims: dict[str, int],
    bronze: Path,
) -> dict[str, Any]:
    files = acct.files
    for i, f in enumerate(files):
        f["accepted"], f["duplicates"], f["duplicates_conflicting"] = (int(x) for x in counts[:, i])
        f["quarantined"] = {r: f["quarantined"][r] for r in REASONS if r in f["quarantined"]}
        q = sum(f["quarantined"].values())
        if f["accepted"] + q + f["duplicates"] != f["lines_read"]:
            raise RuntimeError(f"accounting broken for {f['file']}: {f}")  # a bug, never bad input
    lines = sum(f["lines_read"] for f in files)
    quarantined = sum(sum(f["quarantined"].values()) for f in files)
    by_reason = {r: sum(f["quarantined"].get(r, 0) for f in files) for r in REASONS}
    rate = quarantined / lines if lines else 0.0
    out_tables = {}
    for name in (*EVENT_TYPES, *DIMENSIONS):
        path = table_file(bronze, name)
        out_tables[name] = {"rows": tables.get(name, dims.get(name)), "sha256": _sha256(path)}
    content = hashlib.sha256("".join(f"{k}:{v['sha256']}\n" for k, v in out_tables.items()).encode()).hexdigest()
    return {
        "date": date,
        "status": "ok" if rate <= settings.ingest.max_quarantine_rate else "failed",
        "rules": {
            "ts_tolerance_ms": settings.ingest.ts_tolerance_ms,
            "max_id_len": settings.ingest.max_id_len,
            "max_line_bytes": settings.ingest.chunk_bytes,
        },
        "totals": {
            "files": len(files),
            "lines_read": lines,
            "accepted": sum(f["accepted"] for f in files),
            "quarantined": quarantined,
            "duplicates": sum(f["duplicates"] for f in files),
            "duplicates_conflicting": sum(f["duplicates_conflicting"] for f in files),
            "quarantined_by_reason": {r: n for r, n in by_reason.items() if n},
        },
        "quarantine_rate": round(rate, 8),
        "max_quarantine_rate": settings.ingest.max_quarantine_rate,
        "files": files,
        "tables": out_tables,
        "content_hash": content,
    }


def _failure_message(settings: Settings, date: str, m: dict[str, Any]) -> str:
    top = sorted(m["totals"]["quarantined_by_reason"].items(), key=lambda kv: -kv[1])[:3]
    reasons = ", ".join(f"{r} {n}" for r, n in top)
    return (
        f"ingest {date}: {m['totals']['quarantined']} of {m['totals']['lines_read']} lines quarantined "
        f"({m['quarantine_rate']:.2%} > ingest.max_quarantine_rate {m['max_quarantine_rate']:.2%}; top reasons: "
        f"{reasons}). Bronze for {date} was not updated. Inspect {settings.layout.quarantine_table(date)}, "
        "fix the producer, or raise the threshold with --set ingest.max_quarantine_rate=..."
    )


class _progress:
    """A rich progress bar over lines read (a no-op when disabled)."""

    def __init__(self, enabled: bool, files: list[Path]) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.bar = Progress(SpinnerColumn(), TextColumn("ingest: {task.completed:,} lines"), TimeElapsedColumn())
        self.bar.start()
        task = self.bar.add_task("ingest", total=None)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

"""The service's raw log: served impressions and received feedback, in the raw-log contract.

Rows go to ``<data_dir>/raw/<date of ts>/events-serving-<instance>.jsonl`` (``<instance>`` is
host, process id and start time, so replicas and restarts never share a file), which the nightly
ingestion reads like any collector's file (it globs ``events-*.jsonl[.gz]``). Requests only
append to an in-memory queue; a writer thread drains it every ``serving.log_flush_ms`` with whole
lines, flushes and fsyncs, so a reader never sees half a record from a finished write and a crash
loses at most one flush interval. :meth:`ServingLog.flush` drains synchronously (admin endpoint,
shutdown).

I/O errors never kill the writer and never drop rows: a failed write puts its rows back at the
head of the queue and is retried every interval; after ``retries`` failures in a row the log is
unhealthy (``/healthz`` answers 503 and ``/events`` refuses with 503) until a write succeeds
again (at least once: a write that failed half-way may repeat rows, which ingestion deduplicates
by ``event_id``). The queue holds at most ``max_pending`` rows: :meth:`ServingLog.write` refuses more
(:class:`LogUnavailable`) instead of growing without bound. Files of dates not written in the
last flush are closed. :meth:`ServingLog.close` retries what is left and reports (log line,
return value) any row it could not write.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from eliverec.errors import EliverecError
from eliverec.layout import partition, serving_log_name

log = logging.getLogger(__name__)


def instance_name() -> str:
    """``<host>-<pid>-<start ms>``: unique per process."""
    host = "".join(ch if ch.isalnum() else "_" for ch in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{int(time.time() * 1000)}"


def date_of(ts_ms: int) -> str:
    """UTC date of epoch milliseconds.

    >>> date_of(0)
    '1970-01-01'
    """
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).date().isoformat()


class LogUnavailable(EliverecError):
    """The served log cannot take more rows now (writes failing, or the queue is full)."""


class ServingLog:
    """Append-only JSON-lines writer partitioned by the rows' dates (see module docstring)."""

    def __init__(self, raw_dir: Path, flush_ms: int, instance: str | None = None, retries: int = 3,
                 max_pending: int = 1_000_000) -> None:
        self.raw_dir = Path(raw_dir)
        self.instance = instance or instance_name()
        self.flush_s = flush_ms / 1000.0
        self.retries, self.max_pending = int(retries), int(max_pending)
        self._pending: deque[Mapping[str, Any]] = deque()
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._files: dict[str, BinaryIO] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="serving-log", daemon=True)
        self.written = 0
        self.failures = 0  # failed writes in a row
        self.last_error_id: str | None = None
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """False after ``retries`` failed writes in a row, until a write succeeds."""
        return self.failures < self.retries

    @property
    def pending(self) -> int:
        return len(self._pending)

    def path(self, date: str) -> Path:
        """The file of one date."""
        return partition(self.raw_dir, date) / serving_log_name(self.instance)

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows (each has ``ts``); cheap enough for the request path. Raises :class:`LogUnavailable`
        (nothing queued) when the queue would pass ``max_pending``."""
        rows = list(rows)
        with self._lock:
            if len(self._pending) + len(rows) > self.max_pending:
                raise LogUnavailable(f"the served log under {self.raw_dir} holds {len(self._pending)} unwritten rows "
                                     f"(serving.log_max_pending {self.max_pending}); see /healthz and the log")
            self._pending.extend(rows)

    def flush(self) -> int:
        """Write everything queued now; returns the rows written (0 after a failed write: rows stay queued)."""
        with self._lock:
            rows, self._pending = list(self._pending), deque()
        if not rows:
            return 0
        by_date: dict[str, list[bytes]] = {}
        for r in rows:
            by_date.setdefault(date_of(int(r["ts"])), []).append(orjson.dumps(r))
        with self._io_lock:
            try:
                self._write(by_date)
            except OSError as exc:
                self._failed(rows, exc)
                return 0
            self.failures = 0
            self.written += len(rows)
        return len(rows)

    def _write(self, by_date: dict[str, list[bytes]]) -> None:
        for date in [d for d in self._files if d not in by_date]:  # dates no longer written: close
            self._files.pop(date).close()
        for date, lines in by_date.items():
            fh = self._files.get(date)
            if fh is None:
                fh = self._files[date] = self._open(self.path(date))
            fh.write(b"\n".join(lines) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _open(path: Path) -> BinaryIO:
        """Append handle; a line cut by an earlier failed write is ended first, so it stays one bad line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "ab")  # noqa: SIM115 - closed in close() or after a failure
        if fh.tell() > 0:
            with open(path, "rb") as tail:
                tail.seek(-1, os.SEEK_END)
                if tail.read(1) != b"\n":
                    fh.write(b"\n")
        return fh

    def _failed(self, rows: list[Mapping[str, Any]], exc: OSError) -> None:
        """Rows back at the head of the queue (order kept), files dropped so the retry reopens them."""
        with self._lock:
            self._pending.extendleft(reversed(rows))
        for fh in self._files.values():
            with contextlib.suppress(OSError):  # the buffered part goes with the handle; its rows are queued
                fh.close()
        self._files.clear()
        self.failures += 1
        self.last_error_id = secrets.token_hex(6)
        log.error("served log write under %s failed (%d in a row, %d rows kept queued; error id %s): %s",
                  self.raw_dir, self.failures, len(rows), self.last_error_id, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self, attempts: int | None = None) -> int:
        """Stop the writer, write what is left (``attempts`` tries, default ``retries``) and close the files.

        Returns the rows that could not be written (0 normally); they are named in an error log line.
        """
        self._stop.set()
        self._thread.join(timeout=5)
        for attempt in range(attempts or self.retries):
            if self.flush() or not self._pending:
                break
            time.sleep(self.flush_s * (attempt + 1))
        with self._io_lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()
        if self._pending:
            log.error("served log: %d rows could not be written under %s at shutdown (error id %s)",
                      len(self._pending), self.raw_dir, self.last_error_id)
        return len(self._pending)

"""The service's raw log: served impressions and received feedback, in the raw-log contract.

Rows go to ``<data_dir>/raw/<date of ts>/events-serving-<instance>.jsonl`` (``<instance>`` is
host, process id and start time, so replicas and restarts never share a file), which the nightly
ingestion reads like any collector's file (it globs ``events-*.jsonl[.gz]``). Requests only
append to an in-memory queue; a writer thread drains it every ``serving.log_flush_ms`` with whole
lines, flushes and fsyncs, so a reader never sees half a record from a finished write and a crash
loses at most one flush interval. :meth:`ServingLog.flush` drains synchronously (admin endpoint,
shutdown).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson


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


class ServingLog:
    """Append-only JSON-lines writer partitioned by the rows' dates (see module docstring)."""

    def __init__(self, raw_dir: Path, flush_ms: int, instance: str | None = None) -> None:
        self.raw_dir = Path(raw_dir)
        self.instance = instance or instance_name()
        self.flush_s = flush_ms / 1000.0
        self._pending: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._files: dict[str, BinaryIO] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="serving-log", daemon=True)
        self.written = 0
        self._thread.start()

    def path(self, date: str) -> Path:
        """The file of one date."""
        return self.raw_dir / date / f"events-serving-{self.instance}.jsonl"

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows (each has ``ts``); cheap enough for the request path."""
        with self._lock:
            self._pending.extend(rows)

    def flush(self) -> int:
        """Write everything queued now; returns the rows written."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        by_date: dict[str, list[bytes]] = {}
        for r in rows:
            by_date.setdefault(date_of(int(r["ts"])), []).append(orjson.dumps(r))
        with self._io_lock:
            for date, lines in by_date.items():
                fh = self._files.get(date)
                if fh is None:
                    self.path(date).parent.mkdir(parents=True, exist_ok=True)
                    fh = self._files[date] = open(self.path(date), "ab")  # noqa: SIM115 - closed in close()
                fh.write(b"\n".join(lines) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            self.written += len(rows)
        return len(rows)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        """Stop the writer, write what is left and close the files."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        with self._io_lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()

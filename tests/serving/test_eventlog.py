"""The served log under I/O errors: a full disk (``/dev/full``, which fails even for root, unlike a
read-only folder), retries, health, refusal instead of loss, recovery, old files closed, clean shutdown."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from eliverec import registry
from eliverec.serving.eventlog import LogUnavailable, ServingLog, date_of
from eliverec.world.world import DAY_MS, date_ms
from tests.serving.helpers import TinyWorld, register_untrained, running_service

FULL = Path("/dev/full")
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full to simulate a full disk")
DAY = "2026-09-05"
PRODUCER = "eventlog-producer-token"


def _rows(n: int, day: str = DAY, tag: str = "e") -> list[dict]:
    return [{"event": "product_click", "event_id": f"{tag}{i}", "ts": date_ms(day) + i, "user_id": "u1",
             "product_id": "p1"} for i in range(n)]


def _wait(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _ids(path: Path) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in path.read_bytes().splitlines() if line.strip()]


def _fill_disk(log: ServingLog, day: str) -> Path:
    path = log.path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(FULL)
    return path


def test_a_full_disk_keeps_rows_queued_marks_unhealthy_then_recovers(tmp_path: Path) -> None:
    log = ServingLog(tmp_path / "raw", flush_ms=10, retries=2)
    path = _fill_disk(log, DAY)
    log.write(_rows(50))
    _wait(lambda: not log.healthy)
    assert log.pending == 50 and log.written == 0 and log.last_error_id and log._thread.is_alive()
    path.unlink()  # space again
    _wait(lambda: log.healthy and log.written == 50)
    assert _ids(path) == [f"e{i}" for i in range(50)]  # every row, once, in order
    assert log.close() == 0


def test_the_queue_is_bounded_and_refuses_instead_of_growing(tmp_path: Path) -> None:
    log = ServingLog(tmp_path / "raw", flush_ms=10, retries=1, max_pending=30)
    _fill_disk(log, DAY)
    log.write(_rows(20))
    with pytest.raises(LogUnavailable, match="log_max_pending"):
        log.write(_rows(20, tag="x"))
    assert log.pending == 20
    assert log.close(attempts=1) == 20  # could not be written: reported, not silently dropped


def test_old_date_files_are_closed_and_shutdown_writes_everything(tmp_path: Path) -> None:
    log = ServingLog(tmp_path / "raw", flush_ms=60_000)  # the thread never flushes by itself here
    later = date_of(date_ms(DAY) + DAY_MS)
    log.write(_rows(3))
    log.flush()
    log.write(_rows(4, later, "n"))
    log.flush()
    assert list(log._files) == [later]
    log.write(_rows(5, later, "z"))
    assert log.close() == 0 and not log._files
    assert _ids(log.path(later)) == [f"n{i}" for i in range(4)] + [f"z{i}" for i in range(5)]


def test_a_line_cut_by_a_failed_write_does_not_swallow_the_next_row(tmp_path: Path) -> None:
    log = ServingLog(tmp_path / "raw", flush_ms=60_000)
    path = log.path(DAY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"event": "product_cli')  # a write cut by a crash or a full disk
    log.write(_rows(2))
    log.close()
    assert path.read_bytes().splitlines()[1:] == [orjson.dumps(r) for r in _rows(2)]


def test_the_service_answers_503_while_the_log_fails_and_recovers(world: TinyWorld, tmp_path: Path) -> None:
    s = world.settings(tmp_path, f"serving.producer_token={PRODUCER}", "serving.log_flush_ms=20",
                       "serving.log_retries=2")
    registry.bootstrap_champion(s, register_untrained(s, seed=0), "first champion")
    auth = {"Authorization": f"Bearer {PRODUCER}"}
    with running_service(s) as run:
        log = run.service.log
        path = _fill_disk(log, DAY)
        assert httpx.post(f"{run.url}/events", json={"events": _rows(5)}, headers=auth).status_code == 200
        _wait(lambda: not log.healthy)
        health = httpx.get(f"{run.url}/healthz")
        assert health.status_code == 503 and health.json()["log"]["healthy"] is False
        refused = httpx.post(f"{run.url}/events", json={"events": _rows(3, tag="r")}, headers=auth)
        assert refused.status_code == 503 and "nothing was applied" in refused.text
        assert 'eliverec_events_rejected_total{reason="log_unavailable"} 3.0' in httpx.get(f"{run.url}/metrics").text
        path.unlink()
        _wait(lambda: log.healthy and log.pending == 0)
        assert httpx.get(f"{run.url}/healthz").status_code == 200
        assert httpx.post(f"{run.url}/events", json={"events": _rows(2, tag="after")}, headers=auth).status_code == 200
    assert _ids(path) == [f"e{i}" for i in range(5)] + ["after0", "after1"]  # shutdown wrote the rest

"""Crash leftovers and concurrency of the atomic stage helpers: stale staging folders, the per-stage
lock (held by a real second process, released by kill -9), fsync before every rename."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eliverec.data import atomic

TAG = "ingest-2026-09-01"


def _holder(root: Path, tag: str) -> subprocess.Popen:
    """A second process that holds the stage lock until killed."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom eliverec.data.atomic import stage_lock\n"
            "with stage_lock(Path(sys.argv[1]), sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), tag], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_staging_removes_what_a_killed_run_of_the_same_stage_left(tmp_path: Path) -> None:
    stale = tmp_path / ".staging" / f"{TAG}-deadbeef0000"
    other = tmp_path / ".staging" / "ingest-2026-09-02-deadbeef0000"
    for d in (stale, other):
        (d / "bronze").mkdir(parents=True)
    with atomic.staging(tmp_path, TAG) as stage:
        assert stage.is_dir() and not stale.exists()
    assert not stage.exists() and other.is_dir()  # another day's stage is not ours to clean


def test_a_second_run_of_a_stage_waits_then_fails_and_kill_9_releases_the_lock(tmp_path: Path) -> None:
    proc = _holder(tmp_path, TAG)
    try:
        with pytest.raises(atomic.StageBusy, match=f"{TAG}.lock"), atomic.stage_lock(tmp_path, TAG, wait_s=0.2):
            pass
        with atomic.stage_lock(tmp_path, "features", wait_s=0.2):  # other stages are free
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with atomic.staging(tmp_path, TAG) as stage:  # the dead holder's lock is gone
        assert stage.is_dir()


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced from now on (the real fsync still runs)."""
    synced: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return synced


def test_everything_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _record_fsyncs(monkeypatch)
    built = tmp_path / ".staging" / "x" / "bronze"
    (built / "sub").mkdir(parents=True)
    (built / "a.parquet").write_bytes(b"a")
    (built / "sub" / "b.parquet").write_bytes(b"b")
    final = tmp_path / "bronze" / "2026-09-01"
    atomic.publish_dir(built, final)
    before = {str(built / "a.parquet"), str(built / "sub" / "b.parquet"), str(built / "sub"), str(built)}
    assert before <= set(synced) and synced[-1] == str(final.parent)
    synced.clear()
    atomic.write_bytes_atomic(final / "_manifest.json", b"{}")
    assert synced[-1] == str(final) and any(".tmp-" in p for p in synced)
    assert (final / "a.parquet").read_bytes() == b"a"


def test_training_results_are_durable_before_they_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eliverec.pipeline import write_result

    synced = _record_fsyncs(monkeypatch)
    path = write_result(tmp_path / "reports" / "train.json", {"auc": 0.5})
    assert any(".tmp-" in p for p in synced) and synced[-1] == str(path.parent)
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.json"]

"""Atomic publication of stage outputs: build in a staging folder, then rename into place.

A crash (or an exception) before :func:`publish_dir` leaves the previous output untouched and
removes the staging folder; :func:`publish_dir` swaps whole folders with ``os.replace`` so a
reader sees either the old folder or the new one.

Crash safety: :func:`staging` holds a per-stage lock in the data root
(``<root>/.locks/<tag>.lock``, an OS file lock that a killed process releases) for the whole
stage, so two runs of one stage never interleave, and it removes the staging folders a killed
run of the same stage left behind. Files and folders are fsynced before each rename and the
parent folder after it, so a power cut never publishes a folder whose contents are not on disk.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eliverec.errors import EliverecError
from eliverec.layout import DataLayout

LOCK_WAIT_S = 60.0  # a second run of the same stage waits this long for the first, then fails


class StageBusy(EliverecError):
    """Another process runs the same stage on the same data root."""


def fsync_path(path: Path) -> None:
    """fsync one file or folder (a folder's fsync makes its entries' names durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder, deepest first, ``root`` last."""
    folders = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        folders += [Path(dirpath) / d for d in dirnames]
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_path(folder)


@contextmanager
def stage_lock(root: Path, tag: str, wait_s: float = LOCK_WAIT_S) -> Iterator[Path]:
    """Hold ``<root>/.locks/<tag>.lock`` (raises :class:`StageBusy` after ``wait_s``)."""
    from filelock import FileLock, Timeout

    path = DataLayout(root).locks() / f"{tag}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=wait_s, is_singleton=False)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StageBusy(f"another run holds {path} ({tag}) for more than {wait_s:.0f} s: wait for it to finish "
                        "(the lock goes with its process, even after kill -9) and rerun") from exc
    try:
        yield path
    finally:
        lock.release()


@contextmanager
def staging(root: Path, tag: str) -> Iterator[Path]:
    """A fresh folder ``<root>/.staging/<tag>-<random>`` removed on exit, whatever happens.

    The stage's lock is held throughout; staging folders of ``tag`` left by a killed run are removed
    first. It lives under ``root`` so that the final rename stays on one filesystem.
    """
    with stage_lock(root, tag):
        for stale in DataLayout(root).staging().glob(f"{tag}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        path = DataLayout(root).staging() / f"{tag}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def publish_dir(built: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``built`` (both on one filesystem), contents durable first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.old-*"):  # a swap a killed run did not finish
        shutil.rmtree(stale, ignore_errors=True)
    fsync_tree(built)
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(built, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    fsync_path(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and a rename (then fsync the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)

"""Atomic publication of stage outputs: build in a staging folder, then rename into place.

A crash (or an exception) before :func:`publish_dir` leaves the previous output untouched and
removes the staging folder; :func:`publish_dir` swaps whole folders with ``os.replace`` so a
reader sees either the old folder or the new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staging(root: Path, tag: str) -> Iterator[Path]:
    """A fresh folder ``<root>/.staging/<tag>-<random>`` removed on exit, whatever happens.

    It lives under ``root`` so that the final rename stays on one filesystem.
    """
    path = root / ".staging" / f"{tag}-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish_dir(built: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``built`` (both on one filesystem)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(built, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

"""Chaos: ``eliverec ingest --all`` killed with SIGKILL at random points, then rerun, ends with the
same bronze as an uninterrupted run, no staging folders and no half-swapped folders.

Covers ingestion (the stage that publishes through :mod:`eliverec.data.atomic`); features, training
and register have their own resume paths and are not part of this test yet.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PARAMS

pytestmark = pytest.mark.slow
KILL_POINTS = 5


def _ingest(data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "eliverec", "ingest", "--all", "--profile", "tiny",
                             "--params", str(PARAMS), "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(data_dir: Path) -> None:
    proc = _ingest(data_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]


def _bronze(data_dir: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["content_hash"]
            for p in sorted((data_dir / "bronze").glob("*/_manifest.json"))}


def _leftovers(data_dir: Path) -> list[str]:
    staged = list((data_dir / ".staging").glob("*")) if (data_dir / ".staging").exists() else []
    swapped = [p for p in data_dir.rglob(".*.old-*")]
    return [str(p) for p in staged + swapped]


@pytest.fixture(scope="module")
def raw_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eliverec.config import load_settings
    from eliverec.world import simulate

    root = tmp_path_factory.mktemp("chaos") / "data"
    simulate(load_settings("tiny", params=PARAMS, data_dir=root), progress=False)
    return root


def test_ingest_killed_at_random_points_then_rerun_equals_an_uninterrupted_run(raw_world: Path,
                                                                                tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    shutil.copytree(raw_world / "raw", clean / "raw")
    t0 = time.monotonic()
    _finish(clean)
    full_s = time.monotonic() - t0
    expected = _bronze(clean)
    assert expected and not _leftovers(clean)
    rng = np.random.default_rng(15)
    for point in range(KILL_POINTS):
        data = tmp_path / f"killed-{point}"
        shutil.copytree(raw_world / "raw", data / "raw")
        if point % 2:  # half the runs resume over bronze a previous (complete) run published
            shutil.copytree(clean / "bronze", data / "bronze")
        proc = _ingest(data)
        time.sleep(float(rng.uniform(0.1, 0.9)) * full_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _finish(data)
        assert _bronze(data) == expected, f"kill point {point}"
        assert not _leftovers(data), f"kill point {point}: {_leftovers(data)}"

"""Chaos: ``eliverec ingest --all`` and ``eliverec features`` killed with SIGKILL at random points,
then rerun, end with the same bronze and samples as an uninterrupted run, with no staging,
temporary or half-swapped folders left.

Training and register are killed in ``test_kill_training.py``; the kill points' seed is in
``tests/chaos/common.py``.
"""

from __future__ import annotations

import hashlib
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

from tests.chaos.common import KILL_POINTS, SEED, leftovers
from tests.conftest import PARAMS

pytestmark = pytest.mark.slow


STAGES = {"ingest": ["ingest", "--all"], "features": ["features"]}
#: What shows that a stage is writing (the kill lands after it appears, not during interpreter start-up).
WORKING = {"ingest": ".staging/ingest-*", "features": "features/.*.tmp-*"}


def _start(stage: str, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "eliverec", *STAGES[stage], "--profile", "tiny",
                             "--params", str(PARAMS), "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(stage: str, data_dir: Path) -> float:
    t0 = time.monotonic()
    proc = _start(stage, data_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return time.monotonic() - t0


def _outputs(data_dir: Path) -> dict[str, str]:
    """Bronze content hashes per day and a digest of every sample file (tensors, parquet, spec)."""
    out = {p.parent.name: json.loads(p.read_text())["content_hash"]
           for p in sorted((data_dir / "bronze").glob("*/_manifest.json"))}
    for p in sorted((data_dir / "features").rglob("*")) if (data_dir / "features").exists() else []:
        if p.is_file() and p.name not in ("_build.json", "_summary.json"):  # those hold timings
            out[str(p.relative_to(data_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _wait_working(proc: subprocess.Popen, data_dir: Path, stage: str) -> None:
    deadline = time.monotonic() + 300
    while not list(data_dir.glob(WORKING[stage])):
        assert proc.poll() is None and time.monotonic() < deadline, f"{stage} never started writing"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def raw_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eliverec.config import load_settings
    from eliverec.world import simulate

    root = tmp_path_factory.mktemp("chaos") / "data"
    simulate(load_settings("tiny", params=PARAMS, data_dir=root), progress=False)
    return root


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_killed_at_random_points_then_rerun_equals_an_uninterrupted_run(raw_world: Path, tmp_path: Path,
                                                                               stage: str) -> None:
    clean = tmp_path / "clean"
    shutil.copytree(raw_world / "raw", clean / "raw")
    seconds = {s: _finish(s, clean) for s in STAGES}
    expected = _outputs(clean)
    assert expected and not leftovers(clean)
    rng, killed = np.random.default_rng(SEED), 0
    for point in range(KILL_POINTS):
        data = tmp_path / f"killed-{point}"
        shutil.copytree(raw_world / "raw", data / "raw")
        if stage == "features":
            shutil.copytree(clean / "bronze", data / "bronze")
        if point % 2:  # half the runs resume over the outputs a previous complete run published
            shutil.copytree(clean / ("bronze" if stage == "ingest" else "features"),
                            data / ("bronze" if stage == "ingest" else "features"), dirs_exist_ok=True)
        proc = _start(stage, data)
        _wait_working(proc, data, stage)
        time.sleep(float(rng.uniform(0.0, 0.5)) * seconds[stage])
        if proc.poll() is None:  # a run that already ended is still rerun and compared
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        for s in STAGES:
            _finish(s, data)
        assert _outputs(data) == expected, f"{stage} killed at point {point} (CHAOS_SEED={SEED})"
        assert not leftovers(data), f"{stage} killed at point {point} (CHAOS_SEED={SEED}): {leftovers(data)}"
    assert killed >= 1, f"{stage} ended before every kill point (CHAOS_SEED={SEED})"

"""Chaos: training killed with SIGKILL after its first checkpoint and resumed (``--resume``) ends with
the logged network's weights equal to an uninterrupted run's; register killed while it writes to the
registry store and rerun leaves one version of the run, with the uninterrupted run's tags.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.chaos.common import KILL_POINTS, SEED, leftovers
from tests.conftest import PARAMS, tracking_uri

pytestmark = pytest.mark.slow
#: Register's write window is short: more tries, so that at least one kill lands inside it.
REGISTER_KILL_POINTS = 5


def _train(data_dir: Path, *extra: str) -> subprocess.Popen:
    from tests.serving.helpers import VOCAB

    sets = [*VOCAB, f"tracking.uri={tracking_uri(data_dir)}", "train.max_minutes=0", "train.eval_every=0",
            "train.checkpoint_every=10"]
    cmd = [sys.executable, "-m", "eliverec", "train", "--profile", "tiny", "--params", str(PARAMS),
           "--data-dir", str(data_dir), "--run-name", "chaos", *extra]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _weights(data_dir: Path) -> dict[str, torch.Tensor]:
    from eliverec.training.checkpoint import load

    return load(data_dir / "checkpoints" / "chaos" / "network.pt")["state_dict"]


def test_training_killed_after_a_checkpoint_then_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    from tests.serving.helpers import tiny_world

    world = tiny_world()

    def fresh(name: str) -> Path:
        for part in ("bronze", "features"):
            shutil.copytree(world.root / part, tmp_path / name / part)
        return tmp_path / name

    clean = fresh("clean")
    t0 = time.monotonic()
    _, err = (proc := _train(clean)).communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    seconds, expected = time.monotonic() - t0, _weights(clean)
    rng, killed = np.random.default_rng(SEED), 0
    for point in range(KILL_POINTS):
        data = fresh(f"killed-{point}")
        proc = _train(data)
        latest = data / "checkpoints" / "chaos" / "latest.pt"
        deadline = time.monotonic() + 300
        while not latest.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training never checkpointed"
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.1)) * seconds)
        if proc.poll() is None:  # a run that already ended is still resumed and compared
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        _, err = (again := _train(data, "--resume")).communicate(timeout=600)
        assert again.returncode == 0, err[-2000:]
        got = _weights(data)
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected), \
            f"training killed at point {point} (CHAOS_SEED={SEED})"
        assert not leftovers(data), f"training killed at point {point} (CHAOS_SEED={SEED}): {leftovers(data)}"
    assert killed >= 1, f"training ended before every kill point (CHAOS_SEED={SEED})"


def _register(data_dir: Path, result: Path) -> subprocess.Popen:
    from tests.serving.helpers import VOCAB

    cmd = [sys.executable, "-m", "eliverec", "register", "--train-result", str(result), "--profile", "tiny",
           "--params", str(PARAMS), "--data-dir", str(data_dir)]
    for s in [*VOCAB, f"tracking.uri={tracking_uri(data_dir)}"]:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _versions(data_dir: Path) -> list[tuple[str, str, dict[str, str]]]:
    from mlflow import MlflowClient

    from eliverec.config import load_settings

    name = load_settings("tiny", params=PARAMS).tracking.registered_model
    uri = f"sqlite:///{data_dir}/mlflow.db"  # the registry too: a registry URI set in-process by an earlier test
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # (mlflow.set_registry_uri) would win otherwise
    return sorted((mv.version, mv.run_id, dict(mv.tags)) for mv in client.search_model_versions(f"name='{name}'"))


def _first_write(proc: subprocess.Popen, db: Path, before: int) -> float:
    """Wait until the registry store is first written (or the process ends); the time of that moment."""
    deadline = time.monotonic() + 300
    while db.stat().st_mtime_ns == before and proc.poll() is None:
        assert time.monotonic() < deadline, "register never wrote to the registry"
        time.sleep(0.002)
    return time.monotonic()


def test_register_killed_while_writing_then_rerun_leaves_one_version_with_its_tags(tmp_path: Path) -> None:
    from tests.serving.helpers import tiny_world

    world, trained, result = tiny_world(), tmp_path / "trained", tmp_path / "result.json"
    for part in ("bronze", "features"):
        shutil.copytree(world.root / part, trained / part)
    _, err = (proc := _train(trained, "--result-json", str(result))).communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    clean = tmp_path / "clean"
    shutil.copytree(trained, clean)
    proc = _register(clean, result)
    wrote = _first_write(proc, clean / "mlflow.db", (trained / "mlflow.db").stat().st_mtime_ns)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    window, expected = time.monotonic() - wrote, _versions(clean)
    assert len(expected) == 1
    rng, killed = np.random.default_rng(SEED), 0
    for point in range(REGISTER_KILL_POINTS):
        data = tmp_path / f"killed-{point}"
        shutil.copytree(trained, data)
        proc = _register(data, result)
        _first_write(proc, data / "mlflow.db", (trained / "mlflow.db").stat().st_mtime_ns)
        time.sleep(float(rng.uniform(0.0, 0.9)) * window)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        _, err = (again := _register(data, result)).communicate(timeout=300)
        assert again.returncode == 0, err[-2000:]
        assert _versions(data) == expected, f"register killed at point {point} (CHAOS_SEED={SEED})"
    assert killed >= 1, "no kill point landed while register was writing"

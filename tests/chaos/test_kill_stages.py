"""Chaos: ``eliverec ingest --all`` and ``eliverec features`` killed with SIGKILL at random points,
then rerun, end with the same bronze and samples as an uninterrupted run, with no staging,
temporary or half-swapped folders left.

Training is killed after its first checkpoint and resumed (``--resume``): the logged network's
weights equal an uninterrupted run's. Register is killed while it writes to the registry store and
rerun: one version of the run, with the uninterrupted run's tags.
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
import torch

from tests.conftest import PARAMS

pytestmark = pytest.mark.slow
KILL_POINTS = 5


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


def _leftovers(data_dir: Path) -> list[str]:
    staged = list((data_dir / ".staging").glob("*")) if (data_dir / ".staging").exists() else []
    temporary = [p for p in data_dir.rglob(".*") if ".old-" in p.name or ".tmp" in p.name]
    return [str(p) for p in staged + temporary]


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
    assert expected and not _leftovers(clean)
    rng = np.random.default_rng(15)
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
        assert proc.poll() is None, f"{stage} ended before kill point {point}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        for s in STAGES:
            _finish(s, data)
        assert _outputs(data) == expected, f"{stage} killed at point {point}"
        assert not _leftovers(data), f"{stage} killed at point {point}: {_leftovers(data)}"


def _train(data_dir: Path, *extra: str) -> subprocess.Popen:
    from tests.serving.helpers import VOCAB

    sets = [*VOCAB, f"tracking.uri=sqlite:///{data_dir}/mlflow.db", "train.max_minutes=0", "train.eval_every=0",
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
    rng = np.random.default_rng(15)
    for point in range(KILL_POINTS):
        data = fresh(f"killed-{point}")
        proc = _train(data)
        latest = data / "checkpoints" / "chaos" / "latest.pt"
        deadline = time.monotonic() + 300
        while not latest.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training never checkpointed"
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.1)) * seconds)
        assert proc.poll() is None, f"training ended before kill point {point}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _, err = (again := _train(data, "--resume")).communicate(timeout=600)
        assert again.returncode == 0, err[-2000:]
        got = _weights(data)
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected), point
        assert not _leftovers(data), f"training killed at point {point}: {_leftovers(data)}"


def _register(data_dir: Path, result: Path) -> subprocess.Popen:
    from tests.serving.helpers import VOCAB

    cmd = [sys.executable, "-m", "eliverec", "register", "--train-result", str(result), "--profile", "tiny",
           "--params", str(PARAMS), "--data-dir", str(data_dir)]
    for s in [*VOCAB, f"tracking.uri=sqlite:///{data_dir}/mlflow.db"]:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _versions(data_dir: Path) -> list[tuple[str, str, dict[str, str]]]:
    from mlflow import MlflowClient

    from eliverec.config import load_settings

    name = load_settings("tiny", params=PARAMS).tracking.registered_model
    client = MlflowClient(tracking_uri=f"sqlite:///{data_dir}/mlflow.db")
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
    rng, killed = np.random.default_rng(15), 0
    for point in range(KILL_POINTS):
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
        assert _versions(data) == expected, f"register killed at point {point}"
    assert killed >= 1, "no kill point landed while register was writing"

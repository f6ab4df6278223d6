"""`dvc repro` runs the nightly stages on the tiny profile in a temporary copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _dvc(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=900, check=False)


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """(a copy of dvc.yaml and params.yaml on the tiny profile, the environment to run dvc in)."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["tracking"]["uri"] = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    params["profiles"]["tiny"]["train"]["max_steps"] = 30
    params["gate"]["latency_budget_ms"] = 60000  # a loaded CI machine must not decide this pipeline test
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("ELIVEREC_PARAMS", "ELIVEREC_DATA_DIR")}
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return work, env


def test_dvc_repro_simulate_keeps_served_logs(tmp_path: Path) -> None:
    work, env = _project(tmp_path)
    served = work / "data" / "raw" / "2030-01-01" / "events-serving-host-1-2.jsonl"  # real traffic, no simulated day
    served.parent.mkdir(parents=True)
    served.write_bytes(b'{"event": "enter"}\n')
    for args in (["init", "--no-scm", "-q"], ["repro", "simulate"], ["repro", "-f", "simulate"]):
        done = _dvc(work, *args, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert served.read_bytes() == b'{"event": "enter"}\n', f"dvc {' '.join(args)} deleted served logs"


def test_dvc_repro_tiny_then_nothing_to_do(tmp_path: Path) -> None:
    work, env = _project(tmp_path)
    init = _dvc(work, "init", "--no-scm", "-q", env=env)
    assert init.returncode == 0, init.stderr
    first = _dvc(work, "repro", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("simulate", "ingest", "validate", "features", "bootstrap", "train", "evaluate", "register", "gate"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((work / "data" / "metrics" / "evaluate.json").read_text())
    assert 0.0 <= metrics["auc"] <= 1.0 and metrics["rows"] > 0
    gate = json.loads((work / "data" / "metrics" / "gate.json").read_text())
    assert gate["passed"] in (0, 1) and Path(gate["report"]).exists()
    shown = _dvc(work, "metrics", "show", "--json", env=env)
    assert shown.returncode == 0 and "evaluate.json" in shown.stdout
    status = _dvc(work, "status", env=env)
    assert status.returncode == 0 and "up to date" in status.stdout.lower(), status.stdout

"""`dvc repro` runs the nightly stages on the tiny profile in a temporary copy of the project; a change to one
stage's code reruns that stage and what follows it (not the stages before); `dvc plots show` renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tracking_uri

STAGES = ("ingest", "validate", "features", "bootstrap", "train", "evaluate", "register", "gate", "plots")


def _dvc(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=900, check=False)


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """(a copy of dvc.yaml, params.yaml on the tiny profile and the package code, the environment to run dvc in)."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "eliverec", work / "eliverec", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["tracking"]["uri"] = tracking_uri(tmp_path / "mlruns")
    params["profiles"]["tiny"]["train"]["max_steps"] = 30
    params["gate"]["latency_budget_ms"] = 60000  # a loaded CI machine must not decide this pipeline test
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("ELIVEREC_PARAMS", "ELIVEREC_DATA_DIR")}
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return work, env


def _ran(out: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in out}


def test_raw_logs_are_an_input_and_every_stage_depends_on_its_code() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values()
            for kind in ("outs", "metrics", "plots") for o in s.get(kind, [])}
    assert not any(o.startswith("data/raw") for o in outs), "data/raw must stay an input folder"
    assert "data/raw" in stages["ingest"]["deps"]
    for name, stage in stages.items():
        code = [d for d in stage["deps"] if d.startswith("eliverec/")]
        assert code and all((REPO / d).exists() for d in code), f"stage {name}: no (or a missing) code dependency"


@pytest.mark.slow
def test_dvc_repro_tiny_then_code_change_reruns_downstream_only(tmp_path: Path) -> None:
    work, env = _project(tmp_path)
    for args in (["init", "--no-scm", "-q"], ["remote", "add", "-d", "local", str(tmp_path / "remote")]):
        assert _dvc(work, *args, env=env).returncode == 0
    sim = subprocess.run([str(Path(sys.executable).parent / "eliverec"), "simulate", "--profile", "tiny"], cwd=work,
                         env=env, text=True, capture_output=True, timeout=600, check=False)
    assert sim.returncode == 0, sim.stderr[-3000:]
    first = _dvc(work, "repro", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _ran(first.stdout) == set(STAGES)
    metrics = json.loads((work / "data" / "metrics" / "evaluate.json").read_text())
    assert 0.0 <= metrics["auc"] <= 1.0 and metrics["rows"] > 0
    gate = json.loads((work / "data" / "metrics" / "gate.json").read_text())
    assert gate["passed"] in (0, 1) and Path(gate["report"]).exists()
    shown = _dvc(work, "metrics", "show", "--json", env=env)
    assert shown.returncode == 0 and "evaluate.json" in shown.stdout
    status = _dvc(work, "status", env=env)
    assert status.returncode == 0 and "up to date" in status.stdout.lower(), status.stdout
    plots = _dvc(work, "plots", "show", "-o", str(tmp_path / "plots"), env=env)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert plots.returncode == 0 and html.count("vegaEmbed") >= 4, plots.stderr[-2000:]
    assert all(t in html for t in ("loss", "validation AUC", "gate metrics by nightly date", "discoverability by day"))
    pushed = _dvc(work, "push", env=env)
    assert pushed.returncode == 0 and any((tmp_path / "remote").rglob("*")), pushed.stderr[-2000:]

    # a feature module changes: features reruns, ingest and validate do not; its new outputs (the build
    # record changes on every build) make the stages that read them rerun, and so on down the DAG
    module = work / "eliverec" / "features" / "samples.py"
    module.write_text(module.read_text() + "\n# touched\n")
    dry = _dvc(work, "repro", "--dry", env=env)
    assert dry.returncode == 0 and _ran(dry.stdout) == {"features"}, dry.stdout[-3000:]
    assert _dvc(work, "repro", "-s", "features", env=env).returncode == 0
    after = _dvc(work, "status", "--json", env=env)
    assert set(json.loads(after.stdout)) == {"bootstrap", "train"}, after.stdout

"""Two-process torchrun DDP training (gloo on CPU) in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import mlflow
import pytest

from eliverec.training import checkpoint as ckpt
from eliverec.training.launch import child_args, torchrun_command
from tests.training.toy import BUILDER, LOSS, toy_world

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path, rows=600)
    result = tmp_path / "result.json"
    args = child_args(model=None, end_date=dates[-1], resume=False, run_name="ddp", profile="tiny",
                      data_dir=s.data_dir, params=REPO / "params.yaml", result_file=result,
                      overrides=[f"tracking.uri={s.tracking.uri}", "train.lr=0.01", "train.epochs=2",
                                 "train.checkpoint_every=5", "features.train_days=2", "model.dim=8"])
    cmd = torchrun_command(2, [*args, "--builder", BUILDER, "--loss-builder", LOSS])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(result.read_text())
    blob = ckpt.load(Path(res["checkpoint_dir"]) / ckpt.LATEST)
    assert blob["world_size"] == 2
    # each rank sees half the 1080 training rows: 540 / 128 -> 4 full batches per epoch, 2 epochs
    assert res["steps"] == 8 == blob["loop"]["step"]
    mlflow.set_tracking_uri(s.tracking.uri)
    runs = mlflow.search_runs(experiment_names=[s.tracking.experiment], output_format="list")
    assert len(runs) == 1 and runs[0].data.params["dist.world_size"] == "2"  # only rank 0 wrote
    assert runs[0].info.status == "FINISHED" and res["model_uri"]

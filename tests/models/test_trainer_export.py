"""The baselines of issue 14 train through the platform's trainer and export as the pyfunc model.

One trainer run per model on the toy world's planted signal (watch is likely when the target channel
is in the history), each in a different multi-task mode so that single, vanilla and adaptive MTL all
go through the trainer; the logged training loss falls and the exported model scores a test batch.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from eliverec.features.dataset import load_days
from eliverec.training.trainer import train
from tests.training.toy import toy_world

CASES = [("can", "single"), ("can_dual", "vanilla"), ("minet", "adaptive"), ("dasl", "single"),
         ("conet", "vanilla"), ("dtcdr", "adaptive"), ("ddtcdr", "single"), ("eta_dual", "vanilla")]


@pytest.mark.parametrize(("name", "mtl"), CASES)
def test_trains_with_the_trainer_and_exports_as_pyfunc(tmp_path: Path, name: str, mtl: str) -> None:
    s, dates = toy_world(tmp_path, "train.batch_size=32", "train.epochs=2", "train.patience=0",
                         f"model.mtl={mtl}", rows=500)
    res = train(s, model_name=name, end_date=dates[-1])
    assert res.steps >= 48 and res.model_uri
    mlflow.set_tracking_uri(s.tracking.uri)
    losses = [m.value for m in mlflow.MlflowClient().get_metric_history(res.run_id, "loss/rec")]  # the watch BCE
    third = len(losses) // 3
    assert np.isfinite(losses).all() and third >= 5
    assert np.mean(losses[-third:]) < np.mean(losses[:third]), losses  # per-batch losses: compare thirds
    model = mlflow.pyfunc.load_model(res.model_uri)
    inputs = model.metadata.get_input_schema().input_names()
    test = load_days(s.data_dir, [dates[-1]])
    out = model.predict({k: v.numpy() for k, v in test[np.arange(9)].items() if k in inputs})
    assert list(out.columns) == ["watch", "stay_time", "goods_bag", "product_click"] and len(out) == 9
    assert out["watch"].between(0, 1).all() and np.isfinite(out.to_numpy()).all()
    spread = np.ptp(out[["goods_bag", "product_click"]].to_numpy(), axis=0)
    assert (spread == 0).all() if mtl == "single" else (spread > 0).all()  # auxiliary heads only in MTL modes

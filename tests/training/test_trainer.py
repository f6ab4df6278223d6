"""The trainer on a toy model: MLflow record, resume equivalence, early stopping, bad input."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from eliverec.errors import DataError, EliverecError
from eliverec.training import checkpoint as ckpt
from eliverec.training.trainer import train
from tests.training.toy import BUILDER, LOSS, toy_world

TOY = {"builder": BUILDER, "loss_builder": LOSS}


class Killed(RuntimeError):
    """Stands in for a SIGKILL in the middle of an epoch."""


def test_run_records_params_metrics_artifacts_and_a_loadable_model(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path)
    res = train(s, end_date=dates[-1], **TOY)
    assert res.steps > 0 and res.model_uri and res.run_id
    mlflow.set_tracking_uri(s.tracking.uri)
    client = mlflow.MlflowClient()
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.01" and run.data.params["data.end_date"] == dates[-1]
    for key in ("loss/total", "loss/watch", "loss/stay_time", "mtl/goods_bag", "reg/l2", "perf/samples_per_s",
                "perf/data_share", "val/auc", "val/gauc", "val/ndcg_at_10", "val/calibration/ece"):
        assert key in run.data.metrics, key
    steps = [m.step for m in client.get_metric_history(res.run_id, "loss/total")]
    assert steps == sorted(steps) and len(steps) == res.steps // s.train.log_every
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.artifact_location.startswith((tmp_path / "mlruns").as_uri())
    names = {a.path for a in client.list_artifacts(res.run_id, "features")} | {
        a.path for a in client.list_artifacts(res.run_id, "plots")}
    assert {"features/feature_spec.json", "plots/loss_curve.png"} <= names
    model = mlflow.pyfunc.load_model(res.model_uri)
    inputs = model.metadata.get_input_schema().input_names()
    assert "product_seq" in inputs and "watch" not in inputs
    example = model.input_example
    assert len(example["user"]) >= 2
    from eliverec.features.dataset import load_days

    test = load_days(s.data_dir, [dates[-1]])
    batch = {k: v.numpy() for k, v in test[np.arange(7)].items() if k in inputs}
    out = model.predict(batch)
    assert list(out.columns) == ["watch", "stay_time", "goods_bag", "product_click"] and len(out) == 7
    assert out["watch"].between(0, 1).all()
    frame = pd.DataFrame({k: list(v) if v.ndim > 1 else v for k, v in batch.items()})
    pd.testing.assert_frame_equal(model.predict(frame), out)


def _weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return ckpt.load(folder / name)["model"]


@pytest.mark.parametrize("kill_at", [7, 17])
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path: Path, kill_at: int) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false")
    straight = train(s, end_date=dates[-1], run_name="straight", **TOY)

    def kill(step: int) -> None:
        if step == kill_at:
            raise Killed(step)

    with pytest.raises(Killed):
        train(s, end_date=dates[-1], run_name="resumed", after_step=kill, **TOY)
    interrupted = ckpt.load(straight.checkpoint_dir.parent / "resumed" / ckpt.LATEST)
    assert interrupted["loop"]["step"] == kill_at - kill_at % s.train.checkpoint_every
    assert interrupted["loop"]["batch"] > 0 and interrupted["loop"]["step"] < straight.steps
    resumed = train(s, end_date=dates[-1], run_name="resumed", resume=True, **TOY)
    assert resumed.steps == straight.steps
    for name in (ckpt.LATEST, ckpt.BEST):
        a, b = _weights(straight.checkpoint_dir, name), _weights(resumed.checkpoint_dir, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed.metrics["val/auc"] == straight.metrics["val/auc"]
    # the resumed run kept its MLflow run
    assert resumed.run_id == interrupted["loop"]["run_id"]


def test_a_fresh_run_differs_when_the_seed_differs(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.epochs=1")
    a = train(s, end_date=dates[-1], run_name="a", **TOY)
    s2 = s.model_copy(update={"seed": s.seed + 1})
    b = train(s2, end_date=dates[-1], run_name="b", **TOY)
    wa, wb = _weights(a.checkpoint_dir, ckpt.LATEST), _weights(b.checkpoint_dir, ckpt.LATEST)
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_early_stopping_triggers(tmp_path: Path) -> None:
    # min_delta 1.0: no AUC gain can count, so the second validation is "worse" and patience 1 stops.
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.eval_every=3", "train.patience=1",
                         "train.min_delta=1.0", "train.epochs=3")
    res = train(s, end_date=dates[-1], **TOY)
    assert res.stopped_early and res.steps == 6
    assert res.metrics["best_step"] == 3.0 and res.metrics["stopped_early"] == 1.0


def test_max_steps_caps_the_run(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.max_steps=4")
    assert train(s, end_date=dates[-1], **TOY).steps == 4


def test_missing_feature_folder_is_a_clear_error(tmp_path: Path) -> None:
    s, _ = toy_world(tmp_path)
    with pytest.raises(DataError, match=r"features/2026-08-2\d is missing .*eliverec features"):
        train(s, end_date="2026-08-30", **TOY)
    with pytest.raises(DataError, match="bad end date"):
        train(s, end_date="30.08.2026", **TOY)


def test_missing_array_names_the_file(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path)
    (s.data_dir / "features" / dates[0] / "channel_seq.npy").unlink()
    with pytest.raises(DataError, match="channel_seq.npy"):
        train(s, end_date=dates[-1], **TOY)


def test_unknown_model_name_is_a_clear_error(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path)
    with pytest.raises(EliverecError, match="cannot build model 'nope'"):
        train(s, model_name="nope", end_date=dates[-1], **TOY)


def test_missing_model_package_is_a_clear_error(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path)
    with pytest.raises(EliverecError, match="cannot import the model code"):
        train(s, end_date=dates[-1], builder="eliverec.no_such_models:build_model", loss_builder=LOSS)


def test_off_a_terminal_progress_comes_as_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # under pytest the console is not a terminal: no live bar, but a line per validation with the time left
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.eval_every=3", "train.epochs=2")
    res = train(s, end_date=dates[-1], **TOY)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train: ")]
    validations = [ln for ln in lines if "validation AUC" in ln]
    assert res.steps >= 6 and len(validations) >= res.steps // 3
    assert any("epoch 1/2" in ln for ln in validations) and any("epoch 2/2" in ln for ln in validations)
    assert all("time left" in ln and "/2 step " in ln for ln in validations)
    assert "(best " in validations[-1]

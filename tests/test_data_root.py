"""A data root is a whole world: MLflow store, registry audit, reports and workspaces live under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from eliverec.config import load_settings
from tests.conftest import PARAMS
from tests.training.toy import BUILDER, LOSS, tiny_vocab, write_features

TOY = ["train.lr=0.01", "train.epochs=1", "train.log_every=3", "features.train_days=2", "model.dim=8"]


def test_data_dir_from_the_command_line_or_environment_resolves_against_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    given = load_settings("tiny", params=PARAMS, data_dir="mydata")
    monkeypatch.setenv("ELIVEREC_DATA_DIR", "envdata")
    from_env = load_settings("tiny", params=PARAMS)
    assert (given.data_dir, from_env.data_dir) == (tmp_path / "mydata", tmp_path / "envdata")
    for s, root in ((given, tmp_path / "mydata"), (from_env, tmp_path / "envdata")):
        assert s.tracking.uri == f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        assert Path(s.monitor.workspace) == root / "monitoring" / "workspace"
        assert s.layout.prefect_results().is_relative_to(root) and s.layout.audit_log().is_relative_to(root)


def test_tracking_uri_and_workspace_settings_still_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings("tiny", params=PARAMS, data_dir=tmp_path / "d",
                      overrides=["tracking.uri=http://mlflow:5000", "monitor.workspace=/srv/evidently"])
    assert (s.tracking.uri, s.monitor.workspace) == ("http://mlflow:5000", "/srv/evidently")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://shared:5000")
    assert load_settings("tiny", params=PARAMS, data_dir=tmp_path / "d").tracking.uri == "http://shared:5000"


def _world(name: str, rows: int) -> dict:
    """Train, evaluate, register and crown a toy model in the data root ``../<name>`` (relative to the CWD)."""
    from eliverec import registry
    from eliverec.evaluation.evaluate import evaluate
    from eliverec.pipeline import register_result
    from eliverec.training.trainer import train

    s = load_settings("tiny", overrides=TOY, params=PARAMS, data_dir=f"../{name}")
    dates = write_features(s.data_dir, "2026-09-01", 3, rows, tiny_vocab(s), 12)
    res = train(s, end_date=dates[-1], builder=BUILDER, loss_builder=LOSS)
    result = {"model": "toy", "run_id": res.run_id, "model_uri": res.model_uri, "end_date": dates[-1],
              "metrics": res.metrics}
    report = evaluate(s, res.model_uri, dates[-1], name="toy")
    version = register_result(s, result)
    registry.bootstrap_champion(s, version, f"first champion of {name}")
    return {"settings": s, "run_id": res.run_id, "report": Path(report["paths"]["json"])}


def test_two_worlds_in_two_data_roots_share_no_registry_runs_or_reports(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    third = tmp_path / "elsewhere"
    third.mkdir()
    monkeypatch.chdir(third)
    worlds = {name: _world(name, rows) for name, rows in (("world_a", 600), ("world_b", 900))}
    for name, w in worlds.items():
        s, root = w["settings"], tmp_path / name
        assert s.data_dir == root and s.tracking.uri.startswith(f"sqlite:///{root}/")
        client = MlflowClient(tracking_uri=s.tracking.uri, registry_uri=s.tracking.uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = {r.info.run_id for r in client.search_runs(experiments)}
        assert runs == {w["run_id"]}  # the other world's run is not in this store
        versions = client.search_model_versions(f"name='{s.tracking.registered_model}'")
        assert [v.run_id for v in versions] == [w["run_id"]]
        assert client.get_model_version_by_alias(s.tracking.registered_model, "champion").run_id == w["run_id"]
        audit = [json.loads(line) for line in s.layout.audit_log().read_text().splitlines()]
        assert {a["reason"] for a in audit} == {f"first champion of {name}"}
        assert w["report"].is_relative_to(root) and w["report"].is_file()
        for artifact in Path(s.layout.mlflow_artifacts()).rglob("*"):
            assert artifact.is_relative_to(root)
    a, b = (worlds[n]["report"] for n in ("world_a", "world_b"))
    assert json.loads(a.read_text())["rows"] != json.loads(b.read_text())["rows"]  # two different worlds
    assert list(third.iterdir()) == []  # nothing landed in the current directory

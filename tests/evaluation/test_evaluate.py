"""`evaluate` scores a test day with a logged model and writes the report; the CLI wraps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from eliverec.errors import DataError, EliverecError
from eliverec.evaluation.evaluate import evaluate, load_model, score
from eliverec.features.dataset import load_days
from eliverec.scoring.scores import at_position, scored_frame
from eliverec.training.trainer import train
from tests.training.toy import BUILDER, LOSS, toy_world


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("evaluate")
    s, dates = toy_world(tmp, "train.epochs=1")
    res = train(s, end_date=dates[-1], builder=BUILDER, loss_builder=LOSS)
    return s, dates, res


def test_report_written_with_metrics_segments_and_reliability(trained) -> None:
    s, dates, res = trained
    rep = evaluate(s, f"runs:/{res.run_id}/model", dates[-1])
    m = rep["metrics"]
    test = load_days(s.data_dir, [dates[-1]])
    assert rep["rows"] == len(test) == m["rows"]
    model = load_model(s, res.model_uri)
    serving = score(model, at_position(test, s.model.serve_position))
    logged = score(model, test)
    assert rep["serve_position"] == s.model.serve_position
    assert not serving["watch"].equals(logged["watch"])  # the toy model reads the position
    frame = scored_frame(test, serving)
    assert m["auc"] == pytest.approx(roc_auc_score(frame["watch"], frame["pred_watch"]))  # primary: serving
    assert m["logged_pos/auc"] == pytest.approx(roc_auc_score(frame["watch"], logged["watch"]))
    assert m["calibration/mean_pred"] == pytest.approx(logged["watch"].mean())  # labels' own positions
    for key in ("gauc", "prec@10", "ndcg@10", "stay_time/rmse", "goods_bag/auc", "calibration/ece",
                "segment/low_activity/gauc", "segment/popular/auc", "segment/unpopular/ndcg@10",
                "logged_pos/gauc", "logged_pos/ndcg@10", "logged_pos/segment/low_activity/auc"):
        assert key in m, key
    assert m["segment/low_activity/rows"] + m["segment/high_activity/rows"] == rep["rows"]
    assert sum(r["count"] for r in rep["reliability"]) == rep["rows"]
    path = Path(rep["paths"]["json"])
    assert path == s.data_dir / "reports" / "evaluation" / dates[-1] / f"{res.run_id}-model.json"
    assert json.loads(path.read_text())["metrics"]["auc"] == m["auc"]
    md = Path(rep["paths"]["markdown"]).read_text()
    assert "| auc |" in md and "low_activity" in md and "logged position" in md


def test_at_position_replaces_only_the_position(trained) -> None:
    s, dates, _ = trained
    test = load_days(s.data_dir, [dates[-1]])
    moved = at_position(test, 3)
    assert len(moved) == len(test) and (moved.column("position") == 3).all()
    assert (moved.column("user") == test.column("user")).all()
    assert (test.column("position") != 3).any()  # the original is untouched


def test_bad_uri_and_missing_day_are_clear_errors(trained) -> None:
    s, dates, res = trained
    with pytest.raises(EliverecError, match="cannot load model 'runs:/nope/model'"):
        evaluate(s, "runs:/nope/model", dates[-1])
    with pytest.raises(DataError, match="2030-01-01 is missing"):
        evaluate(s, res.model_uri, "2030-01-01")


def test_cli_evaluate_and_train_errors(trained) -> None:
    from eliverec.cli import app

    s, dates, res = trained
    common = ["--profile", "tiny", "--data-dir", str(s.data_dir), "--set", f"tracking.uri={s.tracking.uri}"]
    out = CliRunner().invoke(app, ["evaluate", "--model-uri", res.model_uri, "--date", dates[-1], "--name", "cli",
                                   *common])
    assert out.exit_code == 0, out.output
    assert (s.data_dir / "reports" / "evaluation" / dates[-1] / "cli.md").exists()
    bad = CliRunner().invoke(app, ["train", "--end-date", "2030-01-02", *common])
    assert bad.exit_code == 1 and "eliverec features" in " ".join(bad.output.split())


def test_scores_are_kept_per_model_and_day_and_redone_when_the_day_changes(trained, monkeypatch) -> None:
    import os
    import shutil

    import eliverec.evaluation.evaluate as ev

    s, dates, res = trained
    calls: list[int] = []
    real = ev.score

    def counted(model, ds):  # the real scorer, counted
        calls.append(len(ds))
        return real(model, ds)

    monkeypatch.setattr(ev, "score", counted)
    shutil.rmtree(Path(s.data_dir) / "reports" / "evaluation" / dates[-1] / "scores", ignore_errors=True)
    test = load_days(s.data_dir, [dates[-1]])
    model = load_model(s, f"runs:/{res.run_id}/model")
    first, _ = ev.cached_score_day(s, model, test, dates[-1])
    assert len(calls) == 2  # serving and logged position
    again, _ = ev.cached_score_day(s, load_model(s, f"runs:/{res.run_id}/model"), test, dates[-1], logged=False)
    assert len(calls) == 2  # a second reader of the same model and day scores nothing
    assert list(again["pred_watch"]) == pytest.approx(list(first["pred_watch"]))
    arrays = sorted(Path(ev.day_dir(s.data_dir, dates[-1])).glob("**/*.npy"))
    st = arrays[0].stat()
    os.utime(arrays[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the day was rebuilt
    ev.cached_score_day(s, model, test, dates[-1])
    assert len(calls) == 4

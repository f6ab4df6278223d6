"""Tuned values in params.yaml (apply_tuned, --set precedence, --write) and `eliverec tune` (Optuna + MLflow)."""

from __future__ import annotations

import difflib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from eliverec.config import ConfigError, Settings, apply_tuned, load_settings
from eliverec.errors import EliverecError
from eliverec.training.params_file import write_tuned
from eliverec.training.trainer import with_model
from eliverec.training.tune import dim_choices, search_space, tune
from tests.conftest import PARAMS, tracking_uri
from tests.training.toy import BUILDER, LOSS, tiny_vocab, write_features

TUNED = {"eliverec": {"train": {"lr": 0.005}, "model": {"dim": 16, "lambda1": 0.3}}}


def params_with(tmp_path: Path, tuned: Any, where: str = "tiny") -> Path:
    """A params.yaml whose ``profiles.<where>.tuned`` (or top-level ``tuned`` for "top") is ``tuned``."""
    raw = yaml.safe_load(PARAMS.read_text())
    if where == "top":
        raw["tuned"] = tuned
    else:
        raw["profiles"][where]["tuned"] = tuned
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tiny(path: Path, *overrides: str, profile: str = "tiny") -> Settings:
    return load_settings(profile, overrides=list(overrides), params=path)


# --------------------------------------------------------------------------- apply_tuned
def test_apply_tuned_sets_the_values_and_a_switch_restores_the_others(tmp_path: Path) -> None:
    s = tiny(params_with(tmp_path, TUNED))
    assert (s.train.lr, s.model.dim) == (0.002, 8)  # loading alone applies nothing
    e = apply_tuned(s, "eliverec")
    assert (e.model.name, e.train.lr, e.model.dim, e.model.lambda1) == ("eliverec", 0.005, 16, 0.3)
    assert e.untuned == {"train.lr": 0.002, "model.dim": 8, "model.lambda1": 0.1}
    d = apply_tuned(e, "din")  # din has no tuned values: back to the untuned ones
    assert (d.model.name, d.train.lr, d.model.dim, d.model.lambda1, d.untuned) == ("din", 0.002, 8, 0.1, {})
    assert with_model(d, None) == d and with_model(s, None).train.lr == 0.005  # default: model.name's values
    assert with_model(s, "eliverec") == apply_tuned(e, "eliverec")  # idempotent


def test_set_beats_tuned(tmp_path: Path) -> None:
    path = params_with(tmp_path, TUNED)
    e = apply_tuned(tiny(path, "train.lr=0.05"), "eliverec")
    assert (e.train.lr, e.model.dim, e.explicit) == (0.05, 16, ("train.lr",))
    whole = apply_tuned(tiny(path, f"model={json.dumps(yaml.safe_load(PARAMS.read_text())['model'])}"), "eliverec")
    assert whole.model.dim == 32 and whole.train.lr == 0.005  # a whole-section --set is explicit too


@pytest.mark.parametrize(("tuned", "needle"), [
    ({"eliverec": {"train": {"momentum": 0.9}}}, r"tuned\.eliverec\.train\.momentum: unknown key"),
    ({"eliverec": {"world": {"days": 3}}}, r"tuned\.eliverec\.world: unknown key"),
    ({"eliverec": {"model": {"mlp": [4]}}}, r"tuned\.eliverec\.model\.mlp: unknown key"),
    ({"nope": {"train": {"lr": 0.1}}}, r"tuned: .*unknown model 'nope'"),
    ({"eliverec": {"model": {"dim": 7}}}, r"(?s)tuned\.eliverec .*must be a multiple of heads"),
    ({"eliverec": {"train": {"lr": -1.0}}}, r"(?s)tuned\.eliverec .*train\.lr"),
])
def test_bad_tuned_values_are_errors_naming_the_key(tmp_path: Path, tuned: Any, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        tiny(params_with(tmp_path, tuned))


def test_unknown_model_and_profile_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        apply_tuned(tiny(PARAMS), "nope")
    with pytest.raises(EliverecError, match="cannot build model 'nope'"):
        with_model(tiny(PARAMS), "nope")
    top = params_with(tmp_path, TUNED, where="top")
    assert tiny(top, profile="default").tuned.keys() == {"eliverec"}
    assert tiny(top).tuned == {}  # the tiny profile's own (empty) table replaces the top-level one
    bad = tmp_path / "bad.yaml"
    bad.write_text(PARAMS.read_text() + "explicit: [train.lr]\n")
    with pytest.raises(ConfigError, match="'explicit' is not a setting"):
        load_settings("tiny", params=bad)


# --------------------------------------------------------------------------- --write
def test_write_round_trips_and_keeps_every_other_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS, path)
    before = path.read_text()
    values = {"train": {"lr": 0.0012, "weight_decay": 0.0}, "model": {"dim": 16, "tau": 0.25}}
    assert write_tuned(path, "default", "eliverec", values) == ["tuned"]
    assert write_tuned(path, "default", "din_dual", {"train": {"lr": 3e-05}}) == ["tuned"]
    assert write_tuned(path, "tiny", "eta_dual", {"model": {"dropout": 0.1}}) == ["profiles", "tiny", "tuned"]
    after = path.read_text()
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    removed, added = [ln[2:] for ln in diff if ln.startswith("- ")], [ln[2:] for ln in diff if ln.startswith("+ ")]
    assert len(removed) == 2 and all(ln.lstrip().startswith("tuned: {}") for ln in removed)
    assert all(ln.lstrip().startswith("tuned:") or re.match(r"^ +\w+:( \{.*\})?$", ln) for ln in added)
    assert {ln for ln in before.splitlines() if "#" in ln and "tuned: {}" not in ln} <= set(after.splitlines())
    assert all(ln[ln.index("#"):] in after for ln in removed if "#" in ln)  # their comments too
    s = load_settings("default", params=path)
    assert s.tuned["eliverec"].overrides() == {"train.lr": 0.0012, "train.weight_decay": 0.0, "model.dim": 16,
                                               "model.tau": 0.25}
    assert apply_tuned(s, "din_dual").train.lr == 3e-05
    assert load_settings("tiny", params=path).tuned.keys() == {"eta_dual"}
    write_tuned(path, "default", "eliverec", {"train": {"lr": 0.004}})  # a new result replaces the entry
    assert load_settings("default", params=path).tuned["eliverec"].overrides() == {"train.lr": 0.004}


# --------------------------------------------------------------------------- tune
def tune_world(tmp_path: Path, *overrides: str) -> tuple[Settings, list[str]]:
    """Tiny settings (lr and dim free to search) and 3 synthetic feature days."""
    base = [f"tracking.uri={tracking_uri(tmp_path / 'mlruns')}", "train.epochs=1", "features.train_days=2"]
    s = load_settings("tiny", overrides=[*base, *overrides], params=PARAMS, data_dir=tmp_path / "data")
    return s, write_features(s.data_dir, "2026-09-01", 3, 600, tiny_vocab(s), 12)


def test_search_space_follows_model_and_optimizer() -> None:
    s = load_settings("tiny", params=PARAMS)
    keys = lambda name: [p.key for p in search_space(apply_tuned(s, name))]  # noqa: E731
    assert keys("eliverec") == ["train.lr", "train.weight_decay", "model.dim", "model.dropout", "model.lambda1",
                                "model.lambda2", "model.tau"]
    assert keys("eliverec_wo_c")[-2:] == ["model.lambda2", "model.tau"] and "model.tau" not in keys("eliverec_cos")
    assert keys("eta_dual") == keys("eliverec")[:4]
    space = search_space(apply_tuned(load_settings("paper", params=PARAMS), "eliverec"))
    assert (space[0].low, space[0].high, space[2].choices) == (1e-3, 0.1, (64, 128, 256))  # adagrad; 8 heads
    assert dim_choices(8, 2) == (4, 8, 16)


def test_tune_logs_nested_trials_and_writes_the_report(tmp_path: Path) -> None:
    s, dates = tune_world(tmp_path, "train.max_minutes=5")
    seen: list[tuple[int, float | None]] = []
    res = tune(s, "eliverec", 2, dates[-1], builder=BUILDER, loss_builder=LOSS,
               on_trial=lambda rec, best: seen.append((rec.number, best.best_value if best else None)))
    assert [n for n, _ in seen] == [0, 1] and all(r.state == "COMPLETE" for r in res.trials)
    first = res.trials[0].values  # trial 0 is the configured values
    assert first["train.lr"] == pytest.approx(s.train.lr) and first["model.dim"] == s.model.dim
    assert first["model.tau"] == pytest.approx(s.model.tau) and first["train.weight_decay"] == s.train.weight_decay
    assert res.best_value == max(r.value or 0 for r in res.trials) and set(res.tuned) <= {"train", "model"}
    assert {"lr", "weight_decay"} <= set(res.tuned["train"]) and {"dim", "tau"} <= set(res.tuned["model"])
    mlflow.set_tracking_uri(s.tracking.uri)
    client = mlflow.MlflowClient()
    parent = client.get_run(res.parent_run_id)
    assert parent.info.run_name == "tune-eliverec" and parent.info.status == "FINISHED"
    assert parent.data.metrics["best/val_auc"] == pytest.approx(res.best_value)
    assert json.loads(parent.data.params["trials"]) == 2 and "best.train.lr" in parent.data.params
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{res.parent_run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(r.run_id for r in res.trials)
    for child, rec in zip(sorted(children, key=lambda r: int(r.data.tags["eliverec.tune.trial"])), res.trials,
                          strict=True):
        assert child.data.metrics["tune/objective"] == pytest.approx(rec.value)
        assert float(child.data.params["train.lr"]) == pytest.approx(rec.values["train.lr"])
        assert child.data.params["tracking.log_model"] == "False" and child.data.params["train.max_minutes"] == "5.0"
    report = json.loads(res.paths["json"].read_text())
    assert len(report["trials"]) == 2 and report["best"]["tuned"] == res.tuned and res.written is None
    assert "| trial | state | val AUC |" in res.paths["markdown"].read_text()
    assert not any((s.data_dir / "checkpoints").glob("tune-*"))  # trial checkpoints are scratch


def test_bad_tune_input_is_a_clear_error(tmp_path: Path) -> None:
    s, dates = tune_world(tmp_path)
    with pytest.raises(EliverecError, match="--trials must be at least 1"):
        tune(s, "eliverec", 0, dates[-1])
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        tune(s, "nope", 1, dates[-1])
    with pytest.raises(EliverecError, match="train.val_share > 0"):
        tune(tune_world(tmp_path, "train.val_share=0")[0], "eliverec", 1, dates[-1])


def test_cli_tunes_the_real_model_and_writes_params(tmp_path: Path) -> None:
    from eliverec.cli import app

    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    s, dates = tune_world(tmp_path)
    args = ["tune", "--model", "eliverec", "--trials", "1", "--end-date", dates[-1], "--write", "--profile",
            "tiny", "--params", str(params), "--data-dir", str(s.data_dir), "--set", "train.epochs=1",
            "--set", f"tracking.uri={s.tracking.uri}", "--set", "features.train_days=2", "--minutes-per-trial", "2"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "trial 1/1: val auc" in out.output and "written to profiles.tiny.tuned" in out.output
    tuned = load_settings("tiny", params=params).tuned["eliverec"].overrides()
    assert json.loads((s.data_dir / "reports" / "tune" / "eliverec.json").read_text())["budget"]["max_minutes"] == 2
    assert set(tuned) == {"train.lr", "train.weight_decay", "model.dim", "model.dropout", "model.lambda1",
                          "model.lambda2", "model.tau"}
    bad = CliRunner().invoke(app, ["tune", "--model", "nope", "--trials", "1", "--end-date", dates[-1],
                                   "--params", str(params), "--profile", "tiny"])
    assert bad.exit_code != 0 and "unknown model 'nope'" in bad.output

"""The gate: its rules on constructed score frames, and its safety end to end on trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eliverec import registry
from eliverec.evaluation.gate import decide, gate, paired_bootstrap
from tests.pipeline import build, shuffled_copy, tiny


def _frame(rng: np.random.Generator, n_users: int = 400, per_user: int = 20) -> pd.DataFrame:
    users = np.repeat(np.arange(n_users), per_user)
    interest = rng.normal(size=users.size)
    watch = (rng.random(users.size) < 1 / (1 + np.exp(-(interest * 2 - 2)))).astype(float)
    frame = pd.DataFrame({"user": users, "channel": rng.integers(0, 60, users.size), "watch": watch})
    for task in ("stay_time", "goods_bag", "product_click"):
        frame[task] = watch * (rng.random(users.size) < 0.3)
        frame[f"pred_{task}"] = frame[task] * 0.5 + rng.random(users.size) * 0.5
    frame["interest"] = interest
    return frame


def _scored(frame: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    out = frame.copy()
    out["pred_watch"] = np.clip(scores, 1e-4, 1 - 1e-4)
    return out


def _trailing(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    users = pd.Series(frame["user"].unique())
    # user id order = activity order: users 0..199 are the low-activity half
    return pd.Series(users.to_numpy() + 1, index=users.to_numpy()), frame["channel"].value_counts()


def test_identical_models_pass_and_the_interval_is_zero(tiny_settings) -> None:
    frame = _frame(np.random.default_rng(0))
    s = 1 / (1 + np.exp(-(frame["interest"].to_numpy() * 2 - 2)))
    a = _scored(frame, s)
    checks, cand, champ = decide(a, a.copy(), *_trailing(frame), True, 1.0, tiny_settings)
    by = {c.name: c for c in checks}
    assert by["primary/auc"].passed and "[+0.0000, +0.0000]" in by["primary/auc"].detail
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert cand["auc"] == champ["auc"]


def test_overall_winner_that_hurts_low_activity_users_is_rejected(tiny_settings) -> None:
    rng = np.random.default_rng(1)
    frame = _frame(rng)
    truth = 1 / (1 + np.exp(-(frame["interest"].to_numpy() * 2 - 2)))
    champion = _scored(frame, truth + rng.normal(0, 0.15, len(frame)))
    low = frame["user"].to_numpy() < 200
    cand_scores = np.where(low, rng.random(len(frame)), truth + rng.normal(0, 0.01, len(frame)))
    candidate = _scored(frame, cand_scores)
    checks, cand, champ = decide(candidate, champion, *_trailing(frame), True, 1.0, tiny_settings)
    failed = {c.name for c in checks if not c.passed}
    assert cand["segment/high_activity/auc"] > champ["segment/high_activity/auc"] + 0.02
    assert cand["segment/low_activity/auc"] < champ["segment/low_activity/auc"] - 0.1
    assert {"segment/low_activity/auc", "segment/low_activity/gauc"} <= failed


def test_calibration_nan_and_latency_checks_fail_on_their_own(tiny_settings) -> None:
    frame = _frame(np.random.default_rng(2))
    s = 1 / (1 + np.exp(-(frame["interest"].to_numpy() * 2 - 2)))
    off = _scored(frame, np.clip(s * 3, 0, 1))
    checks, _, _ = decide(off, None, *_trailing(frame), False, 10_000.0, tiny_settings)
    failed = {c.name for c in checks if not c.passed}
    assert failed == {"calibration", "finite", "latency"}
    assert next(c for c in checks if c.name == "champion").detail.startswith("no champion")


def test_the_gate_reads_the_serving_position_and_reports_the_logged_one(tiny_settings) -> None:
    rng = np.random.default_rng(4)
    frame = _frame(rng)
    truth = 1 / (1 + np.exp(-(frame["interest"].to_numpy() * 2 - 2)))
    champion = _scored(frame, truth + rng.normal(0, 0.1, len(frame)))
    champion["pred_watch_logged"] = champion["pred_watch"]
    # good only with the logged position (the policy's ranking); random at the serving position
    candidate = _scored(frame, rng.random(len(frame)) * 0.3)
    candidate["pred_watch_logged"] = truth
    checks, cand, champ = decide(candidate, champion, *_trailing(frame), True, 1.0, tiny_settings)
    failed = {c.name for c in checks if not c.passed}
    assert {"primary/auc", "primary/gauc"} <= failed
    assert cand["logged_pos/auc"] > champ["logged_pos/auc"]  # reported, not gated
    assert cand["calibration/mean_pred"] == pytest.approx(truth.mean())  # calibration: logged position


def test_bootstrap_interval_covers_a_real_difference() -> None:
    rng = np.random.default_rng(3)
    u = np.repeat(np.arange(300), 10)
    y = rng.random(u.size) < 0.3
    good, bad = y + rng.normal(0, 0.8, u.size), y + rng.normal(0, 3.0, u.size)
    res = paired_bootstrap(u, y, good, bad, 100, 0.95, 0)
    diff, lo, hi = res["auc"]
    assert 0 < lo <= diff <= hi
    diff, lo, hi = paired_bootstrap(u, y, bad, good, 100, 0.95, 0)["gauc"]
    assert lo <= diff <= hi < 0


@pytest.mark.slow
def test_sabotaged_candidate_is_rejected_and_cannot_be_promoted(tmp_path: Path) -> None:
    import mlflow

    from eliverec.training.trainer import train

    # latency has its own unit test; a loaded CI machine must not decide this safety test
    s = tiny(tmp_path / "main", "train.max_steps=80", "gate.latency_budget_ms=60000")
    info = build(s)
    day = info["test_day"]
    champ = train(s, model_name="eta_dual", end_date=day, run_name="champion")
    v1 = registry.register(s, champ.model_uri, {"model_name": "eta_dual"}, run_id=champ.run_id)
    first = gate(s, champ.model_uri, day, version=v1)
    assert first.passed and first.champion_uri is None
    from eliverec.evaluation.evaluate import load_model, serve_position

    moved = tiny(tmp_path / "main", "model.serve_position=0")  # the model's own stored position wins
    assert serve_position(moved, load_model(s, champ.model_uri)) == s.model.serve_position == 1
    registry.bootstrap_champion(s, v1, "bootstrap")

    bad_root = shuffled_copy(s, tmp_path / "sabotage", info["train_days"])
    bad_settings = tiny(tmp_path / "sabotage", "train.max_steps=80",
                        f"tracking.uri={s.tracking.uri}")
    bad = train(bad_settings, model_name="eta_dual", end_date=day, run_name="sabotaged")
    assert bad_root.data_dir != s.data_dir
    v2 = registry.register(s, bad.model_uri, {"model_name": "eta_dual"}, run_id=bad.run_id)
    verdict = gate(s, bad.model_uri, day, version=v2)
    assert not verdict.passed
    assert "primary/auc" in {c.name for c in verdict.failed()}
    assert Path(verdict.paths["json"]).exists() and "FAIL" in Path(verdict.paths["markdown"]).read_text()
    assert verdict.training.startswith("the step cap (train.max_steps) after 80 steps")  # how training ended
    assert "Training ended by the step cap" in Path(verdict.paths["markdown"]).read_text()
    with pytest.raises(registry.RegistryError, match="refusing"):
        registry.promote(s, v2, "try anyway")
    assert registry.alias_version(s, registry.CHALLENGER) == v1  # the failed version never became challenger
    run = registry.client(s).get_run(bad.run_id)
    assert run.data.tags["gate_verdict"] == "fail" and run.data.metrics["gate/passed"] == 0.0
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "evaluation"}  # the feature days it trained on, the day it was judged on
    assert inputs["evaluation"].dataset.name == f"features {day}"
    assert {t.value for t in inputs["training"].tags if t.key == "days"} == {",".join(info["train_days"])}

    # the serving path: the champion alias always loads and scores
    mlflow.set_tracking_uri(s.tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{s.tracking.registered_model}@champion")
    from eliverec.features.dataset import load_days

    batch = load_days(s.data_dir, [day])[np.arange(5)]
    out = model.predict({k: v.numpy() for k, v in batch.items()
                         if k not in ("watch", "stay_time", "goods_bag", "product_click", "ts")})
    assert len(out) == 5 and np.isfinite(out["watch"]).all()


def test_the_latency_check_times_the_runtime_that_serves(tiny_settings) -> None:
    """The gate times what the service would run (serving.runtime), not torch eager, on one user's request."""
    from eliverec.evaluation.gate import request_latency_ms, serving_scorer
    from eliverec.features.batch import random_batch
    from eliverec.models import build_model
    from eliverec.scoring.runtime import OnnxScorer, TorchScorer

    net = build_model(tiny_settings).eval()
    onnx = serving_scorer(tiny_settings.model_copy(update={"serving": tiny_settings.serving.model_copy(
        update={"runtime": "onnx"})}), net)
    eager = serving_scorer(tiny_settings.model_copy(update={"serving": tiny_settings.serving.model_copy(
        update={"runtime": "torch"})}), net)
    assert isinstance(onnx, OnnxScorer) and isinstance(eager, TorchScorer)
    f = tiny_settings.features
    arrays = {k: v.numpy() for k, v in random_batch(f.vocab, 5, f.seq_len, seed=0).items()}
    calls: list[int] = []

    def counted(batch):  # noqa: ANN001, ANN202 - the scorer's own signature
        calls.append(len(batch["user"]))
        assert len(set(batch["user"].tolist())) == 1  # one user, many candidates
        return onnx(batch)

    ms = request_latency_ms(counted, arrays, candidates=12, repeats=4)
    assert ms > 0 and calls == [12] * 7  # 3 warm-up calls, then the timed ones

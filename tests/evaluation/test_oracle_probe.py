"""The oracle ceiling, the gap closed and the z_c linear probe on one small simulated pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eliverec.errors import DataError, EliverecError
from eliverec.evaluation.oracle import (
    ceiling,
    gap_closed,
    gaps,
    load_test_day,
    oracle_scores,
    policy_scores,
    world_index,
)
from eliverec.evaluation.probe import (
    INTENT_SETS,
    PARTS,
    capture_parts,
    extract_parts,
    intent_labels,
    load_trained,
    probe,
    split_parts,
    user_means,
)
from eliverec.features.dataset import load_days
from eliverec.scoring.metrics import compute_metrics
from eliverec.scoring.scores import predict, scored_frame
from eliverec.training.trainer import train
from eliverec.world import World
from tests.conftest import PARAMS, tracking_uri


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    """Tiny world -> bronze -> features; one eLiveRec trained on it; returns (settings, test day, world, model)."""
    from eliverec.config import load_settings
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import simulate

    tmp = tmp_path_factory.mktemp("oracle")
    fast = ["tracking.log_model=false", "train.checkpoint_every=0", "train.max_steps=15", "features.seq_len=20",
            "features.vocab.user=3001", "features.vocab.product=15013", "features.vocab.channel=601"]
    s = load_settings("tiny", overrides=[f"tracking.uri={tracking_uri(tmp)}", *fast], params=PARAMS,
                      data_dir=tmp / "data")
    summary = simulate(s, progress=False)
    for date in summary["dates"]:
        ingest_day(s, date)
    day = summary["dates"][-1]
    build_features(s, day)
    res = train(s, model_name="eliverec", end_date=day, run_name="probe-me")
    return s, day, World.from_settings(s), load_trained(res.checkpoint_dir)


def test_oracle_beats_a_trained_model_the_policy_and_random(pipeline) -> None:
    s, day, world, model = pipeline
    ceil = ceiling(s, day, world=world)
    test = load_days(s.data_dir, [day])
    assert ceil["rows"] == len(test)
    metrics = compute_metrics(scored_frame(test, pd.DataFrame(predict(model, test, 4096, torch.device("cpu")))))
    assert ceil["oracle_auc"] > metrics["auc"] > ceil["random_auc"] - 0.05
    assert ceil["oracle_auc"] > ceil["policy_auc"] > ceil["random_auc"]
    assert ceil["oracle_gauc"] > ceil["policy_gauc"]
    assert abs(ceil["random_auc"] - 0.5) < 0.05
    g = gaps(metrics, ceil)
    assert g["gap_closed/auc"] == pytest.approx((metrics["auc"] - ceil["policy_auc"])
                                                / (ceil["oracle_auc"] - ceil["policy_auc"]))
    assert g["gap_closed/auc"] < 1.0


def test_scores_follow_the_labels_and_rows_map_to_the_world(pipeline) -> None:
    s, day, world, _ = pipeline
    d = load_test_day(s, day)
    p = oracle_scores(world, d)
    assert p.shape == d.watch.shape and ((p >= 0) & (p <= 1)).all()
    # the labels were drawn from these probabilities: mean predicted rate matches the observed one
    assert abs(p.mean() - d.watch.mean()) < 0.03
    assert d.users.max() < world.n_users and d.channels.max() < world.channels.n
    pol = policy_scores(world, d)
    assert np.isfinite(pol).all() and pol.std() > 0


def test_gap_closed_and_bad_inputs(pipeline) -> None:
    s, _, world, _ = pipeline
    assert gap_closed(0.8, 0.7, 0.8) == 1.0 and gap_closed(0.65, 0.7, 0.8) == pytest.approx(-0.5)
    assert np.isnan(gap_closed(0.8, 0.8, 0.7))
    with pytest.raises(DataError, match="2030-01-01 is missing"):
        ceiling(s, "2030-01-01", world=world)
    with pytest.raises(DataError, match="not a simulated-world id"):
        world_index(np.array(["u1", "alice"]), "u")


@pytest.fixture(scope="module")
def probed(pipeline) -> dict:
    s, day, world, model = pipeline
    return probe(s, model, day, world=world, seed=0)


def test_probe_returns_numbers_in_range(probed) -> None:
    out = probed
    assert out["train_users"] + out["test_users"] == out["users"] > 10
    assert set(out["results"]) == set(PARTS)
    for sets in out["results"].values():
        assert set(sets) == set(INTENT_SETS)
        for r in sets.values():
            assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["precision@k"] <= 1.0 and 0.0 <= r["prior_precision@k"] <= 1.0
            assert r["categories"] >= 1


def test_probe_parts_and_labels_have_the_right_shapes(pipeline) -> None:
    s, day, world, model = pipeline
    test = load_days(s.data_dir, [day])
    parts = extract_parts(model, test.subset(np.arange(50)))
    assert set(parts) == set(PARTS) and all(v.shape == (50, s.model.dim) for v in parts.values())
    assert not np.allclose(parts["z_cV"], parts["z_sV"])
    with capture_parts(model) as seen:  # the same parts read while scoring (one pass, as the benchmark does)
        predict(model, test.subset(np.arange(50)), 20, torch.device("cpu"))
    again = split_parts(model, seen)
    assert len(seen) == 3 and all(np.allclose(again[p], parts[p], atol=1e-5) for p in PARTS)
    users, means = user_means(np.arange(50) % 7, parts)
    assert users.tolist() == list(range(7)) and means["z_cS"].shape == (7, s.model.dim)
    labels = intent_labels(world, np.array([0, 1, 2]), day)
    assert labels["consistent"].sum(1).tolist() == [s.world.n_consistent] * 3


def test_probe_rejects_models_without_z_parts_and_missing_days(pipeline) -> None:
    s, day, world, model = pipeline
    from eliverec.models import build_model
    from eliverec.training.trainer import with_model

    with pytest.raises(EliverecError, match="dual, disentangled eLiveRec"):
        probe(s, build_model(with_model(s, "eliverec_wo_d")), day, world=world)
    with pytest.raises(DataError, match="2030-01-01 is missing"):
        probe(s, model, "2030-01-01", world=world)
    with pytest.raises(ValueError, match="test_share"):
        probe(s, model, day, world=world, test_share=1.0)
    with pytest.raises(EliverecError, match="latest.pt is missing"):
        load_trained(s.data_dir / "checkpoints" / "no-such-run")


def test_cross_fitted_probe_scores_every_user_and_summarises_disentanglement(pipeline) -> None:
    from eliverec.evaluation.probe import disentanglement

    s, day, world, model = pipeline
    out = probe(s, model, day, world=world, seed=0, folds=3)
    assert out["folds"] == 3 and out["test_users"] == out["users"] > 10
    for sets in out["results"].values():
        assert all(0.0 <= r["auc"] <= 1.0 and r["categories"] >= 1 for r in sets.values())
    assert out["disentanglement"] == disentanglement(out["results"])
    assert set(out["disentanglement"]) == {"live", "product"}
    with pytest.raises(ValueError, match="folds"):
        probe(s, model, day, world=world, folds=1)


def test_intention_weights_are_read_against_the_world_categories(pipeline) -> None:
    from eliverec.evaluation.probe import category_lookup, intention_weights_by_truth
    from eliverec.features.hashing import hash_strings

    s, day, world, model = pipeline
    lookup = category_lookup(s, world.catalog.n_categories)
    hashed = hash_strings([f"cat{c}" for c in range(world.catalog.n_categories)], s.features.hash_salt, "category",
                          s.features.vocab["category"])
    unique = np.unique(hashed, return_counts=True)[1].max() == 1
    assert not unique or lookup[hashed].tolist() == list(range(world.catalog.n_categories))
    assert lookup[0] == -1  # padding
    out = intention_weights_by_truth(s, model, day, world=world, max_rows=300)
    for dom in ("live", "product"):
        r = out[dom]
        assert r["events"] > 0 and all(0.0 <= r[k] <= 1.0 for k in ("consistent", "specific", "neither"))
        assert r["gap"] == pytest.approx(r["consistent"] - r["specific"])

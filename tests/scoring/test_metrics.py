"""Vectorised metrics against slow per-user Python references on random data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eliverec.scoring import metrics as M


def random_frame(seed: int, n: int = 3000, users: int = 120, channels: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    watch = (rng.random(n) < 0.25).astype(np.float32)
    return pd.DataFrame({
        "user": rng.integers(0, users, n), "channel": rng.integers(0, channels, n), "watch": watch,
        "stay_time": watch * rng.random(n) * 4, "goods_bag": watch * (rng.random(n) < 0.3),
        "product_click": watch * (rng.random(n) < 0.2),
        # rounded scores: plenty of ties, which the references must treat the same way
        "pred_watch": np.round(np.clip(0.25 + 0.3 * (watch - 0.25) + rng.normal(0, 0.2, n), 0, 1), 2),
        "pred_stay_time": rng.random(n) * 3, "pred_goods_bag": rng.random(n), "pred_product_click": rng.random(n),
    })


def ref_gauc(f: pd.DataFrame) -> float:
    num = den = 0.0
    for _, g in f.groupby("user"):
        if g["watch"].nunique() < 2:
            continue
        num += len(g) * roc_auc_score(g["watch"], g["pred_watch"])
        den += len(g)
    return num / den


def ref_topk(f: pd.DataFrame, k: int) -> tuple[float, float]:
    precs, ndcgs = [], []
    for _, g in f.groupby("user"):
        rows = sorted(zip(g["pred_watch"], g.index, g["watch"], strict=True), key=lambda r: (-r[0], r[1]))
        labels = [r[2] for r in rows]
        if sum(labels) == 0:
            continue
        top = labels[:k]
        precs.append(sum(top) / k)
        dcg = sum(y / math.log2(i + 2) for i, y in enumerate(top))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, int(sum(labels)))))
        ndcgs.append(dcg / idcg)
    return float(np.mean(precs)), float(np.mean(ndcgs))


def ref_ece(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        mask = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if mask.any():
            total += mask.sum() / len(y) * abs(p[mask].mean() - y[mask].mean())
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_metrics_match_references(seed: int) -> None:
    f = random_frame(seed)
    assert M.gauc(f["user"], f["watch"], f["pred_watch"]) == pytest.approx(ref_gauc(f), abs=1e-12)
    for k in (3, 10):
        got = M.topk_metrics(f["user"].to_numpy(), f["watch"].to_numpy(), f["pred_watch"].to_numpy(), k)
        assert got == pytest.approx(ref_topk(f, k), abs=1e-12)
    y, p = f["watch"].to_numpy(), f["pred_watch"].to_numpy()
    ref = ref_ece(y.astype(np.float64), p.astype(np.float64), 10)
    assert M.calibration(y, p, 10)["ece"] == pytest.approx(ref, abs=1e-12)
    assert M.auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_compute_metrics_definitions() -> None:
    f = random_frame(5)
    m = M.compute_metrics(f, k=10, bins=10)
    watched = f["watch"] > 0
    expected_rmse = np.sqrt(np.mean((f["stay_time"][watched] - f["pred_stay_time"][watched]) ** 2))
    assert m["stay_time/rmse"] == pytest.approx(expected_rmse)
    assert m["goods_bag/auc"] == pytest.approx(roc_auc_score(f["goods_bag"][watched], f["pred_goods_bag"][watched]))
    assert m["calibration/observed"] == pytest.approx(f["watch"].mean())
    assert m["calibration/mean_pred"] == pytest.approx(f["pred_watch"].mean())
    assert m["rows"] == len(f) and m["users"] == f["user"].nunique()


def test_perfect_and_reversed_rankings() -> None:
    users = np.repeat([1, 2], 12)
    y = np.tile(np.r_[np.ones(3), np.zeros(9)], 2)
    assert M.topk_metrics(users, y, y * 0.5 + 0.1, 10) == (0.3, 1.0)
    prec, ndcg = M.topk_metrics(users, y, 1 - y, 10)
    assert prec == pytest.approx(0.1) and ndcg < 0.35
    assert M.gauc(users, y, 1 - y) == 0.0


def test_one_class_users_are_skipped_and_empty_is_nan() -> None:
    users = np.array([1, 1, 2, 2])
    y = np.array([1, 0, 0, 0])
    p = np.array([0.9, 0.1, 0.8, 0.2])
    assert M.gauc(users, y, p) == 1.0  # user 2 (no watch) does not count
    assert math.isnan(M.gauc(users, np.zeros(4), p))
    assert all(math.isnan(v) for v in M.topk_metrics(users, np.zeros(4), p, 10))
    assert math.isnan(M.auc(np.ones(3), np.ones(3)))


def test_segments_split_users_and_channels_by_training_window_counts() -> None:
    f = random_frame(3, users=10, channels=6)
    user_counts = pd.Series({u: u * 10 for u in range(10)})  # users 0-4 have the fewest impressions
    channel_counts = {c: 100 - c for c in range(6)}  # channels 0-2 are the most popular
    masks = M.segment_masks(f, user_counts, channel_counts)
    assert set(f.loc[masks["low_activity"], "user"]) == {0, 1, 2, 3, 4}
    assert set(f.loc[masks["popular"], "channel"]) == {0, 1, 2}
    assert (masks["low_activity"] ^ masks["high_activity"]).all()
    seg = M.segment_metrics(f, user_counts, channel_counts)
    low = f[f["user"] < 5]
    assert seg["segment/low_activity/gauc"] == pytest.approx(ref_gauc(low))
    assert seg["segment/unpopular/rows"] == (f["channel"] >= 3).sum()


def test_weighted_auc_matches_sklearn_per_weight_row() -> None:
    f = random_frame(7)
    rng = np.random.default_rng(7)
    users = f["user"].to_numpy()
    draws = rng.integers(0, 3, size=(25, users.max() + 1))  # resampling counts per user
    got = M.weighted_auc(f["watch"], f["pred_watch"], draws, columns=users)
    ref = [roc_auc_score(f["watch"], f["pred_watch"], sample_weight=d[users]) for d in draws]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert math.isnan(M.weighted_auc(np.array([0, 1]), np.array([0.2, 0.3]), np.array([[1, 0]]))[0])


def test_logged_position_column_is_reported_and_read_by_calibration() -> None:
    f = random_frame(8)
    serving = f.assign(pred_watch=np.clip(f["pred_watch"] * 1.8, 0, 1))  # one position for all: inflated
    both = serving.assign(**{M.LOGGED_WATCH: f["pred_watch"]})
    m, alone = M.compute_metrics(both), M.compute_metrics(f)
    assert m["auc"] == M.auc(serving["watch"], serving["pred_watch"])  # primary keys: the serving scores
    for key in ("auc", "gauc", "prec@10", "ndcg@10"):
        assert m[f"logged_pos/{key}"] == alone[key]
    assert m["calibration/ratio"] == alone["calibration/ratio"]  # where the labels were observed
    assert "logged_pos/auc" not in alone
    seg = M.segment_metrics(both, f["user"].value_counts(), f["channel"].value_counts())
    assert seg["logged_pos/segment/low_activity/gauc"] == pytest.approx(
        M.segment_metrics(f, f["user"].value_counts(), f["channel"].value_counts())["segment/low_activity/gauc"])
    assert not any(k.startswith("segment/") and "logged_pos" in k for k in seg)

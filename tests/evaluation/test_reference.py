"""The feature-trees reference: its match features and that the trees find a planted category signal."""

from __future__ import annotations

import numpy as np
import pytest

from eliverec.evaluation.reference import FEATURES, match_features, tree_scores
from eliverec.scoring.metrics import auc


def synthetic_day(n: int, rng: np.random.Generator, seq_len: int = 6) -> dict[str, np.ndarray]:
    """Samples whose watch probability rises with the share of the user's watches in the target's category."""
    cats = rng.integers(1, 6, size=(n, seq_len))
    lens = rng.integers(0, seq_len + 1, size=n)
    pad = np.arange(seq_len)[None, :] < (seq_len - lens)[:, None]
    channel_seq = np.stack([rng.integers(1, 50, (n, seq_len)), rng.integers(1, 30, (n, seq_len)), cats], -1)
    channel_seq[pad] = 0
    target = np.stack([rng.integers(1, 50, n), rng.integers(1, 30, n), rng.integers(1, 6, n)], -1)
    share = ((channel_seq[:, :, 2] == target[:, 2:3]) & ~pad).sum(1) / np.maximum(lens, 1)
    watch = (rng.random(n) < 0.05 + 0.6 * share).astype(np.float32)
    return {"channel": target, "channel_seq": channel_seq, "channel_len": lens,
            "product_seq": np.zeros((n, seq_len, 3), np.int64), "product_len": np.zeros(n, np.int64),
            "dynamic_cats": np.zeros((n, 4), np.int64), "dynamic": rng.normal(size=(n, 4)).astype(np.float32),
            "watch": watch}


def test_match_features_count_only_real_events() -> None:
    day = synthetic_day(200, np.random.default_rng(0))
    x = match_features(day)
    assert x.shape == (200, len(FEATURES))
    col = dict(zip(FEATURES, x.T, strict=True))
    real = day["channel_seq"][:, :, 2] > 0
    expect = ((day["channel_seq"][:, :, 2] == day["channel"][:, 2:3]) & real).sum(1)
    np.testing.assert_array_equal(col["live_category_n"], expect)
    assert np.all(col["live_category_share"] <= 1.0)
    assert np.all(col["live_category_n"][day["channel_len"] == 0] == 0)


def test_trees_learn_the_planted_category_signal() -> None:
    rng = np.random.default_rng(1)
    train, test = synthetic_day(20_000, rng), synthetic_day(5000, rng)
    scores = tree_scores(train, test, seed=0)
    share = match_features(test)[:, FEATURES.index("live_category_share")]
    assert auc(test["watch"], scores) > auc(test["watch"], np.zeros_like(scores)) + 0.15
    # the trees rank at least about as well as the planted feature itself
    assert auc(test["watch"], scores) >= auc(test["watch"], share) - 0.02


def test_trees_refuse_training_days_without_a_watch() -> None:
    day = synthetic_day(500, np.random.default_rng(2))
    day["watch"] = np.zeros(500, np.float32)
    with pytest.raises(ValueError, match="both watched and unwatched"):
        tree_scores(day, day, seed=0)

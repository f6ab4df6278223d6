"""A reference scorer without a deep model: gradient-boosted trees on hand-made match features.

What the paper tables compare every network with, besides the logging policy and the oracle: a
histogram gradient-boosted tree (scikit-learn) over a few features a recsys engineer would write
first from the same batch arrays the networks read (``eliverec/features/batch.py``):

- how often the user's recent live watches share the candidate's category, anchor or channel
  (count and share of the sequence), and whether the latest one does;
- how often the user's recent product clicks share the candidate's category, and what share of them
  fall in a category the channel has on sale right now;
- the sequence lengths and the channel's dynamic context (viewers, revenue window, items on sale,
  age of the stats snapshot).

No id embeddings, no position: the trees score a candidate the same at every feed position, so their
ranking is a serving-position ranking. If a network does not beat this reference, it has not learnt
what these few features hold, whatever it beats besides.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Names of the columns :func:`match_features` returns, in order.
FEATURES: tuple[str, ...] = (
    "live_category_n", "live_category_share", "live_anchor_n", "live_channel_n", "live_last_category",
    "product_category_n", "product_category_share", "product_on_sale_share", "product_last_category",
    "live_len", "product_len", "viewers", "revenue", "on_sale", "stats_age",
)  # fmt: skip


#: Batch keys :func:`match_features` reads.
INPUT_KEYS: tuple[str, ...] = (
    "channel", "channel_seq", "channel_len", "product_seq", "product_len", "dynamic_cats", "dynamic",
)  # fmt: skip


def _matches(seq: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B, L) bool: real (non-pad) sequence events equal to the row's target id."""
    return (seq == target[:, None]) & (seq > 0)


def match_features(day: Mapping[str, np.ndarray]) -> np.ndarray:
    """(B, len(FEATURES)) float32 features of a block of samples in the batch contract.

    >>> day = {"channel": np.array([[5, 7, 2]]), "channel_seq": np.array([[[0, 0, 0], [5, 7, 2], [6, 8, 2]]]),
    ...        "channel_len": np.array([2]), "product_seq": np.array([[[1, 2, 9], [1, 3, 9], [0, 0, 0]]]),
    ...        "product_len": np.array([2]), "dynamic_cats": np.array([[3, 0]]),
    ...        "dynamic": np.array([[1.0, 2.0, 3.0, 4.0]])}
    >>> dict(zip(FEATURES, match_features(day)[0].tolist()))["live_category_n"]
    2.0
    >>> [float(v) for v in match_features(day)[0, [2, 3, 5, 7]]]   # anchor, channel, product category, on sale
    [1.0, 1.0, 1.0, 0.5]
    """
    ch, cs, ps = (np.asarray(day[k], np.int64) for k in ("channel", "channel_seq", "product_seq"))
    c_len = np.maximum(np.asarray(day["channel_len"], np.float64), 1.0)
    p_len = np.maximum(np.asarray(day["product_len"], np.float64), 1.0)
    cat = _matches(cs[:, :, 2], ch[:, 2])
    p_cat = _matches(ps[:, :, 1], ch[:, 2])
    on_sale = np.asarray(day["dynamic_cats"], np.int64)
    p_sale = ((ps[:, :, 1, None] == on_sale[:, None, :]) & (on_sale[:, None, :] > 0)).any(-1) & (ps[:, :, 1] > 0)
    cols = [cat.sum(1), cat.sum(1) / c_len, _matches(cs[:, :, 1], ch[:, 1]).sum(1),
            _matches(cs[:, :, 0], ch[:, 0]).sum(1), cat[:, -1],
            p_cat.sum(1), p_cat.sum(1) / p_len, p_sale.sum(1) / p_len, p_cat[:, -1],
            day["channel_len"], day["product_len"]]
    dyn = np.asarray(day["dynamic"], np.float32)
    return np.column_stack([np.asarray(c, np.float32) for c in cols] + [dyn]).astype(np.float32)


def features_in_chunks(day: Mapping[str, np.ndarray], rows: np.ndarray | None = None,
                       chunk: int = 65_536) -> np.ndarray:
    """:func:`match_features` of ``rows`` (default all) in chunks, so memory-mapped days stay on disk."""
    idx = np.arange(len(day["channel"])) if rows is None else np.asarray(rows)
    parts = [match_features({k: np.asarray(day[k][idx[i : i + chunk]]) for k in INPUT_KEYS})
             for i in range(0, len(idx), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, len(FEATURES)), np.float32)


def fit_trees(x: np.ndarray, y: np.ndarray, seed: int, max_iter: int = 300) -> object:
    """A histogram GBDT on ``x`` with early stopping on a held-out tenth (scikit-learn's own split)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if len(np.unique(y)) < 2:
        raise ValueError("feature trees need both watched and unwatched samples in the training days")
    model = HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=True, validation_fraction=0.1,
                                           n_iter_no_change=20, random_state=seed)
    return model.fit(x, y)


def tree_scores(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], seed: int) -> np.ndarray:
    """Watch probabilities of the ``test`` samples from trees fitted on the ``train`` samples."""
    y = np.asarray(train["watch"]) > 0
    model = fit_trees(features_in_chunks(train), y, seed)
    return model.predict_proba(features_in_chunks(test))[:, 1].astype(np.float32)  # type: ignore[attr-defined]

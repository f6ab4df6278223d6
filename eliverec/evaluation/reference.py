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
import torch

from eliverec.models.layers.match import MATCH_FEATURES, MATCH_KEYS, match_counts

#: Names of the columns :func:`match_features` returns, in order: the models' match counts
#: (``eliverec/models/layers/match.py``, one implementation) and the dense dynamic context.
FEATURES: tuple[str, ...] = (*MATCH_FEATURES, "viewers", "revenue", "on_sale", "stats_age")


#: Batch keys :func:`match_features` reads.
INPUT_KEYS: tuple[str, ...] = (*MATCH_KEYS, "dynamic")


def match_features(day: Mapping[str, np.ndarray]) -> np.ndarray:
    """(B, len(FEATURES)) float32 features of a block of samples in the batch contract.

    >>> day = {"channel": np.array([[5, 7, 2]]), "channel_seq": np.array([[[0, 0, 0], [5, 7, 2], [6, 8, 2]]]),
    ...        "channel_len": np.array([2]), "product_seq": np.array([[[1, 2, 9], [1, 3, 9], [0, 0, 0]]]),
    ...        "product_len": np.array([2]), "dynamic_cats": np.array([[3, 0]]),
    ...        "dynamic": np.array([[1.0, 2.0, 3.0, 4.0]])}
    >>> dict(zip(FEATURES, match_features(day)[0].tolist()))["live_category_n"]
    2.0
    >>> match_features(day)[0, -4:].tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    batch = {k: torch.from_numpy(np.asarray(day[k], np.int64)) for k in MATCH_KEYS}
    counts = match_counts(batch).numpy()
    return np.concatenate([counts, np.asarray(day["dynamic"], np.float32)], axis=1).astype(np.float32)


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

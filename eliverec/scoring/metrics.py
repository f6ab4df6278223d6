"""Offline ranking metrics (paper section V-C) and the platform's extra checks, vectorised.

The metrics read a DataFrame with one row per test impression: ``user``, ``channel``, the labels
(``watch``, ``stay_time``, ``goods_bag``, ``product_click``) and the predictions ``pred_<label>``
(probabilities for the binary tasks, predicted log1p stay seconds for ``stay_time``).

Definitions (the paper is brief; these are our exact choices):

- ``auc``: watch AUC over all impressions (scikit-learn ``roc_auc_score``).
- ``gauc``: per-user watch AUC, averaged with each user's impression count as weight; users whose
  impressions are all watched or all unwatched are skipped (their AUC is undefined) [10].
- ``prec@K`` and ``ndcg@K`` (K = 10 as in the paper): per user over the whole test day, that user's
  impressions are ranked by predicted watch probability (ties: the earlier sample first) and the
  top K are read against the watch labels. ``prec@K = hits in top K / K``; ``ndcg@K = DCG@K / IDCG@K``
  with binary gain and discount ``1 / log2(rank + 1)`` (rank from 1); both are averaged (unweighted)
  over the users with at least one watch that day (IDCG is zero for the others).
- ``stay_time/rmse``: RMSE of predicted vs true log1p stay seconds on *watched* impressions (the
  stay time is a second-hop behaviour, defined once the user is in the channel);
  ``stay_time/rmse_all`` over all impressions (true stay time 0 when not watched).
- ``goods_bag/auc``, ``product_click/auc``: AUCs of the in-channel behaviours on watched impressions
  (they happen only inside a visit); ``<task>/auc_all`` over all impressions.
- Calibration: ``calibration/mean_pred`` (mean predicted watch probability) vs
  ``calibration/observed`` (watch rate), their ratio, and ``calibration/ece``: the expected calibration
  error over ``bins`` equal-width probability bins, ``sum_b n_b / N * |mean_pred_b - rate_b|``;
  :func:`reliability_table` gives the bins.
- Segments (:func:`segment_metrics`): low- vs high-activity users (the test day's users ranked by
  their impression count in the training window, ties by user id: the lower half is low-activity)
  and popular vs unpopular channels (the test day's channels ranked by impressions in the training
  window: the upper half is popular); every metric above per segment, named
  ``segment/<segment>/<metric>``.
- Feed position: the logged ``position`` carries the logging policy's own ranking (it put the
  channels it scored highest on top), while serving scores every candidate at one fixed position
  (``model.serve_position``). :mod:`eliverec.evaluation.evaluate` therefore scores the day twice:
  ``pred_watch`` at the serving position and ``pred_watch_logged`` (optional column) at the logged
  one. The ranking metrics (``auc``, ``gauc``, ``prec@K``, ``ndcg@K``) read ``pred_watch``; with the
  logged column present they are also reported on it as ``logged_pos/<metric>`` (segments:
  ``logged_pos/segment/<segment>/<metric>``), and the calibration metrics read it, because the labels
  were observed at the logged positions (at the serving position the mean prediction is that of one
  position for every impression, off by the position bias by construction).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

BINARY_TASKS: tuple[str, ...] = ("goods_bag", "product_click")
SEGMENTS: tuple[str, ...] = ("low_activity", "high_activity", "unpopular", "popular")
LOGGED_WATCH = "pred_watch_logged"  # optional column: the watch prediction at the logged feed position
LOGGED_PREFIX = "logged_pos/"  # ranking metrics of LOGGED_WATCH
WEIGHTED_AUC_CELLS = 4_000_000  # weight-matrix cells per chunk of weighted_auc (bounded memory)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (NaN when only one class is present).

    >>> auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]))
    1.0
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray,
                 columns: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC of ``scores`` under every row of ``weights`` at once: (S,), NaN where a class weighs 0.

    ``weights`` is (S, N), or (S, M) with ``columns`` (N,) naming each row's weight column (bootstrap
    counts per user and each impression's user: the (S, N) matrix is then built a chunk at a time).
    Each value equals ``roc_auc_score(labels, scores, sample_weight=w)`` (tied scores count one
    half): the rows are sorted once, then per distinct score the positive and negative weights are
    summed and ``sum_g pos_g * (neg below g + neg_g / 2) / (pos * neg)`` is read off a cumulative sum.

    >>> w = np.array([[1, 1, 1, 1], [0, 1, 2, 1]])
    >>> weighted_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.9, 0.8]), w).tolist()
    [0.625, 0.25]
    """
    y = np.asarray(labels) > 0
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights))
    cols = np.arange(s.size) if columns is None else np.asarray(columns)
    if s.size == 0:
        return np.full(len(w), np.nan)
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, cols_sorted = s[order], y[order], cols[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # first row of each distinct score
    out = np.empty(len(w))
    step = max(1, WEIGHTED_AUC_CELLS // s.size)
    for lo in range(0, len(w), step):
        ws = w[lo : lo + step][:, cols_sorted].astype(np.float64)  # (s, N) in score order
        pos = np.add.reduceat(np.where(y_sorted, ws, 0.0), starts, axis=1)  # (s, distinct scores)
        neg = np.add.reduceat(np.where(y_sorted, 0.0, ws), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each distinct score
        den = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo : lo + step] = np.where(den > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / den, np.nan)
    return out


def per_user_auc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """AUC of every user with both classes (Mann-Whitney on tie-averaged ranks), and impression counts."""
    df = pd.DataFrame({"u": np.asarray(users), "y": np.asarray(labels, dtype=np.float64),
                       "p": np.asarray(scores, dtype=np.float64)})
    df["r"] = df.groupby("u", sort=False)["p"].rank(method="average")
    df["ry"] = df["r"] * df["y"]
    g = df.groupby("u", sort=True).agg(n=("y", "size"), pos=("y", "sum"), rank_pos=("ry", "sum"))
    g["neg"] = g["n"] - g["pos"]
    g = g[(g["pos"] > 0) & (g["neg"] > 0)]
    g["auc"] = (g["rank_pos"] - g["pos"] * (g["pos"] + 1) / 2) / (g["pos"] * g["neg"])
    return g[["n", "auc"]]


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of per-user AUCs (users with one class skipped).

    >>> gauc(np.array([1, 1, 2, 2, 2, 3]), np.array([0, 1, 1, 0, 0, 1]), np.array([.2, .3, .9, .1, .5, .5]))
    1.0
    """
    g = per_user_auc(users, labels, scores)
    if g.empty:
        return float("nan")
    return float(np.average(g["auc"], weights=g["n"]))


def topk_metrics(users: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(Prec@K, NDCG@K), per user over the day, averaged over users with at least one positive.

    >>> topk_metrics(np.array([1, 1, 1]), np.array([0, 1, 0]), np.array([0.9, 0.5, 0.1]), k=2)
    (0.5, 0.6309297535714575)
    """
    users = np.asarray(users)
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if len(y) == 0:
        return float("nan"), float("nan")
    codes, uniq = pd.factorize(users, sort=True)
    n_users = len(uniq)
    order = np.lexsort((np.arange(len(y)), -p, codes))  # by user, score desc, then sample order
    c_sorted = codes[order]
    starts = np.searchsorted(c_sorted, np.arange(n_users))
    rank = np.arange(len(y)) - starts[c_sorted]  # 0-based rank within the user
    y_sorted = y[order]
    top = rank < k
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    hits = np.bincount(c_sorted[top], weights=y_sorted[top], minlength=n_users)
    dcg = np.bincount(c_sorted[top], weights=y_sorted[top] * discount[rank[top]], minlength=n_users)
    positives = np.bincount(codes, weights=y, minlength=n_users)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(positives, k).astype(int)]
    has = positives > 0
    if not has.any():
        return float("nan"), float("nan")
    return float(np.mean(hits[has] / k)), float(np.mean(dcg[has] / ideal[has]))


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error (NaN on no rows).

    >>> rmse(np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    1.0
    """
    truth = np.asarray(truth, dtype=np.float64)
    if len(truth) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((truth - np.asarray(pred, dtype=np.float64)) ** 2)))


def reliability_table(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins: count, mean predicted probability and observed rate per bin.

    >>> reliability_table(np.array([0, 1, 1]), np.array([0.05, 0.95, 0.9]), bins=2)[["count", "observed"]]
       count  observed
    0      1       0.0
    1      2       1.0
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    b = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(b, weights=p, minlength=bins) / count
        observed = np.bincount(b, weights=y, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": count, "mean_pred": mean_pred,
                         "observed": observed})


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Mean predicted vs observed watch rate, their ratio and the expected calibration error.

    >>> calibration(np.array([0, 1]), np.array([0.0, 1.0]), bins=2)["ece"]
    0.0
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return {"mean_pred": float("nan"), "observed": float("nan"), "ratio": float("nan"), "ece": float("nan")}
    table = reliability_table(y, p, bins)
    used = table["count"] > 0
    ece = float(np.sum(table["count"][used] / len(y) * np.abs(table["mean_pred"][used] - table["observed"][used])))
    mean_pred, observed = float(p.mean()), float(y.mean())
    return {"mean_pred": mean_pred, "observed": observed,
            "ratio": mean_pred / observed if observed > 0 else float("nan"), "ece": ece}


def ranking_metrics(users: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """The primary ranking metrics of one score: ``auc``, ``gauc``, ``prec@K``, ``ndcg@K``.

    >>> ranking_metrics(np.array([1, 1, 2, 2]), np.array([0, 1, 1, 0]), np.array([.1, .9, .8, .2]), k=1)
    {'auc': 1.0, 'gauc': 1.0, 'prec@1': 1.0, 'ndcg@1': 1.0}
    """
    prec, ndcg = topk_metrics(users, labels, scores, k)
    return {"auc": auc(labels, scores), "gauc": gauc(users, labels, scores), f"prec@{k}": prec, f"ndcg@{k}": ndcg}


def compute_metrics(frame: pd.DataFrame, k: int = 10, bins: int = 10) -> dict[str, float]:
    """Every metric of the module docstring on one frame of scored impressions."""
    users = frame["user"].to_numpy()
    watch = frame["watch"].to_numpy()
    p_watch = frame["pred_watch"].to_numpy()
    logged = frame[LOGGED_WATCH].to_numpy() if LOGGED_WATCH in frame else None
    watched = watch > 0
    out: dict[str, float] = {
        "rows": float(len(frame)), "users": float(frame["user"].nunique()), "watch_rate": float(np.mean(watch))
        if len(frame) else float("nan"),
        **ranking_metrics(users, watch, p_watch, k),
    }
    if logged is not None:
        out.update({f"{LOGGED_PREFIX}{key}": v for key, v in ranking_metrics(users, watch, logged, k).items()})
    if "pred_stay_time" in frame:
        stay, p_stay = frame["stay_time"].to_numpy(), frame["pred_stay_time"].to_numpy()
        out["stay_time/rmse"] = rmse(stay[watched], p_stay[watched])
        out["stay_time/rmse_all"] = rmse(stay, p_stay)
    for task in BINARY_TASKS:
        if f"pred_{task}" in frame:
            y, p = frame[task].to_numpy(), frame[f"pred_{task}"].to_numpy()
            out[f"{task}/auc"] = auc(y[watched], p[watched])
            out[f"{task}/auc_all"] = auc(y, p)
    p_observed = p_watch if logged is None else logged  # where the labels were observed (module docstring)
    out.update({f"calibration/{k_}": v for k_, v in calibration(watch, p_observed, bins).items()})
    return out


def halves(keys: np.ndarray, counts: Mapping[object, int] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Split the distinct ``keys`` into a lower and an upper half by ``counts`` (missing = 0; ties by key).

    >>> halves(np.array([3, 1, 2, 2, 4]), {1: 10, 2: 0, 3: 5})
    (array([2, 4]), array([1, 3]))
    """
    uniq = np.unique(np.asarray(keys))
    c = pd.Series(counts, dtype=np.float64).reindex(uniq).fillna(0.0).to_numpy()
    order = np.lexsort((uniq, c))
    cut = len(uniq) // 2
    return np.sort(uniq[order[:cut]]), np.sort(uniq[order[cut:]])


def segment_masks(frame: pd.DataFrame, user_counts: Mapping[object, int] | pd.Series,
                  channel_counts: Mapping[object, int] | pd.Series) -> dict[str, np.ndarray]:
    """Boolean row masks of the four segments (see the module docstring)."""
    low_u, _ = halves(frame["user"].to_numpy(), user_counts)
    low_c, _ = halves(frame["channel"].to_numpy(), channel_counts)
    low_user = frame["user"].isin(low_u).to_numpy()
    unpopular = frame["channel"].isin(low_c).to_numpy()
    return {"low_activity": low_user, "high_activity": ~low_user, "unpopular": unpopular, "popular": ~unpopular}


def segment_metrics(frame: pd.DataFrame, user_counts: Mapping[object, int] | pd.Series,
                    channel_counts: Mapping[object, int] | pd.Series, k: int = 10, bins: int = 10) -> dict[str, float]:
    """:func:`compute_metrics` per segment, keys ``segment/<segment>/<metric>``."""
    out: dict[str, float] = {}
    for name, mask in segment_masks(frame, user_counts, channel_counts).items():
        for key, value in compute_metrics(frame.loc[mask], k, bins).items():
            if key.startswith(LOGGED_PREFIX):
                out[f"{LOGGED_PREFIX}segment/{name}/{key.removeprefix(LOGGED_PREFIX)}"] = value
            else:
                out[f"segment/{name}/{key}"] = value
    return out

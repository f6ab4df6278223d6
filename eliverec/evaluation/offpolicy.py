"""Off-policy evaluation of a candidate ranker from logged feeds (expected watches per feed).

What the logs hold. Every logged impression carries the logging policy's Plackett-Luce (PL)
``propensity`` of its channel *at its position given the channels placed above it*
(``eliverec.world.world._plackett_luce``): ``p_k = e_k / (Z - e_1 - ... - e_{k-1})`` with
``e = exp(score)`` over all live channels and ``Z`` their sum. A feed's conditional propensities
therefore give back, exactly, each shown channel's PL weight ``w_c = e_c / Z`` (its probability of
being placed first)::

    w_1 = p_1,    w_k = p_k * (1 - w_1 - ... - w_{k-1})                                  (1)

and the mass ``R = 1 - sum_k w_k`` of the channels the feed did not show. The logs do not hold the
weights of those channels one by one, so the *marginal* probability ``mu(c, k | x)`` that the logger
puts channel ``c`` at position ``k`` (the propensity item-position estimators need) is computed with
``R`` spread evenly over the feed's other candidates: exactly by a dynamic programme over the subsets
of shown channels (feeds up to ``EXACT_WIDTH`` wide), else by Monte Carlo (:func:`marginal_propensity`).
That even split is an approximation (exact when every candidate was shown, or the unshown ones weigh
the same); the benchmark (``benchmarks/offpolicy.py``) measures it against the simulator's marginals.
Nothing here reads the simulator: only logged fields, the candidates' scores and ``ope`` settings.

Why item-position estimators: a deterministic candidate ranking matches a whole logged 8-channel
PL slate with negligible probability (overlap of whole slates is tiny), so slate-level IPS is
useless; matching one channel at one position happens often.

Estimators of ``V(pi) = E_x sum_k P(watch at k | pi_k(x), k, x)`` (a feed's expected watches;
goods-bag clicks per feed the same way with that reward), with ``w_xk = min(nu_xk / mu_xk, clip)``
where ``nu_xk`` is the candidate's probability of putting the logged channel at the logged position
(1 or 0 for a deterministic ranking):

- ``ips``: item-position IPS (Li et al., 2018, "Offline evaluation of ranking policies with click
  models", eq. 8; the IIP estimator): ``(1/n) sum_x sum_k w_xk r_xk``. Needs the item-position
  (position-based examination) model: a reward at ``k`` depends on the channel at ``k`` and on ``k``
  only, not on the channels around it. Unbiased under it (with exact ``mu`` and no clipping).
- ``snips``: self-normalised per position (Swaminathan & Joachims, 2015, "The self-normalized
  estimator for counterfactual learning", eq. 3): ``sum_k s_k (sum_x w_xk r_xk) / (sum_x w_xk)``
  with ``s_k`` the share of feeds that show position ``k``. Same assumption; consistent, small bias.
- ``dr``: doubly robust (Dudik et al., 2011, "Doubly robust policy evaluation and learning", eq. 3)
  per position with the candidate's own predictions ``q`` as the reward model:
  ``(1/n) sum_x [sum_k s_k q(pi_k(x), k) + sum_k w_xk (r_xk - q(L_k(x), k))]``. Unbiased when
  either ``mu`` or ``q`` is right (and the item-position model holds).

The pseudo-inverse estimator for slates (Swaminathan et al., 2017) is not implemented: it needs the
pairwise slot marginals of the logger, which the logs determine even less than ``mu``.

Intervals: a bootstrap over users (feeds of one user are resampled together), percentiles with
``numpy.quantile``; a candidate and its champion use the same resamples (paired difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from eliverec.config import Settings
from eliverec.errors import DataError

Estimator = Literal["ips", "snips", "dr"]
ESTIMATORS: tuple[Estimator, ...] = ("ips", "snips", "dr")


@dataclass(frozen=True)
class LoggedFeeds:
    """Logged impressions of ``n_feeds`` feeds, one entry per shown impression (flat arrays).

    ``feed`` indexes feeds ``0..n_feeds-1`` and ``user`` users ``0..n_users-1`` (the bootstrap unit);
    ``position`` is 0-based; ``propensity`` the logged conditional PL propensity; ``reward`` the
    outcome (watch, or goods-bag click); ``pool`` (per feed) the number of channels the logger chose
    from (at least the feed's length). ``source`` names where the logs came from (for errors).
    """

    feed: np.ndarray
    user: np.ndarray
    position: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    pool: np.ndarray
    source: str = "the logged feeds"

    @property
    def n_feeds(self) -> int:
        return int(self.pool.size)

    @property
    def n_users(self) -> int:
        return int(self.user.max()) + 1 if self.user.size else 0

    @property
    def width(self) -> int:
        return int(self.position.max()) + 1 if self.position.size else 0

    def check(self) -> None:
        """Refuse missing, zero or out-of-range propensities with a message naming the source and the fix."""
        p = np.asarray(self.propensity, dtype=np.float64)
        if self.feed.size == 0:
            raise DataError(f"{self.source}: no logged impressions to evaluate on")
        bad = ~np.isfinite(p)
        if bad.any():
            raise DataError(f"{self.source}: {int(bad.sum())} impressions have no propensity; off-policy "
                            "evaluation needs the logging policy's propensity on every impression (drop "
                            "days served by a deterministic ranker, or re-ingest logs that carry it)")
        if (p <= 0).any() or (p > 1).any():
            raise DataError(f"{self.source}: {int(((p <= 0) | (p > 1)).sum())} impressions have a propensity "
                            "outside (0, 1]; a zero propensity means the logger could not have shown the channel, "
                            "so the log is corrupt: re-ingest the day")
        if (self.pool < np.bincount(self.feed, minlength=self.n_feeds)).any():
            raise DataError(f"{self.source}: a feed's candidate pool is smaller than the feed")


def feed_matrix(logs: LoggedFeeds, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Per-impression ``values`` laid out as a (feeds, width) matrix (``fill`` where nothing was shown)."""
    out = np.full((logs.n_feeds, logs.width), fill, dtype=np.float64)
    out[logs.feed, logs.position] = values
    return out


def pl_weights(cond: np.ndarray) -> np.ndarray:
    """First-place PL weights ``w`` of a feed's shown channels from conditional propensities (eq. 1 above).

    ``cond`` is (feeds, width) with 0 where nothing was shown (only a tail of a feed may be hidden).

    >>> pl_weights(np.array([[0.5, 0.5, 0.0]])).round(3).tolist()
    [[0.5, 0.25, 0.0]]
    """
    w = np.zeros_like(cond)
    left = np.ones(cond.shape[0])
    for k in range(cond.shape[1]):
        w[:, k] = cond[:, k] * left
        left = left - w[:, k]
    return w


#: Feeds up to this wide get exact marginals (a dynamic programme over the 2^width subsets of the
#: shown channels); wider ones Monte Carlo.
EXACT_WIDTH = 10


def marginal_propensity(cond: np.ndarray, pool: np.ndarray, samples: int, rng: np.random.Generator,
                        feeds: np.ndarray | None = None, budget: int = 20_000_000) -> np.ndarray:
    """Marginal ``mu(c, k | x)`` of each shown channel at its logged position (module docstring).

    The unshown mass ``R`` is split evenly over ``pool - shown`` channels (one channel when the pool
    says none is left but ``R > 0``). Returns (feeds, width), 0 where nothing was shown. The first
    position is exact from the log (``mu = p_1``); the others are exact given that even split
    (:func:`_exact_positions`) for feeds up to ``EXACT_WIDTH`` wide, else the share of ``samples``
    Monte Carlo PL rankings. ``feeds`` (bool per feed) limits the work to the feeds whose marginals
    are needed (where a candidate matches a logged impression; the others get only the first position).
    Work is chunked so one chunk holds about ``budget`` numbers.
    """
    w = pl_weights(cond)
    shown = cond > 0
    rest_mass = np.clip(1.0 - w.sum(1), 0.0, 1.0)
    n_rest = np.where(rest_mass > 1e-12, np.maximum(pool - shown.sum(1), 1), 0)
    out = np.zeros_like(cond)
    width = cond.shape[1]
    todo = np.flatnonzero(np.ones(cond.shape[0], bool) if feeds is None else feeds)
    exact = width <= EXACT_WIDTH
    per_feed = (2**width) * (width + 1) if exact else samples * width * (width + int(n_rest.max(initial=0)))
    chunk = max(1, budget // per_feed)
    for lo in range(0, todo.size, chunk):
        rows = todo[lo : lo + chunk]
        if exact:
            out[rows] = _exact_positions(w[rows], rest_mass[rows], n_rest[rows])
        else:
            out[rows] = _mc_positions(w[rows], shown[rows], rest_mass[rows], n_rest[rows], samples, rng, width)
    out[:, 0] = cond[:, 0]
    floor = 0.0 if exact else 1.0 / (samples + 1)
    return np.where(shown, np.maximum(out, floor), 0.0)


def _exact_positions(w: np.ndarray, rest: np.ndarray, n_rest: np.ndarray) -> np.ndarray:
    """PL probability that shown channel ``i`` lands at position ``i``, the rest mass split evenly.

    ``f[S, j]`` is the probability that the first ``|S| + j`` draws are the shown channels ``S`` (in
    any order) and ``j`` of the ``n_rest`` equal rest channels; each draw takes channel ``i`` w.p.
    ``w_i / (1 - W(S) - j r)`` with ``r = R / n_rest`` (the PL chain rule, Plackett 1975).
    """
    f_n, k = w.shape
    r = np.where(n_rest > 0, rest / np.maximum(n_rest, 1), 0.0)
    masks = np.arange(2**k)
    bits = (masks[:, None] >> np.arange(k)[None, :]) & 1  # (2^k, k)
    size = bits.sum(1)
    weight_of = w @ bits.T  # (F, 2^k): W(S)
    f = np.zeros((f_n, 2**k, k + 1))
    f[:, 0, 0] = 1.0
    mu = np.zeros((f_n, k, k))
    for m in masks.tolist():
        for j in range(k - int(size[m])):
            val = f[:, m, j]
            if not val.any():
                continue
            left = np.maximum(1.0 - weight_of[:, m] - j * r, 1e-300)
            at = int(size[m]) + j
            for i in np.flatnonzero(bits[m] == 0).tolist():
                step = val * w[:, i] / left
                f[:, m | (1 << i), j] += step
                mu[:, i, at] += step
            f[:, m, j + 1] += val * np.maximum(n_rest - j, 0) * r / left
    return mu[:, np.arange(k), np.arange(k)]


def _mc_positions(w: np.ndarray, shown: np.ndarray, rest: np.ndarray, n_rest: np.ndarray, samples: int,
                  rng: np.random.Generator, width: int) -> np.ndarray:
    """Share of ``samples`` Gumbel-top-k PL rankings that put shown channel ``j`` at position ``j``."""
    f, k = w.shape
    r_max = int(n_rest.max(initial=0))
    logw = np.full((f, k + r_max), -np.inf)
    logw[:, :k] = np.where(shown, np.log(np.where(shown, w, 1.0)), -np.inf)
    if r_max:
        each = np.where(n_rest > 0, rest / np.maximum(n_rest, 1), 1.0)
        cols = np.arange(r_max)[None, :] < n_rest[:, None]
        logw[:, k:] = np.where(cols, np.log(each)[:, None], -np.inf)
    keys = logw[:, None, :] + rng.gumbel(size=(f, samples, logw.shape[1]))
    own = keys[:, :, :k]  # (f, S, k)
    rank = (keys[:, :, None, :] > own[:, :, :, None]).sum(-1)  # (f, S, k): channels ahead of j
    hit = rank == np.arange(k)[None, None, :]
    return hit.mean(1)[:, :width]


@dataclass(frozen=True)
class Target:
    """What the estimators need from a candidate policy, aligned with :class:`LoggedFeeds`.

    ``match`` (per impression): the candidate's probability of placing the logged channel at the
    logged position (0/1 for a deterministic ranker). ``q_logged`` (per impression) and
    ``q_target`` (feeds, width: its expected reward of the channel it puts at each position,
    given the position is shown) are the reward model of ``dr``; optional otherwise.
    """

    match: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its bootstrap interval and the effective sample size of the weights."""

    estimator: str
    value: float
    low: float
    high: float
    ess: float
    matched: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {"estimator": self.estimator, "value": self.value, "low": self.low, "high": self.high,
                "ess": self.ess, "matched": self.matched}


def importance_weights(logs: LoggedFeeds, target: Target, mu: np.ndarray, clip: float) -> np.ndarray:
    """Per-impression ``min(nu / mu, clip)`` (``mu`` as a (feeds, width) matrix)."""
    m = mu[logs.feed, logs.position]
    nu = np.asarray(target.match, np.float64)
    if ((nu > 0) & ~(m > 0)).any():
        raise ValueError("a matched impression has no marginal propensity: compute mu for every matched feed "
                         "(marginal_propensity(..., feeds=needed_feeds(logs, targets)))")
    return np.minimum(np.divide(nu, m, out=np.zeros_like(nu), where=nu > 0), clip)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of the importance weights (0 when all are 0).

    >>> effective_sample_size(np.array([1.0, 1.0, 0.0, 2.0]))
    2.6666666666666665
    """
    s2 = float(np.square(weights).sum())
    return float(weights.sum()) ** 2 / s2 if s2 > 0 else 0.0


def user_parts(logs: LoggedFeeds, target: Target, weights: np.ndarray, estimator: Estimator) -> dict[str, np.ndarray]:
    """Per-user sufficient sums of one estimator (rows: users) that the point and the bootstrap combine.

    ``feeds`` (U,), and for ``ips``/``dr`` ``total`` (U,); for ``snips`` ``num``, ``den``, ``shown``
    (U, width) per position.
    """
    u, k, n_users, width = logs.user, logs.position, logs.n_users, logs.width
    feed_user = np.zeros(logs.n_feeds, np.int64)
    feed_user[logs.feed] = u
    parts = {"feeds": np.bincount(feed_user, minlength=n_users).astype(np.float64)}
    r = np.asarray(logs.reward, np.float64)
    if estimator == "snips":
        parts["num"] = _by_user_pos(u, k, weights * r, n_users, width)
        parts["den"] = _by_user_pos(u, k, weights, n_users, width)
        parts["shown"] = _by_user_pos(u, k, np.ones_like(r), n_users, width)
        return parts
    if estimator == "ips":
        parts["total"] = np.bincount(u, weights * r, minlength=n_users)
        return parts
    if target.q_logged is None or target.q_target is None:
        raise ValueError("dr needs the candidate's predictions (Target.q_logged and Target.q_target)")
    shown = _by_user_pos(u, k, np.ones_like(r), n_users, width).sum(0) / logs.n_feeds  # s_k
    dm = (np.asarray(target.q_target)[:, :width] * shown[None, :]).sum(1)
    parts["total"] = (np.bincount(feed_user, dm, minlength=n_users)
                      + np.bincount(u, weights * (r - np.asarray(target.q_logged)), minlength=n_users))
    return parts


def _by_user_pos(u: np.ndarray, k: np.ndarray, v: np.ndarray, n_users: int, width: int) -> np.ndarray:
    return np.bincount(u * width + k, v, minlength=n_users * width).reshape(n_users, width)


def combine(parts: dict[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Estimates for user multiplicities ``counts`` (R, U): R=1 with ones is the point estimate."""
    n = counts @ parts["feeds"]
    if "total" in parts:
        return (counts @ parts["total"]) / n
    num, den, shown = (np.tensordot(counts, parts[key], axes=1) for key in ("num", "den", "shown"))
    per_pos = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return (per_pos * shown / n[:, None]).sum(1)


def bootstrap_counts(n_users: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, users) multiplicities of a user-level bootstrap (multinomial, users equally likely)."""
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=resamples).astype(np.float64)


def _draws(logs: LoggedFeeds, target: Target, mu: np.ndarray, estimator: Estimator, clip: float,
           counts: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Point estimate, its bootstrap replicates over ``counts`` (R, U) and the importance weights."""
    w = importance_weights(logs, target, mu, clip)
    parts = user_parts(logs, target, w, estimator)
    return float(combine(parts, np.ones((1, logs.n_users)))[0]), combine(parts, counts), w


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def estimate(logs: LoggedFeeds, target: Target, mu: np.ndarray, estimator: Estimator, clip: float,
             counts: np.ndarray, level: float) -> Estimate:
    """One estimator's value with its ``level`` percentile bootstrap interval over ``counts`` (R, U)."""
    point, draws, w = _draws(logs, target, mu, estimator, clip, counts)
    return Estimate(estimator, point, *_interval(draws, level), effective_sample_size(w), int((w > 0).sum()))


def compare_many(logs: LoggedFeeds, targets: dict[str, Target], reference: str | None, mu: np.ndarray,
                 estimator: Estimator, clip: float, counts: np.ndarray, level: float) -> dict[str, dict]:
    """Every target's estimate and, with a ``reference``, each other's paired difference from it
    (``"<name>-<reference>"``; the same user resamples for all)."""
    out: dict[str, dict] = {}
    draws = {}
    for name, target in targets.items():
        point, draws[name], w = _draws(logs, target, mu, estimator, clip, counts)
        out[name] = Estimate(estimator, point, *_interval(draws[name], level), effective_sample_size(w),
                             int((w > 0).sum())).as_dict()
    for name in targets:
        if reference is not None and name != reference:
            lo, hi = _interval(draws[name] - draws[reference], level)
            out[f"{name}-{reference}"] = {"value": out[name]["value"] - out[reference]["value"], "low": lo, "high": hi}
    return out


def compare(logs: LoggedFeeds, candidate: Target, champion: Target, mu: np.ndarray, estimator: Estimator,
            clip: float, counts: np.ndarray, level: float) -> dict[str, object]:
    """Candidate, champion and their paired difference (same user resamples) under one estimator."""
    out = compare_many(logs, {"candidate": candidate, "champion": champion}, "champion", mu, estimator, clip,
                       counts, level)
    return {"candidate": out["candidate"], "champion": out["champion"], "difference": out["candidate-champion"]}


def deterministic_match(logs: LoggedFeeds, ranking: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """``match`` of a deterministic ranker: 1 where its ranking (feeds, >=width; channel codes, -1 = none)
    puts the logged ``channel`` (per impression, same codes) at the logged position."""
    k = logs.position
    ok = k < ranking.shape[1]
    out = np.zeros(k.size)
    out[ok] = ranking[logs.feed[ok], k[ok]] == channel[ok]
    return out


def needed_feeds(logs: LoggedFeeds, targets: list[Target]) -> np.ndarray:
    """Feeds where some target matches a logged impression (only their marginals are used)."""
    out = np.zeros(logs.n_feeds, bool)
    for t in targets:
        out[logs.feed[np.asarray(t.match) > 0]] = True
    return out


# --------------------------------------------------------------------------- logged days and candidates
REWARD_LABELS: tuple[str, ...] = ("watch", "goods_bag")
#: Batch keys that describe the target channel (the rest of a row describes the user and the request).
CHANNEL_KEYS: tuple[str, ...] = ("channel", "dynamic", "dynamic_cats")
NOT_INPUTS: tuple[str, ...] = ("watch", "stay_time", "goods_bag", "product_click", "ts")


@dataclass(frozen=True)
class DayFeeds:
    """One logged day prepared for off-policy evaluation (impressions of the feeds kept, in feed order).

    ``rows``: dataset row of every impression; ``channel``: its channel code; ``feed_row`` (F,): a row
    of each feed (its user and request features); ``pool_codes`` / ``pool_rows`` (F, P): the channels
    the candidate ranks for the feed (every channel impressed on the day in the feed's stats slot, a
    stand-in for the live set) and a row carrying each one's features (-1 = padding); ``channel_ids``:
    the channel id of each code.
    """

    logs: dict[str, LoggedFeeds]
    rows: np.ndarray
    channel: np.ndarray
    feed_row: np.ndarray
    pool_codes: np.ndarray
    pool_rows: np.ndarray
    dataset: object
    dropped_feeds: int
    channel_ids: np.ndarray


def load_day_feeds(settings: Settings, date: str, max_feeds: int, seed: int) -> DayFeeds:
    """The feeds of ``date`` with their logged propensities (features of the day + its bronze impressions).

    Feeds whose positions do not start at 0 or have gaps are dropped (their PL weights, eq. 1, would be
    wrong); above ``max_feeds`` feeds, whole users are sampled (seeded). Errors name the file and the fix.
    """
    import pandas as pd

    from eliverec.features.dataset import load_days

    ds = load_days(settings.data_dir, [date])  # a DataError naming the folder when the day is missing
    full = _impressions_with_propensity(settings, date)
    full["feed"], _ = pd.factorize(full["request_id"])
    full["row"] = np.arange(len(full))
    full["code"], channel_ids = pd.factorize(full["channel_id"])
    slot_ms = settings.world.stats_interval_min * 60_000
    full["slot"] = full.groupby("feed")["ts"].transform("min") // slot_ms  # a feed's slot: its request time
    t = _complete_feeds(full)
    dropped = int(t.attrs.get("dropped", 0))
    t = _sample_users(t, max_feeds, seed)
    t["feed"], _ = pd.factorize(t["feed"])
    t["user"], _ = pd.factorize(t["user_id"])
    live = _live_pairs(settings, date, full, channel_ids, slot_ms)
    pool_codes, pool_rows = _slot_pools(pd.concat([full[["slot", "code", "row"]], live], ignore_index=True),
                                        t.drop_duplicates("feed")["slot"].to_numpy())
    source = str(settings.layout.bronze_table(date, "impression"))
    feed, pos = t["feed"].to_numpy(np.int64), t["position"].to_numpy(np.int64)
    user = t["user"].to_numpy(np.int64)
    pool = (pool_codes >= 0).sum(1)
    logs = {key: LoggedFeeds(feed, user, pos, t["propensity"].to_numpy(np.float64),
                             np.asarray(ds.column(key))[t["row"].to_numpy()].astype(np.float64), pool, source)
            for key in REWARD_LABELS}
    logs["watch"].check()
    first = t.drop_duplicates("feed").sort_values("feed")["row"].to_numpy(np.int64)
    return DayFeeds(logs, t["row"].to_numpy(np.int64), t["code"].to_numpy(np.int64), first, pool_codes, pool_rows,
                    ds, dropped, np.asarray(channel_ids))


def _impressions_with_propensity(settings: Settings, date: str):  # -> pd.DataFrame
    """``samples.parquet`` ids (row order = tensor rows) joined with the bronze impressions' propensities."""
    import datetime as dt

    import pyarrow.parquet as pq

    from eliverec.features.bronze import read_event
    from eliverec.features.dataset import day_dir

    cols = ["request_id", "user_id", "channel_id", "position", "ts"]
    t = pq.read_table(settings.layout.samples(date), columns=cols).to_pandas()
    if t.empty:
        raise DataError(f"{day_dir(settings.data_dir, date)}: no logged impressions on {date}; choose a day with logs")
    key = ["request_id", "channel_id", "position"]
    prop = read_event(settings.data_dir, dt.date.fromisoformat(date), "impression", [*key, "propensity"])
    prop = prop.to_pandas().drop_duplicates(key)
    t = t.merge(prop, on=key, how="left", validate="many_to_one")
    source = str(settings.layout.bronze_table(date, "impression"))
    p = t["propensity"].to_numpy(np.float64)
    if np.isnan(p).all():
        raise DataError(f"{source}: no impression of {date} carries a propensity; off-policy evaluation needs days "
                        "logged by the stochastic logging policy (re-ingest raw logs that record it)")
    if np.mean(p[t["position"].to_numpy() > 0] == 1.0) > 0.5:
        raise DataError(f"{source}: most impressions below the top have propensity 1, so {date} was served by a "
                        "deterministic ranker (the A/B service): no other ranking had a chance to be logged. "
                        "Evaluate on a day of the stochastic logging policy")
    return t


def _complete_feeds(t):  # (pd.DataFrame) -> pd.DataFrame
    """Keep feeds whose positions are exactly 0..n-1 (a quarantined impression leaves a gap)."""
    g = t.groupby("feed")["position"]
    ok = (g.transform("min") == 0) & (g.transform("max") == g.transform("size") - 1) & (g.transform("nunique")
                                                                                      == g.transform("size"))
    out = t[ok.to_numpy()].sort_values(["feed", "position"], kind="stable").reset_index(drop=True)
    out.attrs["dropped"] = int(t.loc[~ok.to_numpy(), "feed"].nunique())
    return out


def _sample_users(t, max_feeds: int, seed: int):  # (pd.DataFrame) -> pd.DataFrame
    """Whole users, in a seeded random order, until ``max_feeds`` feeds are taken."""
    per_user = t.groupby("user_id")["feed"].nunique()
    if per_user.sum() <= max_feeds:
        return t
    order = per_user.sample(frac=1.0, random_state=seed)
    keep = order.index[order.cumsum().to_numpy() <= max(max_feeds, int(order.iloc[0]))]
    return t[t["user_id"].isin(keep)].reset_index(drop=True)


def _live_pairs(settings: Settings, date: str, full, channel_ids: np.ndarray, slot_ms: int):  # -> pd.DataFrame
    """(slot, code, row) of every channel live in a slot by the day's ``channel_stats`` snapshots, with the
    day's impression row of that channel nearest in time (its features). Channels never impressed on the
    day cannot be scored and are left out."""
    import datetime as dt

    import pandas as pd

    from eliverec.features.bronze import read_event

    stats = read_event(settings.data_dir, dt.date.fromisoformat(date), "channel_stats", ["channel_id", "ts"])
    stats = stats.to_pandas()
    code = pd.Index(channel_ids).get_indexer(stats["channel_id"])
    keep = code >= 0
    ts = stats["ts"].to_numpy(np.int64)[keep]
    slot, code = ts // slot_ms, code[keep].astype(np.int64)
    order = np.lexsort((full["ts"].to_numpy(), full["code"].to_numpy()))
    codes, times = full["code"].to_numpy(np.int64)[order], full["ts"].to_numpy(np.int64)[order]
    at = np.searchsorted(codes * 10**13 + times, code * 10**13 + ts)  # ts < 10^13 ms (until the year 2286)

    def gap(i: np.ndarray) -> np.ndarray:
        return np.where(codes[i] == code, np.abs(times[i] - ts), np.iinfo(np.int64).max)

    lo, hi = np.clip(at - 1, 0, codes.size - 1), np.clip(at, 0, codes.size - 1)
    pick = np.where(gap(lo) <= gap(hi), lo, hi)
    return pd.DataFrame({"slot": slot, "code": code, "row": full["row"].to_numpy()[order][pick]})


def _slot_pools(pairs, feed_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pairs: pd.DataFrame
    """Per feed, the channels of its stats slot (live by the snapshots, or impressed in it) and a row of
    each carrying its features (padded with -1)."""
    first = pairs.drop_duplicates(["slot", "code"]).sort_values(["slot", "code"])
    slots, start = np.unique(first["slot"].to_numpy(), return_index=True)
    sizes = np.diff(np.append(start, len(first)))
    grid_codes = np.full((slots.size, int(sizes.max())), -1, np.int64)
    grid_rows = np.full_like(grid_codes, -1)
    col = np.arange(len(first)) - np.repeat(start, sizes)
    which = np.repeat(np.arange(slots.size), sizes)
    grid_codes[which, col], grid_rows[which, col] = first["code"].to_numpy(), first["row"].to_numpy()
    at = np.searchsorted(slots, feed_slot)
    return grid_codes[at], grid_rows[at]


@dataclass(frozen=True)
class Ranked:
    """A candidate's ranking of every feed's pool (channel codes, F x width, -1 = none) and its predictions:
    ``q_target[label]`` (F, width) of the channel it puts at each position, ``q_logged[label]`` per impression."""

    codes: np.ndarray
    q_target: dict[str, np.ndarray]
    q_logged: dict[str, np.ndarray]


def _inputs(ds: object, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in ds[rows].items() if k not in NOT_INPUTS}  # type: ignore[index]


def _pairs(ds: object, user_rows: np.ndarray, channel_rows: np.ndarray, position: np.ndarray) -> dict[str, np.ndarray]:
    """Model inputs pairing each user/request row with another row's channel features, at ``position``."""
    batch = _inputs(ds, user_rows)
    other = _inputs(ds, channel_rows)
    for key in CHANNEL_KEYS:
        if key in other:
            batch[key] = other[key]
    dtype = batch["position"].dtype  # the model's signature fixes it
    batch["position"] = np.broadcast_to(np.asarray(position), user_rows.shape).astype(dtype)
    return batch


def rank_feeds(model: object, day: DayFeeds, width: int, serve_position: int, chunk: int = 32768) -> Ranked:
    """Score every feed's pool at the serving position (as serving ranks), keep the top ``width``, and
    predict each kept channel at the position it gets (the ``dr`` reward model)."""
    n_feeds, n_pool = day.pool_codes.shape
    codes = np.full((n_feeds, width), -1, np.int64)
    rows = np.full((n_feeds, width), -1, np.int64)
    step = max(1, chunk // n_pool)
    for lo in range(0, n_feeds, step):
        f = np.arange(lo, min(n_feeds, lo + step))
        fi, pj = np.nonzero(day.pool_rows[f] >= 0)
        pred = model.predict(_pairs(day.dataset, day.feed_row[f][fi], day.pool_rows[f][fi, pj], serve_position))
        score = np.full((f.size, n_pool), -np.inf)
        score[fi, pj] = np.asarray(pred["watch"], np.float64)
        col = np.argsort(-score, axis=1, kind="stable")[:, :width]
        keep = np.isfinite(np.take_along_axis(score, col, 1))
        codes[f, : col.shape[1]] = np.where(keep, np.take_along_axis(day.pool_codes[f], col, 1), -1)
        rows[f, : col.shape[1]] = np.where(keep, np.take_along_axis(day.pool_rows[f], col, 1), -1)
    q_target = {label: np.zeros((n_feeds, width)) for label in REWARD_LABELS}
    fi, k = np.nonzero(codes >= 0)
    for lo in range(0, fi.size, chunk):
        sl = slice(lo, lo + chunk)
        pred = model.predict(_pairs(day.dataset, day.feed_row[fi[sl]], rows[fi[sl], k[sl]], k[sl]))
        for label in REWARD_LABELS:
            q_target[label][fi[sl], k[sl]] = np.asarray(pred[label], np.float64)
    q_logged = {label: np.zeros(day.rows.size) for label in REWARD_LABELS}
    for lo in range(0, day.rows.size, chunk):
        pred = model.predict(_inputs(day.dataset, day.rows[lo : lo + chunk]))
        for label in REWARD_LABELS:
            q_logged[label][lo : lo + chunk] = np.asarray(pred[label], np.float64)
    return Ranked(codes, q_target, q_logged)


def targets_of(day: DayFeeds, ranked: Ranked) -> dict[str, Target]:
    """Per reward, the :class:`Target` of a deterministic ranker from its :class:`Ranked` output."""
    logs = day.logs[REWARD_LABELS[0]]
    match = deterministic_match(logs, ranked.codes, day.channel)
    return {label: Target(match, ranked.q_logged[label], ranked.q_target[label]) for label in REWARD_LABELS}


def estimate_day(settings: Settings, day: DayFeeds, models: dict[str, object],
                 reference: str | None) -> tuple[dict[str, object], dict[str, Ranked]]:
    """Every estimator's estimate of every model on a logged day (and differences from ``reference``),
    with each model's :class:`Ranked` output. Keys: ``<label>/<estimator>`` -> :func:`compare_many`."""
    from eliverec.evaluation.evaluate import serve_position

    cfg = settings.ope
    logs = day.logs["watch"]
    ranked = {name: rank_feeds(m, day, logs.width, serve_position(settings, m)) for name, m in models.items()}
    tg = {name: targets_of(day, r) for name, r in ranked.items()}
    rng = np.random.default_rng([settings.seed, 19])
    mu = marginal_propensity(feed_matrix(logs, logs.propensity), logs.pool, cfg.mc_samples, rng,
                             feeds=needed_feeds(logs, [t["watch"] for t in tg.values()]))
    counts = bootstrap_counts(logs.n_users, cfg.bootstrap, rng)
    out: dict[str, object] = {}
    for label in REWARD_LABELS:
        for est in ESTIMATORS:
            out[f"{label}/{est}"] = compare_many(day.logs[label], {n: t[label] for n, t in tg.items()}, reference,
                                                 mu, est, cfg.clip, counts, cfg.level)
    return out, ranked


def evaluate_models(settings: Settings, date: str, candidate: object, champion: object | None) -> dict[str, object]:
    """Every estimator's estimate of the candidate (and champion, and their paired difference) on ``date``.

    The gate reads ``["watch"][settings.ope.estimator]["difference"]``.
    """
    cfg = settings.ope
    day = load_day_feeds(settings, date, cfg.max_feeds, settings.seed)
    logs = day.logs["watch"]
    models = {"candidate": candidate} | ({} if champion is None else {"champion": champion})
    res, _ = estimate_day(settings, day, models, "champion" if champion is not None else None)
    out: dict[str, object] = {"date": date, "feeds": logs.n_feeds, "users": logs.n_users,
                              "impressions": int(logs.feed.size), "dropped_feeds": day.dropped_feeds,
                              "mean_pool": float(logs.pool.mean()), "gate_estimator": cfg.estimator,
                              "clip": cfg.clip, "level": cfg.level}
    for label in REWARD_LABELS:
        lg = day.logs[label]
        per: dict[str, object] = {"logged": float(lg.reward.sum() / lg.n_feeds)}
        for est in ESTIMATORS:
            r = res[f"{label}/{est}"]
            per[est] = {"candidate": r["candidate"]} | ({} if champion is None else {
                "champion": r["champion"], "difference": r["candidate-champion"]})
        out[label] = per
    return out


def significantly_below(result: dict[str, object], estimator: str) -> bool | None:
    """Whether the candidate's watch estimate is significantly below the champion's (None: no champion)."""
    diff = result["watch"][estimator].get("difference")  # type: ignore[index]
    return None if diff is None else bool(diff["high"] < 0)


def markdown(result: dict[str, object], candidate_uri: str, champion_uri: str | None) -> str:
    """The report as a short markdown page."""
    f = lambda v: f"{v:.4f}"  # noqa: E731
    lines = [f"# Off-policy estimate: `{candidate_uri}` vs `{champion_uri or 'no champion'}` on {result['date']}", "",
             f"{result['feeds']} logged feeds of {result['users']} users ({result['dropped_feeds']} feeds with gaps "
             f"dropped); candidates rank a mean pool of {result['mean_pool']:.1f} channels; weights clipped at "
             f"{result['clip']}; {result['level']:.0%} user-bootstrap intervals. The gate reads "
             f"`{result['gate_estimator']}` on watches.", "",
             "| reward | estimator | logged policy | candidate [interval] | champion [interval] "
             "| difference [interval] | ESS (cand.) |", "|---|---|---|---|---|---|---|"]
    for label in REWARD_LABELS:
        per = result[label]
        for est in ESTIMATORS:
            r = per[est]  # type: ignore[index]
            c, h, d = r["candidate"], r.get("champion"), r.get("difference")
            cell = lambda e: "" if e is None else f"{f(e['value'])} [{f(e['low'])}, {f(e['high'])}]"  # noqa: E731
            lines.append(f"| {label} | {est} | {f(per['logged'])} | {cell(c)} | {cell(h)} | {cell(d)} | "  # type: ignore[index]
                         f"{c['ess']:.0f} |")
    return "\n".join(lines) + "\n"


def run_ope(settings: Settings, candidate_uri: str, date: str, champion_uri: str | None = None) -> dict[str, object]:
    """``eliverec ope``: estimate candidate and champion on ``date``; write ``reports/ope/<date>/<name>.{json,md}``."""
    import json

    from eliverec import registry
    from eliverec.evaluation.evaluate import load_model, report_name

    if champion_uri is None and registry.alias_version(settings, registry.CHAMPION) is not None:
        champion_uri = f"models:/{settings.tracking.registered_model}@{registry.CHAMPION}"
    candidate = load_model(settings, candidate_uri)
    champion = load_model(settings, champion_uri) if champion_uri else None
    result = evaluate_models(settings, date, candidate, champion)
    result.update({"candidate_uri": candidate_uri, "champion_uri": champion_uri})
    paths = settings.layout.report_files("ope", report_name(candidate_uri), date)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(result, indent=2))
    paths["markdown"].write_text(markdown(result, candidate_uri, champion_uri))
    result["paths"] = {k: str(v) for k, v in paths.items()}
    return result

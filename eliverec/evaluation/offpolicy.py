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
puts channel ``c`` at position ``k`` (the propensity item-position estimators need) is estimated by
Monte Carlo: PL samples over the shown weights plus ``R`` spread evenly over the feed's other
candidates (:func:`marginal_propensity`). That even split is an approximation (exact when every
candidate was shown); the benchmark (``benchmarks/offpolicy.py``) measures what it costs.

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


def marginal_propensity(cond: np.ndarray, pool: np.ndarray, samples: int, rng: np.random.Generator,
                        budget: int = 20_000_000) -> np.ndarray:
    """Monte Carlo marginal ``mu(c, k | x)`` of each shown channel at its logged position (module docstring).

    The unshown mass ``R`` is split evenly over ``pool - shown`` channels (one channel when the pool
    says none is left but ``R > 0``). Returns (feeds, width), 0 where nothing was shown. The first
    position is exact: ``mu = p_1``. Work is chunked so one chunk holds about ``budget`` comparisons.
    """
    w = pl_weights(cond)
    shown = cond > 0
    m = shown.sum(1)
    rest_mass = np.clip(1.0 - w.sum(1), 0.0, 1.0)
    n_rest = np.where(rest_mass > 1e-12, np.maximum(pool - m, 1), 0)
    out = np.zeros_like(cond)
    width = cond.shape[1]
    chunk = max(1, budget // (samples * width * (width + int(n_rest.max(initial=0)))))  # bounded memory
    for lo in range(0, cond.shape[0], chunk):
        sl = slice(lo, min(lo + chunk, cond.shape[0]))
        out[sl] = _mc_positions(w[sl], shown[sl], rest_mass[sl], n_rest[sl], samples, rng, width)
    out[:, 0] = cond[:, 0]
    return np.where(shown, np.maximum(out, 1.0 / (samples + 1)), 0.0)


def _mc_positions(w: np.ndarray, shown: np.ndarray, rest: np.ndarray, n_rest: np.ndarray, samples: int,
                  rng: np.random.Generator, width: int) -> np.ndarray:
    """Share of ``samples`` Gumbel-top-k PL rankings that put shown channel ``j`` at position ``j``."""
    f, k = w.shape
    r_max = int(n_rest.max()) if n_rest.size else 0
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
    return np.minimum(np.asarray(target.match, np.float64) / m, clip)


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


def estimate(logs: LoggedFeeds, target: Target, mu: np.ndarray, estimator: Estimator, clip: float,
             counts: np.ndarray, level: float) -> Estimate:
    """One estimator's value with its ``level`` percentile bootstrap interval over ``counts`` (R, U)."""
    w = importance_weights(logs, target, mu, clip)
    parts = user_parts(logs, target, w, estimator)
    point = float(combine(parts, np.ones((1, logs.n_users)))[0])
    lo, hi = np.quantile(combine(parts, counts), [(1 - level) / 2, (1 + level) / 2])
    return Estimate(estimator, point, float(lo), float(hi), effective_sample_size(w), int((w > 0).sum()))


def compare(logs: LoggedFeeds, candidate: Target, champion: Target, mu: np.ndarray, estimator: Estimator,
            clip: float, counts: np.ndarray, level: float) -> dict[str, object]:
    """Candidate, champion and their paired difference (same user resamples) under one estimator."""
    out: dict[str, object] = {}
    draws = {}
    for name, target in (("candidate", candidate), ("champion", champion)):
        w = importance_weights(logs, target, mu, clip)
        parts = user_parts(logs, target, w, estimator)
        draws[name] = combine(parts, counts)
        point = float(combine(parts, np.ones((1, logs.n_users)))[0])
        lo, hi = np.quantile(draws[name], [(1 - level) / 2, (1 + level) / 2])
        out[name] = Estimate(estimator, point, float(lo), float(hi), effective_sample_size(w),
                             int((w > 0).sum())).as_dict()
    diff = draws["candidate"] - draws["champion"]
    lo, hi = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2])
    out["difference"] = {"value": out["candidate"]["value"] - out["champion"]["value"],  # type: ignore[index]
                         "low": float(lo), "high": float(hi)}
    return out


def deterministic_match(logs: LoggedFeeds, ranking: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """``match`` of a deterministic ranker: 1 where its ranking (feeds, >=width; channel codes, -1 = none)
    puts the logged ``channel`` (per impression, same codes) at the logged position."""
    k = logs.position
    ok = k < ranking.shape[1]
    out = np.zeros(k.size)
    out[ok] = ranking[logs.feed[ok], k[ok]] == channel[ok]
    return out

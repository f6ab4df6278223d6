"""Off-policy estimators on a small synthetic logging problem whose answers are known exactly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from eliverec.errors import DataError
from eliverec.evaluation import offpolicy as ope

ITEMS = 4  # every feed shows the whole pool: the marginals from the log are exact
THETA = 1.0 / (1.0 + np.arange(ITEMS)) ** 0.5  # position-based examination


@dataclass(frozen=True)
class Problem:
    """Contexts with PL logging scores and true relevances (item-position model rewards)."""

    scores: np.ndarray  # (contexts, items)
    gamma: np.ndarray  # (contexts, items): P(reward | examined)


def problem(seed: int = 0, contexts: int = 6) -> Problem:
    rng = np.random.default_rng(seed)
    return Problem(rng.normal(0.0, 1.0, (contexts, ITEMS)), rng.uniform(0.05, 0.6, (contexts, ITEMS)))


def exact_marginals(scores: np.ndarray) -> np.ndarray:
    """(contexts, items, positions) PL marginals by enumerating every ranking."""
    out = np.zeros((scores.shape[0], ITEMS, ITEMS))
    e = np.exp(scores)
    for perm in itertools.permutations(range(ITEMS)):
        p = np.ones(scores.shape[0])
        left = e.sum(1)
        for a in perm:
            p = p * e[:, a] / left
            left = left - e[:, a]
        for k, a in enumerate(perm):
            out[:, a, k] += p
    return out


def log_feeds(pr: Problem, n_feeds: int, users: int, rng: np.random.Generator) -> tuple[ope.LoggedFeeds, np.ndarray]:
    """Feeds from the PL logger with item-position rewards; returns the logs and the logged item codes."""
    ctx = rng.integers(0, pr.scores.shape[0], n_feeds)
    g = pr.scores[ctx] + rng.gumbel(size=(n_feeds, ITEMS))
    order = np.argsort(-g, axis=1)
    e = np.exp(np.take_along_axis(pr.scores[ctx], order, 1))
    left = e.sum(1, keepdims=True) - np.concatenate([np.zeros((n_feeds, 1)), np.cumsum(e, 1)[:, :-1]], 1)
    reward = rng.random((n_feeds, ITEMS)) < THETA[None, :] * np.take_along_axis(pr.gamma[ctx], order, 1)
    feed = np.repeat(np.arange(n_feeds), ITEMS)
    logs = ope.LoggedFeeds(feed=feed, user=feed % users, position=np.tile(np.arange(ITEMS), n_feeds),
                           propensity=(e / left).ravel(), reward=reward.ravel().astype(float),
                           pool=np.full(n_feeds, ITEMS))
    return logs, np.concatenate([ctx[:, None], order], 1)


def truth(pr: Problem, ranking: np.ndarray) -> float:
    """Exact expected rewards per feed of a deterministic ranking per context (contexts equally likely)."""
    return float((THETA[None, :] * np.take_along_axis(pr.gamma, ranking, 1)).sum(1).mean())


def target_of(logs: ope.LoggedFeeds, logged: np.ndarray, ranking: np.ndarray, pr: Problem) -> ope.Target:
    ctx, order = logged[:, 0], logged[:, 1:]
    per_feed = ranking[ctx]
    q = np.full_like(pr.gamma, 0.3)  # a deliberately wrong reward model: dr must still be unbiased
    return ope.Target(match=ope.deterministic_match(logs, per_feed, order.ravel()),
                      q_logged=(q[ctx][np.arange(ctx.size)[:, None], order] * THETA).ravel(),
                      q_target=np.take_along_axis(q[ctx], per_feed, 1) * THETA[None, :])


def test_pl_weights_recover_first_place_probabilities():
    pr = problem()
    logs, logged = log_feeds(pr, 50, 10, np.random.default_rng(1))
    w = ope.pl_weights(ope.feed_matrix(logs, logs.propensity))
    e = np.exp(pr.scores[logged[:, 0]])
    expect = np.take_along_axis(e / e.sum(1, keepdims=True), logged[:, 1:], 1)
    np.testing.assert_allclose(w, expect, rtol=1e-9)


def test_exact_marginals_match_enumeration():
    pr = problem()
    logs, logged = log_feeds(pr, 40, 10, np.random.default_rng(2))
    mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, 16, np.random.default_rng(3))
    exact = exact_marginals(pr.scores)[logged[:, 0][:, None], logged[:, 1:], np.arange(ITEMS)[None, :]]
    np.testing.assert_allclose(mu, exact, rtol=1e-9)


def test_exact_marginals_with_an_evenly_split_rest_match_enumeration():
    """The two unshown channels have equal weights, so the even split of their mass is exact."""
    scores = np.array([[1.5, 0.7, 0.2, 0.2]])
    full = exact_marginals(scores)[0]  # (items, positions)
    w = np.exp(scores[0]) / np.exp(scores[0]).sum()
    cond = np.array([[w[0], w[1] / (1 - w[0])]])  # a feed that showed items 0 then 1, the pool holds 4
    mu = ope.marginal_propensity(cond, np.array([ITEMS]), 16, np.random.default_rng(0))
    np.testing.assert_allclose(mu[0], [full[0, 0], full[1, 1]], rtol=1e-9)


def test_monte_carlo_marginals_match_enumeration(monkeypatch):
    monkeypatch.setattr(ope, "EXACT_WIDTH", 0)  # wide feeds take the Monte Carlo path
    pr = problem()
    logs, logged = log_feeds(pr, 40, 10, np.random.default_rng(2))
    samples = 4000
    mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, samples,
                                 np.random.default_rng(3))
    exact = exact_marginals(pr.scores)[logged[:, 0][:, None], logged[:, 1:], np.arange(ITEMS)[None, :]]
    se = np.sqrt(exact * (1 - exact) / samples)
    assert np.abs(mu - exact).max() < 5 * se.max() + 1e-3
    np.testing.assert_allclose(mu[:, 0], exact[:, 0], rtol=1e-9)  # the first position is exact


@pytest.mark.parametrize("estimator", ["ips", "snips"])
def test_logging_policy_estimate_equals_its_observed_rate(estimator):
    pr = problem()
    logs, _ = log_feeds(pr, 300, 40, np.random.default_rng(4))
    mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, 64, np.random.default_rng(5))
    own = ope.Target(match=mu[logs.feed, logs.position])  # the logger's own marginals: every weight is 1
    counts = ope.bootstrap_counts(logs.n_users, 50, np.random.default_rng(6))
    est = ope.estimate(logs, own, mu, estimator, clip=1e9, counts=counts, level=0.9)
    observed = logs.reward.sum() / logs.n_feeds
    assert est.value == pytest.approx(observed, rel=1e-12)
    assert est.low <= observed <= est.high


def coverage_run(estimator: str, seeds: int, n_feeds: int) -> tuple[np.ndarray, np.ndarray, float]:
    pr = problem(seed=7)
    ranking = np.argsort(-pr.gamma, axis=1)[:, ::-1].copy()  # a bad ranker, far from the logger
    true = truth(pr, ranking)
    values, covered = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        logs, logged = log_feeds(pr, n_feeds, n_feeds // 4, rng)
        mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, 64, rng)
        est = ope.estimate(logs, target_of(logs, logged, ranking, pr), mu, estimator, clip=1e9,
                           counts=ope.bootstrap_counts(logs.n_users, 200, rng), level=0.9)
        values.append(est.value)
        covered.append(est.low <= true <= est.high)
    return np.array(values), np.array(covered), true


@pytest.mark.parametrize("estimator", ["ips", "dr"])
def test_unbiased_within_interval_over_seeds(estimator):
    seeds = 60
    values, covered, true = coverage_run(estimator, seeds, 400)
    se_of_mean = values.std(ddof=1) / np.sqrt(seeds)
    assert abs(values.mean() - true) < 3 * se_of_mean  # unbiased: the mean over seeds sits on the truth
    assert covered.mean() >= 0.8  # a nominal 90% interval covers in most runs (binomial slack for 60 runs)


def test_clipping_bounds_every_weight():
    pr = problem()
    logs, logged = log_feeds(pr, 200, 20, np.random.default_rng(8))
    mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, 64, np.random.default_rng(9))
    ranking = np.argsort(pr.scores, axis=1)  # the logger's least likely order: large weights
    w = ope.importance_weights(logs, target_of(logs, logged, ranking, pr), mu, clip=2.0)
    assert w.max() == pytest.approx(2.0)
    assert 0 < ope.effective_sample_size(w) <= (w > 0).sum()


def test_paired_difference_of_a_ranker_with_itself_is_zero():
    pr = problem()
    logs, logged = log_feeds(pr, 200, 20, np.random.default_rng(10))
    mu = ope.marginal_propensity(ope.feed_matrix(logs, logs.propensity), logs.pool, 64, np.random.default_rng(11))
    t = target_of(logs, logged, np.argsort(-pr.gamma, axis=1), pr)
    out = ope.compare(logs, t, t, mu, "snips", 50.0, ope.bootstrap_counts(logs.n_users, 40,
                                                                          np.random.default_rng(12)), 0.9)
    assert out["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}


@pytest.mark.parametrize(("value", "words"), [(np.nan, "no propensity"), (0.0, "zero propensity")])
def test_missing_or_zero_propensity_is_refused(value, words):
    pr = problem()
    logs, _ = log_feeds(pr, 5, 2, np.random.default_rng(13))
    p = logs.propensity.copy()
    p[3] = value
    bad = ope.LoggedFeeds(logs.feed, logs.user, logs.position, p, logs.reward, logs.pool, source="bronze/x")
    with pytest.raises(DataError, match=words) as err:
        bad.check()
    assert "bronze/x" in str(err.value)


def test_dr_without_predictions_says_what_it_needs():
    pr = problem()
    logs, _ = log_feeds(pr, 5, 2, np.random.default_rng(14))
    with pytest.raises(ValueError, match="q_logged"):
        ope.user_parts(logs, ope.Target(match=np.zeros(logs.feed.size)), np.zeros(logs.feed.size), "dr")


@pytest.mark.parametrize(("high", "below"), [(-0.01, True), (0.01, False)])
def test_significantly_below_reads_the_upper_bound_of_the_difference(high, below):
    result = {"watch": {"snips": {"difference": {"value": high - 0.1, "low": high - 0.2, "high": high}}}}
    assert ope.significantly_below(result, "snips") is below
    assert ope.significantly_below({"watch": {"snips": {"candidate": {}}}}, "snips") is None

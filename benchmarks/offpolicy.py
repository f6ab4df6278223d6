"""Off-policy estimates against the world's truth: bias, interval coverage and spread per estimator.

For ``--replicates`` independent logging runs, the world's logging policy (Plackett-Luce over the
live channels, ``World.policy_slates``) serves ``--feeds`` feed requests of one main day (users
drawn by activity, times by the diurnal curve, the world's feed cut) and the world samples what the
users did (``World.respond``). The estimators of :mod:`eliverec.evaluation.offpolicy` then see only
what production logs hold: the shown channels, their logged propensities, the rewards, the user,
and the size of the feed's candidate pool (the channels live at the time), plus each candidate's
ranking of that pool and its own predictions (the ``dr`` reward model).

Candidates (deterministic rankers of the live pool). Scoring unlogged pairs with the registered
neural models needs point-in-time features for every live channel of every feed, which the offline
feature store does not hold; so the candidates here are stand-ins built from the world's true watch
probability at the top position ``p`` with a fixed per-(user, channel) noise ``z`` (a model's error):

- ``champion``: ``logit(p) + 1.0 z1`` (a weaker model), ``challenger``: ``logit(p) + 0.5 z2`` (a better
  one), ``negative``: the challenger's logit negated (the negative control of
  ``eliverec/experiments/controls.py``: its ranking reversed), ``random``: a random order. Each
  predicts ``sigmoid(logit) * exam(k)`` at position ``k`` (``random``: the logged rate at ``k``).

Truth per candidate: (a) the world's exact expectation ``sum_k P(k shown) P(watch | pi_k, k)`` over a
large sample of feed contexts (``World.oracle``), (b) an A/B-like closed loop: the candidate serves
``--feeds`` fresh requests and the world samples the watches (the ramp's traffic arm, without the HTTP
service; its candidates are the live pool, not ``ab.traffic_candidates`` drawn by popularity).

Reported per estimator and candidate: bias (mean estimate - truth), relative bias, the spread of the
estimates over replicates, the mean interval width, coverage of the truth by the nominal interval,
the effective sample size and the share of matched impressions; and for the gate's decision
(candidate - champion, paired): coverage of the true difference and how often a candidate is rejected.

Sizing: the default (``--profile tiny``: 300 users, 60 channels; 100 replicates x 2000 feeds, 200
bootstrap resamples, truth over 20000 feeds, the simulator's marginals for the ``*`` rows from 2000
Monte Carlo rankings per matched feed) took 5 minutes on two shared cores; ``--profile default
--replicates 30 --true-mu-samples 0`` (10000 users, 1500 channels, a few hundred live) about 2 minutes.
The production marginals are exact (feeds are 8 wide), so no Monte Carlo sizing enters them.
``--clip 1e9`` turns clipping off (results ``offpolicy_<profile>_noclip.*``).

``--neural``: the production path end to end on trained networks. A fresh world of the profile is
simulated, ingested and featurised in a temporary folder; ETA dual (champion) and eLiveRec
(challenger) train on it; with the negative control (the champion's watch probability p read as
1 - p) and a random ranker, ``eliverec.evaluation.offpolicy.estimate_day`` estimates each on every
feature day (one logged day each) from logged fields only, and the simulator gives the truth for the
same feeds and the same rankings (exact expectation, plus an A/B-like draw of the world's responses).
Tiny: under a minute; ``--profile default --max-feeds 4000 --last-days 2``: 13 minutes (training
3 minutes, scoring every live channel of 4,000 feeds for 4 models and 2 days the rest). Writes
``offpolicy_neural_<profile>.{json,md}``.

Run: ``nice .venv/bin/python benchmarks/offpolicy.py [--profile tiny] [--replicates 100] [--feeds 2000]``;
writes ``benchmarks/results/offpolicy_<profile>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit, logit, ndtri

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REWARDS = ("watch", "goods_bag")
CANDIDATES = ("champion", "challenger", "negative", "random")
NOISE = {"champion": (1.0, 11), "challenger": (0.5, 23)}


@dataclass(frozen=True)
class Contexts:
    """Feed requests: user, time, the live pool (padded with -1) and the shown-position probabilities."""

    users: np.ndarray
    ts: np.ndarray
    pool: np.ndarray  # (F, P) channel indices, -1 = padding
    shown_prob: np.ndarray  # (F, K) P(position k shown): the feed cut and the pool size


def contexts(world: Any, day: int, n: int, rng: np.random.Generator) -> Contexts:
    """``n`` feed requests of day ``day`` (users by activity, times by the diurnal curve)."""
    from eliverec.world.world import FEED_CUT

    st = world.day(day)
    p = world.users.feed_rate / world.users.feed_rate.sum()
    users = rng.choice(world.n_users, size=n, p=p)
    ts = world.sample_feed_times(st, n, rng)
    lists = [st.live_lists[int(s)] for s in ((ts - st.start_ms) // st.slot_ms).tolist()]
    width = max(len(x) for x in lists)
    pool = np.full((n, width), -1, np.int64)
    for i, x in enumerate(lists):
        pool[i, : x.size] = x
    k = world.cfg.feed_size
    visible = k - np.minimum(np.arange(FEED_CUT.size), k - 1)  # positions shown after each cut
    by_cut = (np.arange(k)[None, :] < visible[:, None]) * FEED_CUT[:, None]
    sizes = (pool >= 0).sum(1)
    return Contexts(users, ts, pool, by_cut.sum(0)[None, :] * (np.arange(k)[None, :] < sizes[:, None]))


def noise(users: np.ndarray, chans: np.ndarray, salt: int) -> np.ndarray:
    """A fixed standard-normal error per (user, channel) pair (a model's idiosyncratic mistakes)."""
    h = (users.astype(np.uint64) * np.uint64(1_000_003) + chans.astype(np.uint64) * np.uint64(7919)
         + np.uint64(salt)) * np.uint64(2654435761) % np.uint64(2**32)
    return ndtri((h.astype(np.float64) + 0.5) / 2**32)


def pool_truth(world: Any, ctx: Contexts) -> dict[str, np.ndarray]:
    """True watch / goods-bag probabilities of every pool channel at the top position (F, P)."""
    ok = ctx.pool >= 0
    uu = np.broadcast_to(ctx.users[:, None], ctx.pool.shape)[ok]
    tt = np.broadcast_to(ctx.ts[:, None], ctx.pool.shape)[ok]
    o = world.oracle(uu, ctx.pool[ok], tt, 0)
    out = {}
    for key in REWARDS:
        m = np.zeros(ctx.pool.shape)
        m[ok] = o[key]
        out[key] = m
    return out


def candidate_logits(ctx: Contexts, p_top: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each candidate's score of every pool channel (F, P); -inf on padding."""
    ok = ctx.pool >= 0
    base = logit(np.clip(p_top, 1e-6, 1 - 1e-6))
    u = np.broadcast_to(ctx.users[:, None], ctx.pool.shape)
    out = {name: base + sd * noise(u, np.maximum(ctx.pool, 0), salt) for name, (sd, salt) in NOISE.items()}
    out["negative"] = -out["challenger"]
    out["random"] = rng.random(ctx.pool.shape)
    return {k: np.where(ok, v, -np.inf) for k, v in out.items()}


def rank(ctx: Contexts, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` pool channels by score (F, k; -1 past the pool) and their columns in the pool."""
    col = np.argsort(-score, axis=1, kind="stable")[:, :k]
    chans = np.take_along_axis(ctx.pool, col, 1)
    return np.where(np.isfinite(np.take_along_axis(score, col, 1)), chans, -1), col


def expected(world: Any, ctx: Contexts, ranking: np.ndarray, key: str) -> np.ndarray:
    """Exact expected reward per feed of a ranking (oracle at each position, times P(shown))."""
    from eliverec.world.world import POSITION_GAP_MS

    ok = ranking >= 0
    pos = np.broadcast_to(np.arange(ranking.shape[1]), ranking.shape)[ok]
    uu = np.broadcast_to(ctx.users[:, None], ranking.shape)[ok]
    tt = np.broadcast_to(ctx.ts[:, None], ranking.shape)[ok] + pos * POSITION_GAP_MS
    p = np.zeros(ranking.shape)
    p[ok] = world.oracle(uu, ranking[ok], tt, pos)[key]
    return (p * ctx.shown_prob[:, : ranking.shape[1]]).sum(1)


def log_feeds(world: Any, ctx: Contexts, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """The logging policy's feeds for ``ctx`` with sampled outcomes, as :class:`LoggedFeeds` per reward."""
    from eliverec.evaluation.offpolicy import LoggedFeeds
    from eliverec.world.world import POSITION_GAP_MS

    chans, props = world.policy_slates(ctx.users, ctx.ts, rng)
    shown = chans >= 0
    f, k = np.nonzero(shown)
    resp = world.respond(ctx.users[f], chans[f, k], ctx.ts[f] + k * POSITION_GAP_MS, k, rng)
    logs = {key: LoggedFeeds(feed=f, user=np.unique(ctx.users, return_inverse=True)[1][f], position=k,
                             propensity=props[f, k], reward=resp[key].astype(np.float64),
                             pool=(ctx.pool >= 0).sum(1), source="simulated logs")
            for key in REWARDS}
    return logs, chans


def true_marginals(world: Any, ctx: Contexts, logs: Any, chans: np.ndarray, feeds: np.ndarray, samples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The simulator's marginals ``mu(c, k | x)`` of the logged channels of ``feeds`` (Monte Carlo over the
    logging policy's full PL scores of the live pool): the diagnostic that separates the even-split
    approximation of :func:`eliverec.evaluation.offpolicy.marginal_propensity` from the estimators."""
    st = world.day(int(world.day_of(ctx.ts[0])))
    intents = world.intents_on(st.index)
    slot = (ctx.ts - st.start_ms) // st.slot_ms
    mu = np.zeros(chans.shape)
    todo = np.flatnonzero(feeds)
    for s in np.unique(slot[todo]).tolist():
        rows = todo[slot[todo] == s]
        cand = st.live_lists[int(s)]
        score = world.policy_scores(ctx.users[rows], cand, int(s), st, intents[ctx.users[rows]])  # (B, M)
        keys = score[:, None, :] + rng.gumbel(size=(rows.size, samples, cand.size))
        col = np.argmax(chans[rows][:, :, None] == cand[None, None, :], axis=2)  # (B, K): logged channel's column
        own = np.take_along_axis(keys, np.broadcast_to(col[:, None, :], (rows.size, samples, col.shape[1])), 2)
        ahead = (keys[:, :, None, :] > own[:, :, :, None]).sum(-1)  # (B, S, K)
        mu[rows] = (ahead == np.arange(col.shape[1])[None, None, :]).mean(1)
    return np.where(chans >= 0, np.maximum(mu, 1.0 / (samples + 1)), 0.0)


def targets(logs: Any, chans: np.ndarray, ctx: Contexts, scores: dict[str, np.ndarray], exam: np.ndarray,
            scale: float) -> dict[str, Any]:
    """Each candidate's :class:`Target`: deterministic matches, its own predictions as the reward model.

    ``scale`` turns a watch prediction into this reward's (1 for watches; for goods-bag clicks the
    logged goods-bag / watch ratio: the stand-ins have no goods-bag tower).
    """
    from eliverec.evaluation.offpolicy import Target, deterministic_match

    k = chans.shape[1]
    logged = chans[logs.feed, logs.position]
    rate_at = np.bincount(logs.position, logs.reward, k) / np.maximum(np.bincount(logs.position, minlength=k), 1)
    out = {}
    for name, s in scores.items():
        ranking, col = rank(ctx, s, k)
        if name == "random":
            q_target = np.broadcast_to(rate_at, ranking.shape) * (ranking >= 0)
            q_logged = rate_at[logs.position]
        else:
            p_hat = expit(s)
            q_target = np.take_along_axis(p_hat, col, 1) * exam[None, :] * (ranking >= 0) * scale
            pos_in_pool = (ctx.pool[logs.feed] == logged[:, None]).argmax(1)
            q_logged = p_hat[logs.feed, pos_in_pool] * exam[logs.position] * scale
        out[name] = Target(deterministic_match(logs, ranking, logged), q_logged, q_target)
    return out


def replicate(world: Any, day: int, n: int, cfg: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """One logging run: every estimator's estimate of every candidate (and of candidate - champion)."""
    from eliverec.evaluation import offpolicy as ope
    from eliverec.world.behaviour import exam

    ctx = contexts(world, day, n, rng)
    scores = candidate_logits(ctx, pool_truth(world, ctx)["watch"], rng)
    logs, chans = log_feeds(world, ctx, rng)
    k = chans.shape[1]
    eta = exam(np.arange(k), world.truth.exam_eta)
    ratio = logs["goods_bag"].reward.sum() / max(logs["watch"].reward.sum(), 1.0)
    counts = ope.bootstrap_counts(logs["watch"].n_users, cfg.bootstrap, rng)
    out: dict[str, Any] = {}
    mu = None
    for key in REWARDS:
        tg = targets(logs[key], chans, ctx, scores, eta, 1.0 if key == "watch" else ratio)
        if mu is None:  # the marginals depend on the logs only, not on the reward
            cond = ope.feed_matrix(logs[key], logs[key].propensity)
            mu = ope.marginal_propensity(cond, logs[key].pool, cfg.mc_samples, rng,
                                         feeds=ope.needed_feeds(logs[key], list(tg.values())))
            if cfg.true_mu_samples:
                mu_true = true_marginals(world, ctx, logs[key], chans, ope.needed_feeds(logs[key], list(tg.values())),
                                         cfg.true_mu_samples, rng)
        variants = [(est, mu) for est in ope.ESTIMATORS]
        variants += [(f"{est}*", mu_true) for est in ope.ESTIMATORS] if cfg.true_mu_samples else []
        for label, m in variants:
            est = label.rstrip("*")
            for name in CANDIDATES:
                if name == "champion":
                    continue
                res = ope.compare(logs[key], tg[name], tg["champion"], m, est, cfg.clip, counts, cfg.level)
                out[f"{key}/{label}/{name}"] = res["candidate"]
                out[f"{key}/{label}/champion"] = res["champion"]
                out[f"{key}/{label}/{name}-champion"] = res["difference"]
        out[f"{key}/logged"] = float(logs[key].reward.sum() / logs[key].n_feeds)
    return out


def truths(world: Any, day: int, n: int, rng: np.random.Generator) -> dict[str, Any]:
    """Exact expected rewards per feed of every candidate over ``n`` contexts, and an A/B-like run each."""
    from eliverec.world.world import POSITION_GAP_MS

    out: dict[str, Any] = {}
    ctx = contexts(world, day, n, rng)
    scores = candidate_logits(ctx, pool_truth(world, ctx)["watch"], rng)
    k = world.cfg.feed_size
    for name in CANDIDATES:
        ranking, _ = rank(ctx, scores[name], k)
        for key in REWARDS:
            out[f"{key}/{name}"] = float(expected(world, ctx, ranking, key).mean())
    ab = contexts(world, day, n, rng)  # fresh requests served by each candidate in turn
    ab_scores = candidate_logits(ab, pool_truth(world, ab)["watch"], rng)
    cut = _visible(world, ab, rng)
    for name in CANDIDATES:
        ranking, _ = rank(ab, ab_scores[name], k)
        show = (ranking >= 0) & (np.arange(k)[None, :] < cut[:, None])
        f, pos = np.nonzero(show)
        resp = world.respond(ab.users[f], ranking[f, pos], ab.ts[f] + pos * POSITION_GAP_MS, pos, rng)
        for key in REWARDS:
            per_feed = np.bincount(f, resp[key].astype(float), minlength=n)
            out[f"{key}/ab/{name}"] = [float(per_feed.mean()), float(per_feed.std(ddof=1) / np.sqrt(n))]
    return out


def _visible(world: Any, ctx: Contexts, rng: np.random.Generator) -> np.ndarray:
    """Positions a user scrolls to (the world's feed cut, as ``World.policy_slates`` draws it)."""
    from eliverec.world.world import FEED_CUT

    k = world.cfg.feed_size
    cut = rng.choice(FEED_CUT.size, size=ctx.users.size, p=FEED_CUT)
    return k - np.minimum(cut, k - 1)


def summarise(runs: list[dict[str, Any]], truth: dict[str, Any], level: float) -> dict[str, Any]:
    """Bias, spread, interval width, coverage, ESS and gate decisions per reward, estimator and candidate."""
    from eliverec.evaluation.offpolicy import ESTIMATORS

    rows = []
    labels = [*ESTIMATORS, *(f"{e}*" for e in ESTIMATORS if f"watch/{e}*/random" in runs[0])]
    for key in REWARDS:
        for est in labels:
            for name in CANDIDATES:
                rows.append(_row(runs, truth, key, est, name))
                if name != "champion":
                    rows.append(_diff_row(runs, truth, key, est, name))
    watch = [r for r in rows if r["reward"] == "watch" and not r["estimator"].endswith("*")]
    coverage = {e: float(np.mean([r["coverage"] for r in watch if r["estimator"] == e])) for e in ESTIMATORS}
    return {"rows": rows, "level": level, "logged_rate": {k: float(np.mean([r[f"{k}/logged"] for r in runs]))
                                                           for k in REWARDS},
            "watch_coverage": coverage, "best_coverage": max(coverage, key=coverage.__getitem__)}


def _row(runs: list[dict[str, Any]], truth: dict[str, Any], key: str, est: str, name: str) -> dict[str, Any]:
    got = [r[f"{key}/{est}/{name}"] for r in runs]
    v = np.array([g["value"] for g in got])
    t = truth[f"{key}/{name}"]
    return {"reward": key, "estimator": est, "candidate": name, "truth": t, "ab": truth[f"{key}/ab/{name}"],
            "mean": float(v.mean()), "bias": float(v.mean() - t), "rel_bias": float((v.mean() - t) / t),
            "sd": float(v.std(ddof=1)), "width": float(np.mean([g["high"] - g["low"] for g in got])),
            "coverage": float(np.mean([g["low"] <= t <= g["high"] for g in got])),
            "ess": float(np.mean([g["ess"] for g in got])), "matched": float(np.mean([g["matched"] for g in got]))}


def _diff_row(runs: list[dict[str, Any]], truth: dict[str, Any], key: str, est: str, name: str) -> dict[str, Any]:
    got = [r[f"{key}/{est}/{name}-champion"] for r in runs]
    v = np.array([g["value"] for g in got])
    t = truth[f"{key}/{name}"] - truth[f"{key}/champion"]
    return {"reward": key, "estimator": est, "candidate": f"{name}-champion", "truth": t, "mean": float(v.mean()),
            "bias": float(v.mean() - t), "sd": float(v.std(ddof=1)),
            "width": float(np.mean([g["high"] - g["low"] for g in got])),
            "coverage": float(np.mean([g["low"] <= t <= g["high"] for g in got])),
            "rejected": float(np.mean([g["high"] < 0 for g in got]))}


def markdown(result: dict[str, Any]) -> str:
    """The short table: per estimator and candidate (watches per feed), then the differences."""
    s = result["summary"]
    lines = [f"# Off-policy estimates vs the world's truth ({result['profile']} world)", "",
             f"{result['replicates']} logging runs x {result['feeds']} feeds, {result['bootstrap']} user-bootstrap "
             f"resamples, nominal {s['level']:.0%} intervals, clip {result['clip']}, truth over "
             f"{result['truth_feeds']} feeds; {result['seconds']:.0f} s on {result['machine']}. Logged policy: "
             f"{s['logged_rate']['watch']:.4f} watches per feed.", "",
             "Mean coverage of the watch rows (candidates and differences) per estimator: "
             + ", ".join(f"{e} {c:.3f}" for e, c in s["watch_coverage"].items())
             + f"; best: **{s['best_coverage']}** (the gate's `ope.estimator`). Estimators marked * use the "
             "simulator's true marginal propensities (a diagnostic: production has only the logged ones).", "",
             "| reward | estimator | candidate | truth | A/B (se) | mean est. | bias | rel. bias | sd | width "
             "| coverage | ESS | rejected |", "|" + "---|" * 13]
    for r in s["rows"]:
        ab = f"{r['ab'][0]:.4f} ({r['ab'][1]:.4f})" if "ab" in r else ""
        lines.append(f"| {r['reward']} | {r['estimator']} | {r['candidate']} | {r['truth']:.4f} | {ab} | "
                     f"{r['mean']:.4f} | {r['bias']:+.4f} | {_opt(r, 'rel_bias', '+.1%')} | {r['sd']:.4f} | "
                     f"{r['width']:.4f} | {r['coverage']:.2f} | {_opt(r, 'ess', '.0f')} | "
                     f"{_opt(r, 'rejected', '.2f')} |")
    return "\n".join(lines) + "\n"


class Negated:
    """The negative control's effect on a pyfunc model: the watch probability p becomes 1 - p
    (sigmoid of the negated logit), every other output unchanged (``experiments/controls.py``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, inputs: dict[str, np.ndarray]) -> Any:
        out = self.model.predict(inputs)
        out["watch"] = 1.0 - out["watch"]
        return out


class RandomRanker:
    """Uniform random scores (and predictions) for every input row."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, inputs: dict[str, np.ndarray]) -> Any:
        import pandas as pd

        n = len(next(iter(inputs.values())))
        return pd.DataFrame({"watch": self.rng.random(n), "goods_bag": self.rng.random(n) * 0.5})


def trained_world(profile: str, root: Path) -> tuple[Any, list[str], dict[str, Any]]:
    """simulate -> ingest -> features -> train ETA dual (champion) and eLiveRec (challenger) under ``root``."""
    from eliverec.config import load_settings
    from eliverec.data.ingest import ingest_day
    from eliverec.evaluation.evaluate import load_model
    from eliverec.features.build import build_features
    from eliverec.training.trainer import train
    from eliverec.world import simulate

    s = load_settings(profile, overrides=[f"tracking.uri=sqlite:///{root}/mlruns/mlflow.db"], data_dir=root / "data")
    sim = simulate(s, progress=False)
    for date in sim["dates"]:
        ingest_day(s, date)
    test_day = sim["dates"][-1]
    feats = build_features(s, test_day)
    champion = load_model(s, train(s, model_name="eta_dual", end_date=test_day, run_name="champion").model_uri)
    challenger = load_model(s, train(s, model_name="eliverec", end_date=test_day, run_name="challenger").model_uri)
    models = {"champion": champion, "challenger": challenger, "negative": Negated(champion),
              "random": RandomRanker(s.seed)}
    return s, [*feats["train_days"], test_day], models


def day_truth(world: Any, settings: Any, date: str, day: Any, ranked: Any, rng: np.random.Generator) -> dict:
    """The world's exact expected rewards per feed of a ranking of the day's feeds, and an A/B-like draw."""
    import pyarrow.parquet as pq

    from eliverec.evaluation.oracle import world_index
    from eliverec.world.world import FEED_CUT, POSITION_GAP_MS

    t = pq.read_table(settings.layout.samples(date), columns=["user_id", "ts"]).to_pandas()
    users = world_index(t["user_id"].to_numpy()[day.feed_row], "u")
    ts = t["ts"].to_numpy(np.int64)[day.feed_row]
    st = world.day(int(world.day_of(ts[0])))
    live = np.array([st.live_lists[int(s)].size for s in ((ts - st.start_ms) // st.slot_ms).tolist()])
    k = world.cfg.feed_size
    visible = k - np.minimum(np.arange(FEED_CUT.size), k - 1)
    show = ((np.arange(k)[None, :] < visible[:, None]) * FEED_CUT[:, None]).sum(0)[None, :] * (
        np.arange(k)[None, :] < np.minimum(live, k)[:, None])
    codes = ranked.codes
    chans = np.where(codes >= 0, world_index(day.channel_ids, "c")[np.maximum(codes, 0)], -1)
    f, pos = np.nonzero(chans >= 0)
    o = world.oracle(users[f], chans[f, pos], ts[f] + pos * POSITION_GAP_MS, pos)
    cut = k - np.minimum(rng.choice(FEED_CUT.size, size=users.size, p=FEED_CUT), k - 1)
    seen = (pos < cut[f]) & (pos < np.minimum(live, k)[f])
    resp = world.respond(users[f][seen], chans[f, pos][seen], ts[f][seen] + pos[seen] * POSITION_GAP_MS, pos[seen], rng)
    n = users.size
    out = {}
    for key in REWARDS:
        out[key] = float((o[key] * show[f, pos]).sum() / n)
        out[f"{key}/ab"] = float(resp[key].sum() / n)
    return out


def neural(args: argparse.Namespace) -> dict[str, Any]:
    """Trained networks on a simulated world: every estimator on each feature day vs the world's truth."""
    import shutil
    import tempfile

    from eliverec.evaluation import offpolicy as ope
    from eliverec.world import World

    root = Path(tempfile.mkdtemp(prefix="eliverec-ope-neural-"))
    settings, dates, models = trained_world(args.profile, root)
    if args.max_feeds:
        settings = settings.model_copy(update={"ope": settings.ope.model_copy(update={"max_feeds": args.max_feeds})})
    dates = dates[-args.last_days:] if args.last_days else dates
    world = World.from_settings(settings)
    rows = []
    for date in dates:
        day = ope.load_day_feeds(settings, date, settings.ope.max_feeds, settings.seed)
        res, ranked = ope.estimate_day(settings, day, models, "champion")
        truth = {name: day_truth(world, settings, date, day, r, np.random.default_rng([settings.seed, 19, 9]))
                 for name, r in ranked.items()}
        for key in REWARDS:
            for est in ope.ESTIMATORS:
                got = res[f"{key}/{est}"]
                for name, t in truth.items():
                    rows.append(_neural_row(date, key, est, name, got[name], t[key], t[f"{key}/ab"]))
                    if name != "champion":
                        d = got[f"{name}-champion"]
                        rows.append(_neural_row(date, key, est, f"{name}-champion", d,
                                                t[key] - truth["champion"][key], None))
    shutil.rmtree(root, ignore_errors=True)
    return {"profile": args.profile, "dates": dates, "feeds": day.logs["watch"].n_feeds, "rows": rows,
            "level": settings.ope.level, "clip": settings.ope.clip}


def _neural_row(date: str, key: str, est: str, name: str, got: dict, truth: float, ab: float | None) -> dict:
    return {"date": date, "reward": key, "estimator": est, "candidate": name, "truth": truth, "ab": ab,
            "value": got["value"], "low": got["low"], "high": got["high"], "ess": got.get("ess"),
            "covered": bool(got["low"] <= truth <= got["high"]), "rejected": bool(got["high"] < 0)}


def neural_markdown(result: dict[str, Any]) -> str:
    """Per day and candidate (watches per feed): truth, A/B-like draw and each estimator's interval."""
    rows = [r for r in result["rows"] if r["reward"] == "watch"]
    cov = {e: np.mean([r["covered"] for r in rows if r["estimator"] == e]) for e in ("ips", "snips", "dr")}
    lines = [f"# Off-policy estimates of trained networks vs the world's truth ({result['profile']} world)", "",
             f"Champion ETA dual and challenger eLiveRec trained on the simulated days, the negative control "
             f"(champion's watch reversed) and a random ranker; each feature day ({', '.join(result['dates'])}) "
             f"is one logged day; nominal {result['level']:.0%} intervals, clip {result['clip']}; "
             f"{result['seconds']:.0f} s on {result['machine']}. Coverage of the watch rows: "
             + ", ".join(f"{e} {c:.2f} ({sum(r['estimator'] == e for r in rows)} rows)" for e, c in cov.items())
             + ".", "", "| day | estimator | candidate | truth | A/B-like | estimate [interval] | covered | ESS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ab = "" if r["ab"] is None else f"{r['ab']:.4f}"
        ess = "" if r["ess"] is None else f"{r['ess']:.0f}"
        lines.append(f"| {r['date']} | {r['estimator']} | {r['candidate']} | {r['truth']:.4f} | {ab} | "
                     f"{r['value']:.4f} [{r['low']:.4f}, {r['high']:.4f}] | {'yes' if r['covered'] else 'no'} | "
                     f"{ess} |")
    return "\n".join(lines) + "\n"


def _opt(row: dict[str, Any], key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else ""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import _machine  # sibling module

    from eliverec.config import load_settings
    from eliverec.world import World

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--feeds", type=int, default=2000)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--mc-samples", dest="mc_samples", type=int, default=512)
    ap.add_argument("--truth-feeds", dest="truth_feeds", type=int, default=20000)
    ap.add_argument("--true-mu-samples", dest="true_mu_samples", type=int, default=2000,
                    help="also run every estimator with the simulator's marginals (Monte Carlo; 0: off)")
    ap.add_argument("--clip", type=float, default=None, help="weight clip (default: ope.clip)")
    ap.add_argument("--neural", action="store_true",
                    help="trained networks on a simulated world instead (writes offpolicy_neural_<profile>.*)")
    ap.add_argument("--max-feeds", dest="max_feeds", type=int, default=0,
                    help="--neural: feeds per logged day (default: ope.max_feeds)")
    ap.add_argument("--last-days", dest="last_days", type=int, default=0,
                    help="--neural: only the last N feature days (default: all)")
    args = ap.parse_args(argv)
    if args.neural:
        started = time.perf_counter()
        result = neural(args)
        result.update(seconds=time.perf_counter() - started, machine=_machine.cpu_model())
        result.update(max_feeds=args.max_feeds or None)
        stem = RESULTS / f"offpolicy_neural_{args.profile}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
        stem.with_suffix(".md").write_text(neural_markdown(result))
        print(neural_markdown(result))
        return result
    settings = load_settings(args.profile)
    args.clip, args.level = args.clip or settings.ope.clip, settings.ope.level
    started = time.perf_counter()
    world = World.from_settings(settings)
    day = world.cfg.warmup_days + world.cfg.days - 1
    truth = truths(world, day, args.truth_feeds, np.random.default_rng([settings.seed, 19, 0]))
    runs = [replicate(world, day, args.feeds, args, np.random.default_rng([settings.seed, 19, 1 + i]))
            for i in range(args.replicates)]
    result = {"profile": args.profile, "replicates": args.replicates, "feeds": args.feeds,
              "bootstrap": args.bootstrap, "mc_samples": args.mc_samples, "true_mu_samples": args.true_mu_samples,
              "clip": args.clip,
              "truth_feeds": args.truth_feeds, "machine": _machine.cpu_model(), "world": world.describe(),
              "truth": truth, "summary": summarise(runs, truth, args.level)}
    result["seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.clip == settings.ope.clip else ("_noclip" if args.clip >= 1e6 else f"_clip{args.clip:g}")
    stem = RESULTS / f"offpolicy_{args.profile}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()

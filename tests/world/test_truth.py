"""Ground truth of the world: which intents move live watching, the policy and the oracle API."""

from __future__ import annotations

import numpy as np
import pytest

from eliverec.world import World
from tests.world.conftest import tiny


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.from_settings(tiny(tmp_path_factory.mktemp("truth")), n_users=4000)


def _group_watch(world: World, group: str) -> tuple[float, float]:
    """Mean true watch probability of live channels for users whose ``group`` intents hold the channel's
    top category, and for users with none of their intents on it (same channels, time and position)."""
    day = world.cfg.warmup_days
    st = world.day(day)
    ts = int(st.start_ms + 20.5 * 3_600_000)
    chans = world.live_channels(ts)
    intents = world.intents_on(day)
    g = world.intent_groups
    hit, miss = [], []
    for c in chans:
        top = world.channels.top_category[c]
        in_group = (intents[:, g[group]] == top).any(1)
        in_none = ~(intents == top).any(1)
        # isolate the top-category effect: skip users with a favourite anchor or a secondary-category match here
        fav = (world.users.favourites == world.channels.anchor[c]).any(1)
        sec = np.isin(intents, world.channels.secondary[c]).any(1)
        for mask, out in ((in_group & ~fav & ~sec, hit), (in_none & ~fav & ~sec, miss)):
            users = np.flatnonzero(mask)
            if users.size:
                out.append(world.oracle(users, c, ts, 0)["watch"].mean())
    return float(np.mean(hit)), float(np.mean(miss))


def test_consistent_intents_raise_watch_probability(world):
    hit, miss = _group_watch(world, "consistent")
    assert hit > 2.0 * miss


def test_live_specific_intents_raise_watch_probability(world):
    hit, miss = _group_watch(world, "live")
    assert hit > 2.0 * miss


def test_product_specific_intents_do_not(world):
    hit, miss = _group_watch(world, "product")
    assert abs(hit - miss) < 0.15 * miss  # user-bias noise only; consistent/live ones give > +100 %


def test_product_specific_intents_drive_purchase_inside_the_channel(world):
    """Inside a visit, purchase intent (consistent + product-specific) raises the goods-bag probability."""
    day = world.cfg.warmup_days
    ts = int(world.day(day).start_ms + 20.5 * 3_600_000)
    c = world.live_channels(ts)[0]
    top = world.channels.top_category[c]
    intents = world.intents_on(day)
    prod = np.flatnonzero((intents[:, world.intent_groups["product"]] == top).any(1))
    none = np.flatnonzero(~(intents == top).any(1) & ~np.isin(intents, world.channels.secondary[c]).any(1))
    o_p, o_n = world.oracle(prod, c, ts, 0), world.oracle(none, c, ts, 0)
    assert (o_p["goods_bag"] / o_p["enter"]).mean() > 1.5 * (o_n["goods_bag"] / o_n["enter"]).mean()


def test_position_bias_and_oracle_ranges(world):
    ts = int(world.day(world.cfg.warmup_days).start_ms + 20 * 3_600_000)
    c = world.live_channels(ts)
    users = np.arange(200)
    o0 = world.oracle(users[:, None], c[None, :], ts, 0)
    o7 = world.oracle(users[:, None], c[None, :], ts, 7)
    assert np.all(o7["watch"] < o0["watch"])
    for o in (o0, o7):
        assert np.all((o["product_click"] >= 0) & (o["product_click"] <= o["goods_bag"]))
        assert np.all((o["goods_bag"] <= o["enter"]) & (o["watch"] <= o["enter"]) & (o["enter"] <= 1))
        assert np.all(o["stay_ms_mean"] > 0)
    off = np.setdiff1d(np.arange(world.channels.n), c)
    if off.size:
        assert np.all(world.oracle(users, off[0], ts, 0)["enter"] == 0)  # only live channels can be watched


def test_respond_follows_the_oracle(world):
    ts = int(world.day(world.cfg.warmup_days).start_ms + 20 * 3_600_000)
    c = world.live_channels(ts)[:8]
    users = np.repeat(np.arange(world.n_users), c.size)
    chans, pos = np.tile(c, world.n_users), np.tile(np.arange(c.size), world.n_users)
    rng = np.random.default_rng(0)
    got = world.respond(users, chans, ts, pos, rng)
    expected = world.oracle(users, chans, ts, pos)
    assert abs(got["watch"].sum() - expected["watch"].sum()) < 4 * np.sqrt(expected["watch"].sum())
    assert got["watch"][pos == 0].mean() > got["watch"][pos == 7].mean()


def test_policy_slates_and_propensities(world):
    day = world.cfg.warmup_days
    ts = np.full(500, world.day(day).start_ms + 20 * 3_600_000, np.int64)
    chans, props = world.policy_slates(np.arange(500), ts, np.random.default_rng(1))
    live = set(world.live_channels(int(ts[0])).tolist())
    shown = chans >= 0
    assert shown[:, :5].all() and set(chans[shown].tolist()) <= live
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in chans)
    assert np.all((props[shown] > 0) & (props[shown] <= 1)) and np.all(props[~shown] == 0)
    # first-position propensities of one user's live candidates sum to 1 (Plackett-Luce)
    assert 0 < props[:, 0].max() < 1


def test_same_settings_same_world_and_drift(tmp_path):
    s = tiny(tmp_path, "world.shift_days=['2026-09-03']", "world.shift_strength=1.0", "world.drift_rate=0.0")
    a, b = World.from_settings(s), World.from_settings(s)
    assert a.truth == b.truth
    assert np.array_equal(a.intents_on(5), b.intents_on(5))
    assert a.intents(3, "2026-09-01") == b.intents(3, "2026-09-01")
    before, after = a.intents_on(a.dates.index("2026-09-02")), a.intents_on(a.dates.index("2026-09-03"))
    assert np.array_equal(a.intents_on(0), before)  # no drift before the shift
    assert (before != after).mean() > 0.5  # the season change moves most intents
    assert all(len(set(row)) == row.size for row in after)  # the groups stay disjoint
    sets = a.intents(0)
    assert set(sets) == {"consistent", "product", "live"} and not (sets["consistent"] & sets["product"])
    c = World.from_settings(s, seed=5)
    assert not np.array_equal(a.users.intents, c.users.intents)

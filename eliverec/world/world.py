"""The simulated Taobao-Live world: entities, daily state, logging policy and the oracle.

``World.from_settings(settings)`` rebuilds the same world for the same settings and seed,
so later stages (A/B traffic, the oracle AUC ceiling, linear probes) can ask it questions:

- ``live_channels(ts)``: channels on air at a time (only those can be impressed);
- ``policy_slates(users, ts)``: the logging policy's feeds with recorded propensities;
- ``oracle(users, channels, ts, positions)``: true probabilities (vectorised);
- ``respond(users, ranked, ts)``: sampled behaviour for ranked lists, with position bias;
- ``intents(user, when)``: a user's true consistent / product-specific / live-specific categories.

Days are indexed from the first warm-up day (index 0); ``world.warmup_days`` history days
precede ``world.start_date`` and are written as ordinary raw partitions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from eliverec.config import Settings, WorldConfig
from eliverec.layout import DAY_MS
from eliverec.world import behaviour
from eliverec.world.entities import (
    TAG_CALIB,
    TAG_DRIFT,
    TAG_SCHEDULE,
    Catalog,
    Channels,
    Users,
    build_catalog,
    build_channels,
    build_users,
    diurnal_density,
    rng_for,
)

#: Probability that a feed is cut short by 0, 1, 2, 3 positions (the user stops scrolling).
FEED_CUT = np.array([0.8, 0.1, 0.06, 0.04])
#: Delay between an impression and the enter event; between feed positions.
ENTER_DELAY_MS = 2000
POSITION_GAP_MS = 300
#: Logging policy: popularity, heat and weak personalisation (true live-domain intents, favourites).
POLICY = {"pop": 1.0, "heat": 0.8, "intent": 0.7, "favourite": 0.5}
SCENES = np.array(["homepage", "live_tab"])


def date_ms(date: str) -> int:
    """Epoch milliseconds of a UTC date's midnight."""
    d = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    return int(d.timestamp() * 1000)


@dataclass(frozen=True)
class DayState:
    """Schedules and heat of one day."""

    index: int
    date: str
    start_ms: int
    on_air: np.ndarray  # (N,) bool: broadcasts today
    live_start_ms: np.ndarray  # (N,) int64
    live_end_ms: np.ndarray  # (N,) int64 (== start when off air)
    heat_peak: np.ndarray  # (N,) float64
    slot_ms: int

    @cached_property
    def live(self) -> np.ndarray:
        """(S, N) bool: channel live during the whole slot."""
        s0 = self.start_ms + np.arange(DAY_MS // self.slot_ms, dtype=np.int64)[:, None] * self.slot_ms
        return (self.live_start_ms[None, :] <= s0) & (s0 < self.live_end_ms[None, :])

    @cached_property
    def live_lists(self) -> list[np.ndarray]:
        """Per slot, the indices of the channels live during it."""
        return [np.flatnonzero(row) for row in self.live]

    @cached_property
    def slot_heat(self) -> np.ndarray:
        """(S, N) heat at each slot start (what a channel_stats snapshot shows)."""
        s0 = self.start_ms + np.arange(DAY_MS // self.slot_ms, dtype=np.int64)[:, None] * self.slot_ms
        return self.heat(np.arange(self.heat_peak.size)[None, :], s0)

    def heat(self, channel: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Time-varying heat in [0, ~2]: rises and falls over the broadcast; 0 off air."""
        s, e = self.live_start_ms[channel], self.live_end_ms[channel]
        frac = np.clip((ts - s) / np.maximum(e - s, 1), 0.0, 1.0)
        on = (ts >= s) & (ts < e)
        return np.where(on, self.heat_peak[channel] * (0.35 + 0.65 * np.sin(np.pi * frac)), 0.0)


class World:
    """A deterministic simulated world (see module docstring)."""

    def __init__(self, cfg: WorldConfig, seed: int, min_stay_ms: int, n_users: int | None = None) -> None:
        self.cfg, self.seed, self.min_stay_ms = cfg, int(seed), int(min_stay_ms)
        self.catalog: Catalog = build_catalog(cfg, self.seed)
        self.channels: Channels = build_channels(cfg, self.catalog, self.seed)
        self.users: Users = build_users(cfg, self.catalog, self.channels, self.seed, n_users or cfg.n_users)
        self.slot_ms = cfg.stats_interval_min * 60_000
        self.dates = [(dt.date.fromisoformat(cfg.start_date) + dt.timedelta(days=i - cfg.warmup_days)).isoformat()
                      for i in range(cfg.warmup_days + cfg.days)]
        self._first_ms = date_ms(self.dates[0])
        self._shift = {d for d in cfg.shift_days}
        self._intent_cache: tuple[int, np.ndarray] = (0, self.users.intents.copy())
        self._day_cache: dict[int, DayState] = {}
        self.truth = behaviour.Truth()
        self.truth = self._calibrate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings: Settings, n_users: int | None = None, seed: int | None = None,
                      days: int | None = None) -> World:
        """The world of these settings (``n_users``, ``seed``, ``days`` override the config)."""
        cfg = settings.world if days is None else settings.world.model_copy(update={"days": int(days)})
        return cls(cfg, settings.seed if seed is None else seed, settings.features.min_stay_ms, n_users)

    @property
    def n_users(self) -> int:
        return self.users.n

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def intent_groups(self) -> dict[str, slice]:
        """Columns of the intent array per group."""
        kc, kp = self.cfg.n_consistent, self.cfg.n_product_specific
        return {"consistent": slice(0, kc), "product": slice(kc, kc + kp), "live": slice(kc + kp, None)}

    def day_of(self, ts: np.ndarray | int) -> np.ndarray:
        """Day index (0 = first warm-up day) of epoch-ms timestamps."""
        return (np.asarray(ts, dtype=np.int64) - self._first_ms) // DAY_MS

    # ------------------------------------------------------------------ daily state
    def day(self, index: int) -> DayState:
        """Broadcast schedule and heat of day ``index`` (cached)."""
        if index not in self._day_cache:
            if len(self._day_cache) > 8:
                self._day_cache.clear()
            self._day_cache[index] = self._make_day(index)
        return self._day_cache[index]

    def _make_day(self, index: int) -> DayState:
        ch, rng = self.channels, rng_for(self.seed, TAG_SCHEDULE, index)
        n = ch.n
        on = rng.random(n) < 0.88
        dur = np.clip(ch.base_duration_min * rng.uniform(0.8, 1.2, n), 30.0, 1440.0)
        start = np.clip(ch.base_start_min + rng.normal(0.0, 20.0, n), 0.0, 1440.0 - dur)
        slot_min = self.slot_ms // 60_000
        s_slot = np.floor(start / slot_min).astype(np.int64)
        e_slot = np.minimum(np.ceil((start + dur) / slot_min).astype(np.int64), DAY_MS // self.slot_ms)
        day0 = self._first_ms + index * DAY_MS
        s_ms = day0 + s_slot * self.slot_ms
        e_ms = np.where(on, day0 + e_slot * self.slot_ms, s_ms)
        peak = rng.lognormal(0.0, 0.35, n)
        date = (dt.date.fromisoformat(self.dates[0]) + dt.timedelta(days=index)).isoformat()
        return DayState(index, date, day0, on, s_ms, e_ms, peak, self.slot_ms)

    def intents_on(self, index: int) -> np.ndarray:
        """(U, K) intents on day ``index`` after daily drift and configured shifts (cached forward)."""
        at, cur = self._intent_cache
        if index < at:
            at, cur = 0, self.users.intents.copy()
        for d in range(at + 1, index + 1):
            cur = self._drift(cur, d)
        self._intent_cache = (index, cur)
        return cur

    def _drift(self, intents: np.ndarray, index: int) -> np.ndarray:
        """Slow drift: each slot moves w.p. ``drift_rate`` (``shift_strength`` on a shift day)."""
        rng = rng_for(self.seed, TAG_DRIFT, index)
        date = (dt.date.fromisoformat(self.dates[0]) + dt.timedelta(days=index)).isoformat()
        rate = self.cfg.shift_strength if date in self._shift else self.cfg.drift_rate
        out = intents.copy()
        move = rng.random(intents.shape) < rate
        logw = np.log(self.catalog.category_weight)
        for j in range(intents.shape[1]):  # a moved slot takes a category the user does not hold yet
            rows = np.flatnonzero(move[:, j])
            for lo in range(0, rows.size, 16384):
                r = rows[lo : lo + 16384]
                keys = logw[None, :] + rng.gumbel(size=(r.size, logw.size))
                np.put_along_axis(keys, out[r].astype(np.int64), -np.inf, axis=1)
                out[r, j] = keys.argmax(1).astype(np.int16)
        return out

    def intents(self, user: int, when: int | str | None = None) -> dict[str, set[int]]:
        """True intent sets (category indices) of one user on a day index, a date or at an epoch-ms time."""
        index = self._index_of(when)
        row = self.intents_on(index)[int(user)]
        return {name: {int(c) for c in row[sl]} for name, sl in self.intent_groups.items()}

    def _index_of(self, when: int | str | None) -> int:
        if when is None:
            return self.n_days - 1
        if isinstance(when, str):
            return self.dates.index(when)
        return int(when) if int(when) < 10_000 else int(self.day_of(int(when)))

    # ------------------------------------------------------------------ pair terms
    def live_channels(self, ts: int) -> np.ndarray:
        """Indices of channels on air at epoch-ms ``ts``."""
        st = self.day(int(self.day_of(ts)))
        return np.flatnonzero((st.live_start_ms <= ts) & (ts < st.live_end_ms))

    def terms(self, users: np.ndarray, channels: np.ndarray, ts: np.ndarray, intents: np.ndarray,
              state: DayState) -> behaviour.PairTerms:
        """Behaviour inputs for (user, channel, time) triples of one day; ``intents`` are the users' rows."""
        ch, g = self.channels, self.intent_groups
        top, sec = ch.top_category[channels], ch.secondary[channels]
        w = self.truth.secondary_weight

        def match(cols: np.ndarray) -> np.ndarray:
            hit_top = (cols == top[:, None]).any(1)
            hit_sec = (cols[:, :, None] == sec[:, None, :]).any((1, 2))
            return np.minimum(hit_top + w * hit_sec, 1.0)

        cons, prod, live = intents[:, g["consistent"]], intents[:, g["product"]], intents[:, g["live"]]
        fav = (self.users.favourites[users] == ch.anchor[channels][:, None]).any(1)
        return behaviour.PairTerms(
            m_consistent=match(cons), m_live=match(live), m_product=match(prod),
            purchase=match(np.concatenate([cons, prod], axis=1)),
            loyal=self.users.loyalty[users] * fav, log_pop=ch.log_pop[channels],
            heat=state.heat(channels, ts), bias=self.users.live_bias[users],
            time_left_ms=(state.live_end_ms[channels] - 1 - (ts + ENTER_DELAY_MS)).astype(np.float64))

    def _by_day(self, users, channels, ts, extra):
        users, channels, ts = (np.asarray(a, dtype=np.int64).ravel() for a in np.broadcast_arrays(users, channels, ts))
        extra = np.broadcast_to(np.asarray(extra), users.shape).ravel()
        days = self.day_of(ts)
        for d in np.unique(days):
            idx = np.flatnonzero(days == d)
            st = self.day(int(d))
            x = self.terms(users[idx], channels[idx], ts[idx], self.intents_on(int(d))[users[idx]], st)
            yield idx, x, extra[idx]

    # ------------------------------------------------------------------ oracle and response
    def oracle(self, users, channels, ts, position) -> dict[str, np.ndarray]:
        """True probabilities per impression (arrays broadcast together, result flattened).

        Keys: ``enter``, ``watch`` (entered and stayed >= ``features.min_stay_ms``), ``goods_bag``,
        ``product_click`` (per impression, within the visit), ``stay_ms_mean`` (given an enter),
        ``stay_label_mean`` (expected ``log1p(stay seconds)`` label, 0 when not entered).
        """
        n = np.broadcast(np.asarray(users), np.asarray(channels), np.asarray(ts), np.asarray(position)).size
        out = {k: np.zeros(n) for k in ("enter", "watch", "goods_bag", "product_click", "stay_ms_mean",
                                        "stay_label_mean")}
        for idx, x, pos in self._by_day(users, channels, ts, position):
            for k, v in behaviour.probabilities(self.truth, x, pos, self.min_stay_ms).items():
                out[k][idx] = v
        return out

    def respond(self, users, channels, ts, position, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Sampled behaviour for impressions (e.g. a ranked list: ``position`` = rank, 0-based)."""
        n = np.broadcast(np.asarray(users), np.asarray(channels), np.asarray(ts), np.asarray(position)).size
        out = {"entered": np.zeros(n, bool), "stay_ms": np.zeros(n, np.int64), "goods_bag": np.zeros(n, bool),
               "product_click": np.zeros(n, bool)}
        for idx, x, pos in self._by_day(users, channels, ts, position):
            for k, v in behaviour.sample(self.truth, x, pos, rng).items():
                out[k][idx] = v
        out["watch"] = out["stay_ms"] >= self.min_stay_ms
        return out

    # ------------------------------------------------------------------ logging policy
    def policy_scores(self, users: np.ndarray, cand: np.ndarray, slot: int, state: DayState,
                      intents: np.ndarray) -> np.ndarray:
        """Logging-policy scores (B, M) of the candidate channels ``cand`` (M,) live in ``slot``.

        Popularity and heat (as the last channel_stats snapshot shows it) are shared by all users;
        the weak personalisation adds a bonus for the user's live-domain intents and favourite anchors.
        """
        ch, g = self.channels, self.intent_groups
        base = POLICY["pop"] * ch.log_pop[cand] + POLICY["heat"] * state.slot_heat[slot, cand]
        vis = np.concatenate([intents[:, g["consistent"]], intents[:, g["live"]]], axis=1).astype(np.int64)
        mask = np.zeros((users.size, self.catalog.n_categories), bool)
        mask[np.arange(users.size)[:, None], vis] = True
        s = base[None, :] + POLICY["intent"] * mask[:, ch.top_category[cand]]
        fav = self.users.favourites[users]
        anchors = ch.anchor[cand]
        for j in range(fav.shape[1]):
            s += POLICY["favourite"] * (fav[:, j : j + 1] == anchors[None, :])
        return s

    def policy_slates(self, users: np.ndarray, ts: np.ndarray, rng: np.random.Generator,
                      intents: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Feeds of the logging policy at times ``ts`` (one day): channels (B, feed_size; -1 = not shown)
        and the Plackett-Luce propensity of each shown channel at its position given those above it."""
        users, ts = np.asarray(users, np.int64), np.asarray(ts, np.int64)
        st = self.day(int(self.day_of(ts[0])))
        intents = self.intents_on(st.index)[users] if intents is None else intents
        slot = (ts - st.start_ms) // self.slot_ms
        k = self.cfg.feed_size
        chans = np.full((users.size, k), -1, np.int64)
        props = np.zeros((users.size, k))
        order = np.argsort(slot, kind="stable")
        slots, starts = np.unique(slot[order], return_index=True)
        for s, rows in zip(slots.tolist(), np.split(order, starts[1:]), strict=True):
            cand = st.live_lists[s]
            if cand.size == 0:
                continue
            score = self.policy_scores(users[rows], cand, int(s), st, intents[rows])
            chans[rows], props[rows] = _plackett_luce(cand, score, min(k, cand.size), k, rng)
        cut = rng.choice(FEED_CUT.size, size=users.size, p=FEED_CUT)
        hide = np.arange(k)[None, :] >= (k - np.minimum(cut, k - 1))[:, None]
        chans[hide], props[hide] = -1, 0.0
        return chans, props

    # ------------------------------------------------------------------ calibration
    def _calibrate(self) -> behaviour.Truth:
        """Solve the intercept on pilot policy feeds of up to 4 main days (users weighted by feed rate)."""
        rng = rng_for(self.seed, TAG_CALIB)
        first, last = self.cfg.warmup_days, self.n_days - 1
        days = np.unique(np.linspace(first, last, num=min(4, last - first + 1)).round().astype(int))
        parts, n_feeds = [], 0
        w = self.users.feed_rate / self.users.feed_rate.sum()
        for index in days.tolist():
            st = self.day(index)
            users = rng.choice(self.n_users, size=5000, p=w)
            ts = self.sample_feed_times(st, users.size, rng)
            users, ts = users[ts >= 0], ts[ts >= 0]
            chans, _ = self.policy_slates(users, ts, rng)
            shown = chans >= 0
            pos = np.broadcast_to(np.arange(chans.shape[1]), chans.shape)[shown]
            uu = np.broadcast_to(users[:, None], chans.shape)[shown]
            tt = np.broadcast_to(ts[:, None], chans.shape)[shown] + pos * POSITION_GAP_MS
            parts.append((self.terms(uu, chans[shown], tt, self.intents_on(index)[uu], st), pos))
            n_feeds += users.size
        return behaviour.solve_intercept(self.truth, parts, n_feeds, self.cfg.watches_per_feed, self.min_stay_ms)

    def sample_feed_times(self, st: DayState, n: int, rng: np.random.Generator) -> np.ndarray:
        """Feed request times: diurnal activity over slots that have live channels (-1 if none are live)."""
        n_live = st.live.sum(1)
        dens = diurnal_density(n_live.size) * (n_live > 0)
        if dens.sum() == 0:
            return np.full(n, -1, np.int64)
        slot = rng.choice(n_live.size, size=n, p=dens / dens.sum())
        return st.start_ms + slot * self.slot_ms + rng.integers(0, self.slot_ms - POSITION_GAP_MS * 40, n)

    def describe(self) -> dict[str, float | int | str]:
        """Key facts of this world (for logs and docs)."""
        return {"seed": self.seed, "users": self.n_users, "channels": self.channels.n,
                "products": int(self.catalog.product_category.size), "categories": self.catalog.n_categories,
                "dates": f"{self.dates[0]}..{self.dates[-1]}", "warmup_days": self.cfg.warmup_days,
                "intercept": round(self.truth.intercept, 4)}


def _plackett_luce(cand: np.ndarray, score: np.ndarray, k: int, width: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``k`` of ``cand`` without replacement ~ softmax(score) (Gumbel top-k) with PL propensities."""
    b = score.shape[0]
    g = score - np.log(-np.log(rng.random(score.shape)))
    top = np.argpartition(-g, k - 1, axis=1)[:, :k] if k < score.shape[1] else np.argsort(-g, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(g, top, 1), axis=1), 1)
    m = score.max(1, keepdims=True)
    e = np.exp(score - m)
    z = e.sum(1, keepdims=True)
    ek = np.take_along_axis(e, top, 1)
    denom = z - np.concatenate([np.zeros((b, 1)), np.cumsum(ek, 1)[:, :-1]], 1)
    chans = np.full((b, width), -1, np.int64)
    props = np.zeros((b, width))
    chans[:, :k] = cand[top]
    props[:, :k] = ek / np.maximum(denom, 1e-300)
    return chans, props

"""Closed-loop traffic: the simulated world's users play against the running ranking service.

For a window of world time (default: from the busiest slot of the day after the simulated days) a
:class:`TrafficSession` replays, in time order:

- feed requests of sampled users (rate ``ab.traffic_rate`` per user and world minute) with up to
  ``ab.traffic_candidates`` channels that are live at that moment (drawn by popularity, a stand-in
  for retrieval; the same for every variant), asking for the feed the user will see (the world's
  feed cut decides how far the user scrolls);
- the world's true behaviour for the ranked feed (:meth:`eliverec.world.World.respond`, position
  bias included): ``enter``, ``leave`` with the stay, ``goods_bag_click``, ``channel_product_click``
  posted back to ``/events``;
- the users' product clicks and the channels' ``channel_stats`` snapshots of the window, so the
  service's online state moves as it would in production;
- the day's dimension snapshots in ``<data_dir>/raw/<date>/`` when missing, so the nightly ingestion
  can read the served day (run traffic on the machine whose data root the service writes to).

So a variant that ranks what users like higher earns more watches. Requests go out
``ab.traffic_concurrency`` at a time (httpx, asyncio); world time runs as fast as the service answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.layout import table_file
from eliverec.serving import base_url, producer_token
from eliverec.world import World
from eliverec.world.simulation import INTENT_CLICK_SHARE, on_sale, world_ids, write_dimensions
from eliverec.world.world import ENTER_DELAY_MS, FEED_CUT, POSITION_GAP_MS, SCENES

MINUTE_MS = 60_000


def parse_start(text: str) -> int:
    """``YYYY-MM-DDTHH:MM`` (UTC) as epoch ms.

    >>> parse_start("1970-01-01T00:01")
    60000
    """
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise EliverecError(f"bad --start '{text}': expected YYYY-MM-DDTHH:MM (UTC), e.g. 2026-09-09T20:00") from exc
    return int(when.timestamp() * 1000)


class TrafficSession:
    """Simulated users against one service; world time advances with every :meth:`run`."""

    def __init__(self, settings: Settings, url: str | None = None, seed: int | None = None,
                 start: str | int | None = None) -> None:
        self.settings = settings
        self.url = url or base_url(settings)
        self.world = World.from_settings(settings)
        self.seed = settings.seed if seed is None else int(seed)
        self.rng = np.random.default_rng([self.seed, 8])
        self.ids = world_ids(self.world)
        self.slot_ms = self.world.slot_ms
        self.clock = parse_start(start) if isinstance(start, str) else (start if start is not None
                                                                          else self.default_start())
        self.posted_slots: set[int] = set()
        self.counter = itertools.count()
        self.requests = 0

    def default_start(self) -> int:
        """The busiest slot (most live channels) of the day after the simulated days."""
        st = self.world.day(self.world.n_days)
        return int(st.start_ms + int(st.live.sum(1).argmax()) * self.slot_ms)

    # ------------------------------------------------------------------ schedule
    def _eid(self) -> str:
        return f"t{self.seed}-{self.clock}-{next(self.counter)}"

    def _stats_events(self, t_until: int) -> list[dict[str, Any]]:
        """Snapshots of live channels at every slot start up to ``t_until`` not posted yet."""
        rows: list[dict[str, Any]] = []
        w, ch = self.world, self.world.channels
        mean_price = w.catalog.product_price[np.maximum(ch.mounted, 0)].mean(1)
        first = (self.clock // self.slot_ms) if not self.posted_slots else max(self.posted_slots) + 1
        for g in range(int(first), int(t_until // self.slot_ms) + 1):
            if g in self.posted_slots:
                continue
            self.posted_slots.add(g)
            ts = g * self.slot_ms
            live = w.live_channels(ts)
            if live.size == 0:
                continue
            st = w.day(int(w.day_of(ts)))
            heat = st.heat(live, np.full(live.size, ts))
            phase = ((ts - st.start_ms) // self.slot_ms // 3) % ch.n_mounted[live]
            for c, h, f in zip(live.tolist(), heat.tolist(), phase.tolist(), strict=True):
                rows.append({"event": "channel_stats", "event_id": self._eid(), "ts": ts,
                             "channel_id": self.ids["channel"][c], "viewers": int(round(ch.audience[c] * h)),
                             "revenue_window": round(float(ch.audience[c] * h * 0.002 * mean_price[c]), 2),
                             "products_on_sale": self.ids["on_sale"][c][f]})
        return rows

    def _product_clicks(self, users: np.ndarray, t0: int, t1: int) -> list[dict[str, Any]]:
        """Product-domain clicks of the window (consistent + product-specific intents, as the simulator)."""
        w, rng = self.world, self.rng
        n = rng.poisson(w.users.click_rate[users] * (t1 - t0) / 86_400_000)
        cu = np.repeat(users, n)
        if cu.size == 0:
            return []
        ts = rng.integers(t0, t1, cu.size)
        g = w.intent_groups
        intents = w.intents_on(int(w.day_of(t0)))[cu]
        cols = np.concatenate([intents[:, g["consistent"]], intents[:, g["product"]]], axis=1)
        pick = cols[np.arange(cu.size), rng.integers(0, cols.shape[1], cu.size)].astype(np.int64)
        noise = rng.choice(w.catalog.n_categories, size=cu.size, p=w.catalog.category_weight)
        prod = w.catalog.sample_products(np.where(rng.random(cu.size) < INTENT_CLICK_SHARE, pick, noise), rng)
        return [{"event": "product_click", "event_id": self._eid(), "ts": int(t), "user_id": f"u{u}",
                 "product_id": self.ids["product"][p]} for u, t, p in zip(cu.tolist(), ts.tolist(), prod.tolist(),
                                                                           strict=True)]

    def _feed(self, ts: int) -> tuple[list[str], int]:
        """Candidates live at ``ts`` (by popularity, at most ``traffic_candidates``) and the visible feed length."""
        live = self.world.live_channels(ts)
        k = self.settings.ab.traffic_candidates
        if live.size > k:
            p = np.exp(self.world.channels.log_pop[live])
            live = self.rng.choice(live, size=k, replace=False, p=p / p.sum())
        else:
            live = self.rng.permutation(live)
        width = min(self.world.cfg.feed_size, live.size)
        cut = int(self.rng.choice(FEED_CUT.size, p=FEED_CUT))
        return [self.ids["channel"][c] for c in live.tolist()], max(width - min(cut, width - 1), 1)

    def _outcomes(self, user: int, request_id: str, ts: int, ranked: list[str]) -> tuple[list[dict[str, Any]], int]:
        """The world's behaviour for a shown feed as raw events; returns (events, watches)."""
        w = self.world
        chans = np.array([int(c[1:]) for c in ranked], np.int64)
        pos = np.arange(chans.size)
        t_imp = ts + pos * POSITION_GAP_MS
        resp = w.respond(np.full(chans.size, user), chans, t_imp, pos, self.rng)
        rows: list[dict[str, Any]] = []
        uid = f"u{user}"
        st = w.day(int(w.day_of(ts)))
        for i in np.flatnonzero(resp["entered"]).tolist():
            cid, enter = ranked[i], int(t_imp[i] + ENTER_DELAY_MS)
            stay = int(resp["stay_ms"][i])
            base = {"user_id": uid, "request_id": request_id, "channel_id": cid}
            rows.append({"event": "enter", "event_id": self._eid(), "ts": enter, **base})
            rows.append({"event": "leave", "event_id": self._eid(), "ts": enter + stay, "stay_ms": stay, **base})
            if resp["goods_bag"][i]:
                t_bag = enter + int(stay * self.rng.uniform(0.1, 0.6))
                rows.append({"event": "goods_bag_click", "event_id": self._eid(), "ts": t_bag, **base})
                if resp["product_click"][i]:
                    t_p = t_bag + int((enter + stay - t_bag) * self.rng.uniform(0.1, 0.9))
                    sale = on_sale(w, chans[i : i + 1], np.array([(t_p - st.start_ms) // self.slot_ms]))[0]
                    sale = sale[sale >= 0]
                    if sale.size:
                        rows.append({"event": "channel_product_click", "event_id": self._eid(), "ts": t_p,
                                     "product_id": self.ids["product"][int(self.rng.choice(sale))], **base})
        return rows, int(resp["watch"].sum())

    def _dimensions(self, t0: int, t1: int) -> None:
        """The world's dimension snapshots for the window's days, where the raw folder has none yet.

        Served logs land in ``raw/<date>/``; ingestion needs that day's ``users/channels/products.parquet``
        (the app's nightly dimension export, played here by the world).
        """
        for index in range(int(self.world.day_of(t0)), int(self.world.day_of(t1 - 1)) + 1):
            folder = self.settings.layout.raw(self.world.day(index).date)
            if not table_file(folder, "users").exists():
                folder.mkdir(parents=True, exist_ok=True)
                write_dimensions(self.world, folder, index)

    # ------------------------------------------------------------------ run
    def run(self, users: int, minutes: float, progress: bool = False) -> dict[str, Any]:
        """Play ``users`` users for ``minutes`` of world time from the session clock; returns counts."""
        return asyncio.run(self._run(users, minutes, progress))

    async def _run(self, users: int, minutes: float, progress: bool) -> dict[str, Any]:
        w, rng, ab = self.world, self.rng, self.settings.ab
        t0, t1 = self.clock, self.clock + int(minutes * MINUTE_MS)
        self._dimensions(t0, t1)
        n = min(int(users), w.n_users)
        p = w.users.feed_rate / w.users.feed_rate.sum()
        chosen = np.sort(rng.choice(w.n_users, size=n, replace=False, p=p))
        per_user = rng.poisson(ab.traffic_rate * minutes, n)
        req_user = np.repeat(chosen, per_user)
        req_ts = rng.integers(t0, t1, req_user.size)
        order = np.argsort(req_ts, kind="stable")
        req_user, req_ts = req_user[order], req_ts[order]
        clicks = sorted(self._product_clicks(chosen, t0, t1), key=lambda r: r["ts"])
        counts = {"requests": 0, "errors": 0, "impressions": 0, "watches": 0, "events": 0}
        variants: dict[str, dict[str, int]] = {}
        started = time.perf_counter()
        k = ab.traffic_concurrency
        auth = {"Authorization": f"Bearer {producer_token(self.settings)}"}  # POST /events needs it
        async with httpx.AsyncClient(base_url=self.url, timeout=60.0, headers=auth) as client:
            for lo in range(0, req_user.size, k):
                hi = min(lo + k, req_user.size)
                until = int(req_ts[hi - 1])
                pending = self._stats_events(until) + [c for c in clicks if c["ts"] <= until]
                clicks = [c for c in clicks if c["ts"] > until]
                await self._post_events(client, pending, counts)
                feedback = await self._batch(client, req_user[lo:hi], req_ts[lo:hi], counts, variants)
                await self._post_events(client, feedback, counts)
            await self._post_events(client, self._stats_events(t1 - 1) + clicks, counts)
        self.clock = t1
        seconds = time.perf_counter() - started
        return {**counts, "users": n, "seconds": round(seconds, 3),
                "requests_per_s": counts["requests"] / max(seconds, 1e-9), "variants": variants,
                "window": [_iso(t0), _iso(t1)], "url": self.url}

    async def _batch(self, client: httpx.AsyncClient, users: np.ndarray, ts: np.ndarray, counts: dict[str, int],
                     variants: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        reqs = []
        for u, t in zip(users.tolist(), ts.tolist(), strict=True):
            cands, visible = self._feed(int(t))
            if not cands:
                continue
            self.requests += 1
            rid = f"t{self.seed}-{self.requests}-{t}"
            scene = str(SCENES[int(self.rng.choice(SCENES.size, p=[0.7, 0.3]))])
            body = {"user_id": f"u{u}", "request_id": rid, "candidates": cands, "limit": visible,
                    "context": {"scene": scene, "ts": int(t)}}
            reqs.append((u, int(t), rid, body))
        answers = await asyncio.gather(*(client.post("/rank", json=r[3]) for r in reqs), return_exceptions=True)
        out: list[dict[str, Any]] = []
        for (u, t, rid, _), ans in zip(reqs, answers, strict=True):
            counts["requests"] += 1
            if isinstance(ans, BaseException) or ans.status_code != 200:
                counts["errors"] += 1
                continue
            body = ans.json()
            ranked = [item["channel_id"] for item in body["items"]]
            rows, watches = self._outcomes(u, rid, t, ranked)
            out += rows
            v = variants.setdefault(body["variant"], {"requests": 0, "impressions": 0, "watches": 0})
            v["requests"] += 1
            v["impressions"] += len(ranked)
            v["watches"] += watches
            counts["impressions"] += len(ranked)
            counts["watches"] += watches
        return out

    async def _post_events(self, client: httpx.AsyncClient, rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
        for lo in range(0, len(rows), 20_000):
            part = rows[lo : lo + 20_000]
            r = await client.post("/events", json={"events": part})
            if r.status_code != 200:
                raise EliverecError(f"{self.url}/events refused {len(part)} events: {r.status_code} {r.text[:300]}")
            counts["events"] += len(part)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_traffic(settings: Settings, url: str | None = None, users: int = 200, minutes: float = 10.0,
                start: str | int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Play ``users`` simulated users for ``minutes`` of world time against the service at ``url``.

    Returns counts (requests, errors, impressions, watches, events, per variant) and the world window.
    """
    session = TrafficSession(settings, url, seed, start)
    _check_up(session.url)
    return session.run(users, minutes)


def _check_up(url: str) -> None:
    try:
        r = httpx.get(f"{url}/healthz", timeout=10.0)
    except httpx.HTTPError as exc:
        raise EliverecError(f"no ranking service at {url} ({exc}); start it with `eliverec serve`") from exc
    if r.status_code != 200:
        raise EliverecError(f"the service at {url} is not ready ({r.status_code}): {r.text[:300]}")


def driver(settings: Settings, url: str | None, users: int | None, minutes: float) -> Callable[[], dict[str, Any]]:
    """A callable that plays one more round of traffic each time (for the ramp's --simulate-traffic)."""
    session = TrafficSession(settings, url)
    n = users or settings.world.n_users
    return lambda: session.run(n, minutes)

"""Write the world's raw logs day by day in the contract of DESIGN section 3.

``simulate(settings)`` writes, for each warm-up and main day,
``<raw>/<date>/events-<k>.jsonl.gz`` (``world.files_per_day`` files; a user's events and a
channel's stats always go to the same file, as from one collector) and the dimension
snapshots ``users.parquet``, ``channels.parquet``, ``products.parquet``. Users are simulated in
chunks of ``world.chunk_users``: memory holds the dimension tables and one chunk's events, never
a whole day or several days. Output is byte-identical for the same settings and seed.
"""

from __future__ import annotations

import gc
import gzip
import operator
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from eliverec.config import Settings
from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES
from eliverec.errors import DataError
from eliverec.layout import EVENT_LOG_PREFIX, event_log_name, event_logs, table_file
from eliverec.world.entities import AGE_BUCKETS, CITY_TIERS, GENDERS, TAG_DAY, rng_for
from eliverec.world.world import DAY_MS, ENTER_DELAY_MS, POSITION_GAP_MS, SCENES, DayState, World

#: Share of product clicks whose category comes from the user's product-domain intents.
INTENT_CLICK_SHARE = 0.85
#: Products on sale at once inside a channel (a window over its mounted products that moves every 3 slots).
ON_SALE = 5


# ---------------------------------------------------------------------------------------------- writing
#: The simulator's own event files (``events-<k>.jsonl[.gz]`` and their temporaries); every other
#: ``events-*.jsonl*`` in a day folder (the service's ``events-serving-*``, ``events-import*``) is not ours.
OWN_EVENTS = re.compile(rf"^(\.tmp-)?{EVENT_LOG_PREFIX}\d+\.jsonl(\.gz)?$")


def foreign_logs(folder: Path) -> list[Path]:
    """Event files in ``folder`` that the simulator did not write (served traffic, imported logs)."""
    if not folder.is_dir():
        return []
    return [p for p in event_logs(folder) if not OWN_EVENTS.match(p.name)]


class DayWriter:
    """``files_per_day`` event streams of one day, written in a background thread, renamed on close.

    Replaces only the simulator's own files of the day; a day that holds served or imported logs is
    refused (:class:`DataError`) before anything in it is touched.
    """

    def __init__(self, folder: Path, files: int, use_gzip: bool, level: int) -> None:
        foreign = foreign_logs(folder)
        if foreign:
            raise DataError(f"{folder}: holds logs the simulator did not write ({', '.join(p.name for p in foreign)}); "
                            "simulate never writes over served or imported logs: simulate into another data root "
                            "(--data-dir) or run the nightly with flows.source=collect")
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if OWN_EVENTS.match(old.name):
                old.unlink()
        self.paths = [folder / event_log_name(k, use_gzip) for k in range(files)]
        self._tmp = [p.with_name(f".tmp-{p.name}") for p in self.paths]
        self._raw = [open(p, "wb") for p in self._tmp]  # noqa: SIM115 - closed in close()
        self._streams: list[Any] = [
            gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=level, mtime=0) if use_gzip else f
            for f in self._raw
        ]
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: list[Future[Any]] = []

    def write(self, k: int, data: bytes) -> None:
        """Queue ``data`` for file ``k`` (order per file is kept: one worker)."""
        if data:
            self._pending.append(self._pool.submit(self._streams[k].write, data))
            if len(self._pending) > 16:
                self._pending.pop(0).result()

    def close(self) -> list[Path]:
        """Flush, close and move the files into place."""
        for f in self._pending:
            f.result()
        self._pool.shutdown()
        for s, f, tmp, path in zip(self._streams, self._raw, self._tmp, self.paths, strict=True):
            if s is not f:
                s.close()
            f.close()
            tmp.replace(path)
        return self.paths


def to_lines(rows: list[dict[str, Any]]) -> bytes:
    """Serialise dicts as JSON lines with one orjson call (no value contains ``},{``)."""
    if not rows:
        return b""
    return orjson.dumps(rows)[1:-1].replace(b"},{", b"}\n{") + b"\n"


def write_dimensions(world: World, folder: Path, index: int) -> None:
    """Daily snapshots of users, channels and products (schemas.DIMENSIONS)."""
    u, ch, cat = world.users, world.channels, world.catalog
    n, p = u.n, cat.product_category.size
    tables = {
        "users": {"user_id": [f"u{i}" for i in range(n)], "gender": GENDERS[u.gender],
                  "age_bucket": AGE_BUCKETS[u.age_bucket], "city_tier": CITY_TIERS[u.city_tier],
                  "register_days": u.register_days + index},
        "channels": {"channel_id": [f"c{i}" for i in range(ch.n)], "anchor_id": [f"a{a}" for a in ch.anchor],
                     "top_category": [f"cat{c}" for c in ch.top_category]},
        "products": {"product_id": [f"p{i}" for i in range(p)],
                     "category_id": [f"cat{c}" for c in cat.product_category],
                     "brand_id": [f"b{b}" for b in cat.product_brand], "price_bucket": cat.product_price_bucket},
    }
    for name, cols in tables.items():
        table = pa.table({k: pa.array(v, type=DIMENSIONS[name].field(k).type) for k, v in cols.items()},
                         schema=DIMENSIONS[name])
        pq.write_table(table, table_file(folder, name), compression="zstd")


# ---------------------------------------------------------------------------------------------- behaviour
class DayBook:
    """Per-day accumulators of viewers and revenue per (slot, channel) for channel_stats."""

    def __init__(self, state: DayState, n_channels: int) -> None:
        self.state = state
        self.n_slots = DAY_MS // state.slot_ms
        self.viewers = np.zeros((self.n_slots + 1, n_channels), np.int64)  # difference array over snapshots
        self.revenue = np.zeros((self.n_slots + 1, n_channels))

    def add_visits(self, channel: np.ndarray, enter: np.ndarray, leave: np.ndarray) -> None:
        """A visit [enter, leave) is counted by every snapshot (slot start) it covers."""
        rel0, rel1 = enter - self.state.start_ms, leave - self.state.start_ms
        first = -(-rel0 // self.state.slot_ms)
        last = -(-rel1 // self.state.slot_ms)  # exclusive
        keep = last > first
        np.add.at(self.viewers, (first[keep], channel[keep]), 1)
        np.add.at(self.viewers, (np.minimum(last[keep], self.n_slots), channel[keep]), -1)

    def add_revenue(self, channel: np.ndarray, ts: np.ndarray, amount: np.ndarray) -> None:
        """Revenue of a click lands in the next snapshot's window."""
        slot = np.minimum((ts - self.state.start_ms) // self.state.slot_ms + 1, self.n_slots)
        np.add.at(self.revenue, (slot, channel), amount)


def on_sale(world: World, channel: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """(n, ON_SALE) products on sale in ``channel`` during day slot ``slot`` (-1 padded)."""
    ch = world.channels
    m = ch.n_mounted[channel]
    j = (slot[:, None] // 3 + np.arange(ON_SALE)[None, :]) % m[:, None]
    out = ch.mounted[channel[:, None], j]
    return np.where(np.arange(ON_SALE)[None, :] < np.minimum(m, ON_SALE)[:, None], out, -1)


def simulate_chunk(world: World, index: int, lo: int, hi: int, chunk_no: int, book: DayBook,
                   counters: dict[str, int]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Events of users ``lo..hi`` on day ``index``: (rows, ts, user) in a fixed order."""
    rng = rng_for(world.seed, TAG_DAY, index, chunk_no)
    st, u = book.state, world.users
    intents = world.intents_on(index)[lo:hi]
    g = world.intent_groups
    ymd = st.date.replace("-", "")
    uid = [f"u{i}" for i in range(lo, hi)]
    cid = world_ids(world)["channel"]
    pid = world_ids(world)["product"]
    rows: list[dict[str, Any]] = []
    ts_all: list[np.ndarray] = []
    user_all: list[np.ndarray] = []

    def eid(n: int) -> list[str]:
        start = counters["event"]
        counters["event"] += n
        return [f"e{ymd}-{i}" for i in range(start, start + n)]

    # product domain: clicks from consistent + product-specific intents
    n_click = rng.poisson(u.click_rate[lo:hi])
    cu = np.repeat(np.arange(hi - lo), n_click)
    c_ts = st.start_ms + _diurnal_ms(world, cu.size, rng)
    prod_cols = np.concatenate([intents[:, g["consistent"]], intents[:, g["product"]]], axis=1)
    pick = prod_cols[cu, rng.integers(0, prod_cols.shape[1], cu.size)].astype(np.int64)
    noise = rng.choice(world.catalog.n_categories, size=cu.size, p=world.catalog.category_weight)
    cat = np.where(rng.random(cu.size) < INTENT_CLICK_SHARE, pick, noise)
    prod = world.catalog.sample_products(cat, rng)
    rows += [{"event": "product_click", "event_id": e, "ts": t, "user_id": uid[a], "product_id": pid[p]}
             for e, t, a, p in zip(eid(cu.size), c_ts.tolist(), cu.tolist(), prod.tolist(), strict=True)]
    ts_all.append(c_ts)
    user_all.append(cu)

    # live domain: feeds of the logging policy, then behaviour
    n_feed = rng.poisson(u.feed_rate[lo:hi])
    fu = np.repeat(np.arange(hi - lo), n_feed)
    f_ts = world.sample_feed_times(st, fu.size, rng)
    keep = f_ts >= 0
    fu, f_ts = fu[keep], f_ts[keep]
    if fu.size:
        chans, props = world.policy_slates(fu + lo, f_ts, rng, intents=intents[fu])
    else:
        chans, props = np.zeros((0, world.cfg.feed_size), np.int64), np.zeros((0, world.cfg.feed_size))
    req0 = counters["request"]
    counters["request"] += fu.size
    scene = rng.choice(SCENES.size, size=fu.size, p=[0.7, 0.3])
    fi, pos = np.nonzero(chans >= 0)
    iu, ic = fu[fi], chans[fi, pos]
    i_ts = f_ts[fi] + pos * POSITION_GAP_MS
    rid = [f"r{ymd}-{req0 + i}" for i in range(fu.size)]
    scenes = SCENES[scene].tolist()
    rows += [{"event": "impression", "event_id": e, "ts": t, "user_id": uid[a], "request_id": rid[f],
              "channel_id": cid[c], "position": p, "scene": scenes[f], "propensity": q}
             for e, t, a, f, c, p, q in zip(eid(iu.size), i_ts.tolist(), iu.tolist(), fi.tolist(),
                                            ic.tolist(), pos.tolist(), np.round(props[fi, pos], 6).tolist(),
                                            strict=True)]
    ts_all.append(i_ts)
    user_all.append(iu)

    resp = world.respond(iu + lo, ic, i_ts, pos, rng)
    v = np.flatnonzero(resp["entered"])
    vu, vc, vf = iu[v], ic[v], fi[v]
    enter = i_ts[v] + ENTER_DELAY_MS
    stay = resp["stay_ms"][v]
    leave = enter + stay
    book.add_visits(vc, enter, leave)
    common = list(zip(vu.tolist(), vf.tolist(), vc.tolist(), strict=True))
    rows += [{"event": "enter", "event_id": e, "ts": t, "user_id": uid[a], "request_id": rid[f],
              "channel_id": cid[c]} for e, t, (a, f, c) in zip(eid(v.size), enter.tolist(), common,
                                                               strict=True)]
    rows += [{"event": "leave", "event_id": e, "ts": t, "user_id": uid[a], "request_id": rid[f],
              "channel_id": cid[c], "stay_ms": s}
             for e, t, (a, f, c), s in zip(eid(v.size), leave.tolist(), common, stay.tolist(), strict=True)]
    ts_all += [enter, leave]
    user_all += [vu, vu]

    b = resp["goods_bag"][v]
    bag_ts = enter[b] + (stay[b] * rng.uniform(0.1, 0.6, int(b.sum()))).astype(np.int64)
    rows += [{"event": "goods_bag_click", "event_id": e, "ts": t, "user_id": uid[a], "request_id": rid[f],
              "channel_id": cid[c]}
             for e, t, a, f, c in zip(eid(bag_ts.size), bag_ts.tolist(), vu[b].tolist(), vf[b].tolist(),
                                      vc[b].tolist(), strict=True)]
    ts_all.append(bag_ts)
    user_all.append(vu[b])

    k = resp["product_click"][v][b]
    pu, pc, pf = vu[b][k], vc[b][k], vf[b][k]
    p_ts = bag_ts[k] + ((leave[b][k] - bag_ts[k]) * rng.uniform(0.1, 0.9, pu.size)).astype(np.int64)
    products = _pick_on_sale(world, pc, (p_ts - st.start_ms) // st.slot_ms, prod_cols[pu], rng)
    book.add_revenue(pc, p_ts, world.catalog.product_price[products])
    rows += [{"event": "channel_product_click", "event_id": e, "ts": t, "user_id": uid[a], "request_id": rid[f],
              "channel_id": cid[c], "product_id": pid[p]}
             for e, t, a, f, c, p in zip(eid(pu.size), p_ts.tolist(), pu.tolist(), pf.tolist(), pc.tolist(),
                                         products.tolist(), strict=True)]
    ts_all.append(p_ts)
    user_all.append(pu)
    return rows, np.concatenate(ts_all), np.concatenate(user_all) + lo


def _diurnal_ms(world: World, n: int, rng: np.random.Generator) -> np.ndarray:
    """Offsets in the day (ms) following user activity."""
    from eliverec.world.entities import diurnal_density

    slots = DAY_MS // world.slot_ms
    return rng.choice(slots, size=n, p=diurnal_density(slots)) * world.slot_ms + rng.integers(0, world.slot_ms, n)


def _pick_on_sale(world: World, channel: np.ndarray, slot: np.ndarray, user_cats: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """A product on sale, three times likelier when its category is one of the user's product-domain intents."""
    if channel.size == 0:
        return np.zeros(0, np.int64)
    cand = on_sale(world, channel, slot)
    cats = world.catalog.product_category[np.maximum(cand, 0)]
    w = np.where(cand >= 0, 1.0 + 2.0 * (cats[:, :, None] == user_cats[:, None, :]).any(2), 0.0)
    cum = np.cumsum(w, 1)
    r = rng.random(channel.size)[:, None] * cum[:, -1:]
    return cand[np.arange(channel.size), (cum <= r).sum(1)]


def channel_stats_rows(world: World, book: DayBook, counters: dict[str, int]) -> tuple[list[dict[str, Any]],
                                                                                         np.ndarray, np.ndarray]:
    """Snapshots at every slot start while a channel is live: viewers, revenue of the last window, on sale."""
    st, ch = book.state, world.channels
    s, c = np.nonzero(st.live)
    ts = st.start_ms + s * st.slot_ms
    heat = st.heat(c, ts)
    conc = np.cumsum(book.viewers, 0)[s, c]
    mean_price = world.catalog.product_price[np.maximum(ch.mounted, 0)].mean(1)
    viewers = np.rint(ch.audience[c] * heat).astype(np.int64) + conc
    revenue = np.round(ch.audience[c] * heat * 0.002 * mean_price[c] + book.revenue[s, c], 2)
    sale = world_ids(world)["on_sale"]
    phase = (s // 3) % ch.n_mounted[c]
    cid = world_ids(world)["channel"]
    ymd = st.date.replace("-", "")
    start = counters["event"]
    counters["event"] += s.size
    rows = [{"event": "channel_stats", "event_id": f"e{ymd}-{start + i}", "ts": t, "channel_id": cid[k],
             "viewers": vw, "revenue_window": r, "products_on_sale": sale[k][f]}
            for i, (t, k, vw, r, f) in enumerate(zip(ts.tolist(), c.tolist(), viewers.tolist(), revenue.tolist(),
                                                     phase.tolist(), strict=True))]
    return rows, ts, c


def world_ids(world: World) -> dict[str, Any]:
    """String ids of channels and products, and the on-sale lists per channel phase (cached on the world)."""
    cached = getattr(world, "_string_ids", None)
    if cached is not None:
        return cached
    pid = [f"p{i}" for i in range(world.catalog.product_category.size)]
    ch = world.channels
    sale: list[list[list[str]]] = []
    for c in range(ch.n):  # per channel and window phase: the products on sale (as in on_sale())
        m = int(ch.n_mounted[c])
        sale.append([[pid[int(ch.mounted[c, (f + j) % m])] for j in range(min(ON_SALE, m))] for f in range(m)])
    ids = {"channel": [f"c{i}" for i in range(ch.n)], "product": pid, "on_sale": sale}
    world._string_ids = ids  # type: ignore[attr-defined]
    return ids


def _write_sorted(writer: DayWriter, rows: list[dict[str, Any]], ts: np.ndarray, key: np.ndarray) -> None:
    """Route rows to files by ``key % files`` and write each file's rows in time order."""
    files = len(writer.paths)
    order = np.lexsort((ts, key % files))
    bounds = np.searchsorted((key % files)[order], np.arange(files + 1))
    for k in range(files):
        idx = order[bounds[k] : bounds[k + 1]].tolist()
        if idx:
            picked = operator.itemgetter(*idx)(rows)
            writer.write(k, to_lines(list(picked) if len(idx) > 1 else [picked]))


def simulate_day(world: World, index: int, raw_dir: Path, chunk_users: int, progress: Any = None,
                 task: Any = None) -> dict[str, Any]:
    """Simulate and write one day; returns its event counts and paths."""
    cfg = world.cfg
    st = world.day(index)
    folder = raw_dir / st.date
    writer = DayWriter(folder, cfg.files_per_day, cfg.gzip, cfg.gzip_level)
    book = DayBook(st, world.channels.n)
    counters = {"event": 0, "request": 0}
    counts = dict.fromkeys(EVENT_TYPES, 0)
    try:
        # millions of short-lived dicts without cycles: the cyclic GC would rescan them again and again
        gc_was_on = gc.isenabled()
        gc.disable()
        for chunk_no, lo in enumerate(range(0, world.n_users, chunk_users)):
            hi = min(lo + chunk_users, world.n_users)
            rows, ts, users = simulate_chunk(world, index, lo, hi, chunk_no, book, counters)
            _count(counts, rows)
            _write_sorted(writer, rows, ts, users)
            del rows
            if progress is not None:
                progress.advance(task)
        rows, ts, chans = channel_stats_rows(world, book, counters)
        counts["channel_stats"] += len(rows)
        _write_sorted(writer, rows, ts, chans)
        del rows
    finally:
        paths = writer.close()
        if gc_was_on:
            gc.enable()
    write_dimensions(world, folder, index)
    if progress is not None:
        progress.advance(task)
    return {"date": st.date, "warmup": index < cfg.warmup_days, "counts": counts,
            "events": int(sum(counts.values())), "requests": counters["request"],
            "files": [str(p) for p in paths]}


def _count(counts: dict[str, int], rows: list[dict[str, Any]]) -> None:
    kinds, n = np.unique(np.array([r["event"] for r in rows]), return_counts=True) if rows else ([], [])
    for k, c in zip(kinds, n, strict=True):
        counts[str(k)] += int(c)


def simulate(settings: Settings, days: int | None = None, users: int | None = None, seed: int | None = None,
             out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Simulate the world of ``settings`` and write raw logs (warm-up days first, then the main days).

    Args:
        settings: resolved settings (``world`` section; ``seed``; ``features.min_stay_ms`` defines a watch).
        days: main days (default ``world.days``); ``world.warmup_days`` history days come before them.
        users: number of users (default ``world.n_users``).
        seed: world seed (default ``settings.seed``).
        out_dir: the raw folder to write into (default ``<data_dir>/raw``).
        progress: show a rich progress bar per day.

    Returns:
        A summary: seed, users, dates, per-day counts and files, total events, seconds, events/s.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    world = World.from_settings(settings, n_users=users, seed=seed, days=days)
    raw_dir = Path(out_dir) if out_dir is not None else settings.layout.raw()
    raw_dir.mkdir(parents=True, exist_ok=True)
    chunk = settings.world.chunk_users
    n_chunks = -(-world.n_users // chunk)
    per_day: list[dict[str, Any]] = []
    cols = (TextColumn("[bold]simulate {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, disable=not progress, transient=False) as bar:
        for index, date in enumerate(world.dates):
            task = bar.add_task(date, total=n_chunks + 1)
            per_day.append(simulate_day(world, index, raw_dir, chunk, bar, task))
    seconds = time.perf_counter() - t0
    total = sum(d["events"] for d in per_day)
    return {"seed": world.seed, "users": world.n_users, "raw_dir": str(raw_dir), "dates": world.dates,
            "warmup_dates": world.dates[: world.cfg.warmup_days], "days": per_day, "events": total,
            "seconds": round(seconds, 3), "events_per_s": round(total / max(seconds, 1e-9), 1),
            "world": world.describe()}


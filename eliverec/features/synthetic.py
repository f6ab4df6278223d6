"""Synthetic bronze days of any size, for feature tests and the feature benchmark.

Not the simulated world (``eliverec.world``, which has ground truth): these are random
events with the bronze contract's schemas and roughly the world's rates (8 channels per
feed request, about 12% entered, stats every 5 minutes), generated vectorised so millions of
impressions take seconds. ``tick_ms`` coarsens timestamps so that same-millisecond events
(the hard case for point-in-time joins) are common.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, bronze_schema
from eliverec.layout import DAY_MS, DataLayout, day_start_ms, table_file


@dataclass(frozen=True)
class SyntheticSize:
    """Sizes of a synthetic bronze world."""

    n_users: int = 10_000
    n_channels: int = 1_500
    n_products: int = 40_000
    n_categories: int = 40
    impressions_per_day: int = 100_000
    clicks_per_day: int = 60_000
    feed_size: int = 8
    enter_rate: float = 0.12
    stats_every_ms: int = 300_000
    tick_ms: int = 1


def ids(prefix: str, values: np.ndarray) -> pa.Array:
    """String ids ``prefix + value``, vectorised.

    >>> ids("u", np.array([3, 10])).to_pylist()
    ['u3', 'u10']
    """
    return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")


def _times(rng: np.random.Generator, start: int, n: int, tick: int) -> np.ndarray:
    return start + (rng.integers(0, DAY_MS // tick, n) * tick).astype(np.int64)


def _table(event: str, cols: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    schema = bronze_schema(event)
    n = len(next(iter(cols.values())))
    full = {f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in schema}
    return pa.table({k: pa.array(v) if isinstance(v, np.ndarray) else v for k, v in full.items()}).cast(schema)


def write_dimensions(folder: Path, size: SyntheticSize) -> None:
    """Users, channels and products snapshots (the same every day)."""
    u = np.arange(size.n_users)
    users = pa.table({"user_id": ids("u", u), "gender": ids("g", u % 3), "age_bucket": ids("a", u % 7),
                      "city_tier": ids("t", u % 5), "register_days": pa.array((u * 37) % 2000, pa.int64())})
    c = np.arange(size.n_channels)
    channels = pa.table({"channel_id": ids("c", c), "anchor_id": ids("a", c % max(size.n_channels * 4 // 5, 1)),
                         "top_category": ids("k", c % size.n_categories)})
    p = np.arange(size.n_products)
    products = pa.table({"product_id": ids("p", p), "category_id": ids("k", p % size.n_categories),
                         "brand_id": ids("b", p % 997), "price_bucket": pa.array(p % 10, pa.int64())})
    for name, t in (("users", users), ("channels", channels), ("products", products)):
        pq.write_table(t.cast(DIMENSIONS[name]), table_file(folder, name))


def write_day(data_dir: Path, day: dt.date, size: SyntheticSize, seed: int = 0) -> Path:
    """Write one synthetic bronze day folder; returns it."""
    rng = np.random.default_rng([seed, day.toordinal()])
    lay = DataLayout(Path(data_dir))
    folder = lay.bronze(day)
    folder.mkdir(parents=True, exist_ok=True)
    start, tick = day_start_ms(day), size.tick_ms
    write_dimensions(folder, size)
    tables: dict[str, pa.Table] = {}
    n_req = max(size.impressions_per_day // size.feed_size, 1)
    req_user = rng.integers(0, size.n_users, n_req)
    req_ts = _times(rng, start, n_req, tick)
    n = n_req * size.feed_size
    user, ts = np.repeat(req_user, size.feed_size), np.repeat(req_ts, size.feed_size)
    request = np.repeat(np.arange(n_req) + day.toordinal() * 10_000_000, size.feed_size)
    channel = rng.integers(0, size.n_channels, n)
    tables["impression"] = _table("impression", {
        "event_id": ids(f"i{day:%Y%m%d}-", np.arange(n)), "ts": ts, "user_id": ids("u", user),
        "request_id": ids("r", request), "channel_id": ids("c", channel),
        "position": np.tile(np.arange(size.feed_size, dtype=np.int32), n_req),
        "scene": ids("s", (request % 3))})
    ent = np.flatnonzero(rng.random(n) < size.enter_rate)
    enter_ts = ts[ent] + rng.integers(1, 5_000, len(ent))
    stay = (rng.exponential(30_000, len(ent)) // tick * tick).astype(np.int64)
    visit = {"user_id": ids("u", user[ent]), "request_id": ids("r", request[ent]), "channel_id": ids("c", channel[ent])}
    tables["enter"] = _table("enter", {"event_id": ids(f"e{day:%Y%m%d}-", ent), "ts": enter_ts, **visit})
    tables["leave"] = _table("leave", {"event_id": ids(f"l{day:%Y%m%d}-", ent), "ts": enter_ts + stay,
                                       "stay_ms": stay, **visit})
    for event, rate in (("goods_bag_click", 0.3), ("channel_product_click", 0.2)):
        sel = rng.random(len(ent)) < rate
        cols = {k: v.filter(pa.array(sel)) for k, v in visit.items()}
        extra = {"product_id": ids("p", rng.integers(0, size.n_products, int(sel.sum())))} \
            if event == "channel_product_click" else {}
        tables[event] = _table(event, {"event_id": ids(f"{event[:2]}{day:%Y%m%d}-", np.flatnonzero(sel)),
                                       "ts": enter_ts[sel] + 1, **cols, **extra})
    m = size.clicks_per_day
    tables["product_click"] = _table("product_click", {
        "event_id": ids(f"p{day:%Y%m%d}-", np.arange(m)), "ts": _times(rng, start, m, tick),
        "user_id": ids("u", rng.integers(0, size.n_users, m)),
        "product_id": ids("p", rng.integers(0, size.n_products, m))})
    slots = DAY_MS // size.stats_every_ms
    s_ch = np.repeat(np.arange(size.n_channels), slots)
    s_ts = start + np.tile(np.arange(slots) * size.stats_every_ms, size.n_channels) + (s_ch % 7) * tick
    lens = rng.integers(0, 11, len(s_ch))
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    on_sale = pa.ListArray.from_arrays(pa.array(offsets), ids("p", rng.integers(0, size.n_products, int(offsets[-1]))))
    tables["channel_stats"] = _table("channel_stats", {
        "event_id": ids(f"s{day:%Y%m%d}-", np.arange(len(s_ch))), "ts": s_ts, "channel_id": ids("c", s_ch),
        "viewers": rng.integers(0, 5_000, len(s_ch)), "revenue_window": rng.gamma(1.0, 100.0, len(s_ch)),
        "products_on_sale": on_sale})
    for event in EVENT_TYPES:
        pq.write_table(tables[event], lay.bronze_table(day, event))
    return folder


def write_days(data_dir: Path, first: str, days: int, size: SyntheticSize, seed: int = 0) -> list[str]:
    """Write ``days`` consecutive synthetic days from ``first``; returns their dates."""
    start = dt.date.fromisoformat(first)
    out = []
    for i in range(days):
        day = start + dt.timedelta(days=i)
        write_day(data_dir, day, size, seed)
        out.append(day.isoformat())
    return out

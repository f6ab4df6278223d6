"""Sample features of impressions from raw-id inputs: the one code path offline and online share.

:func:`product_log`, :func:`watch_log` and :func:`stats_log` turn raw ids into hashed
:class:`~eliverec.features.pointintime.EventLog`s; :func:`impression_features` turns a block
of impressions plus a :class:`Context` (as-of indexes and dimension tables) into the arrays
of the batch contract (``eliverec/features/batch.py``). The offline builder calls them per
chunk of a day; :func:`eliverec.features.online.request_features` calls them for one request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eliverec.features import batch
from eliverec.features.hashing import (
    FeatureSpec,
    hour_ids,
    position_ids,
    register_bucket_ids,
    weekday_ids,
)
from eliverec.features.pointintime import AsOfIndex, EventLog, gather_sequence, latest_stats, top_categories

#: dtype of each batch key on disk (ids as int32 to halve the bytes; the loader widens to int64).
DISK_DTYPES: dict[str, str] = {
    "user": "int32", "profile": "int32", "context": "int32", "position": "int32", "channel": "int32",
    "dynamic": "float32", "dynamic_cats": "int32", "product_seq": "int32", "product_len": "int32",
    "channel_seq": "int32", "channel_len": "int32",
    "watch": "float32", "stay_time": "float32", "goods_bag": "float32", "product_click": "float32",
}
IMPRESSION_COLUMNS = ["user_id", "ts", "request_id", "channel_id", "position", "scene"]


def product_log(spec: FeatureSpec, user: pa.Array, ts: np.ndarray, product: pa.Array, category: pa.Array,
                brand: pa.Array) -> EventLog:
    """Product clicks, known at their ``ts`` (category and brand as raw ids, null if unknown)."""
    return EventLog(user, np.asarray(ts, np.int64), {
        "product": spec.hash(product, "product"), "category": spec.hash(category, "category"),
        "brand": spec.hash(brand, "brand")})


def watch_log(spec: FeatureSpec, user: pa.Array, leave_ts: np.ndarray, channel: pa.Array, anchor: pa.Array,
              category: pa.Array, stay_ms: np.ndarray) -> EventLog:
    """Watched channels from ``leave`` events: stayed at least ``min_stay_ms``, known at the leave ts."""
    keep = np.flatnonzero(np.asarray(stay_ms) >= spec.min_stay_ms)
    take = pa.array(keep, pa.int64())
    return EventLog(user.take(take), np.asarray(leave_ts, np.int64)[keep], {
        "channel": spec.hash(channel.take(take), "channel"), "anchor": spec.hash(anchor.take(take), "anchor"),
        "category": spec.hash(category.take(take), "category")})


def stats_log(spec: FeatureSpec, channel: pa.Array, ts: np.ndarray, viewers: np.ndarray, revenue: np.ndarray,
              on_sale_categories: pa.ListArray) -> EventLog:
    """Channel stats, known at their ``ts``; ``on_sale_categories`` lists the category of each product on sale."""
    n = len(ts)
    flat = pc.list_flatten(on_sale_categories)
    parent = pc.list_parent_indices(on_sale_categories).to_numpy(zero_copy_only=False)
    cats = top_categories(parent, spec.hash(flat, "category"), n, spec.dynamic_cats)
    n_on_sale = pc.fill_null(pc.list_value_length(on_sale_categories), 0).to_numpy(zero_copy_only=False)
    return EventLog(channel, np.asarray(ts, np.int64), {
        "viewers": np.asarray(viewers, np.float64), "revenue": np.asarray(revenue, np.float64),
        "n_on_sale": n_on_sale.astype(np.float64), "cats": cats})


@dataclass(frozen=True)
class Context:
    """What an impression's features are read from: histories indexed as-of, and dimension snapshots."""

    spec: FeatureSpec
    products: AsOfIndex
    watches: AsOfIndex
    stats: AsOfIndex
    users: pa.Table  # user_id, gender, age_bucket, city_tier, register_days
    channels: pa.Table  # channel_id, anchor_id, top_category


def dim_take(keys: pa.Array, dim: pa.Table, key: str, column: str) -> pa.Array:
    """``dim[column]`` for each key (null where the key is not in the dimension table)."""
    idx = pc.index_in(keys, value_set=dim[key].combine_chunks())
    return dim[column].combine_chunks().take(idx)


def impression_features(ctx: Context, imp: pa.Table,
                        stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, pa.Array]]:
    """Features and readable extras of a block of impressions (no labels).

    ``imp`` has :data:`IMPRESSION_COLUMNS`. ``stats``: the channel stats of these impressions
    already looked up (:func:`~eliverec.features.pointintime.latest_stats`; the sharded build
    computes them per channel shard), else looked up in ``ctx.stats``. Returns the batch-contract
    arrays (disk dtypes) and readable columns for ``samples.parquet`` (anchor, top category, stats flag).
    """
    spec, v = ctx.spec, ctx.spec.vocab
    user = imp["user_id"].combine_chunks()
    channel = imp["channel_id"].combine_chunks()
    ts = imp["ts"].to_numpy().astype(np.int64)
    profile = np.stack([spec.hash(dim_take(user, ctx.users, "user_id", f), f)
                        for f in ("gender", "age_bucket", "city_tier")]
                       + [register_bucket_ids(dim_take(user, ctx.users, "user_id", "register_days")
                                              .to_numpy(zero_copy_only=False), v["register_bucket"])], axis=1)
    anchor = dim_take(channel, ctx.channels, "channel_id", "anchor_id")
    top_cat = dim_take(channel, ctx.channels, "channel_id", "top_category")
    product_seq, product_len = gather_sequence(ctx.products, batch.PRODUCT_FIELDS, user, ts, spec.seq_len)
    channel_seq, channel_len = gather_sequence(ctx.watches, batch.CHANNEL_FIELDS, user, ts, spec.seq_len)
    dynamic, dynamic_cats, has_stats = stats if stats is not None else latest_stats(ctx.stats, channel, ts,
                                                                                    spec.dynamic_cats)
    arrays = {
        "user": spec.hash(user, "user"),
        "profile": profile.astype(np.int32),
        "context": np.stack([hour_ids(ts), weekday_ids(ts), spec.hash(imp["scene"], "scene")], axis=1),
        "position": position_ids(imp["position"].to_numpy().astype(np.int64), v["position"]),
        "channel": np.stack([spec.hash(channel, "channel"), spec.hash(anchor, "anchor"),
                             spec.hash(top_cat, "category")], axis=1),
        "dynamic": dynamic, "dynamic_cats": dynamic_cats,
        "product_seq": product_seq, "product_len": product_len,
        "channel_seq": channel_seq, "channel_len": channel_len,
    }
    extras = {"anchor_id": anchor, "top_category": top_cat, "has_stats": pa.array(has_stats)}
    return arrays, extras


def index_logs(products: EventLog, watches: EventLog, stats: EventLog) -> tuple[AsOfIndex, AsOfIndex, AsOfIndex]:
    """As-of indexes with deterministic same-millisecond order (by hashed id / by viewers)."""
    return AsOfIndex(products, tie="product"), AsOfIndex(watches, tie="channel"), AsOfIndex(stats, tie="viewers")


def empty_log(kind: str, spec: FeatureSpec) -> EventLog:
    """An empty log of one kind (``product``, ``watch`` or ``stats``)."""
    e, t = pa.array([], pa.string()), np.zeros(0, np.int64)
    if kind == "product":
        return product_log(spec, e, t, e, e, e)
    if kind == "watch":
        return watch_log(spec, e, t, e, e, e, np.zeros(0, np.int64))
    return stats_log(spec, e, t, np.zeros(0), np.zeros(0), pa.array([], pa.list_(pa.string())))

"""The raw-log and bronze contracts of DESIGN section 3, as data.

Raw logs: ``raw/<date>/events-*.jsonl[.gz]`` (one JSON object per line, field ``event``
names the type) plus dimension snapshots ``users.parquet``, ``channels.parquet``,
``products.parquet``. Bronze: ``bronze/<date>/<event>.parquet`` typed as below, the
dimension tables copied as ``bronze/<date>/<dimension>.parquet``, and ``_manifest.json``.
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = (
    "product_click",
    "impression",
    "enter",
    "leave",
    "goods_bag_click",
    "channel_product_click",
    "channel_stats",
)

#: Required fields per event type (besides ``event``), in DESIGN section 3 order.
REQUIRED: dict[str, tuple[str, ...]] = {
    "product_click": ("event_id", "ts", "user_id", "product_id"),
    "impression": ("event_id", "ts", "user_id", "request_id", "channel_id", "position", "scene"),
    "enter": ("event_id", "ts", "user_id", "request_id", "channel_id"),
    "leave": ("event_id", "ts", "user_id", "request_id", "channel_id", "stay_ms"),
    "goods_bag_click": ("event_id", "ts", "user_id", "request_id", "channel_id"),
    "channel_product_click": ("event_id", "ts", "user_id", "request_id", "channel_id", "product_id"),
    "channel_stats": ("event_id", "ts", "channel_id", "viewers", "revenue_window", "products_on_sale"),
}

#: Optional fields per event type. ``derived`` marks events an importer inferred
#: (for example impressions built from "live at that moment" channels).
OPTIONAL: dict[str, tuple[str, ...]] = {
    "impression": ("variant", "model_version", "score", "propensity", "derived"),
    "enter": ("derived",),
    "leave": ("derived",),
}

ID_FIELDS: frozenset[str] = frozenset(
    {"event_id", "user_id", "product_id", "request_id", "channel_id", "scene", "variant", "model_version"}
)
NON_NEGATIVE_INT_FIELDS: frozenset[str] = frozenset({"position", "stay_ms", "viewers"})

_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.string(),
    "ts": pa.int64(),
    "user_id": pa.string(),
    "product_id": pa.string(),
    "request_id": pa.string(),
    "channel_id": pa.string(),
    "position": pa.int32(),
    "scene": pa.string(),
    "stay_ms": pa.int64(),
    "viewers": pa.int64(),
    "revenue_window": pa.float64(),
    "products_on_sale": pa.list_(pa.string()),
    "variant": pa.string(),
    "model_version": pa.string(),
    "score": pa.float64(),
    "propensity": pa.float64(),
    "derived": pa.bool_(),
}


def bronze_schema(event: str) -> pa.Schema:
    """Arrow schema of the bronze table for one event type (required fields not null)."""
    fields = [pa.field(name, _TYPES[name], nullable=False) for name in REQUIRED[event]]
    fields += [pa.field(name, _TYPES[name], nullable=True) for name in OPTIONAL.get(event, ())]
    return pa.schema(fields)


DIMENSIONS: dict[str, pa.Schema] = {
    "users": pa.schema(
        [
            ("user_id", pa.string()),
            ("gender", pa.string()),
            ("age_bucket", pa.string()),
            ("city_tier", pa.string()),
            ("register_days", pa.int64()),
        ]
    ),
    "channels": pa.schema([("channel_id", pa.string()), ("anchor_id", pa.string()), ("top_category", pa.string())]),
    "products": pa.schema(
        [
            ("product_id", pa.string()),
            ("category_id", pa.string()),
            ("brand_id", pa.string()),
            ("price_bucket", pa.int64()),
        ]
    ),
}

"""Hand-built raw days for the ingest, validation and import tests."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

DATE = "2026-09-01"
T0 = 1788220800000  # 2026-09-01T00:00:00Z in ms


def ev(kind: str, i: int, **over: object) -> dict[str, object]:
    """A valid event of type ``kind`` with id ``<kind>-<i>`` (fields overridable)."""
    base: dict[str, object] = {"event": kind, "event_id": f"{kind}-{i}", "ts": T0 + 1000 * i}
    extra: dict[str, dict[str, object]] = {
        "product_click": {"user_id": f"u{i % 5}", "product_id": f"p{i % 7}"},
        "impression": {
            "user_id": f"u{i % 5}",
            "request_id": f"r{i // 4}",
            "channel_id": f"c{i % 3}",
            "position": i % 4,
            "scene": "homepage",
        },
        "enter": {"user_id": f"u{i % 5}", "request_id": f"r{i // 4}", "channel_id": f"c{i % 3}"},
        "leave": {"user_id": f"u{i % 5}", "request_id": f"r{i // 4}", "channel_id": f"c{i % 3}", "stay_ms": 5000},
        "goods_bag_click": {"user_id": f"u{i % 5}", "request_id": f"r{i // 4}", "channel_id": f"c{i % 3}"},
        "channel_product_click": {
            "user_id": f"u{i % 5}",
            "request_id": f"r{i // 4}",
            "channel_id": f"c{i % 3}",
            "product_id": f"p{i % 7}",
        },
        "channel_stats": {"channel_id": f"c{i % 3}", "viewers": 10, "revenue_window": 1.5, "products_on_sale": ["p1"]},
    }
    return base | extra[kind] | over


def line(obj: object) -> bytes:
    return orjson.dumps(obj)


def good_lines(n: int, start: int = 0) -> list[bytes]:
    """``n`` valid lines cycling over the event types (ids unique from ``start``)."""
    kinds = ["impression", "impression", "enter", "leave", "product_click", "goods_bag_click",
             "channel_product_click", "channel_stats"]  # fmt: skip
    return [line(ev(kinds[i % len(kinds)], start + i)) for i in range(n)]


def write_dims(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    users = pa.table({"user_id": [f"u{i}" for i in range(5)], "gender": ["F"] * 5, "age_bucket": ["25-34"] * 5,
                      "city_tier": ["1"] * 5, "register_days": list(range(5))})  # fmt: skip
    channels = pa.table({"channel_id": ["c0", "c1", "c2"], "anchor_id": ["a0", "a1", "a1"], "top_category": ["k"] * 3})
    products = pa.table({"product_id": [f"p{i}" for i in range(7)], "category_id": ["k"] * 7,
                         "brand_id": ["b"] * 7, "price_bucket": [1] * 7})  # fmt: skip
    for name, t in (("users", users), ("channels", channels), ("products", products)):
        pq.write_table(t, folder / f"{name}.parquet")


@pytest.fixture
def raw_day(tiny_settings) -> Callable[..., Path]:
    """Write ``{file name: lines or bytes}`` (``.gz`` names are gzipped) + dimensions for DATE."""

    def make(files: dict[str, list[bytes] | bytes], date: str = DATE) -> Path:
        folder = tiny_settings.data_dir / "raw" / date
        write_dims(folder)
        for name, content in files.items():
            data = content if isinstance(content, bytes) else b"".join(x + b"\n" for x in content)
            (folder / name).write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") and
                                        not isinstance(content, bytes) else data)  # fmt: skip
        return folder

    return make

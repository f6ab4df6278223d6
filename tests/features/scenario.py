"""A tiny event log whose right answers are known (see test_build.py for the expectations)."""

from __future__ import annotations

from pathlib import Path

from tests.features.conftest import ms, write_bronze_day

D1, D2, D3 = "2026-09-01", "2026-09-02", "2026-09-03"  # look-back, train, test
USERS = [{"user_id": "u1", "gender": "f", "age_bucket": "25-34", "city_tier": "1", "register_days": 100}]
CHANNELS = [
    {"channel_id": "c1", "anchor_id": "a1", "top_category": "k1"},
    {"channel_id": "c2", "anchor_id": "a2", "top_category": "k2"},
    {"channel_id": "c3", "anchor_id": "a1", "top_category": "k3"},
]
PRODUCTS = [
    {"product_id": f"p{i}", "category_id": f"k{1 + i % 3}", "brand_id": f"b{i}", "price_bucket": 1} for i in range(1, 6)
]
T1 = ms(D2, 8)  # the train impressions of request r1
T3 = ms(D3, 10)  # the test impression of request r3


def imp(user: str, ts: int, request: str, channel: str, position: int, scene: str = "feed") -> dict:
    return {"user_id": user, "ts": ts, "request_id": request, "channel_id": channel, "position": position,
            "scene": scene}


def visit(user: str, ts: int, request: str, channel: str, **extra) -> dict:
    return {"user_id": user, "ts": ts, "request_id": request, "channel_id": channel, **extra}


def write_scenario(data_dir: Path) -> None:
    """Write the three bronze days of the scenario."""
    click = lambda ts, p: {"user_id": "u1", "ts": ts, "product_id": p}  # noqa: E731
    stats = lambda ts, ch, viewers, on_sale: {  # noqa: E731
        "ts": ts, "channel_id": ch, "viewers": viewers, "revenue_window": 2.5, "products_on_sale": on_sale}
    write_bronze_day(data_dir, D1, {
        "product_click": [click(ms(D1, 10), "p1"), click(ms(D1, 11), "p2"), click(ms(D1, 12), "p3")],
        "enter": [visit("u1", ms(D1, 13), "r0", "c1"), visit("u1", ms(D1, 14), "r0", "c2")],
        "leave": [visit("u1", ms(D1, 13, 10), "r0", "c1", stay_ms=600_000),
                  visit("u1", ms(D1, 14, 0, 1), "r0", "c2", stay_ms=1_000)],  # too short: not a watch
        "channel_stats": [stats(ms(D1, 9), "c1", 10, ["p1", "p2", "p2", "p9"])],
    }, USERS, CHANNELS, PRODUCTS)
    write_bronze_day(data_dir, D2, {
        # p4 at the same millisecond as the impression: must not enter; p5 one ms later: neither
        "product_click": [click(T1, "p4"), click(T1 + 1, "p5")],
        "impression": [imp("u1", T1, "r1", "c1", 0), imp("u1", T1, "r1", "c2", 1),
                       imp("u2", ms(D2, 9), "r2", "c3", 0, "search")],
        "enter": [visit("u1", T1 + 5_000, "r1", "c1")],
        "goods_bag_click": [visit("u1", T1 + 20_000, "r1", "c1")],
        "leave": [visit("u1", T1 + 65_000, "r1", "c1", stay_ms=60_000)],
        "channel_stats": [stats(T1 - 60_000, "c1", 100, ["p1", "p4", "p4"]),
                          stats(T1, "c1", 999, ["p2"])],  # same millisecond: must not be used
    }, USERS, CHANNELS, PRODUCTS)
    write_bronze_day(data_dir, D3, {
        "impression": [imp("u1", T3, "r3", "c2", 3)],
        "enter": [visit("u1", T3 + 1_000, "r3", "c2")],
        "channel_product_click": [{**visit("u1", T3 + 1_500, "r3", "c2"), "product_id": "p1"}],
        "leave": [visit("u1", T3 + 3_000, "r3", "c2", stay_ms=2_000)],
        "channel_stats": [stats(T3 - 1, "c2", 7, [])],
    }, USERS, CHANNELS, PRODUCTS)

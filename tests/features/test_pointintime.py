"""As-of primitives: strictness, left padding, carry compaction, top categories, label join."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from eliverec.features.pointintime import AsOfIndex, EventLog, gather_sequence, top_categories, visit_labels


def log_of(users, ts, values):
    return EventLog(pa.array(users, pa.string()), np.array(ts, np.int64), {"v": np.array(values, np.int32)})


def test_strictly_before_excludes_same_millisecond():
    idx = AsOfIndex(log_of(["a", "a", "a", "b"], [10, 20, 20, 5], [1, 2, 3, 4]), tie="v")
    seq, n = gather_sequence(idx, ("v",), pa.array(["a", "a", "a", "b", "zz"]), np.array([20, 21, 10, 100, 100]), 3)
    assert seq[..., 0].tolist() == [[0, 0, 1], [1, 2, 3], [0, 0, 0], [0, 0, 4], [0, 0, 0]]
    assert n.tolist() == [1, 3, 0, 1, 0]


def test_queries_outside_the_indexed_span_never_cross_users():
    idx = AsOfIndex(log_of(["a", "b"], [1_000, 2_000], [7, 8]))
    seq, n = gather_sequence(idx, ("v",), pa.array(["b", "a", "b"]), np.array([0, 10**13, 10**13]), 2)
    assert seq[..., 0].tolist() == [[0, 0], [0, 7], [0, 8]] and n.tolist() == [0, 1, 1]


def test_compaction_is_exact_for_later_queries():
    rng = np.random.default_rng(0)
    n, k, cutoff = 3000, 4, 50_000
    users = [f"u{x}" for x in rng.integers(0, 40, n)]
    log = log_of(users, rng.integers(0, 100_000, n) // 100 * 100, rng.integers(1, 1000, n))
    full = AsOfIndex(log, tie="v")
    small = AsOfIndex(full.compact(cutoff, k), tie="v")
    assert len(small) < len(full)
    q_users = pa.array([f"u{x}" for x in rng.integers(0, 41, 2000)])
    q_ts = rng.integers(cutoff, 110_000, 2000)
    a, na = gather_sequence(full, ("v",), q_users, q_ts, k)
    b, nb = gather_sequence(small, ("v",), q_users, q_ts, k)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(na, nb)


def test_top_categories_by_count_then_hash():
    out = top_categories(np.array([0, 0, 0, 0, 2, 2]), np.array([9, 4, 9, 4, 1, 1]), 3, 3)
    assert out.tolist() == [[4, 9, 0], [0, 0, 0], [1, 0, 0]]


def visit_table(rows, stay=False):
    cols = {"user_id": [r[0] for r in rows], "request_id": [r[1] for r in rows], "channel_id": [r[2] for r in rows]}
    if stay:
        cols["stay_ms"] = [r[3] for r in rows]
    schema = pa.schema([(c, pa.string()) for c in ("user_id", "request_id", "channel_id")]
                       + ([("stay_ms", pa.int64())] if stay else []))
    return pa.table(cols, schema=schema)


def test_visit_labels_join_on_user_request_and_channel():
    visits = {
        "enter": visit_table([("u1", "r1", "c1"), ("u1", "r1", "c2"), ("u2", "r1", "c1")]),
        "leave": visit_table([("u1", "r1", "c1", 5000), ("u1", "r1", "c1", 9000), ("u1", "r1", "c2", 100)], stay=True),
        "goods_bag_click": visit_table([("u1", "r1", "c2")]),
        "channel_product_click": visit_table([("u9", "r1", "c1")]),  # another user's click: not ours
    }
    columns = (["u1", "u1", "u1", "u3"], ["r1", "r1", "r2", "r1"], ["c1", "c2", "c1", "c1"])
    user, req, ch = (pa.array(x) for x in columns)
    lab = visit_labels(user, req, ch, visits, min_stay_ms=3000)
    assert lab["watch"].tolist() == [1, 0, 0, 0]
    assert lab["stay_time"].tolist() == pytest.approx([np.log1p(9.0), np.log1p(0.1), 0, 0])  # the longest stay
    assert lab["goods_bag"].tolist() == [0, 1, 0, 0] and lab["product_click"].tolist() == [0, 0, 0, 0]

"""The serving feature path equals the offline builder's code (request_features) on random states."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eliverec.config import load_settings
from eliverec.features.hashing import FeatureSpec
from eliverec.serving.features import IdHasher
from eliverec.serving.state import Dimensions, OnlineState
from tests.conftest import PARAMS

TS = 1_000_000


def _spec() -> FeatureSpec:
    """Short sequences (truncation happens) and a stay floor above the state's (the spec filters too)."""
    spec = FeatureSpec.from_settings(load_settings("tiny", params=PARAMS))
    return dataclasses.replace(spec, seq_len=5, min_stay_ms=1_000)


def _state(rng: np.random.Generator) -> OnlineState:
    """Users, channels and products, some unknown to the dimensions, with events around ``TS``.

    Times come from a few values so same-millisecond ties, events at ``TS`` and after it are common.
    """
    state = OnlineState(seq_len=5, min_stay_ms=0)
    maybe = [None, "x", "y"]
    state.dims = Dimensions(
        users={f"u{i}": {"gender": rng.choice(maybe), "age_bucket": "18-24", "city_tier": rng.choice(maybe),
                         "register_days": None if i % 3 == 0 else int(rng.integers(0, 900))} for i in range(6)},
        channels={f"c{i}": (rng.choice(["a1", "a2", None]), rng.choice(["k1", "k2", None])) for i in range(12)},
        products={f"p{i}": (rng.choice(["k1", "k2", "k3", None]), rng.choice(["b1", None])) for i in range(15)})
    times = TS + np.array([-50_000, -20_000, -3, -1, -1, 0, 7])
    events = []
    for _ in range(400):
        user, t = f"u{rng.integers(9)}", int(rng.choice(times))
        kind = rng.choice(["product_click", "leave", "channel_stats"])
        if kind == "product_click":
            events.append({"event": kind, "user_id": user, "ts": t, "product_id": f"p{rng.integers(20)}"})
        elif kind == "leave":
            events.append({"event": kind, "user_id": user, "ts": t, "channel_id": f"c{rng.integers(16)}",
                           "stay_ms": int(rng.choice([0, 999, 1_000, 60_000]))})
        else:
            events.append({"event": kind, "channel_id": f"c{rng.integers(16)}", "ts": t,
                           "viewers": int(rng.choice([5, 5, 40])), "revenue_window": float(rng.choice([-2.5, 0, 9])),
                           "products_on_sale": [f"p{x}" for x in rng.integers(0, 20, rng.integers(0, 12))]})
    state.apply(events)
    return state


@pytest.mark.parametrize("seed", range(4))
def test_serving_features_equal_the_offline_code_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    state, spec = _state(rng), _spec()
    for i in range(25):
        user = f"u{rng.integers(9)}"  # u6-u8: no profile; some users without history
        candidates = [f"c{x}" for x in rng.choice(16, int(rng.integers(1, 16)), replace=False)]
        ts = TS + int(rng.choice([-20_000, 0, 1, 10]))
        request = {"user_id": user, "ts": ts, "scene": rng.choice(["homepage", "new-scene"]),
                   "candidates": candidates, "position": int(rng.integers(0, 12))}
        got = state.features(spec, **request)
        want = state.reference_features(spec, **request)
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, (k, i)
            assert bool((got[k] == v).all()), (k, request)


def test_id_memo_stays_bounded_and_exact() -> None:
    spec = _spec()
    hasher = IdHasher(spec, max_ids=10)
    values = [f"p{i}" for i in range(25)] + [None]
    for lo in range(0, 26, 4):
        assert hasher.ids("product", values[lo:lo + 4]) == spec.hash(values[lo:lo + 4], "product").tolist()
        assert len(hasher._memo["product"]) <= 10

"""The service's online state builds the same tensors as the offline samples for the same history."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest

from eliverec.features.hashing import FeatureSpec
from eliverec.serving.state import OnlineState, read_dimensions
from tests.serving.helpers import TinyWorld

KEYS = ("user", "profile", "context", "channel", "dynamic", "dynamic_cats", "product_seq", "product_len",
        "channel_seq", "channel_len", "position")


def _offline(world: TinyWorld):
    day = world.dates[-1]
    folder = world.root / "features" / day
    df = pq.read_table(folder / "samples.parquet").to_pandas()
    tensors = {k: np.load(folder / "tensors" / f"{k}.npy") for k in KEYS}
    spec = FeatureSpec.load(folder / "feature_spec.json")
    return df, tensors, spec


def _window(world: TinyWorld) -> list[str]:
    """The days the offline builder read for the test day: look-back + train days + the test day."""
    f = world.settings_tiny.features
    return world.dates[-(f.lookback_days + f.train_days + 1):]


def _bronze_events(world: TinyWorld, until_ms: int) -> list[dict]:
    rows = []
    for date in _window(world):
        folder = world.root / "bronze" / date
        for name in ("product_click", "leave", "channel_stats"):
            t = pq.read_table(folder / f"{name}.parquet").to_pylist()
            rows += [{"event": name, **r} for r in t if r["ts"] < until_ms]
    return rows


def _compare(state: OnlineState, spec: FeatureSpec, df, tensors, rows) -> None:
    r = df.iloc[rows[0]]
    got = state.features(spec, user_id=r.user_id, ts=int(r.ts), scene=r.scene,
                         candidates=list(df.channel_id.iloc[rows]), position=int(r.position))
    for k in KEYS:
        want = tensors[k][rows]
        if k == "position":  # the service passes one fixed position; offline rows carry their own
            want = np.full_like(want, want[0])
        np.testing.assert_array_equal(got[k].numpy(), want, err_msg=k)


def test_warm_started_state_matches_offline_samples(world: TinyWorld) -> None:
    df, tensors, spec = _offline(world)
    rng = np.random.default_rng(0)
    requests = rng.choice(df.request_id.unique(), size=6, replace=False)
    checked = 0
    for request in requests:
        rows = np.flatnonzero(df.request_id.to_numpy() == request)
        ts = int(df.ts.iloc[rows[0]])
        if not (df.ts.iloc[rows] == ts).all():
            rows = rows[df.ts.iloc[rows].to_numpy() == ts]
        state = OnlineState(spec.seq_len, spec.min_stay_ms)
        used = state.warm(world.root, days=len(_window(world)), until_ms=ts)  # the state as it was at the request
        assert used[-1] == dt.datetime.fromtimestamp(ts / 1000, dt.UTC).date().isoformat()
        _compare(state, spec, df, tensors, rows)
        checked += 1
    assert checked == 6


def test_state_fed_by_events_matches_offline_samples(world: TinyWorld) -> None:
    df, tensors, spec = _offline(world)
    busy = df.groupby("request_id").size().sort_values().index[-1]
    rows = np.flatnonzero(df.request_id.to_numpy() == busy)
    rows = rows[df.ts.iloc[rows].to_numpy() == df.ts.iloc[rows[0]]]
    ts = int(df.ts.iloc[rows[0]])
    state = OnlineState(spec.seq_len, spec.min_stay_ms)
    state.dims = read_dimensions(world.root / "bronze" / world.dates[-1])
    events = _bronze_events(world, ts)
    np.random.default_rng(1).shuffle(events)  # events may arrive in any order
    used = state.apply(events)
    assert used["product_click"] > 0 and used["leave"] > 0 and used["channel_stats"] > 0
    assert all(len(v) <= 2 * spec.seq_len for v in state.clicks.values())  # bounded memory
    _compare(state, spec, df, tensors, rows)


def test_unknown_user_and_channel_get_valid_features(world: TinyWorld) -> None:
    _, _, spec = _offline(world)
    state = OnlineState(spec.seq_len, spec.min_stay_ms)
    state.warm(world.root, days=1)
    out = state.features(spec, user_id="never-seen", ts=10**12 * 2, scene="homepage",
                         candidates=["c0", "brand-new-channel"], position=1)
    assert out["product_len"].tolist() == [0, 0] and out["channel_len"].tolist() == [0, 0]
    assert (out["channel"][:, 0] > 0).all() and out["channel"][0, 0] != out["channel"][1, 0]
    assert int(out["user"][0]) == int(out["user"][1]) > 0
    with pytest.raises(KeyError):
        state.apply([{"event": "leave", "user_id": "u1", "ts": 1}])  # a leave without stay_ms

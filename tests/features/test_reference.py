"""The vectorised builder and the online path against a row-by-row reference on a random log.

Timestamps are on a one-minute grid, so impressions, clicks, leaves and stats often share a
millisecond: the hard case for "strictly before".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from eliverec.config import load_settings
from eliverec.features.build import build_features
from eliverec.features.hashing import FeatureSpec
from eliverec.features.online import ChannelState, UserHistory, request_features
from eliverec.features.synthetic import SyntheticSize, write_days
from eliverec.layout import DataLayout
from tests.conftest import PARAMS

DAYS = ["2026-09-01", "2026-09-02", "2026-09-03"]
SIZE = SyntheticSize(n_users=25, n_channels=10, n_products=40, n_categories=6, impressions_per_day=320,
                     clicks_per_day=120, stats_every_ms=1_800_000, tick_ms=60_000)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference") / "data"
    settings = load_settings("tiny", overrides=["features.seq_len=8", "features.lookback_days=1",
                                                "features.chunk_rows=97", "features.min_stay_ms=20000"],
                             params=PARAMS, data_dir=root)
    write_days(root, DAYS[0], 3, SIZE, seed=7)
    build_features(settings, DAYS[2], 1)
    bronze = {e: pd.concat([pq.read_table(root / "bronze" / d / f"{e}.parquet").to_pandas().assign(day=d)
                            for d in DAYS], ignore_index=True)
              for e in ("product_click", "leave", "enter", "goods_bag_click", "channel_product_click", "channel_stats",
                        "impression")}
    dims = {n: pq.read_table(root / "bronze" / DAYS[0] / f"{n}.parquet").to_pandas().set_index(
        {"users": "user_id", "channels": "channel_id", "products": "product_id"}[n]) for n in
        ("users", "channels", "products")}
    return settings, FeatureSpec.from_settings(settings), bronze, dims


def reference_row(spec, bronze, dims, row, day):
    """Features and labels of one impression, computed event by event."""
    u, t, c = row.user_id, row.ts, row.channel_id
    prod = dims["products"]
    clicks = bronze["product_click"]
    clicks = clicks[(clicks.user_id == u) & (clicks.ts < t) & (clicks.day <= day)]
    ph = spec.hash(list(clicks.product_id), "product")
    clicks = clicks.assign(h=ph).sort_values(["ts", "h"]).tail(spec.seq_len)
    pseq = [[int(spec.hash([p], "product")[0]), int(spec.hash([prod.category_id[p]], "category")[0]),
             int(spec.hash([prod.brand_id[p]], "brand")[0])] for p in clicks.product_id]
    lv = bronze["leave"]
    lv = lv[(lv.user_id == u) & (lv.ts < t) & (lv.day <= day) & (lv.stay_ms >= spec.min_stay_ms)]
    lv = lv.assign(h=spec.hash(list(lv.channel_id), "channel")).sort_values(["ts", "h"]).tail(spec.seq_len)
    ch = dims["channels"]
    cseq = [[int(spec.hash([x], "channel")[0]), int(spec.hash([ch.anchor_id[x]], "anchor")[0]),
             int(spec.hash([ch.top_category[x]], "category")[0])] for x in lv.channel_id]
    st = bronze["channel_stats"]
    st = st[(st.channel_id == c) & (st.ts < t) & (st.day <= day)].sort_values(["ts", "viewers"])
    if len(st):
        last = st.iloc[-1]
        age = min((t - last.ts) / 60_000, 1440.0)
        dyn = [math.log1p(last.viewers), math.log1p(last.revenue_window), math.log1p(len(last.products_on_sale)),
               math.log1p(age)]
    else:
        dyn = [0.0, 0.0, 0.0, math.log1p(1440.0)]
    window = [d for d in bronze["impression"].day.unique() if d >= day][:2]  # the day and the next in the window
    window = [d for d in window if d in (day, DAYS[2]) and d >= day]

    def visit(e):
        v = bronze[e]
        return v[(v.user_id == u) & (v.request_id == row.request_id) & (v.channel_id == c) & v.day.isin(window)]

    entered = len(visit("enter")) > 0 or len(visit("leave")) > 0
    stay = float(visit("leave").stay_ms.max()) if len(visit("leave")) else 0.0
    labels = [float(entered and stay >= spec.min_stay_ms), math.log1p(stay / 1000) if entered else 0.0,
              float(len(visit("goods_bag_click")) > 0), float(len(visit("channel_product_click")) > 0)]
    return pseq, cseq, dyn, labels


@pytest.mark.parametrize("day", DAYS[1:])
def test_offline_matches_reference(world, day):
    settings, spec, bronze, dims = world
    folder = DataLayout(settings.data_dir).features(day)
    df = pq.read_table(folder / "samples.parquet").to_pandas()
    a = {k: np.load(folder / "tensors" / f"{k}.npy") for k in ("product_seq", "product_len", "channel_seq",
                                                                "channel_len", "dynamic", "watch", "stay_time",
                                                                "goods_bag", "product_click")}
    assert len(df) == SIZE.impressions_per_day
    assert a["product_len"].max() == spec.seq_len and (a["product_len"] < spec.seq_len).any()  # truncation exercised
    assert a["watch"].sum() > 0 and a["goods_bag"].sum() > 0
    for i in range(0, len(df), 3):
        pseq, cseq, dyn, labels = reference_row(spec, bronze, dims, df.iloc[i], day)
        L = spec.seq_len
        assert a["product_len"][i] == len(pseq) and a["channel_len"][i] == len(cseq), i
        assert a["product_seq"][i].tolist() == [[0, 0, 0]] * (L - len(pseq)) + pseq, i
        assert a["channel_seq"][i].tolist() == [[0, 0, 0]] * (L - len(cseq)) + cseq, i
        assert a["dynamic"][i].tolist() == pytest.approx(dyn, rel=1e-5, abs=1e-6), i
        got = [a["watch"][i], a["stay_time"][i], a["goods_bag"][i], a["product_click"][i]]
        assert got == pytest.approx(labels, rel=1e-5), i


def test_online_matches_offline(world):
    """Online/offline parity: the serving path, fed the raw events known so far, builds the same tensors."""
    settings, spec, bronze, dims = world
    day = DAYS[2]
    folder = DataLayout(settings.data_dir).features(day)
    df = pq.read_table(folder / "samples.parquet").to_pandas()
    offline = {k: np.load(folder / "tensors" / f"{k}.npy") for k in ("user", "profile", "context", "position",
                                                                      "channel", "dynamic", "dynamic_cats",
                                                                      "product_seq", "product_len", "channel_seq",
                                                                      "channel_len")}
    prod, ch, users = dims["products"], dims["channels"], dims["users"]
    clicks, leaves, stats = bronze["product_click"], bronze["leave"], bronze["channel_stats"]
    for request in df.request_id.unique()[::5]:  # one call per request, all its candidates at once
        rows = np.flatnonzero(df.request_id.to_numpy() == request)
        r = df.iloc[rows[0]]
        # the serving state holds everything logged so far, including events after the request: they must be ignored
        pc_u = clicks[clicks.user_id == r.user_id]
        lv_u = leaves[leaves.user_id == r.user_id]
        history = UserHistory(
            product_ts=list(pc_u.ts), product_id=list(pc_u.product_id),
            product_category=[prod.category_id[p] for p in pc_u.product_id],
            product_brand=[prod.brand_id[p] for p in pc_u.product_id],
            leave_ts=list(lv_u.ts), leave_channel=list(lv_u.channel_id),
            leave_anchor=[ch.anchor_id[x] for x in lv_u.channel_id],
            leave_category=[ch.top_category[x] for x in lv_u.channel_id], leave_stay_ms=list(lv_u.stay_ms))
        candidates = []
        for c in df.channel_id.iloc[rows]:
            st_c = stats[stats.channel_id == c]
            candidates.append(ChannelState(
                c, ch.anchor_id[c], ch.top_category[c], stats_ts=list(st_c.ts), viewers=list(st_c.viewers),
                revenue_window=list(st_c.revenue_window),
                on_sale_categories=[[prod.category_id[p] for p in lst] for lst in st_c.products_on_sale]))
        online = request_features(spec, ts=int(r.ts), user_id=r.user_id, scene=r.scene,
                                  profile=users.loc[r.user_id].to_dict(), history=history, candidates=candidates,
                                  position=[int(x) for x in df.position.iloc[rows]])
        for k, v in offline.items():
            np.testing.assert_array_equal(online[k].numpy(), v[rows], err_msg=f"{k} request {request}")
            assert online[k].dtype == (torch.float32 if v.dtype.kind == "f" else torch.int64), k

"""The one reader of feature days: the batch contract, order, multi-day concatenation, loaders, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eliverec.config import load_settings
from eliverec.errors import DataError
from eliverec.features.batch import random_batch
from eliverec.features.build import build_features
from eliverec.features.dataset import load_days, load_split
from eliverec.features.synthetic import SyntheticSize, write_days
from eliverec.layout import DataLayout
from tests.conftest import PARAMS

DAYS = ["2026-09-01", "2026-09-02", "2026-09-03"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset") / "data"
    settings = load_settings("tiny", overrides=["features.seq_len=6", "features.lookback_days=1"], params=PARAMS,
                             data_dir=root)
    write_days(root, DAYS[0], 3, SyntheticSize(n_users=40, n_channels=12, n_products=60, impressions_per_day=240,
                                               clicks_per_day=200), seed=3)
    build_features(settings, DAYS[2], 1)
    return settings


def test_batches_follow_the_contract(built):
    ds = load_split(built, "train")
    b = ds.batch(np.arange(5))
    ref = random_batch({k: 10 for k in built.features.vocab}, 5, 6)
    assert set(b) == set(ref)
    for k, v in ref.items():
        assert b[k].shape == v.shape and b[k].dtype == v.dtype, k
    pad = torch.arange(6)[None, :] < (6 - b["product_len"])[:, None]
    assert (b["product_seq"][pad] == 0).all() and (b["product_seq"][~pad] > 0).all()


def test_rows_come_back_in_the_requested_order_across_days(built):
    ds = load_days(built.data_dir, DAYS[1:])
    assert len(ds) == 480
    rows = np.array([479, 3, 240, 239, 3])
    b = ds.batch(rows)
    single = [ds.batch(int(r)) for r in rows]  # a batch of one each
    for k in b:
        torch.testing.assert_close(b[k], torch.cat([s[k] for s in single]), msg=k)
        torch.testing.assert_close(ds[rows][k], b[k], check_dtype=False, msg=k)  # stored dtypes, same values
    test_user = np.load(DataLayout(built.data_dir).features(DAYS[2]) / "tensors" / "user.npy")
    assert b["user"][0] == int(test_user[239]) and b["user"][2] == int(test_user[0])


def test_loader_and_iter_batches_cover_every_row_once(built):
    ds = load_split(built, "test")
    seen = torch.cat([b["user"] for b in ds.loader(64, shuffle=True, seed=1)])
    assert len(seen) == len(ds)
    assert sorted(seen.tolist()) == sorted(ds.batch(np.arange(len(ds)))["user"].tolist())
    batches = list(ds.iter_batches(100, shuffle=False, drop_last=True))
    assert [len(b["watch"]) for b in batches] == [100, 100]
    torch.testing.assert_close(batches[0]["product_seq"], ds.batch(np.arange(100))["product_seq"])
    assert set(ds.label_rates()) == {"watch", "stay_time", "goods_bag", "product_click"}


def test_bad_input(built, tmp_path):
    with pytest.raises(DataError, match="no samples"):
        load_days(built.data_dir, ["2026-08-01"])
    ds = load_days(built.data_dir, [DAYS[1]])
    with pytest.raises(IndexError):
        ds.batch(np.array([len(ds)]))
    spec_path = DataLayout(built.data_dir).features(DAYS[2]) / "feature_spec.json"
    original = spec_path.read_text()
    try:
        data = json.loads(original)
        data["salt"] = "other"
        data.pop("spec_hash")
        from eliverec.features.hashing import FeatureSpec

        spec_path.write_text(FeatureSpec(**data).to_json())
        with pytest.raises(DataError, match="different feature specs"):
            load_days(built.data_dir, DAYS[1:])
    finally:
        spec_path.write_text(original)

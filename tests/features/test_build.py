"""Point-in-time correctness of the offline builder against a hand-made log whose answers are known."""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eliverec.config import load_settings
from eliverec.errors import DataError
from eliverec.features.build import build_features
from eliverec.features.hashing import FeatureSpec
from eliverec.layout import DataLayout
from tests.conftest import PARAMS
from tests.features.scenario import D1, D2, D3, T1, T3, write_scenario


@pytest.fixture
def scenario(tmp_path):
    """Settings (seq_len 4, look-back 1 day, chunks of 2 rows) and the scenario written under them."""
    settings = load_settings("tiny", overrides=["features.seq_len=4", "features.lookback_days=1",
                                                "features.chunk_rows=2", "features.min_stay_ms=3000"],
                             params=PARAMS, data_dir=tmp_path / "data")
    write_scenario(settings.data_dir)
    return settings


def load_day(settings, day):
    folder = DataLayout(settings.data_dir).features(day)
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in (folder / "tensors").glob("*.npy")}
    return pq.read_table(folder / "samples.parquet").to_pandas(), arrays


def h(spec, space, *values):
    return spec.hash(list(values), space).tolist()


def test_sequences_are_point_in_time_ordered_and_truncated(scenario):
    build_features(scenario, D3, 1)
    spec = FeatureSpec.from_settings(scenario)
    df, a = load_day(scenario, D2)
    assert df["request_id"].tolist() == ["r1", "r1", "r2"]  # sorted by ts, request, position
    # r1 at T1: p1..p3 from the look-back day; p4 clicked at the same millisecond T1 and p5 after are excluded
    for row in (0, 1):
        assert a["product_seq"][row, :, 0].tolist() == [0, *h(spec, "product", "p1", "p2", "p3")]
        assert a["product_seq"][row, :, 1].tolist() == [0, *h(spec, "category", "k2", "k3", "k1")]
        assert a["product_seq"][row, :, 2].tolist() == [0, *h(spec, "brand", "b1", "b2", "b3")]
        assert a["product_len"][row] == 3
        # only the c1 watch of day 1 (600 s); the c2 visit (1 s) is below min_stay_ms
        assert a["channel_seq"][row].tolist() == [[0, 0, 0]] * 3 + [
            [*h(spec, "channel", "c1"), *h(spec, "anchor", "a1"), *h(spec, "category", "k1")]]
        assert a["channel_len"][row] == 1
    # u2 has no history at all
    assert a["product_len"][2] == 0 and a["channel_len"][2] == 0 and not a["product_seq"][2].any()
    df3, a3 = load_day(scenario, D3)
    # r3: five clicks known, truncated to the most recent four, oldest first
    assert a3["product_seq"][0, :, 0].tolist() == h(spec, "product", "p2", "p3", "p4", "p5")
    assert a3["product_len"][0] == 4
    # the day-2 watch of c1 counts from its leave ts, so r3 sees two c1 watches
    assert a3["channel_seq"][0, :, 0].tolist() == [0, 0, *h(spec, "channel", "c1", "c1")]
    assert a3["channel_len"][0] == 2


def test_labels_match_the_visit(scenario):
    build_features(scenario, D3, 1)
    df, a = load_day(scenario, D2)
    assert a["watch"].tolist() == [1.0, 0.0, 0.0]
    assert a["stay_time"][0] == pytest.approx(math.log1p(60.0)) and a["stay_time"][1:].tolist() == [0.0, 0.0]
    assert a["goods_bag"].tolist() == [1.0, 0.0, 0.0] and a["product_click"].tolist() == [0.0, 0.0, 0.0]
    _, a3 = load_day(scenario, D3)
    # entered, stayed 2 s (< min_stay_ms): not a watch, but stay time and the product click count
    assert a3["watch"].tolist() == [0.0] and a3["product_click"].tolist() == [1.0]
    assert a3["stay_time"][0] == pytest.approx(math.log1p(2.0))
    assert df[["watch", "goods_bag"]].to_numpy().tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


def test_dynamic_context_is_latest_stats_strictly_before(scenario):
    build_features(scenario, D3, 1)
    spec = FeatureSpec.from_settings(scenario)
    df, a = load_day(scenario, D2)
    # c1 at T1: the 07:59 stats (100 viewers, on sale p1 p4 p4), not the same-millisecond 999
    assert a["dynamic"][0].tolist() == pytest.approx([math.log1p(100), math.log1p(2.5), math.log1p(3), math.log1p(1)])
    assert a["dynamic_cats"][0].tolist() == [*h(spec, "category", "k2"), 0, 0, 0, 0, 0, 0, 0]  # p1, p4: both k2
    # c2 and c3 have no stats before T1: zeros and a day-old age
    assert a["dynamic"][1].tolist() == pytest.approx([0, 0, 0, math.log1p(1440)])
    assert df["has_stats"].tolist() == [True, False, False]
    _, a3 = load_day(scenario, D3)
    assert a3["dynamic"][0].tolist() == pytest.approx([math.log1p(7), math.log1p(2.5), 0.0, math.log1p(1 / 60_000)])


def test_static_and_target_fields(scenario):
    build_features(scenario, D3, 1)
    spec = FeatureSpec.from_settings(scenario)
    df, a = load_day(scenario, D2)
    assert a["channel"][0].tolist() == [*h(spec, "channel", "c1"), *h(spec, "anchor", "a1"), *h(spec, "category", "k1")]
    assert a["context"][0].tolist() == [9, 3, *h(spec, "scene", "feed")]  # 08:xx UTC -> 9; 2026-09-02 is a Wednesday
    assert a["position"].tolist() == [1, 2, 1]
    assert a["profile"][0].tolist() == [*h(spec, "gender", "f"), *h(spec, "age_bucket", "25-34"),
                                        *h(spec, "city_tier", "1"), 2 + int(math.log2(101))]
    unknown = [*h(spec, "gender", None), *h(spec, "age_bucket", None), *h(spec, "city_tier", None), 1]
    assert a["profile"][2].tolist() == unknown  # u2 is not in the users table
    assert df.loc[0, "anchor_id"] == "a1" and df.loc[2, "scene"] == "search"


def test_split_has_no_time_overlap_and_summaries(scenario):
    result = build_features(scenario, D3, 1)
    assert result["train_days"] == [D2] and result["test_day"] == D3 and result["history_days"] == [D1]
    train, _ = load_day(scenario, D2)
    test, _ = load_day(scenario, D3)
    assert train["ts"].max() < test["ts"].min()
    assert train["ts"].max() == pytest.approx(T1 + 3_600_000) and test["ts"].min() == T3
    summary = json.loads((DataLayout(scenario.data_dir).features(D2) / "_summary.json").read_text())
    assert summary["rows"] == 3 and summary["split"] == "train"
    assert summary["label_rates"]["watch"] == pytest.approx(1 / 3, abs=1e-5)
    assert summary["mean_product_len"] == pytest.approx(2.0) and summary["mean_channel_len"] == pytest.approx(2 / 3,
                                                                                                           abs=1e-3)
    spec = FeatureSpec.load(DataLayout(scenario.data_dir).features(D2) / "feature_spec.json")
    assert spec.spec_hash == result["spec_hash"] == summary["spec_hash"]
    assert not [p for p in (scenario.data_dir / "features").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_rebuild_is_identical_and_chunking_invisible(scenario, tmp_path):
    build_features(scenario, D3, 1)
    first = {k: np.array(v) for k, v in load_day(scenario, D2)[1].items()}
    one_chunk = scenario.model_copy(update={"features": scenario.features.model_copy(update={"chunk_rows": 1000})})
    build_features(one_chunk, D3, 1)
    second = load_day(scenario, D2)[1]
    assert set(first) == set(second)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k], err_msg=k)


def test_missing_window_day_is_a_clear_error(scenario):
    shutil.rmtree(scenario.data_dir / "bronze" / D2)
    with pytest.raises(DataError, match=rf"missing bronze day folder.*{D2}.*eliverec ingest"):
        build_features(scenario, D3, 1)


def test_missing_lookback_day_is_skipped_with_a_warning(scenario, caplog):
    shutil.rmtree(scenario.data_dir / "bronze" / D1)
    with caplog.at_level(logging.WARNING):
        result = build_features(scenario, D3, 1)
    assert result["missing_history_days"] == [D1] and result["history_days"] == []
    assert D1 in caplog.text
    _, a = load_day(scenario, D2)
    assert a["product_len"].tolist() == [0, 0, 0]  # nothing known before the window now


def test_missing_column_is_a_clear_error(scenario):
    path = scenario.data_dir / "bronze" / D3 / "leave.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["stay_ms"]), path)
    with pytest.raises(DataError, match=r"leave.parquet: missing column\(s\) stay_ms"):
        build_features(scenario, D3, 1)


def test_wrong_type_and_bad_date_are_clear_errors(scenario):
    path = scenario.data_dir / "bronze" / D3 / "impression.parquet"
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.schema.get_field_index("ts"), "ts", pa.array(["x"] * t.num_rows)), path)
    with pytest.raises(DataError, match="impression.parquet: column types"):
        build_features(scenario, D3, 1)
    with pytest.raises(DataError, match="bad date '2026-13-01'"):
        build_features(scenario, "2026-13-01", 1)

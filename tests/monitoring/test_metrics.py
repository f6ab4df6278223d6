"""Discoverability, Gini, KPIs, sequence summaries and the custom Evidently metrics on hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eliverec.config import ConfigError, check_thresholds, load_settings
from eliverec.monitoring import metrics
from eliverec.monitoring.frames import NOVELTY_RECENT, sequence_summaries
from tests.conftest import PARAMS


def test_gini_extremes_and_empty():
    assert metrics.gini(np.array([3, 3, 3])) == pytest.approx(0.0)
    assert metrics.gini(np.array([0, 0, 0, 0, 10])) == pytest.approx(0.8)
    assert np.isnan(metrics.gini(np.array([0, 0])))


def test_discoverability_counts_only_dormant_channels():
    since = np.array([1, 2, 8, 20, np.nan, np.nan])
    imp = np.array([9, 0, 1, 0, 4, 0])
    assert metrics.discoverability(since, imp, 7) == (pytest.approx(0.5), 4)  # 8, 20, nan, nan: 2 exposed
    assert metrics.discoverability(since, imp, 14) == (pytest.approx(1 / 3), 3)
    value, n = metrics.discoverability(np.array([1.0, 2.0]), np.array([1, 1]), 7)
    assert n == 0 and np.isnan(value)


def test_kpis_and_unknown_kpi():
    f = pd.DataFrame({"watch": [1.0, 1.0, 0.0, 0.0], "stay_time": np.log1p([4.0, 8.0, 0.0, 0.0]),
                      "goods_bag": [1.0, 0.0, 0.0, 1.0], "product_click": [0.0, 1.0, 0.0, 0.0]})
    assert metrics.kpi(f, "ctr") == 0.5
    assert metrics.kpi(f, "stay_seconds") == pytest.approx(6.0)
    assert metrics.kpi(f, "goods_bag_ctr") == 0.5
    assert metrics.kpi(f, "product_ctr") == 0.25
    assert metrics.kpi(f, "conversion") == 0.5
    assert np.isnan(metrics.kpi(f[f["watch"] == 0], "conversion"))
    with pytest.raises(ValueError, match="unknown KPI"):
        metrics.kpi(f, "gmv")


def test_sequence_summaries_novelty_rises_when_recent_categories_are_new():
    L = 30
    ids = np.arange(1, L + 1)
    stable = np.stack([ids, np.where(np.arange(L) % 2, 5, 6)], axis=1)  # categories 5/6 throughout
    shifted = stable.copy()
    shifted[-NOVELTY_RECENT:, 1] = 9  # the latest behaviours are all in a new category
    short = np.zeros_like(stable)
    short[-3:] = stable[-3:]  # too short for novelty
    out = sequence_summaries(np.stack([stable, shifted, short]), np.array([5, 5, 5]), 1)
    assert out["novelty"][0] == 0.0 and out["novelty"][1] == 1.0 and np.isnan(out["novelty"][2])
    assert out["target_share"][0] == pytest.approx(0.5)
    assert out["target_share"][1] == pytest.approx(10 / 30)
    assert list(out["last"]) == [5, 9, 5]


def test_column_thresholds_are_checked(tmp_path):
    check_thresholds({"top_category": 0.3})
    with pytest.raises(ValueError, match="unknown column"):
        check_thresholds({"nope": 0.3})
    with pytest.raises(ValueError, match="must be > 0"):
        check_thresholds({"hour": 0.0})
    with pytest.raises(ConfigError, match="unknown column 'nope'"):
        load_settings("tiny", overrides=["monitor.column_thresholds={nope: 0.2}"], params=PARAMS, data_dir=tmp_path)


def _channel_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "impressions": [10, 0, 3, 0, 1, 6], "impressions:B": [4, 0, 3, 0, 0, 0],
        "days_since_exposure": [1.0, np.nan, np.nan, 9.0, 20.0, 1.0],
        "trailing": [50, 0, 0, 1, 2, 40], "tier": ["popular", "unpopular", "unpopular", "unpopular", "popular",
                                                   "popular"]})


def test_custom_evidently_metrics_compute_and_gate():
    from evidently import DataDefinition, Dataset, Report
    from evidently.tests import gte, lte

    f = _channel_frame()
    num = ["impressions", "impressions:B", "days_since_exposure", "trailing"]
    ds = Dataset.from_pandas(f, data_definition=DataDefinition(numerical_columns=num, categorical_columns=["tier"]))
    snap = Report([metrics.Discoverability(window=7, tier="all", variant="all"),
                   metrics.Discoverability(window=7, tier="unpopular", variant="B"),
                   metrics.ExposureCoverage(tests=[gte(0.9)]),
                   metrics.ExposureGini(tier="all", variant="all", tests=[lte(0.99)]),
                   metrics.UnpopularShare(variant="all")], include_tests=True).run(ds, None)
    values = [float(m["value"]) for m in snap.dict()["metrics"]]
    assert values[0] == pytest.approx(2 / 4)  # dormant: nan, nan, 9, 20 -> exposed: c2 (3), c4 (1)
    assert values[1] == pytest.approx(1 / 3)  # unpopular dormant: c1, c2, c3 -> B exposed c2
    assert values[2] == pytest.approx(4 / 6)
    assert values[3] == pytest.approx(metrics.gini(f["impressions"].to_numpy()))
    assert values[4] == pytest.approx(3 / 20)
    status = {t["name"].split(":")[0]: str(t["status"]) for t in snap.dict()["tests"]}
    assert status["Exposure coverage (all channels, variant all)"].endswith("FAIL")
    assert status["Exposure Gini (all channels, variant all)"].endswith("SUCCESS")


def test_rate_shift_needs_reference_and_measures_relative_change():
    from evidently import DataDefinition, Dataset, Report

    defn = DataDefinition(numerical_columns=["watch"])
    cur = Dataset.from_pandas(pd.DataFrame({"watch": [1.0, 1.0, 0.0, 0.0]}), data_definition=defn)
    ref = Dataset.from_pandas(pd.DataFrame({"watch": [1.0, 0.0, 0.0, 0.0]}), data_definition=defn)
    snap = Report([metrics.RateShift(column="watch")]).run(cur, ref)
    assert float(snap.dict()["metrics"][0]["value"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs reference"):
        Report([metrics.RateShift(column="watch")]).run(cur, None)

"""Learned drift thresholds: the distances match Evidently's, the null's draws, the bound and its overrides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eliverec.monitoring import thresholds as T


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.1] = np.nan  # novelty-like columns carry NaN
    cats = np.array(["a", "b", "c", "d"])
    p = np.array([0.4, 0.3, 0.2, 0.1]) if shift == 0 else np.array([0.1, 0.2, 0.3, 0.4])
    return pd.DataFrame({"x": x, "cat": rng.choice(cats, size=n, p=p)})


def test_distances_are_evidentlys_own():
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(0)
    ref, cur = _frame(rng, 3000), _frame(rng, 2000, shift=0.3)
    methods = {"x": "wasserstein", "cat": "jensenshannon"}
    defn = DataDefinition(numerical_columns=["x"], categorical_columns=["cat"])
    snap = Report([ValueDrift(column=c, method=m) for c, m in methods.items()]).run(
        Dataset.from_pandas(cur, data_definition=defn), Dataset.from_pandas(ref, data_definition=defn))
    theirs = {m["config"]["column"]: m["value"] for m in snap.dict()["metrics"]}
    ours = T.distances(cur, ref, methods)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours["x"] > 0 and ours["cat"] > 0


def test_null_draws_pair_each_later_day_with_each_earlier_one():
    rng = np.random.default_rng(1)
    methods = {"x": "wasserstein", "cat": "jensenshannon"}
    for k in (1, 2, 4):
        days = {f"2026-09-0{i + 1}": _frame(rng, 800) for i in range(k)}
        draws = T.null_draws(days, methods, seed=0, rows=500)
        assert {c: d.size for c, d in draws.items()} == dict.fromkeys(methods, T.n_draws(k))
    assert T.n_draws(4) == 6
    days = {"2026-09-02": _frame(rng, 800, shift=1.0), "2026-09-01": _frame(rng, 800)}
    (pair,) = T.null_draws(days, {"x": "wasserstein"}, seed=0)["x"]
    # the later day plays "current" against the earlier one, normed by the earlier day's spread
    assert pair == pytest.approx(T.column_distance(days["2026-09-02"]["x"], days["2026-09-01"]["x"], "wasserstein"))


def test_prediction_bound_is_the_log_normal_t_bound():
    draws = np.array([0.02, 0.03, 0.025, 0.04, 0.035, 0.028])
    logs = np.log(draws)
    level = 1 - 0.05 / 30
    expected = np.exp(logs.mean() + stats.t.ppf(level, draws.size - 1) * logs.std(ddof=1) * np.sqrt(1 + 1 / 6))
    assert T.prediction_bound(draws, level) == pytest.approx(expected)
    assert T.prediction_bound(draws[:3], level) > T.prediction_bound(np.tile(draws[:3], 4), level)  # thin null: wider
    assert np.isnan(T.prediction_bound(draws[:1], level))


def test_learn_bonferroni_floor_overrides_and_untested():
    rng = np.random.default_rng(2)
    draws = {f"c{i}": rng.lognormal(np.log(0.03), 0.3, 6) for i in range(10)}
    draws["tiny"] = np.full(6, 1e-4) * rng.uniform(1, 1.1, 6)
    draws["one"] = np.array([0.02])
    draws["still"] = np.zeros(6)  # a column that never moves between reference days
    out = T.learn(draws, alpha=0.05, floor=0.05, overrides={})
    level = 1 - 0.05 / len(draws)
    assert all(v["null"]["level"] == pytest.approx(level, abs=1e-6) for v in out.values())
    for c in (f"c{i}" for i in range(10)):
        assert out[c]["threshold"] >= max(draws[c].max(), 0.05)
        assert out[c]["threshold"] == pytest.approx(max(T.prediction_bound(draws[c], level), draws[c].max(), 0.05),
                                                    abs=1e-6)
    assert out["tiny"] == {**out["tiny"], "threshold": 0.05, "source": "floor"}
    assert out["one"]["threshold"] is None and out["one"]["source"] == "untested"
    thin = T.learn(draws, alpha=0.05, floor=0.05, overrides={"c2": 0.3}, min_draws=7)  # 6 draws < 7
    assert thin["c1"]["source"] == "untested" and thin["c2"] == {**thin["c2"], "threshold": 0.3, "source": "override"}
    assert out["still"]["threshold"] == 0.05 and out["still"]["source"] == "floor"
    fewer = T.learn({c: draws[c] for c in ("c0", "c1")}, alpha=0.05, floor=1e-6, overrides={})
    assert fewer["c0"]["threshold"] < T.learn(draws, alpha=0.05, floor=1e-6, overrides={})["c0"]["threshold"]
    hand = T.learn(draws, alpha=0.05, floor=0.05, overrides={"c1": 0.7}, global_override=None)
    assert hand["c1"]["threshold"] == 0.7 and hand["c1"]["source"] == "override"
    assert all(v["threshold"] == 0.2 for v in T.learn(draws, 0.05, 0.05, {}, global_override=0.2).values())


def test_unknown_method_names_the_setting():
    with pytest.raises(ValueError, match="monitor.num_method"):
        T.column_distance(pd.Series([1.0, 2.0]), pd.Series([1.0, 3.0]), "psi")

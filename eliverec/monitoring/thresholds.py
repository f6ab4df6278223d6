"""Drift thresholds learned from the reference window itself (an empirical null per column).

Day D is compared with its reference window (the days before D); a column alarms when its
distance exceeds what the reference days show among themselves:

- **null draws** (:func:`null_draws`): for every pair of distinct reference days i < j, the
  distance of the later day's sample ("current") from the earlier one's ("reference"), as day D
  is compared with the days before it: day-to-day swings plus up to ``k - 1`` days of slow
  trend. ``k`` reference days give ``k (k - 1) / 2`` draws per column. (Bootstrap halves of one
  day were tried as extra draws: they carry sampling noise only, no day-to-day part, so they
  understate the null and widen the fitted spread when mixed with the pairs.)
- **threshold** (:func:`learn`): the upper ``1 - alpha / m`` prediction bound for one more draw
  under a log-normal fitted to the column's ``n`` draws (Student t with ``n - 1`` degrees of
  freedom; with a handful of draws an empirical quantile that far out would simply be the
  maximum), never below the largest draw nor below ``monitor.threshold_floor``. ``alpha`` is
  ``monitor.false_alarm_rate`` and ``m`` the number of columns tested that day: **Bonferroni**
  control of the family-wise rate, i.e. if day D's log-distances behave like the null draws, a
  quiet day raises *any* drift alarm with probability at most ``alpha``. Whether they do is
  measured, not assumed: ``benchmarks/monitor_backtest.py``. With fewer than
  ``monitor.min_null_draws`` draws (default 6: 4 reference days) the bound is too wide to mean
  anything (3 draws: t with 2 degrees of freedom, thresholds in the hundreds): the column is
  reported, not tested.
- **overrides**: ``monitor.column_thresholds`` (per column) and ``monitor.drift_threshold`` (all
  columns) are optional hand-set thresholds that replace the learned ones.

The distances are Evidently's own (``wasserstein``: Wasserstein distance normed by the reference
standard deviation; ``jensenshannon``: Jensen-Shannon distance of the value frequencies), computed
here with scipy so the null costs milliseconds per draw; a test checks them against Evidently.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance as spd

#: Distances whose null is computed here (Evidently names).
METHODS = ("wasserstein", "jensenshannon")


def column_distance(cur: pd.Series, ref: pd.Series, method: str) -> float:
    """Evidently's distance of ``cur`` from ``ref`` (NaN dropped; NaN when either side is empty).

    >>> column_distance(pd.Series([1.0, 2.0, 3.0]), pd.Series([1.0, 2.0, 3.0]), "wasserstein")
    0.0
    """
    cur, ref = cur.dropna(), ref.dropna()
    if cur.empty or ref.empty:
        return float("nan")
    if method == "wasserstein":
        norm = max(float(np.std(ref.to_numpy(dtype=float))), 0.001)
        return float(stats.wasserstein_distance(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)) / norm)
    if method == "jensenshannon":
        keys = pd.Index(ref.unique()).union(pd.Index(cur.unique()))
        p = ref.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
        q = cur.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
        return float(spd.jensenshannon(p / p.sum(), q / q.sum()))
    raise ValueError(f"monitor: drift method '{method}' has no learned threshold (use one of {', '.join(METHODS)} "
                     "in monitor.num_method / monitor.cat_method, or set monitor.drift_threshold)")


def distances(cur: pd.DataFrame, ref: pd.DataFrame, methods: Mapping[str, str]) -> dict[str, float]:
    """:func:`column_distance` of every column in ``methods``."""
    return {c: column_distance(cur[c], ref[c], m) for c, m in methods.items()}


def null_draws(days: Mapping[str, pd.DataFrame], methods: Mapping[str, str], seed: int,
               rows: int | None = None) -> dict[str, np.ndarray]:
    """Null distances per column from the reference ``days`` (see the module docstring).

    ``rows`` caps the rows of each side of a draw (the size of D's sample, so the null carries the
    same sampling noise as D's comparison).
    """
    rng = np.random.default_rng(seed)
    frames = {d: _cap(f, rows, rng) for d, f in sorted(days.items())}
    draws = [distances(frames[b], frames[a], methods)  # a before b: b plays day D, a its reference
             for a, b in itertools.combinations(frames, 2)]
    return {c: np.array([d[c] for d in draws], dtype=float) for c in methods}


def _cap(frame: pd.DataFrame, rows: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if rows is None or len(frame) <= rows:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), size=rows, replace=False))]


def prediction_bound(draws: np.ndarray, level: float) -> float:
    """Upper ``level`` prediction bound for one more draw, log-normal model fitted to positive ``draws``.

    ``exp(mean + t_{n-1}(level) * sd * sqrt(1 + 1/n))`` of the logs (NaN with fewer than 2 positive draws).

    >>> round(prediction_bound(np.array([0.01, 0.02, 0.04]), 0.5), 4)
    0.02
    """
    logs = np.log(draws[draws > 0])
    n = logs.size
    if n < 2:
        return float("nan")
    spread = logs.std(ddof=1) * np.sqrt(1.0 + 1.0 / n)
    return float(np.exp(logs.mean() + stats.t.ppf(level, n - 1) * spread))


def learn(draws: Mapping[str, np.ndarray], alpha: float, floor: float, overrides: Mapping[str, float],
          global_override: float | None = None, min_draws: int = 2) -> dict[str, dict[str, Any]]:
    """Per column: ``threshold`` (None: not tested), its ``source`` and a summary of its null.

    ``source`` is ``override`` (hand-set), ``learned``, ``floor`` (the learned bound was lower) or
    ``untested`` (fewer than ``min_draws`` null draws and no override).
    """
    level = 1.0 - alpha / max(len(draws), 1)
    out = {}
    for c, d in draws.items():
        d = d[np.isfinite(d)]
        bound = prediction_bound(d, level)  # NaN below 2 positive draws (a column that never moves: the floor)
        learned = max(bound if np.isfinite(bound) else 0.0, float(d.max())) if d.size >= max(min_draws, 2) \
            else float("nan")
        null = {"draws": int(d.size), "median": _r(np.median(d)) if d.size else None,
                "max": _r(d.max()) if d.size else None, "level": round(level, 6)}
        if c in overrides or global_override is not None:
            threshold, source = float(overrides.get(c, global_override)), "override"
        elif not np.isfinite(learned):
            threshold, source = None, "untested"
        elif learned < floor:
            threshold, source = float(floor), "floor"
        else:
            threshold, source = round(learned, 6), "learned"
        out[c] = {"threshold": threshold, "source": source, "learned": _r(learned), "null": null}
    return out


def _r(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def n_draws(days: int) -> int:
    """Null draws per column from ``days`` reference days (see :func:`null_draws`)."""
    return days * (days - 1) // 2


def control_note(alpha: float, m: int, draws: int, min_draws: int) -> str:
    """One sentence stating the multiple-comparison control of a day's drift tests."""
    if draws < min_draws:
        return (f"drift reported, not tested: {draws} null draws (pairs of reference days) of the {min_draws} "
                "needed to learn thresholds (monitor.min_null_draws)")
    return (f"thresholds learned per column from {draws} null draws (pairs of reference days): the "
            f"{1 - alpha / max(m, 1):.4f} log-normal prediction bound (Bonferroni: family-wise false-alarm rate "
            f"{alpha} per day over {m} columns), at least the largest draw and the floor")

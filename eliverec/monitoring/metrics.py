"""Discoverability, exposure and user-segment measures, and the custom Evidently metrics around them.

The paper (section V-E, "Effect of Online Discoverability") reports 7-, 14- and 30-day exposure
discoverability, a larger gain on unpopular channels, and segment results for low- and
high-activity users (CTR, stay time, conversion). No Evidently preset measures these, so each is
a :class:`SingleValueMetric` whose calculation calls the plain function below; the dashboards
plot them over time by their parameters (``window``, ``tier``, ``variant``, ``kpi``, ``segment``).

Definitions (stated in every report):

- exposure discoverability over N days = channels with no impression in the N days before D
  that get one on D, divided by the channels with no impression in those N days;
- exposure coverage = share of the catalogue's channels with at least one impression on D;
- Gini of the impressions of D over the catalogue's channels (0 = even, 1 = all on one channel);
- KPIs per impression: ``ctr`` (watch rate), ``goods_bag_ctr``, ``product_ctr``; per watched
  impression: ``stay_seconds`` (mean stay) and ``conversion`` (share of watched visits with a
  click on a mounted product: the logs carry no purchases).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

KPIS: tuple[str, ...] = ("ctr", "stay_seconds", "goods_bag_ctr", "product_ctr", "conversion")
ALL = "all"


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: even; 1 - 1/n: all on one item).

    >>> gini(np.array([1, 1, 1, 1]))
    0.0
    >>> gini(np.array([0, 0, 0, 4]))
    0.75
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def discoverability(days_since: np.ndarray, impressions: np.ndarray, window: int) -> tuple[float, int]:
    """(share of channels unexposed for ``window`` days that are exposed now, number of such channels).

    ``days_since``: days since the last exposure before D (NaN: none in the history read).

    >>> discoverability(np.array([1, 3, np.nan, np.nan]), np.array([5, 1, 2, 0]), 2)
    (0.6666666666666666, 3)
    """
    since = np.asarray(days_since, dtype=np.float64)
    dormant = np.isnan(since) | (since > window)
    n = int(dormant.sum())
    if n == 0:
        return float("nan"), 0
    return float((np.asarray(impressions)[dormant] > 0).mean()), n


def kpi(frame: pd.DataFrame, name: str) -> float:
    """One KPI over the impressions of ``frame`` (columns watch, stay_time, goods_bag, product_click).

    >>> f = pd.DataFrame({"watch": [1.0, 0.0, 1.0, 0.0], "stay_time": [np.log1p(10), 0, np.log1p(30), 0],
    ...                   "goods_bag": [1.0, 0, 0, 0], "product_click": [1.0, 0, 0, 0]})
    >>> kpi(f, "ctr"), round(kpi(f, "stay_seconds"), 6), kpi(f, "conversion")
    (0.5, 20.0, 0.5)
    """
    if name not in KPIS:
        raise ValueError(f"unknown KPI '{name}' (known: {', '.join(KPIS)})")
    if len(frame) == 0:
        return float("nan")
    if name == "ctr":
        return float(frame["watch"].mean())
    if name == "goods_bag_ctr":
        return float(frame["goods_bag"].mean())
    if name == "product_ctr":
        return float(frame["product_click"].mean())
    watched = frame[frame["watch"] > 0]
    if len(watched) == 0:
        return float("nan")
    if name == "stay_seconds":
        return float(np.expm1(watched["stay_time"].to_numpy(np.float64)).mean())
    return float((watched["product_click"] > 0).mean())


def select(frame: pd.DataFrame, **equal: str) -> pd.DataFrame:
    """Rows whose columns equal the given values; the value ``all`` keeps every row."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        if value != ALL:
            mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def impressions_of(frame: pd.DataFrame, variant: str) -> np.ndarray:
    """Impressions per channel row, overall or of one variant (zeros if the variant has none)."""
    column = "impressions" if variant == ALL else f"impressions:{variant}"
    return frame[column].to_numpy() if column in frame else np.zeros(len(frame), np.int64)


# ----------------------------------------------------------------------------- Evidently metrics
class Discoverability(SingleValueMetric):
    """Exposure discoverability over ``window`` days (channel frame; see module docstring)."""

    window: int
    tier: str = ALL
    variant: str = ALL


class DiscoverabilityCalculation(SingleValueCalculation[Discoverability]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        f = select(current_data.as_dataframe(), tier=self.metric.tier)
        value, _ = discoverability(f["days_since_exposure"].to_numpy(), impressions_of(f, self.metric.variant),
                                   self.metric.window)
        return self.result(value)

    def display_name(self) -> str:
        m = self.metric
        return f"{m.window}-day exposure discoverability ({m.tier} channels, variant {m.variant})"


class ExposureCoverage(SingleValueMetric):
    """Share of the catalogue's channels (of a tier) exposed on D."""

    tier: str = ALL
    variant: str = ALL


class ExposureCoverageCalculation(SingleValueCalculation[ExposureCoverage]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        f = select(current_data.as_dataframe(), tier=self.metric.tier)
        return self.result(float((impressions_of(f, self.metric.variant) > 0).mean()) if len(f) else float("nan"))

    def display_name(self) -> str:
        return f"Exposure coverage ({self.metric.tier} channels, variant {self.metric.variant})"


class ExposureGini(SingleValueMetric):
    """Gini of D's impressions over the catalogue's channels (of a tier)."""

    tier: str = ALL
    variant: str = ALL


class ExposureGiniCalculation(SingleValueCalculation[ExposureGini]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        f = select(current_data.as_dataframe(), tier=self.metric.tier)
        return self.result(gini(impressions_of(f, self.metric.variant)))

    def display_name(self) -> str:
        return f"Exposure Gini ({self.metric.tier} channels, variant {self.metric.variant})"


class UnpopularShare(SingleValueMetric):
    """Share of D's impressions that went to unpopular channels."""

    variant: str = ALL


class UnpopularShareCalculation(SingleValueCalculation[UnpopularShare]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        f = current_data.as_dataframe()
        imp = impressions_of(f, self.metric.variant)
        total = imp.sum()
        share = float(imp[(f["tier"] == "unpopular").to_numpy()].sum() / total) if total else float("nan")
        return self.result(share)

    def display_name(self) -> str:
        return f"Impression share of unpopular channels (variant {self.metric.variant})"


class SegmentKPI(SingleValueMetric):
    """A KPI (``ctr``, ``stay_seconds``, ``goods_bag_ctr``, ``product_ctr``, ``conversion``) of a user segment."""

    kpi: str
    segment: str = ALL
    variant: str = ALL


class SegmentKPICalculation(SingleValueCalculation[SegmentKPI]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        m = self.metric
        return self.result(kpi(select(current_data.as_dataframe(), segment=m.segment, variant=m.variant), m.kpi))

    def display_name(self) -> str:
        m = self.metric
        return f"{m.kpi} of {m.segment}-activity users (variant {m.variant})"


class RateShift(SingleValueMetric):
    """Relative change of a column's mean on D against the reference: ``mean(D) / mean(ref) - 1``."""

    column: str


class RateShiftCalculation(SingleValueCalculation[RateShift]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any):
        if reference_data is None:
            raise ValueError("RateShift needs reference data")
        col = self.metric.column
        cur = float(np.nanmean(current_data.as_dataframe()[col].to_numpy(np.float64)))
        ref = float(np.nanmean(reference_data.as_dataframe()[col].to_numpy(np.float64)))
        return self.result(cur / ref - 1.0 if ref else float("nan"))

    def display_name(self) -> str:
        return f"Relative change of mean {self.metric.column} vs reference"

"""The columns monitoring compares between the training window and day D.

Model inputs come from ``features/<date>/samples.parquet`` (one row per impression) and, for
the sequences, from summaries of ``tensors/product_seq.npy`` / ``channel_seq.npy`` computed in
:mod:`eliverec.monitoring.frames`. ``weekday`` is left out on purpose: the reference window
always holds other weekdays than day D, so it would "drift" every day.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Numerical model inputs: sequence lengths and category-mix summaries, dynamic context, feed context.
NUMERICAL: tuple[str, ...] = (
    "product_len", "channel_len",  # non-pad length of the last-50 sequences
    "product_novelty", "channel_novelty",  # share of the 10 latest behaviours in a category absent before
    "product_target_share", "channel_target_share",  # share of the sequence in the target's top category
    "log_viewers", "log_revenue_window", "log_n_on_sale", "log_stats_age_min", "dynamic_cats_n",  # channel_stats
    "position", "hour",
)
#: Categorical model inputs: target category, scene, user profile (hashed ids), latest behaviour categories.
CATEGORICAL: tuple[str, ...] = (
    "top_category", "scene", "gender_h", "age_bucket_h", "city_tier_h", "register_bucket", "has_stats",
    "last_product_category", "last_channel_category",
)
#: Labels (target drift): binary rates compared as categories, stay time as a number.
TARGETS_BINARY: tuple[str, ...] = ("watch", "goods_bag", "product_click")
TARGETS_NUMERICAL: tuple[str, ...] = ("stay_time",)
#: The served score (prediction drift), present when the ranking service logged impressions.
PREDICTION = "score"

ALL_COLUMNS: tuple[str, ...] = (*NUMERICAL, *CATEGORICAL, *TARGETS_BINARY, *TARGETS_NUMERICAL, PREDICTION)


def check_thresholds(thresholds: Mapping[str, float]) -> None:
    """Per-column drift thresholds must name monitored columns and be positive.

    >>> check_thresholds({"product_len": 0.4})
    >>> check_thresholds({"produkt_len": 0.4})
    Traceback (most recent call last):
    ...
    ValueError: monitor.column_thresholds: unknown column 'produkt_len' (known: product_len, channel_len, ...)
    """
    for name, value in thresholds.items():
        if name not in ALL_COLUMNS:
            raise ValueError(f"monitor.column_thresholds: unknown column '{name}' "
                             f"(known: {', '.join(ALL_COLUMNS[:2])}, ...)")
        if not value > 0:
            raise ValueError(f"monitor.column_thresholds.{name}: must be > 0 (got {value})")

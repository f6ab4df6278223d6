"""Training data: the training window's feature days, split into training and a time-ordered validation tail.

The days are read by :mod:`eliverec.features.dataset` (the one reader of feature days, memory-mapped,
batched access); this module picks the ``features.train_days`` days before the test day, stacks them
in date order and holds out the latest ``train.val_share`` of rows for validation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eliverec.errors import DataError
from eliverec.features.dataset import ArrayDataset, available_dates, day_dir, find_spec, load_days
from eliverec.layout import DataLayout, is_date, previous_days


@dataclass(frozen=True)
class TrainingData:
    """The training and validation sets of one run, and the feature spec they came with."""

    train: ArrayDataset
    val: ArrayDataset
    dates: list[str]  # the training days read
    end_date: str  # the test day (the day after the training window)
    spec: dict[str, Any] = field(default_factory=dict)
    spec_path: Path | None = None


def time_ordered_split(ds: ArrayDataset, val_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of (train, validation) rows: validation is the latest ``val_share`` of rows.

    Rows are ordered by ``ts`` when present, else by their stored order (days are stacked oldest first).

    >>> ds = ArrayDataset({"watch": np.zeros(10), "ts": np.arange(10)[::-1]})
    >>> tr, va = time_ordered_split(ds, 0.2)
    >>> sorted(va.tolist()), len(tr)
    ([0, 1], 8)
    """
    n = len(ds)
    order = np.argsort(ds.column("ts"), kind="stable") if "ts" in ds.keys else np.arange(n)
    n_val = int(round(n * val_share))
    if val_share > 0 and n_val == 0 and n > 1:
        n_val = 1
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val :])


def load_training_data(data_dir: Path, end_date: str | None, train_days: int, val_share: float) -> TrainingData:
    """The training days before ``end_date`` (the test day) as train/validation datasets.

    ``end_date`` None picks the latest feature day as the test day.
    """
    data_dir = Path(data_dir)
    lay = DataLayout(data_dir)
    features = lay.features()
    if end_date is None:
        have = available_dates(data_dir)
        if len(have) < 2:
            raise DataError(
                f"{features}: need at least two feature days (train + test), found {len(have)}; "
                "run `eliverec features` first or pass --end-date"
            )
        end_date = have[-1]
    elif not is_date(end_date):
        raise DataError(f"bad end date '{end_date}': expected YYYY-MM-DD")
    wanted = previous_days(end_date, train_days)
    present = [d for d in wanted if lay.features(d).is_dir()]
    if not present:
        day_dir(data_dir, wanted[-1])  # raises the clear error
    full = load_days(data_dir, present)
    train_pos, val_pos = time_ordered_split(full, val_share)
    if len(train_pos) == 0:
        raise DataError(f"no training samples in {', '.join(present)} under {features}")
    spec_path = find_spec(lay.features(present[-1]))
    spec = json.loads(spec_path.read_text()) if spec_path else {}
    return TrainingData(full.subset(train_pos), full.subset(val_pos), present, end_date, spec, spec_path)

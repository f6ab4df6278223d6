"""Training data: feature folders as map-style datasets with batched access.

The feature stage writes one folder per day, ``<data_dir>/features/<date>/``, holding one array
per batch key (see :mod:`eliverec.features.batch`) and a feature spec JSON. This module finds those
arrays (``<key>.npy``, memory-mapped, anywhere under the day folder), stacks the training days in
date order and holds out a time-ordered tail for validation.

Reading is batched: :class:`ArrayDataset` is indexed with a *list* of sample indices and returns a
whole batch by numpy fancy indexing, so the loader pairs it with a ``BatchSampler`` (over a
``DistributedSampler``) and ``batch_size=None``; no per-sample Python work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from eliverec.errors import DataError
from eliverec.features.batch import LABELS
from eliverec.layout import DataLayout, date_folders, is_date, previous_days

BATCH_KEYS: tuple[str, ...] = (
    "user", "profile", "context", "position", "channel", "dynamic", "dynamic_cats",
    "product_seq", "product_len", "channel_seq", "channel_len", *LABELS,
)  # fmt: skip
OPTIONAL_KEYS: tuple[str, ...] = ("ts",)  # impression time (ms), used to order the validation tail


class ArrayDataset(Dataset[dict[str, torch.Tensor]]):
    """Samples held as column arrays (numpy, possibly memory-mapped, in one or more parts) and a row index.

    Parts (one per day) are never concatenated, so memory maps stay on disk. ``ds[[3, 1, 7]]``
    returns a batch dict of tensors; ``ds[5]`` a batch of one.

    >>> ds = ArrayDataset([{"x": np.arange(4), "y": np.arange(4) * 2.0}, {"x": np.arange(4, 10),
    ...                    "y": np.arange(4, 10) * 2.0}], np.array([9, 2, 7]))
    >>> len(ds), ds[[0, 1, 2]]["y"].tolist()
    (3, [18.0, 4.0, 14.0])
    """

    def __init__(self, parts: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
                 index: np.ndarray | None = None) -> None:
        self.parts = [dict(parts)] if isinstance(parts, Mapping) else [dict(p) for p in parts]
        self.keys = [k for k in self.parts[0] if all(k in p for p in self.parts)]
        sizes = []
        for part in self.parts:
            lens = {k: len(part[k]) for k in self.keys}
            if len(set(lens.values())) > 1:
                raise DataError(f"feature arrays have different lengths: {lens}")
            sizes.append(next(iter(lens.values())) if lens else 0)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.index = np.arange(self.offsets[-1]) if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def _gather(self, rows: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
        order = np.argsort(rows, kind="stable")  # sorted reads are kinder to memory maps
        rows_sorted = rows[order]
        part_of = np.searchsorted(self.offsets, rows_sorted, side="right") - 1
        bounds = np.searchsorted(part_of, np.arange(len(self.parts) + 1))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        out = {}
        for key in keys:
            pieces = [
                self.parts[i][key][rows_sorted[bounds[i] : bounds[i + 1]] - self.offsets[i]]
                for i in range(len(self.parts))
                if bounds[i + 1] > bounds[i]
            ]
            joined = np.concatenate(pieces) if len(pieces) != 1 else np.asarray(pieces[0])
            out[key] = np.ascontiguousarray(joined[inverse])
        return out

    def __getitem__(self, idx: int | Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        rows = self.index[np.atleast_1d(np.asarray(idx, dtype=np.int64))]
        return {k: torch.from_numpy(v) for k, v in self._gather(rows, self.keys).items()}

    def column(self, key: str) -> np.ndarray:
        """One column for all rows of this dataset (in dataset order)."""
        return self._gather(self.index, [key])[key]

    def subset(self, positions: np.ndarray) -> ArrayDataset:
        """The rows at ``positions`` of this dataset."""
        return ArrayDataset(self.parts, self.index[positions])


@dataclass(frozen=True)
class TrainingData:
    """The training and validation sets of one run, and the feature spec they came with."""

    train: ArrayDataset
    val: ArrayDataset
    dates: list[str]  # the training days read
    end_date: str  # the test day (the day after the training window)
    spec: dict[str, Any] = field(default_factory=dict)
    spec_path: Path | None = None


def available_dates(data_dir: Path) -> list[str]:
    """Feature days present under ``<data_dir>/features`` (sorted)."""
    return date_folders(DataLayout(Path(data_dir)).features())


def day_dir(data_dir: Path, date: str) -> Path:
    """The feature folder of one day; a clear :class:`DataError` when it is missing."""
    folder = DataLayout(Path(data_dir)).features(date)
    if not folder.is_dir():
        have = available_dates(data_dir)
        got = f"available days: {', '.join(have)}" if have else "no feature days exist yet"
        raise DataError(
            f"feature folder {folder} is missing ({got}); build it with `eliverec features --end-date {date}`"
        )
    return folder


def find_spec(folder: Path) -> Path | None:
    """The feature spec JSON of a day folder, if any."""
    cands = sorted(folder.glob("*spec*.json")) or sorted(folder.glob("**/*spec*.json"))
    return cands[0] if cands else None


def load_day(folder: Path) -> dict[str, np.ndarray]:
    """Memory-map the arrays of one day folder (``<key>.npy`` for each batch key)."""
    found = {p.stem: p for p in sorted(folder.glob("**/*.npy"))}
    missing = [k for k in BATCH_KEYS if k not in found]
    if missing:
        raise DataError(
            f"{folder}: missing feature arrays {', '.join(m + '.npy' for m in missing)}; "
            f"rebuild the day with `eliverec features --end-date {folder.name}`"
        )
    keys = [*BATCH_KEYS, *(k for k in OPTIONAL_KEYS if k in found)]
    return {k: np.load(found[k], mmap_mode="r") for k in keys}


def load_days(data_dir: Path, dates: Sequence[str]) -> ArrayDataset:
    """All samples of several days (date order), one memory-mapped part per day."""
    return ArrayDataset([load_day(day_dir(data_dir, d)) for d in dates])


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

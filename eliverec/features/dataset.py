"""Feature days as one map-style dataset with batched access: the one reader of ``features/<date>/``.

The feature stage (:func:`eliverec.features.build.build_features`) writes one folder per day holding
one ``<key>.npy`` array per batch key (:mod:`eliverec.features.batch`) and the feature spec JSON.
:func:`load_days` memory-maps the arrays of several days (date order) as one :class:`ArrayDataset`;
training (:mod:`eliverec.training.data`), evaluation, the gate, the probes and the benchmarks all
read feature days through it.

Reading is batched: an :class:`ArrayDataset` is indexed with a *list* of rows and returns a whole
batch by numpy fancy indexing (rows read in sorted order, one part per day, never concatenated),
so a loader pairs it with a ``BatchSampler`` and ``batch_size=None``; no per-sample Python work.
Indexing gives the arrays as stored (int32 ids: the trainer's zero-copy path; the models take
either); :meth:`ArrayDataset.batch`, :meth:`~ArrayDataset.loader` and
:meth:`~ArrayDataset.iter_batches` give batches of the contract's dtypes (int64 ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from eliverec.errors import DataError
from eliverec.features.batch import LABELS
from eliverec.features.online import to_tensors
from eliverec.features.samples import DISK_DTYPES
from eliverec.layout import DataLayout, date_folders

BATCH_KEYS: tuple[str, ...] = tuple(DISK_DTYPES)  # every feature and label array of a day
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

    def _rows(self, idx: int | Sequence[int] | np.ndarray) -> np.ndarray:
        return self.index[np.atleast_1d(np.asarray(idx, dtype=np.int64))]

    def __getitem__(self, idx: int | Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """The rows ``idx`` as tensors of the stored dtypes (zero-copy from the gathered arrays)."""
        return {k: torch.from_numpy(v) for k, v in self._gather(self._rows(idx), self.keys).items()}

    def batch(self, idx: int | Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """The rows ``idx`` as a batch of the contract's dtypes (int64 ids, float32 values)."""
        return to_tensors(self._gather(self._rows(idx), self.keys))

    def column(self, key: str) -> np.ndarray:
        """One column for all rows of this dataset (in dataset order)."""
        return self._gather(self.index, [key])[key]

    def subset(self, positions: np.ndarray) -> ArrayDataset:
        """The rows at ``positions`` of this dataset."""
        return ArrayDataset(self.parts, self.index[positions])

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
                     ) -> Iterator[dict[str, torch.Tensor]]:
        """Contract batches over the whole dataset (a fresh permutation per call when shuffling)."""
        rows = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(rows) - (len(rows) % batch_size if drop_last else 0)
        for a in range(0, stop, batch_size):
            yield self.batch(rows[a : a + batch_size])

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
               sampler: Sampler[int] | None = None, drop_last: bool = False) -> DataLoader:
        """A ``DataLoader`` of contract batches; pass a ``DistributedSampler`` as ``sampler`` for DDP."""
        if sampler is None:
            gen = torch.Generator().manual_seed(seed)
            sampler = RandomSampler(self, generator=gen) if shuffle else SequentialSampler(self)
        return DataLoader(_Batches(self), sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                          num_workers=num_workers, collate_fn=_identity)

    def label_rates(self) -> dict[str, float]:
        """Mean of each label over the dataset."""
        return {k: float(self.column(k).mean(dtype=np.float64)) if len(self) else 0.0 for k in LABELS
                if k in self.keys}


class _Batches(Dataset[dict[str, torch.Tensor]]):
    """An :class:`ArrayDataset` whose indexing gives contract batches (what :meth:`ArrayDataset.loader` reads)."""

    def __init__(self, ds: ArrayDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.ds.batch(idx)


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def available_dates(data_dir: Path) -> list[str]:
    """Feature days present under ``<data_dir>/features`` (sorted)."""
    return date_folders(DataLayout(Path(data_dir)).features())


def day_dir(data_dir: Path, date: str) -> Path:
    """The feature folder of one day; a clear :class:`DataError` when it is missing."""
    folder = DataLayout(Path(data_dir)).features(date)
    if not folder.is_dir():
        have = available_dates(data_dir)
        got = f"available days: {', '.join(have)}" if have else "no feature days exist yet"
        raise DataError(f"feature folder {folder} is missing (no samples for {date}; {got}); "
                        f"build it with `eliverec features --end-date {date}`")
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


def check_same_spec(data_dir: Path, dates: Sequence[str]) -> None:
    """A :class:`DataError` when the days' feature specs carry different ``spec_hash`` values.

    Days without a spec (or without a hash in it) are not compared.
    """
    hashes: dict[str, str] = {}
    for date in dates:
        path = find_spec(day_dir(data_dir, date))
        stored = json.loads(path.read_text()).get("spec_hash") if path else None
        if stored is not None:
            hashes[date] = str(stored)
    if len(set(hashes.values())) > 1:
        raise DataError(f"days {', '.join(dates)} were built with different feature specs "
                        f"{sorted(set(hashes.values()))}; rebuild them together with one `eliverec features` run")


def load_days(data_dir: Path, dates: Sequence[str]) -> ArrayDataset:
    """All samples of several days (date order), one memory-mapped part per day, built with one feature spec."""
    if not dates:
        raise DataError("load_days needs at least one feature day")
    check_same_spec(Path(data_dir), dates)
    return ArrayDataset([load_day(day_dir(data_dir, d)) for d in dates])


def load_split(settings: Any, split: str) -> ArrayDataset:
    """The ``train`` or ``test`` days of the last feature build (``features/_build.json``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' (got {split!r})")
    path = settings.layout.build_record()
    if not path.is_file():
        raise DataError(f"{path}: missing; run `eliverec features --end-date YYYY-MM-DD` first")
    build = json.loads(path.read_text())
    return load_days(settings.data_dir, build["train_days"] if split == "train" else [build["test_day"]])

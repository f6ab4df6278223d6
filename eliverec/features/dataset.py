"""Training-ready access to the samples: memory-mapped ``.npy`` arrays per batch key.

``FeatureDataset(data_dir, dates)`` concatenates day folders written by
:func:`eliverec.features.build.build_features`; indexing it with an array of row numbers
returns a batch dict of the contract (``eliverec/features/batch.py``) in one fancy-index
per key and day (no per-row Python). Use :meth:`FeatureDataset.loader` (a ``DataLoader``
whose sampler yields whole batches, so it also works with ``num_workers`` and a
``DistributedSampler``) or :meth:`FeatureDataset.iter_batches`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from eliverec.errors import DataError
from eliverec.features.batch import LABELS
from eliverec.features.hashing import FeatureSpec
from eliverec.features.online import to_tensors
from eliverec.features.samples import DISK_DTYPES
from eliverec.layout import DataLayout

BATCH_KEYS: tuple[str, ...] = tuple(DISK_DTYPES)


class FeatureDataset(Dataset):
    """Samples of one or more days, read from memory-mapped arrays.

    ``dataset[i]`` gives one sample (no batch dimension); ``dataset[array_of_rows]`` a batch.
    """

    def __init__(self, data_dir: str | Path, dates: Sequence[str], keys: Sequence[str] = BATCH_KEYS) -> None:
        if not dates:
            raise DataError("FeatureDataset needs at least one date")
        self.dates = list(dates)
        self.keys = tuple(keys)
        self.arrays: list[dict[str, np.ndarray]] = []
        specs: list[FeatureSpec] = []
        for date in self.dates:
            lay = DataLayout(Path(data_dir))
            folder, spec_path = lay.features(date), lay.feature_spec(date)
            if not spec_path.is_file():
                raise DataError(f"{folder}: no samples (feature_spec.json missing); run "
                                f"`eliverec features --end-date {date}` first")
            specs.append(FeatureSpec.load(spec_path))
            self.arrays.append({k: self._open(lay.tensor(date, k)) for k in self.keys})
        hashes = {s.spec_hash for s in specs}
        if len(hashes) > 1:
            raise DataError(f"days {', '.join(self.dates)} were built with different feature specs {sorted(hashes)}; "
                            "rebuild them together with one `eliverec features` run")
        self.spec = specs[0]
        sizes = [len(a[self.keys[0]]) for a in self.arrays]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        if not path.is_file():
            raise DataError(f"{path}: missing; rebuild the day with `eliverec features`")
        return np.load(path, mmap_mode="r")

    @classmethod
    def split(cls, settings: Any, split: str, keys: Sequence[str] = BATCH_KEYS) -> FeatureDataset:
        """The ``train`` or ``test`` split of the last build (``features/_build.json``)."""
        path = settings.layout.build_record()
        if not path.is_file():
            raise DataError(f"{path}: missing; run `eliverec features --end-date YYYY-MM-DD` first")
        build = json.loads(path.read_text())
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' (got {split!r})")
        dates = build["train_days"] if split == "train" else [build["test_day"]]
        return cls(settings.data_dir, dates, keys)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(index, int | np.integer):
            return {k: v[0] for k, v in self.batch(np.array([index])).items()}
        return self.batch(np.asarray(index, dtype=np.int64))

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of ``rows`` (in that order); rows are read in sorted order for locality."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        day = np.searchsorted(self.offsets, srt, side="right") - 1
        bounds = np.searchsorted(day, np.arange(len(self.arrays) + 1))
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        for d in range(len(self.arrays)):
            a, b = bounds[d], bounds[d + 1]
            if a == b:
                continue
            local = srt[a:b] - self.offsets[d]
            contiguous = local[-1] - local[0] + 1 == len(local)
            for k in self.keys:
                arr = self.arrays[d][k]
                parts[k].append(arr[local[0] : local[-1] + 1] if contiguous else arr[local])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        out = {}
        for k in self.keys:
            stacked = np.concatenate(parts[k]) if parts[k] else np.zeros((0, *self.arrays[0][k].shape[1:]),
                                                                         self.arrays[0][k].dtype)
            out[k] = stacked if np.array_equal(order, np.arange(len(order))) else stacked[inverse]
        return to_tensors(out)

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
                     ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches over the whole dataset (a fresh permutation per call when shuffling)."""
        rows = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(rows) - (len(rows) % batch_size if drop_last else 0)
        for a in range(0, stop, batch_size):
            yield self.batch(rows[a : a + batch_size])

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
               sampler: Sampler[int] | None = None, drop_last: bool = False) -> DataLoader:
        """A ``DataLoader`` yielding contract batches; pass a ``DistributedSampler`` as ``sampler`` for DDP."""
        if sampler is None:
            gen = torch.Generator().manual_seed(seed)
            sampler = RandomSampler(self, generator=gen) if shuffle else SequentialSampler(self)
        return DataLoader(self, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                          num_workers=num_workers, collate_fn=_identity)

    def label_rates(self) -> dict[str, float]:
        """Mean of each label over the dataset."""
        n = max(len(self), 1)
        return {k: float(sum(a[k].sum(dtype=np.float64) for a in self.arrays) / n) for k in LABELS if k in self.keys}


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch

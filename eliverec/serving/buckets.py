"""A/B buckets: users hashed with a per-experiment salt into ``ab.buckets`` buckets (DESIGN section 6).

``bucket = xxh3_64(utf8(salt + ":" + user_id)) % buckets``: a pure function of the salt and the id,
stable across processes and machines. An :class:`Allocation` maps half-open bucket ranges to
variants (``champion`` / ``challenger``); buckets not in any range serve the champion. The
challenger's ranges always start at bucket 0, so growing its share keeps every user who already
saw it (a ramp never flips a user back and forth). Allocations are stored as JSON under
``<data_dir>/serving/allocation.json`` (written atomically) with an append-only history beside it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eliverec.data.atomic import write_bytes_atomic
from eliverec.layout import DataLayout, allocation_history

Variant = Literal["champion", "challenger"]
VARIANTS: tuple[str, str] = ("champion", "challenger")


def bucket_of(salt: str, user_id: str, buckets: int) -> int:
    """The bucket of one user.

    >>> bucket_of("s", "u1", 1000) == bucket_of("s", "u1", 1000)
    True
    >>> 0 <= bucket_of("s", "u1", 1000) < 1000
    True
    """
    return xxhash.xxh3_64_intdigest(f"{salt}:{user_id}".encode()) % buckets


def buckets_of(salt: str, user_ids: Iterable[str], buckets: int) -> np.ndarray:
    """Buckets of many users (int64)."""
    return np.fromiter((bucket_of(salt, str(u), buckets) for u in user_ids), dtype=np.int64)


class BucketRange(BaseModel):
    """Buckets ``start <= b < end`` serve ``variant``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: int = Field(ge=0)
    end: int = Field(ge=1)
    variant: Variant


class Allocation(BaseModel):
    """Bucket ranges to variants for one experiment (validated: ranges inside the buckets, no overlap)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    experiment: str = Field(min_length=1)
    salt: str = Field(min_length=1)
    buckets: int = Field(ge=2)
    ranges: list[BucketRange] = Field(default_factory=list)
    updated_at: str = ""
    updated_by: str = ""
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> Allocation:
        last = 0
        for r in sorted(self.ranges, key=lambda r: r.start):
            if r.end <= r.start or r.end > self.buckets:
                raise ValueError(f"range [{r.start}, {r.end}) must satisfy start < end <= buckets ({self.buckets})")
            if r.start < last:
                raise ValueError(f"range [{r.start}, {r.end}) overlaps the range before it")
            last = r.end
        return self

    def table(self) -> np.ndarray:
        """(buckets,) int8: 1 where the challenger serves, 0 for the champion."""
        out = np.zeros(self.buckets, np.int8)
        for r in self.ranges:
            out[r.start : r.end] = VARIANTS.index(r.variant)
        return out

    def share(self, variant: str = "challenger") -> float:
        """Share of buckets that serve ``variant``.

        >>> a = Allocation(experiment="e", salt="s", buckets=1000, ranges=[{"start": 0, "end": 50,
        ...                "variant": "challenger"}])
        >>> a.share(), a.share("champion")
        (0.05, 0.95)
        """
        t = self.table()
        return float((t == VARIANTS.index(variant)).mean())

    def variant_of(self, user_id: str) -> str:
        """The variant that serves ``user_id``."""
        return VARIANTS[int(self.lookup[bucket_of(self.salt, user_id, self.buckets)])]

    @cached_property
    def lookup(self) -> np.ndarray:
        """:meth:`table`, computed once."""
        return self.table()


def with_share(experiment: str, salt: str, buckets: int, percent: float, by: str = "", reason: str = "") -> Allocation:
    """An allocation that gives the challenger ``percent`` % of buckets (from bucket 0), the rest the champion.

    >>> with_share("e", "s", 1000, 5).ranges[0].end
    50
    """
    n = int(round(buckets * percent / 100.0))
    ranges = [BucketRange(start=0, end=n, variant="challenger")] if n > 0 else []
    return Allocation(experiment=experiment, salt=salt, buckets=buckets, ranges=ranges,
                      updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), updated_by=by, reason=reason)


def allocation_path(data_dir: Path) -> Path:
    """``<data_dir>/serving/allocation.json``."""
    return DataLayout(Path(data_dir)).allocation()


def load_allocation(path: Path, default: Allocation) -> Allocation:
    """The stored allocation, or ``default`` when none was stored yet (a broken file is an error)."""
    if not path.exists():
        return default
    from eliverec.errors import DataError

    try:
        return Allocation.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise DataError(f"{path}: not a valid allocation ({exc}); fix it or delete it to serve the champion only")\
            from exc


def save_allocation(path: Path, allocation: Allocation) -> None:
    """Write atomically and append the change to ``allocation_history.jsonl`` beside it."""
    data = allocation.model_dump_json(indent=2).encode()
    write_bytes_atomic(path, data)
    with allocation_history(path).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(allocation.model_dump(mode="json"), sort_keys=True) + "\n")

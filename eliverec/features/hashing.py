"""Id hashing into fixed vocabularies, and the feature spec that pins it.

Every id field is hashed with ``xxh3_64`` seeded by ``(salt, space)`` into ``[1, vocab)``;
``0`` is padding. The hash is a pure function of the salt, the space and the id's UTF-8
bytes, so it is stable across runs, processes and machines (never Python's ``hash()``),
and an id never seen in training still gets a slot. A *space* is a vocabulary name
(``category`` is one space whether the category comes from a click, a channel or a
product on sale). Small fixed-range fields (hour, weekday, position, register bucket)
are mapped arithmetically, not hashed.

Hashing is vectorised: the distinct values are hashed once and mapped back by index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from eliverec.errors import DataError

UNKNOWN = "\x00unknown"  # the token a missing dimension value hashes as (never 0: 0 is padding)
HASH_ALGO = "xxh3_64(utf8(id), seed=xxh64(salt|space)) % (vocab - 1) + 1"
SPEC_VERSION = 1


def space_seed(salt: str, space: str) -> int:
    """The 64-bit seed of one hash space (salt and space name)."""
    return xxhash.xxh64_intdigest(f"{salt}|{space}".encode())


def hash_strings(values: list[str], salt: str, space: str, vocab: int) -> np.ndarray:
    """Hash a list of distinct strings into ``[1, vocab)`` (int32).

    >>> hash_strings(["a", "b", "a"], "s", "user", 1000).tolist() == hash_strings(["a", "b", "a"], "s", "user", 1000)\
.tolist()
    True
    >>> int(hash_strings(["x"], "s", "user", 2)[0])
    1
    """
    seed = space_seed(salt, space)
    raw = np.fromiter((xxhash.xxh3_64_intdigest(v.encode(), seed) for v in values), dtype=np.uint64,
                      count=len(values))
    return (raw % np.uint64(vocab - 1) + np.uint64(1)).astype(np.int32)


def hash_array(values: pa.Array | pa.ChunkedArray | np.ndarray | list[Any], salt: str, space: str,
               vocab: int) -> np.ndarray:
    """Hash an id column (nulls hash as :data:`UNKNOWN`); each distinct value is hashed once.

    >>> h = hash_array(pa.array(["u1", "u2", "u1", None]), "salt", "user", 101)
    >>> bool(h[0] == h[2]) and bool(h[0] != 0) and h.dtype.name
    'int32'
    """
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int32)
    arr = pc.fill_null(arr.cast(pa.string()), UNKNOWN)
    enc = pc.dictionary_encode(arr)
    table = hash_strings(enc.dictionary.to_pylist(), salt, space, vocab)
    return table[enc.indices.to_numpy(zero_copy_only=False)]


def hour_ids(ts: np.ndarray) -> np.ndarray:
    """UTC hour of ``ts`` (ms) + 1, in ``[1, 24]``.

    >>> hour_ids(np.array([0, 3_600_000 * 25])).tolist()
    [1, 2]
    """
    return ((ts // 3_600_000) % 24 + 1).astype(np.int32)


def weekday_ids(ts: np.ndarray) -> np.ndarray:
    """UTC weekday of ``ts`` (ms) + 1, Monday = 1 (1970-01-01 was a Thursday).

    >>> weekday_ids(np.array([0])).tolist()
    [4]
    """
    return ((ts // 86_400_000 + 3) % 7 + 1).astype(np.int32)


def position_ids(position: np.ndarray, vocab: int) -> np.ndarray:
    """Feed position + 1, positions past the table share the last slot.

    >>> position_ids(np.array([0, 5, 99]), 8).tolist()
    [1, 6, 7]
    """
    return (np.clip(position, 0, vocab - 2) + 1).astype(np.int32)


def register_bucket_ids(days: np.ndarray, vocab: int) -> np.ndarray:
    """Log2 buckets of account age: NaN (unknown user) -> 1, else ``2 + floor(log2(days + 1))``.

    >>> register_bucket_ids(np.array([np.nan, 0, 1, 3, 1e9]), 17).tolist()
    [1, 2, 3, 4, 16]
    """
    days = np.asarray(days, dtype=np.float64)
    known = ~np.isnan(days)
    b = np.ones(days.shape, dtype=np.int64)
    b[known] = 2 + np.floor(np.log2(np.maximum(days[known], 0) + 1)).astype(np.int64)
    return np.minimum(b, vocab - 1).astype(np.int32)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a consumer needs to read the samples and rebuild them online.

    Saved as ``feature_spec.json`` beside the samples and logged with the model; ``spec_hash``
    changes whenever any of it changes, so a model never reads ids hashed another way.
    """

    vocab: dict[str, int]
    salt: str
    seq_len: int
    min_stay_ms: int
    dynamic_cats: int
    fields: dict[str, Any] = field(default_factory=dict)
    hash_algo: str = HASH_ALGO
    version: int = SPEC_VERSION

    @classmethod
    def from_settings(cls, settings: Any) -> FeatureSpec:
        """The spec of a :class:`eliverec.config.Settings`."""
        from eliverec.features import batch

        f = settings.features
        fields = {
            "profile": list(batch.PROFILE_FIELDS), "context": list(batch.CONTEXT_FIELDS),
            "channel": list(batch.CHANNEL_FIELDS), "product_seq": list(batch.PRODUCT_FIELDS),
            "channel_seq": list(batch.CHANNEL_FIELDS),
            "dynamic": ["log1p_viewers", "log1p_revenue_window", "log1p_n_on_sale", "log1p_stats_age_min"],
            "dynamic_cats": "top categories of the products on sale (by count, then hash), category space",
            "labels": list(batch.LABELS),
            "sequence_rule": "events strictly before the impression ts; a watch counts at its leave ts",
        }
        return cls(vocab=dict(sorted(f.vocab.items())), salt=f.hash_salt, seq_len=f.seq_len,
                   min_stay_ms=f.min_stay_ms, dynamic_cats=batch.DYNAMIC_CATS, fields=fields)

    @classmethod
    def saved(cls, data: dict[str, Any], settings: Any) -> FeatureSpec:
        """The spec saved with a model (``data``: its JSON; its ``spec_hash`` is recomputed), or the settings' own
        when the model saved none."""
        if not data:
            return cls.from_settings(settings)
        return cls(**{k: v for k, v in data.items() if k != "spec_hash"})

    @property
    def spec_hash(self) -> str:
        """Short sha256 of the canonical JSON of the spec."""
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def hash(self, values: Any, space: str) -> np.ndarray:
        """Hash an id column into the ``space`` vocabulary."""
        return hash_array(values, self.salt, space, self.vocab[space])

    def to_json(self) -> str:
        """JSON text including ``spec_hash``."""
        return json.dumps({**asdict(self), "spec_hash": self.spec_hash}, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        """Read a saved spec; the stored hash must match the content."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the feature spec ({exc}); rebuild with `eliverec features`") from exc
        stored = data.pop("spec_hash", None)
        spec = cls(**data)
        if stored != spec.spec_hash:
            raise DataError(f"{path}: spec_hash {stored} does not match its content; rebuild with `eliverec features`")
        return spec

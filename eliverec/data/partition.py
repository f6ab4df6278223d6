"""Partitions of string keys (event ids, user ids) by a stable hash (issue 18: ingest spills, shards)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def string_partition(ids: pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Partition in ``[0, n)`` of each string: a deterministic hash of its UTF-8 bytes in numpy (no
    per-row Python), the same in every process and run, so equal strings share a partition
    whatever file, event type or day they come from. Nulls count as empty strings.

    >>> ids = pa.array(["u1", "u2", "u1"])
    >>> p = string_partition(ids, 4)
    >>> bool(p[0] == p[2]) and bool(((0 <= p) & (p < 4)).all())
    True
    """
    if n == 1:
        return np.zeros(len(ids), np.int64)
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_string()).fill_null("")  # int64 offsets
    if not len(arr):
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].astype(np.uint64)
    starts = offsets[:-1] - offsets[0]
    pos = np.arange(len(data), dtype=np.int64) - np.repeat(starts, np.diff(offsets))
    with np.errstate(over="ignore"):
        mixed = data * (np.uint64(0x9E3779B97F4A7C15) ^ (pos.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)))
        h = np.zeros(len(arr), np.uint64)
        nonempty = np.diff(offsets) > 0
        h[nonempty] = np.add.reduceat(mixed, starts[nonempty])
        h = (h ^ (h >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
    return ((h >> np.uint64(17)) % np.uint64(n)).astype(np.int64)


def sampled_partition(ids: pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Partition in ``[0, n)`` of each string from its length and its first and last 8 bytes only
    (two unaligned 8-byte reads per string instead of work per byte): deterministic, and equal
    strings share a partition; strings that agree on length, head and tail share one too, which
    only unbalances partitions. For keys whose every byte matters use :func:`string_partition`.

    >>> p = sampled_partition(pa.array(["e-1", "e-2", "e-1", None]), 4)
    >>> bool(p[0] == p[2]) and bool(((0 <= p) & (p < 4)).all())
    True
    """
    if n == 1 or not len(ids):
        return np.zeros(len(ids), np.int64)
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_string()).fill_null("")
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    padded = np.concatenate([np.zeros(8, np.uint8), data, np.zeros(8, np.uint8)])
    words = np.ndarray((len(data) + 9,), "<u8", padded, strides=(1,))  # words[i]: bytes i-8 .. i-1 of data
    starts = offsets[:-1] - offsets[0]
    length = np.diff(offsets).astype(np.uint64)
    keep = np.where(length >= 8, np.uint64(2**64 - 1), (np.uint64(1) << (np.minimum(length, 7) * np.uint64(8))) - 1)
    with np.errstate(over="ignore"):
        head = words[starts + 8] & keep  # the first min(8, length) bytes
        tail = words[starts + np.diff(offsets)]  # the 8 bytes ending at the string's end (earlier ones: 0 or others)
        tail = np.where(length >= 8, tail, head)
        h = head * np.uint64(0x9E3779B97F4A7C15) ^ tail * np.uint64(0xBF58476D1CE4E5B9)
        h ^= length * np.uint64(0x94D049BB133111EB)
        h = (h ^ (h >> np.uint64(31))) * np.uint64(0xD6E8FEB86659FD93)
    return ((h >> np.uint64(17)) % np.uint64(n)).astype(np.int64)

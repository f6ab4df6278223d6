"""Vectorised point-in-time primitives shared by the offline builder and the online path.

The rule (DESIGN section 3, "Samples"): an event enters an impression's features only if it
was *known* strictly before the impression's ``ts``. A product click is known at its ``ts``;
a watched channel (entered and stayed at least ``min_stay_ms``) is known at its ``leave`` ts,
because only then is the stay known; channel stats at their ``ts``. Events at the same
millisecond as the impression are excluded.

As-of lookups pack ``(entity code, ts)`` into one sorted int64 key per event; the events of
entity ``e`` strictly before ``t`` are then the half-open range
``[searchsorted(key, pack(e, -inf)), searchsorted(key, pack(e, t), "left"))``, one
``np.searchsorted`` per query batch with no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eliverec.errors import DataError

STALE_AGE_MIN = 1440.0  # stats older than a day (or none at all) read as a day old


@dataclass(frozen=True)
class EventLog:
    """Time-stamped events keyed by an entity id (user or channel), with numeric payload columns."""

    entity: pa.Array  # string ids
    ts: np.ndarray  # int64 ms
    cols: Mapping[str, np.ndarray]  # each with first dimension len(ts)

    def __len__(self) -> int:
        return len(self.ts)

    @staticmethod
    def concat(logs: list[EventLog]) -> EventLog:
        """Concatenate logs with the same payload columns."""
        logs = [g for g in logs if len(g)] or logs[:1]
        names = list(logs[0].cols)
        entity = pa.concat_arrays([g.entity.cast(pa.string()) for g in logs])
        return EventLog(entity, np.concatenate([g.ts for g in logs]),
                        {n: np.concatenate([g.cols[n] for g in logs]) for n in names})

    def take(self, idx: np.ndarray) -> EventLog:
        """The events at ``idx``, in that order."""
        return EventLog(self.entity.take(pa.array(idx)), self.ts[idx], {n: c[idx] for n, c in self.cols.items()})


class AsOfIndex:
    """An :class:`EventLog` sorted by ``(entity, ts, tie)`` for strict as-of range queries.

    ``tie`` (a payload column name) orders same-millisecond events of one entity
    deterministically, whatever order the input came in.
    """

    def __init__(self, log: EventLog, tie: str | None = None) -> None:
        self.dictionary = pc.unique(log.entity) if len(log) else pa.array([], pa.string())
        code = codes(log.entity, self.dictionary)
        if tie is None:
            order = np.lexsort((log.ts, code))  # primary key last: entity, then ts
        else:
            tie_col = log.cols[tie] if log.cols[tie].ndim == 1 else log.cols[tie][:, 0]
            order = np.lexsort((tie_col, log.ts, code))
        self.t0 = int(log.ts.min()) if len(log) else 0
        self.span = int(log.ts.max()) - self.t0 + 1 if len(log) else 1
        if (len(self.dictionary) + 1) * (self.span + 1) >= 2**62:
            raise DataError(f"history too long to index: {len(self.dictionary)} entities over {self.span} ms; "
                            "lower features.lookback_days")
        self.code = code[order]
        self.ts = log.ts[order]
        self.entity = log.entity.take(pa.array(order))
        self.cols = {n: c[order] for n, c in log.cols.items()}
        self.key = self.code * (self.span + 1) + (self.ts - self.t0)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ts)

    def matrix(self, fields: tuple[str, ...]) -> np.ndarray:
        """Payload columns stacked as ``(len + 1, F)`` int32 with a final all-zero pad row (cached)."""
        key = ("matrix", *fields)
        if key not in self._cache:
            m = np.zeros((len(self) + 1, len(fields)), dtype=np.int32)
            for f, name in enumerate(fields):
                m[:-1, f] = self.cols[name]
            self._cache[key] = m
        return self._cache[key]

    def pack(self, code: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Keys of ``(code, ts)``; ts clipped to the indexed span so keys never cross entities."""
        return code * (self.span + 1) + np.clip(ts - self.t0, 0, self.span)

    def before(self, entity: pa.Array | np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``: the events of each query's entity with event ts strictly before the query ts.

        Unknown entities get an empty range.
        """
        code = codes(entity, self.dictionary)
        known = code >= 0
        safe = np.where(known, code, 0)
        lo = np.searchsorted(self.key, self.pack(safe, np.full(len(ts), self.t0 - 1)), side="left")
        hi = np.searchsorted(self.key, self.pack(safe, ts), side="left")  # "left": same-ms events excluded
        hi = np.where(known, hi, lo)
        return lo, hi

    def compact(self, cutoff: int, keep: int) -> EventLog:
        """Per entity, the last ``keep`` events before ``cutoff`` plus every event at or after it.

        Exact for every later query at ``ts >= cutoff``: it can only see the last ``keep``
        events before the cutoff (and all events after it).
        """
        old_end = np.searchsorted(self.key, self.pack(self.code, np.full(len(self), cutoff)), side="left")
        pos = np.arange(len(self))
        kept = (self.ts >= cutoff) | (pos >= old_end - keep)
        idx = np.flatnonzero(kept)
        return EventLog(self.entity.take(pa.array(idx)), self.ts[idx], {n: c[idx] for n, c in self.cols.items()})


def codes(values: pa.Array | np.ndarray | list[str], dictionary: pa.Array) -> np.ndarray:
    """Integer codes of ``values`` in ``dictionary`` (``-1`` where absent)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=pa.string())
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = pc.index_in(arr, value_set=dictionary)
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def last_k(lo: np.ndarray, hi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded indices of the ``k`` most recent events in ``[lo, hi)``.

    Returns ``(idx (n, k), valid (n, k), lengths (n,))``; the most recent event sits at
    ``k - 1``, padded slots have ``valid`` False (and ``idx`` 0).

    >>> idx, valid, n = last_k(np.array([0, 5]), np.array([3, 5]), 2)
    >>> idx.tolist(), valid.tolist(), n.tolist()
    ([[1, 2], [0, 0]], [[True, True], [False, False]], [2, 0])
    """
    lengths = np.minimum(hi - lo, k)
    j = np.arange(k)
    valid = j[None, :] >= (k - lengths)[:, None]
    idx = np.where(valid, hi[:, None] - k + j[None, :], 0)
    return idx, valid, lengths


def gather_sequence(index: AsOfIndex, fields: tuple[str, ...], entity: pa.Array | np.ndarray, ts: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``k`` events strictly before ``ts``: ``(seq (n, k, F) int32, lengths (n,) int32)``.

    Padding is 0 (left), so a sequence's ids are non-zero exactly where it is not padding.
    """
    if len(index) == 0 or len(ts) == 0:
        return np.zeros((len(ts), k, len(fields)), dtype=np.int32), np.zeros(len(ts), dtype=np.int32)
    lo, hi = index.before(entity, ts)
    idx, valid, lengths = last_k(lo, hi, k)
    table = index.matrix(fields)  # (len + 1, F); the last row is the all-zero pad row
    return table[np.where(valid, idx, len(index))], lengths.astype(np.int32)


def latest_stats(index: AsOfIndex, channel: pa.Array | np.ndarray, ts: np.ndarray, n_cats: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The channel's latest stats strictly before ``ts``: ``(dynamic (n, 4) f32, cats (n, K) i32, has (n,))``.

    Dense part (paper section III, dynamic context): log1p of viewers, revenue window (signed),
    number of products on sale, and the stats' age in minutes (capped at a day; no stats = a day).
    """
    n = len(ts)
    if len(index) == 0 or n == 0:
        return dynamic_dense(np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, np.nan)), \
            np.zeros((n, n_cats), np.int32), np.zeros(n, bool)
    lo, hi = index.before(channel, ts)
    has = hi > lo
    i = np.where(has, hi - 1, 0)
    age = np.where(has, (ts - index.ts[i]) / 60_000.0, np.nan)
    dense = dynamic_dense(np.where(has, index.cols["viewers"][i], 0.0), np.where(has, index.cols["revenue"][i], 0.0),
                          np.where(has, index.cols["n_on_sale"][i], 0.0), age)
    cats = np.where(has[:, None], index.cols["cats"][i], 0).astype(np.int32)
    return dense, cats, has


def dynamic_dense(viewers: np.ndarray, revenue: np.ndarray, n_on_sale: np.ndarray, age_min: np.ndarray) -> np.ndarray:
    """Stack the dense dynamic context; ``age_min`` NaN means no stats.

    >>> [round(float(x), 3) for x in dynamic_dense(np.array([0.0]), np.array([-1.0]), np.array([0.0]),
    ...                                            np.array([np.nan]))[0]]
    [0.0, -0.693, 0.0, 7.273]
    """
    age = np.where(np.isnan(age_min), STALE_AGE_MIN, np.clip(age_min, 0.0, STALE_AGE_MIN))
    revenue = np.asarray(revenue, dtype=np.float64)
    return np.stack([np.log1p(np.maximum(viewers, 0)), np.sign(revenue) * np.log1p(np.abs(revenue)),
                     np.log1p(np.maximum(n_on_sale, 0)), np.log1p(age)], axis=1).astype(np.float32)


def top_categories(row: np.ndarray, cat: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """Per row, the ``k`` most frequent categories (ties: smaller hash first), left-aligned, 0-padded.

    Two int64 sorts, no Python loop: count ``(row, cat)`` pairs, then order by ``(row, -count, cat)``.

    >>> top_categories(np.array([0, 0, 0, 1]), np.array([5, 7, 7, 3]), 3, 2).tolist()
    [[7, 5], [3, 0], [0, 0]]
    """
    out = np.zeros((n_rows, k), dtype=np.int32)
    if len(row) == 0:
        return out
    v = int(cat.max()) + 1
    pair, cnt = np.unique(row.astype(np.int64) * v + cat, return_counts=True)
    m = int(cnt.max()) + 1
    urow, ucat = pair // v, pair % v
    order = np.sort((urow * m + (m - 1 - cnt)) * v + ucat)  # (row, -count, cat) packed in one int64
    urow, ucat = order // (m * v), order % v
    rank = np.arange(len(urow)) - np.searchsorted(urow, urow, side="left")
    sel = rank < k
    out[urow[sel], rank[sel]] = ucat[sel]
    return out


def composite_keys(parts: list[pa.Array], dictionaries: list[pa.Array] | None = None
                   ) -> tuple[np.ndarray, list[pa.Array], list[np.ndarray]]:
    """Exact int64 keys of string tuples, built pairwise so they never overflow.

    The first call (``dictionaries=None``) defines the key space from ``parts`` and returns it;
    later calls with that space map other tuples into it (``-1`` where any part is unseen).
    """
    build = dictionaries is None
    dicts = [pc.unique(p) for p in parts] if build else dictionaries[: len(parts)]
    levels: list[np.ndarray] = [] if build else list(dictionaries[len(parts):])  # type: ignore[arg-type]
    key = codes(parts[0], dicts[0])
    for i in range(1, len(parts)):
        c = codes(parts[i], dicts[i])
        bad = (key < 0) | (c < 0)
        pair = np.where(bad, -1, key * (len(dicts[i]) + 1) + c)
        if build:
            levels.append(np.unique(pair))
        key = lookup(levels[i - 1], np.where(bad, -1, pair))
    return key, dicts, levels


def lookup(sorted_unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in a sorted unique array, ``-1`` where absent (or negative).

    >>> lookup(np.array([2, 5, 9]), np.array([5, 3, -1, 9, 10])).tolist()
    [1, -1, -1, 2, -1]
    """
    if len(sorted_unique) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_unique, values), 0, len(sorted_unique) - 1)
    return np.where((values >= 0) & (sorted_unique[pos] == values), pos, -1).astype(np.int64)


def visit_labels(user: pa.Array, request: pa.Array, channel: pa.Array, visits: Mapping[str, pa.Table],
                 min_stay_ms: int) -> dict[str, np.ndarray]:
    """The four labels of each impression, joined on ``(user_id, request_id, channel_id)``.

    ``visits`` holds the ``enter``, ``leave``, ``goods_bag_click`` and ``channel_product_click``
    tables. ``watch``: entered and the (longest) stay reached ``min_stay_ms``; ``stay_time``:
    ``log1p(stay seconds)`` if entered else 0 (an enter without a leave has stay 0);
    ``goods_bag`` / ``product_click``: any such event in the visit.
    """
    n = len(user)
    names = ("enter", "leave", "goods_bag_click", "channel_product_click")
    cols = ["user_id", "request_id", "channel_id"]
    all_parts = [pa.concat_arrays([visits[e][c].combine_chunks() for e in names]) for c in cols]
    _, dicts, levels = composite_keys(all_parts)
    space = [*dicts, *levels]
    imp_key, _, _ = composite_keys([user, request, channel], space)

    def hit(event: str) -> tuple[np.ndarray, np.ndarray]:
        t = visits[event]
        k, _, _ = composite_keys([t[c].combine_chunks() for c in cols], space)
        return lookup(np.unique(k), imp_key) >= 0, k

    entered_e, _ = hit("enter")
    left, leave_key = hit("leave")
    stay = np.zeros(n, dtype=np.float64)
    if len(leave_key):
        longest = np.full(int(leave_key.max()) + 1, 0.0)
        np.maximum.at(longest, leave_key, visits["leave"]["stay_ms"].to_numpy().astype(np.float64))
        stay = np.where(left, longest[np.clip(imp_key, 0, len(longest) - 1)], 0.0)
    entered = entered_e | left
    return {
        "watch": (entered & (stay >= min_stay_ms)).astype(np.float32),
        "stay_time": np.where(entered, np.log1p(stay / 1000.0), 0.0).astype(np.float32),  # log1p(seconds)
        "goods_bag": hit("goods_bag_click")[0].astype(np.float32),
        "product_click": hit("channel_product_click")[0].astype(np.float32),
    }

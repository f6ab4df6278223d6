"""One request's batch tensors from the online state's rows: the serving path of the feature contract.

:func:`eliverec.features.online.request_features` builds a request's features with the offline
builder's code (pyarrow tables, as-of indexes, ``impression_features``). It is exact, but made for
day-sized blocks: its fixed cost per call (some hundred pyarrow and numpy calls) was half of a
request's scoring time (profile in ``benchmarks/results/serving.md``). :func:`request_batch`
builds the same arrays for one user and many candidates from the state's raw rows, with the
primitives of the feature code (``hash_strings``, ``hour_ids``, ``weekday_ids``, ``position_ids``,
``register_bucket_ids``, ``dynamic_dense``, ``top_categories``) and the same point-in-time rule:

- only events strictly before the request ``ts`` count; same-millisecond events are ordered by the
  hashed id (products by product, watches by channel, stats by viewers), then by arrival, as the
  as-of indexes order them;
- the user's sequences are computed once and repeated for every candidate;
- every id is hashed once per feature spec and remembered (:class:`IdHasher`, bounded).

``tests/serving/test_features.py`` checks it equals ``request_features`` on random states (ties,
events at or after ``ts``, unknown users, channels and products, short stays, empty histories);
``tests/serving/test_state.py`` checks the state against the offline samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eliverec.features.hashing import (
    UNKNOWN,
    FeatureSpec,
    hash_strings,
    hour_ids,
    position_ids,
    register_bucket_ids,
    weekday_ids,
)
from eliverec.features.online import to_tensors
from eliverec.features.pointintime import dynamic_dense, top_categories

#: Ids remembered per hash space before the memo starts over (bounds the memory of a long-running service).
MAX_IDS = 500_000


class IdHasher:
    """Hashed ids of one :class:`FeatureSpec`, each distinct id hashed once (``None`` hashes as UNKNOWN).

    >>> spec = FeatureSpec(vocab={"user": 101}, salt="s", seq_len=2, min_stay_ms=0, dynamic_cats=1)
    >>> h = IdHasher(spec)
    >>> h.ids("user", ["a", None, "a"]) == [*spec.hash(["a", None, "a"], "user").tolist()]
    True
    """

    def __init__(self, spec: FeatureSpec, max_ids: int = MAX_IDS) -> None:
        self.spec, self.max_ids = spec, max_ids
        self._memo: dict[str, dict[str | None, int]] = {}

    def ids(self, space: str, values: Sequence[str | None]) -> list[int]:
        """The hashed id of each value in the ``space`` vocabulary."""
        memo = self._memo.setdefault(space, {})
        try:
            return list(map(memo.__getitem__, values))
        except KeyError:
            pass
        new = list(dict.fromkeys(v for v in values if v not in memo))
        hashed = hash_strings([UNKNOWN if v is None else v for v in new], self.spec.salt, space,
                              self.spec.vocab[space])
        if len(memo) + len(new) > self.max_ids:
            memo.clear()
        memo.update(zip(new, hashed.tolist(), strict=True))
        return [memo[v] for v in values]

    def one(self, space: str, value: str | None) -> int:
        return self.ids(space, [value])[0]


@dataclass(frozen=True)
class Candidates:
    """A request's candidate channels as the state holds them: dimension fields and stats rows.

    ``stats`` holds every candidate's rows ``(ts, viewers, revenue, on-sale categories)`` one candidate
    after the other, ``counts`` how many rows each has (in arrival order).
    """

    ids: Sequence[str]
    anchors: Sequence[str | None]
    categories: Sequence[str | None]
    counts: Sequence[int]
    stats: Sequence[tuple[int, float, float, tuple[str | None, ...]]]


def sequence(hasher: IdHasher, rows: Sequence[tuple], spaces: tuple[str, ...], ts: int, k: int
             ) -> tuple[np.ndarray, int]:
    """The last ``k`` of ``rows`` ``(ts, id, ...)`` strictly before ``ts``: ``((k, F) ids left-padded, length)``.

    Order: event ts, then the first field's hashed id, then arrival (the as-of index's stable sort).
    """
    seq = np.zeros((k, len(spaces)), np.int64)
    rows = [r for r in rows if r[0] < ts]
    if not rows or k == 0:
        return seq, 0
    cols = list(zip(*rows, strict=True))
    ids = np.array([hasher.ids(space, cols[1 + f]) for f, space in enumerate(spaces)], np.int64).T  # (n, F)
    order = np.lexsort((ids[:, 0], np.asarray(cols[0], np.int64)))[-k:]
    seq[k - len(order):] = ids[order]
    return seq, len(order)


def latest_stats(hasher: IdHasher, cands: Candidates, ts: int, n_cats: int) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate, its latest stats strictly before ``ts`` (ties: more viewers, then later arrival).

    Returns ``(dynamic (n, 4) float32, dynamic_cats (n, n_cats) int32)``, as
    :func:`eliverec.features.pointintime.latest_stats` does for an as-of index of the same rows.
    """
    n = len(cands.ids)
    owner = np.repeat(np.arange(n), cands.counts)
    row_ts, viewers, revenue, cats = (list(c) for c in zip(*cands.stats, strict=True)) if cands.stats else ([],) * 4
    row_ts, viewers = np.asarray(row_ts, np.int64), np.asarray(viewers, np.float64)
    known = np.flatnonzero(row_ts < ts)
    order = known[np.lexsort((known, viewers[known], row_ts[known], owner[known]))]  # by owner, ts, viewers, arrival
    last = order[np.r_[owner[order][1:] != owner[order][:-1], True]] if len(order) else order  # each owner's latest
    has = np.zeros(n, bool)
    has[owner[last]] = True
    pick = np.zeros(n, np.int64)
    pick[owner[last]] = last
    picked_cats = [cats[i] if h else () for i, h in zip(pick.tolist(), has.tolist(), strict=True)]
    age = np.where(has, (ts - row_ts[pick] if len(row_ts) else 0) / 60_000.0, np.nan)
    dense = dynamic_dense(np.where(has, viewers[pick] if len(row_ts) else 0.0, 0.0),
                          np.where(has, np.asarray(revenue, np.float64)[pick] if len(row_ts) else 0.0, 0.0),
                          np.array([float(len(c)) for c in picked_cats]), age)
    rows = np.repeat(np.arange(n), [len(c) for c in picked_cats])
    flat = [c for cs in picked_cats for c in cs]
    return dense, top_categories(rows, np.array(hasher.ids("category", flat), np.int64), n, n_cats)


def request_batch(hasher: IdHasher, *, ts: int, user_id: str, scene: str, profile: Mapping[str, Any] | None,
                  clicks: Sequence[tuple], watches: Sequence[tuple], candidates: Candidates,
                  position: int | Sequence[int]) -> dict[str, torch.Tensor]:
    """Batch-contract tensors (no labels) of one request: one row per candidate.

    ``clicks`` are the user's rows ``(ts, product, category, brand)``, ``watches`` ``(leave ts, channel,
    anchor, category, stay_ms)`` (any order); ``profile`` ``None`` for an unknown user.
    """
    spec, n, h = hasher.spec, len(candidates.ids), hasher
    p = profile or {}
    days = np.array([np.nan if p.get("register_days") is None else p["register_days"]])
    user_row = [h.one("user", user_id)] + [h.one(f, p.get(f)) for f in ("gender", "age_bucket", "city_tier")]
    user_row.append(int(register_bucket_ids(days, spec.vocab["register_bucket"])[0]))
    t = np.array([ts], np.int64)
    context = [int(hour_ids(t)[0]), int(weekday_ids(t)[0]), h.one("scene", scene)]
    product_seq, product_len = sequence(h, clicks, ("product", "category", "brand"), ts, spec.seq_len)
    watched = [r for r in watches if r[4] >= spec.min_stay_ms]
    channel_seq, channel_len = sequence(h, watched, ("channel", "anchor", "category"), ts, spec.seq_len)
    dynamic, dynamic_cats = latest_stats(h, candidates, ts, spec.dynamic_cats)
    positions = np.full(n, position, np.int64) if isinstance(position, int) else np.asarray(position, np.int64)
    channel = np.array([h.ids("channel", candidates.ids), h.ids("anchor", candidates.anchors),
                        h.ids("category", candidates.categories)], np.int64).T.reshape(n, 3)

    def rows(x: Any) -> np.ndarray:
        return np.repeat(np.asarray(x)[None], n, axis=0)

    return to_tensors({
        "user": np.full(n, user_row[0], np.int64), "profile": rows(user_row[1:]), "context": rows(context),
        "position": position_ids(positions, spec.vocab["position"]), "channel": channel,
        "dynamic": dynamic, "dynamic_cats": dynamic_cats,
        "product_seq": rows(product_seq), "product_len": np.full(n, product_len, np.int64),
        "channel_seq": rows(channel_seq), "channel_len": np.full(n, channel_len, np.int64),
    })

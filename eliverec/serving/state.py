"""The service's online feature state: recent behaviour per user, latest stats per channel, dimensions.

Warmed at start from the latest ``serving.warm_days`` bronze partitions (and their dimension
snapshots), then updated by every event posted to ``/events``. A request's features are built from the raw rows by
:func:`eliverec.serving.features.request_batch` (:meth:`OnlineState.features`), which equals
:func:`eliverec.features.online.request_features`, the offline samples' code
(:meth:`OnlineState.reference_features`; ``tests/serving/test_features.py``), so the service sees
exactly what training saw for the same history (``tests/serving/test_state.py``).

Per user it keeps the last ``features.seq_len`` product clicks and watched channels (leaves with
``stay_ms >= features.min_stay_ms``), per channel the last :data:`STATS_KEPT` stats snapshots; at
most ``serving.max_users`` users and ``serving.max_channels`` channels are kept (the least recently
updated are evicted). The lists are trimmed lazily (at twice the length, by time), so events may arrive in any order.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from eliverec.features.hashing import FeatureSpec
from eliverec.features.online import ChannelState, UserHistory, request_features
from eliverec.layout import DataLayout, date_folders, table_file
from eliverec.serving.features import Candidates, IdHasher, request_batch

log = logging.getLogger(__name__)
STATS_KEPT = 4  # stats snapshots kept per channel (the latest before a request is used)
NO_DIMS = (None, None)  # anchor and top category of a channel the dimensions do not know
HASHERS_KEPT = 4  # id memos kept (one per feature spec in use: champion, challenger, a reload's new one)


@dataclass(frozen=True)
class Dimensions:
    """Dimension lookups: user profile, channel (anchor, top category), product (category, brand)."""

    users: dict[str, dict[str, Any]]
    channels: dict[str, tuple[str | None, str | None]]
    products: dict[str, tuple[str | None, str | None]]


def _trim(rows: list[tuple], keep: int) -> list[tuple]:
    """The ``keep`` latest rows by ts (first element), in time order."""
    rows.sort(key=lambda r: r[0])
    return rows[-keep:]


class OnlineState:
    """Thread-safe per-user and per-channel state (see module docstring)."""

    def __init__(self, seq_len: int, min_stay_ms: int, max_users: int = 1_000_000,
                 max_channels: int = 200_000) -> None:
        self.seq_len, self.min_stay_ms = int(seq_len), int(min_stay_ms)
        self.max_users, self.max_channels = int(max_users), int(max_channels)
        self.dims = Dimensions({}, {}, {})
        # least recently updated first: beyond max_users / max_channels keys the oldest are evicted
        self.clicks: OrderedDict[str, list[tuple]] = OrderedDict()  # user -> [(ts, product, category, brand)]
        self.watches: OrderedDict[str, list[tuple]] = OrderedDict()  # user -> [(ts, channel, anchor, cat, stay)]
        self.stats: OrderedDict[str, list[tuple]] = OrderedDict()  # channel -> [(ts, viewers, revenue, on-sale)]
        self.evicted = 0
        self.warmed_from: list[str] = []
        self._lock = threading.Lock()
        self._hashers: dict[int, IdHasher] = {}

    # ------------------------------------------------------------------ updates
    def _push(self, table: OrderedDict[str, list[tuple]], key: str, row: tuple, keep: int, limit: int) -> None:
        rows = table.setdefault(key, [])
        table.move_to_end(key)
        rows.append(row)
        if len(rows) > 2 * keep:
            table[key] = _trim(rows, keep)
        while len(table) > limit:
            table.popitem(last=False)
            self.evicted += 1

    def apply(self, events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Update from raw-contract events; returns how many of each kind changed the state."""
        used = {"product_click": 0, "leave": 0, "channel_stats": 0}
        d = self.dims
        with self._lock:
            for e in events:
                kind = e.get("event")
                if kind == "product_click":
                    pid = str(e["product_id"])
                    cat, brand = d.products.get(pid, (None, None))
                    self._push(self.clicks, str(e["user_id"]), (int(e["ts"]), pid, cat, brand), self.seq_len,
                               self.max_users)
                elif kind == "leave" and int(e["stay_ms"]) >= self.min_stay_ms:
                    cid = str(e["channel_id"])
                    anchor, cat = d.channels.get(cid, (None, None))
                    row = (int(e["ts"]), cid, anchor, cat, int(e["stay_ms"]))
                    self._push(self.watches, str(e["user_id"]), row, self.seq_len, self.max_users)
                elif kind == "channel_stats":
                    cats = tuple(d.products.get(str(p), (None, None))[0] for p in e.get("products_on_sale") or ())
                    row = (int(e["ts"]), float(e["viewers"]), float(e["revenue_window"]), cats)
                    self._push(self.stats, str(e["channel_id"]), row, STATS_KEPT, self.max_channels)
                else:
                    continue
                used[kind] += 1
        return used

    # ------------------------------------------------------------------ reads
    def history(self, user_id: str) -> UserHistory:
        """The user's recent events as :class:`UserHistory` (empty for an unknown user)."""
        clicks = list(self.clicks.get(user_id, ()))
        watches = list(self.watches.get(user_id, ()))
        c = list(zip(*clicks, strict=True)) if clicks else [(), (), (), ()]
        w = list(zip(*watches, strict=True)) if watches else [(), (), (), (), ()]
        return UserHistory(product_ts=c[0], product_id=c[1], product_category=c[2], product_brand=c[3],
                           leave_ts=w[0], leave_channel=w[1], leave_anchor=w[2], leave_category=w[3],
                           leave_stay_ms=w[4])

    def channel(self, channel_id: str) -> ChannelState:
        """A candidate channel with its dimension fields and recent stats."""
        anchor, cat = self.dims.channels.get(channel_id, (None, None))
        rows = list(self.stats.get(channel_id, ()))
        s = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        return ChannelState(channel_id, anchor, cat, stats_ts=s[0], viewers=s[1], revenue_window=s[2],
                            on_sale_categories=s[3])

    def features(self, spec: FeatureSpec, *, user_id: str, ts: int, scene: str, candidates: Sequence[str],
                 position: int) -> dict[str, torch.Tensor]:
        """Batch-contract tensors for one request (one row per candidate, one fixed position).

        Built by :func:`eliverec.serving.features.request_batch` from the rows copied under the lock;
        equal to :meth:`reference_features` (``tests/serving/test_features.py``).
        """
        with self._lock:
            clicks = list(self.clicks.get(user_id, ()))
            watches = list(self.watches.get(user_id, ()))
            dims = [self.dims.channels.get(c, NO_DIMS) for c in candidates]
            rows = [self.stats.get(c, ()) for c in candidates]
            cands = Candidates(candidates, [d[0] for d in dims], [d[1] for d in dims], [len(r) for r in rows],
                               [r for rs in rows for r in rs])  # copied: a trim sorts a list in place
            profile = self.dims.users.get(user_id)
        return request_batch(self.hasher(spec), ts=ts, user_id=user_id, scene=scene, profile=profile, clicks=clicks,
                             watches=watches, candidates=cands, position=position)

    def reference_features(self, spec: FeatureSpec, *, user_id: str, ts: int, scene: str, candidates: Sequence[str],
                           position: int) -> dict[str, torch.Tensor]:
        """The same tensors through the offline builder's code (:func:`request_features`): the reference."""
        with self._lock:
            history = self.history(user_id)
            chans = [self.channel(c) for c in candidates]
            profile = self.dims.users.get(user_id)
        return request_features(spec, ts=ts, user_id=user_id, scene=scene, profile=profile, history=history,
                                candidates=chans, position=position)

    def hasher(self, spec: FeatureSpec) -> IdHasher:
        """The id memo of ``spec`` (one per loaded spec object; the last :data:`HASHERS_KEPT` are kept)."""
        held = self._hashers.get(id(spec))
        if held is None or held.spec is not spec:
            held = self._hashers[id(spec)] = IdHasher(spec)
            while len(self._hashers) > HASHERS_KEPT:
                self._hashers.pop(next(iter(self._hashers)))
        return held

    def describe(self) -> dict[str, Any]:
        """Sizes, for ``/healthz``."""
        return {"users_with_history": len(set(self.clicks) | set(self.watches)), "channels_with_stats": len(self.stats),
                "known_users": len(self.dims.users), "known_channels": len(self.dims.channels),
                "known_products": len(self.dims.products), "evicted": self.evicted, "warmed_from": self.warmed_from}

    # ------------------------------------------------------------------ warm start
    def warm(self, data_dir: Path, days: int, until_ms: int | None = None) -> list[str]:
        """Load the latest ``days`` bronze partitions (events strictly before ``until_ms`` if given).

        Dimensions come from the latest partition. Returns the dates used (none: an empty state).
        """
        lay = DataLayout(Path(data_dir))
        root = lay.bronze()
        dates = date_folders(root)
        if until_ms is not None:
            last = dt.datetime.fromtimestamp(until_ms / 1000, dt.UTC).date().isoformat()
            dates = [d for d in dates if d <= last]
        dates = dates[-days:] if days > 0 else []
        if not dates:
            log.warning("no bronze partitions under %s: the online state starts empty", root)
            return []
        self.dims = read_dimensions(lay.bronze(dates[-1]))
        for date in dates:
            self._warm_day(lay.bronze(date), until_ms)
        self.warmed_from = dates
        return dates

    def _warm_day(self, folder: Path, until_ms: int | None) -> None:
        def read(name: str, cols: list[str]) -> pa.Table | None:
            path = table_file(folder, name)
            if not path.is_file():
                return None
            t = pq.read_table(path, columns=cols)
            return t.filter(pc.less(t["ts"], until_ms)) if until_ms is not None else t

        rows: list[dict[str, Any]] = []
        for name, cols in (("product_click", ["user_id", "ts", "product_id"]),
                           ("leave", ["user_id", "ts", "channel_id", "stay_ms"]),
                           ("channel_stats", ["channel_id", "ts", "viewers", "revenue_window", "products_on_sale"])):
            t = read(name, cols)
            if t is None or t.num_rows == 0:
                continue
            t = t.sort_by("ts")
            if name == "leave":
                t = t.filter(pc.greater_equal(t["stay_ms"], self.min_stay_ms))
            if name != "channel_stats":  # only the last seq_len per user can matter
                t = _last_per(t, "user_id", self.seq_len)
            else:
                t = _last_per(t, "channel_id", STATS_KEPT)
            rows += [{"event": name, **r} for r in t.to_pylist()]
        self.apply(rows)


def _last_per(t: pa.Table, key: str, k: int) -> pa.Table:
    """The last ``k`` rows of each ``key`` in a table sorted by ts (order kept)."""
    codes = pc.dictionary_encode(t[key].combine_chunks()).indices.to_numpy(zero_copy_only=False)
    n = len(codes)
    # rank from the end within each key: count of later rows with the same key
    order = np.lexsort((-np.arange(n), codes))
    first = np.r_[True, codes[order][1:] != codes[order][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - start
    return t.filter(pa.array(rank < k))


def read_dimensions(folder: Path) -> Dimensions:
    """Dimension lookups from one bronze partition (absent tables give empty lookups)."""

    def table(name: str) -> list[dict[str, Any]]:
        path = table_file(folder, name)
        return pq.read_table(path).to_pylist() if path.is_file() else []

    users = {str(r["user_id"]): {k: r.get(k) for k in ("gender", "age_bucket", "city_tier", "register_days")}
             for r in table("users")}
    channels = {str(r["channel_id"]): (r.get("anchor_id"), r.get("top_category")) for r in table("channels")}
    products = {str(r["product_id"]): (r.get("category_id"), r.get("brand_id")) for r in table("products")}
    return Dimensions(users, channels, products)

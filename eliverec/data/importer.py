"""Bring-your-own logs: foreign CSV/parquet interaction logs to raw logs of our contract.

``eliverec import --live FILE --products FILE --mapping MAPPING.yaml`` reads logs whose column
names and units are stated by a mapping file (``mappings/*.yaml``) and writes
``<data_dir>/raw/<date>/events-import.jsonl.gz`` plus the dimension snapshots for every day it
covers, so that ingest, validation, features and training run on them unchanged. Use a data root
of its own (``--data-dir``): an imported day replaces that day's raw folder.

Mapping (unknown keys are errors; each error names the mapping file and the key)::

    live:                          # live-room entries (optional section)
      format: csv                  # csv | parquet (default: from the file suffix)
      header: true                 # false: give `columns`
      columns: [...]
      user: user_id                # column names
      channel: room_id
      time: ts_sec
      time_unit: s                 # s | ms | us | ns
      time_origin: "2026-09-01"    # add this UTC day to relative times (absent: times are epoch)
      user_prefix: "dv-"           # prepended to user ids
      stay: null                   # stay-time column (absent: see assume_stay_ms)
      stay_unit: s
      filter: {split: [train, test]}   # keep rows whose column is in the list
      negatives: 4                 # derived impressions per entry (see below)
      live_window_s: 1800
      assume_stay_ms: 60000        # stay written on derived leave events when no stay column
      stats: {file: room_state.csv, channel: room_id, time: ts_sec, audience: audience_user_ids}
    products:                      # product-domain behaviour (optional section)
      format: csv, header, columns, user, product, time, time_unit, time_origin: as above
      category: category_id        # optional product category column
      event: behavior              # optional; with `keep_events`, rows of other values are dropped
      keep_events: [pv, cart, fav, buy]
      time_window: ["2017-11-25T00:00+08:00", "2017-12-04T00:00+08:00"]   # [start, end); rows outside are dropped
    pairing: identity              # identity | activity_rank (two domains that share no users)

Rules for what the source does not have (every such event carries ``derived: true``):

- Impressions: each live entry becomes one feed request (``request_id`` per entry) with the
  entered channel's impression (``derived: true``: its position is drawn uniformly in
  ``0..negatives``) and up to ``negatives`` negative impressions: channels that had at least one
  entry within ``live_window_s`` of the entry time (the log's own proxy for "live at that
  moment"), not the entered one, drawn uniformly without replacement. The sampling rate is thus
  ``negatives`` per entry, stated in the mapping. Scene: ``live_tab``.
- Enter events are real (not derived). Leave events are derived: stay from the stay column when
  the mapping has one, else ``assume_stay_ms`` (so every entry counts as a watch when it is at
  least ``features.min_stay_ms``); no leave without either.
- Channel stats: from the ``stats`` file when given (viewers = audience size; revenue 0, no
  products on sale), derived.
- Product rows become ``product_click`` events (the kept ``event`` values), not derived.
- Dimensions: users get gender ``U`` and unknown profile fields; each channel is its own anchor
  with category ``unknown``; products keep their category (brand ``unknown``, price bucket 0).
- ``pairing: activity_rank``: the i-th most active product user is paired with the i-th most
  active live user (ties by id); unpaired product users are dropped (counted); product times are
  shifted by whole days so that the first product day is the first live day.
- Rows with a missing user, item or time, or (products) outside ``time_window`` (``[start, end)``,
  ISO dates or date-times; UTC unless an offset is given), are dropped and counted in the
  summary's ``dropped``. Days are UTC days.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eliverec.config import Settings
from eliverec.data.atomic import publish_dir, staging
from eliverec.data.schemas import DIMENSIONS
from eliverec.errors import DataError
from eliverec.layout import DAY_MS, event_log_name, table_file

_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatsMap(_Section):
    """Channel-state snapshots next to the live file."""

    file: str
    channel: str
    time: str
    audience: str


class _Source(_Section):
    format: Literal["csv", "parquet"] | None = None
    header: bool = True
    columns: list[str] | None = None
    user: str
    time: str
    time_unit: str = "s"
    time_origin: str | None = None
    user_prefix: str = ""  # prepended to user ids (keeps two sources' id spaces apart)
    filter: dict[str, list[Any]] = Field(default_factory=dict)


class LiveMap(_Source):
    """Live-room entry log."""

    channel: str
    stay: str | None = None
    stay_unit: str = "s"
    negatives: int = Field(default=4, ge=0)
    live_window_s: int = Field(default=1800, ge=1)
    assume_stay_ms: int | None = Field(default=None, ge=0)
    stats: StatsMap | None = None


class ProductMap(_Source):
    """Product behaviour log."""

    product: str
    category: str | None = None
    event: str | None = None
    keep_events: list[str] | None = None
    time_window: tuple[str, str] | None = None


class Mapping(_Section):
    """A mapping file (see the module docstring)."""

    name: str = "import"
    live: LiveMap | None = None
    products: ProductMap | None = None
    pairing: Literal["identity", "activity_rank"] = "identity"
    seed: int = 0


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file; errors name the file and the key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the mapping ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    try:
        m = Mapping.model_validate(raw or {})
    except ValidationError as exc:
        errs = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise DataError(f"{path}: invalid mapping: {errs}") from exc
    for section in ("live", "products"):
        src = getattr(m, section)
        if src is None:
            continue
        for key in ("time_unit", "stay_unit"):
            unit = getattr(src, key, "s")
            if unit not in _UNITS:
                raise DataError(f"{path}: {section}.{key}: unknown unit '{unit}' (use one of {', '.join(_UNITS)})")
    return m


def _read(path: Path, src: _Source, mapping_path: Path, section: str, needed: dict[str, str | None]) -> pd.DataFrame:
    fmt = src.format or ("parquet" if path.suffix == ".parquet" else "csv")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, header=0 if src.header else None, names=None if src.header else src.columns,
                             dtype=str, keep_default_na=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as {fmt} ({exc})") from exc
    for key, col in (needed | {f"filter.{c}": c for c in src.filter}).items():
        if col is not None and col not in df.columns:
            raise DataError(
                f"{mapping_path}: {section}.{key}: column '{col}' not in {path.name} "
                f"(columns: {', '.join(map(str, df.columns))})"
            )
    for col, values in src.filter.items():
        df = df[df[col].astype(str).isin([str(v) for v in values])]
    return df


def _origin_ms(src: _Source, mapping_path: Path, section: str) -> int:
    if src.time_origin is None:
        return 0
    try:
        return int(datetime.fromisoformat(src.time_origin).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError as exc:
        raise DataError(f"{mapping_path}: {section}.time_origin: not a date '{src.time_origin}'") from exc


def _times(df: pd.DataFrame, col: str, unit: str, origin: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch ms and a mask of rows with a usable time."""
    t = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
    ok = np.isfinite(t)
    ms = np.where(ok, np.round(t * _UNITS[unit]), 0).astype(np.int64) + origin
    return ms, ok


def _live_events(df: pd.DataFrame, m: LiveMap, mp: Path, rng: np.random.Generator, drop: dict) -> dict[str, Any]:
    ts, ok = _times(df, m.time, m.time_unit, _origin_ms(m, mp, "live"))
    ok &= df[m.user].notna().to_numpy() & df[m.channel].notna().to_numpy()
    drop["live_incomplete"] = int((~ok).sum())
    user = (m.user_prefix + df[m.user].astype(str)).to_numpy()[ok]
    chan, ts = df[m.channel].astype(str).to_numpy()[ok], ts[ok]
    stay = None
    if m.stay:
        s = pd.to_numeric(df[m.stay], errors="coerce").to_numpy(float)[ok]
        stay = np.where(np.isfinite(s), np.round(s * _UNITS[m.stay_unit]), 0).astype(np.int64)
    order = np.lexsort((chan, user, ts))
    return {"user": user[order], "channel": chan[order], "ts": ts[order], "stay": None if stay is None else stay[order]}


def _negatives(ts: np.ndarray, chan: np.ndarray, k: int, window_ms: int, rng: np.random.Generator) -> list[list[str]]:
    """Up to ``k`` channels with an entry within ``window_ms`` of each entry, not the entered one."""
    out: list[list[str]] = [[] for _ in ts]
    if k == 0:
        return out
    bucket = ts // window_ms
    for b in np.unique(bucket):
        rows = np.flatnonzero(bucket == b)
        near = (bucket >= b - 1) & (bucket <= b + 1)
        live = np.unique(chan[near])
        if live.size < 2:
            continue
        pick = np.argsort(rng.random((rows.size, live.size)), axis=1)[:, : k + 1]
        for r, cand in zip(rows, live[pick], strict=True):
            out[r] = [c for c in cand if c != chan[r]][:k]
    return out


def _instant_ms(text: str, mp: Path, key: str) -> int:
    """Epoch ms of an ISO date or date-time (UTC unless it has an offset)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"{mp}: {key}: not an ISO date or date-time '{text}'") from exc
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms // 1000, UTC).strftime("%Y-%m-%d")


def import_logs(
    settings: Settings, live: Path | None = None, products: Path | None = None, *, mapping: Path
) -> dict[str, Any]:
    """Import the given logs per ``mapping``; write raw days under ``<data_dir>/raw``; return a summary.

    The summary: ``dates``, ``events`` per type, ``derived`` per type, ``dropped`` per reason,
    ``users``/``channels``/``products`` counts and ``raw_dir``. See the module docstring for the rules.
    """
    mp = Path(mapping)
    m = load_mapping(mp)
    if live is None and products is None:
        raise DataError("nothing to import: give --live FILE and/or --products FILE")
    for flag, path, section in (("--live", live, m.live), ("--products", products, m.products)):
        if path is not None and section is None:
            raise DataError(f"{mp}: {flag} given but the mapping has no '{flag[2:]}' section")
    rng = np.random.default_rng(m.seed)
    drop: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    dims: dict[str, dict[str, Any]] = {"users": {}, "channels": {}, "products": {}}
    live_ev = None
    if live is not None and m.live is not None:
        need = {"user": m.live.user, "channel": m.live.channel, "time": m.live.time, "stay": m.live.stay}
        live_ev = _live_events(_read(Path(live), m.live, mp, "live", need), m.live, mp, rng, drop)
        events += _live_rows(live_ev, m.live, rng, m.name)
        for c in live_ev["channel"]:
            dims["channels"][c] = None
        if m.live.stats is not None:
            events += _stats_rows(Path(live).parent / m.live.stats.file, m.live, mp, m.name, dims)
    if products is not None and m.products is not None:
        p = m.products
        need = {"user": p.user, "product": p.product, "time": p.time, "category": p.category, "event": p.event}
        events += _product_rows(_read(Path(products), p, mp, "products", need), p, mp, m, live_ev, drop, dims)
    for e in events:
        if "user_id" in e:
            dims["users"][e["user_id"]] = None
    return _write(settings, events, dims, drop)


def _live_rows(ev: dict[str, Any], m: LiveMap, rng: np.random.Generator, name: str) -> list[dict[str, Any]]:
    ts, chan, user = ev["ts"], ev["channel"], ev["user"]
    negs = _negatives(ts, chan, m.negatives, m.live_window_s * 1000, rng)
    rows: list[dict[str, Any]] = []
    for i in range(ts.size):
        t, u, c, req = int(ts[i]), str(user[i]), str(chan[i]), f"{name}-r{i}"
        d = _day(t)
        shown = [c, *negs[i]]
        pos = rng.permutation(len(shown))
        for j, ch in enumerate(shown):
            rows.append({"event": "impression", "event_id": f"{req}-i{j}", "ts": t - 1000, "user_id": u,
                         "request_id": req, "channel_id": ch, "position": int(pos[j]), "scene": "live_tab",
                         "derived": True, "_d": d})  # fmt: skip
        rows.append({"event": "enter", "event_id": f"{req}-e", "ts": t, "user_id": u, "request_id": req,
                     "channel_id": c, "_d": d})  # fmt: skip
        stay = int(ev["stay"][i]) if ev["stay"] is not None else m.assume_stay_ms
        if stay is not None:
            rows.append({"event": "leave", "event_id": f"{req}-l", "ts": t + stay, "user_id": u, "request_id": req,
                         "channel_id": c, "stay_ms": stay, "derived": True, "_d": d})  # fmt: skip
    return rows


def _stats_rows(path: Path, m: LiveMap, mp: Path, name: str, dims: dict) -> list[dict[str, Any]]:
    s = m.stats
    assert s is not None
    df = _read(path, _Source(user=s.channel, time=s.time, time_unit=m.time_unit), mp, "live.stats",
               {"channel": s.channel, "time": s.time, "audience": s.audience})  # fmt: skip
    ts, ok = _times(df, s.time, m.time_unit, _origin_ms(m, mp, "live"))
    viewers = df[s.audience].fillna("").astype(str).str.split().str.len().to_numpy()
    chans = df[s.channel].astype(str).to_numpy()
    rows = []
    for i in np.flatnonzero(ok):
        dims["channels"][chans[i]] = None
        rows.append({"event": "channel_stats", "event_id": f"{name}-s{i}", "ts": int(ts[i]), "channel_id": chans[i],
                     "viewers": int(viewers[i]), "revenue_window": 0.0, "products_on_sale": []})  # fmt: skip
    return rows


def _product_rows(
    df: pd.DataFrame, p: ProductMap, mp: Path, m: Mapping, live_ev: dict | None, drop: dict, dims: dict
) -> list[dict[str, Any]]:
    ts, ok = _times(df, p.time, p.time_unit, _origin_ms(p, mp, "products"))
    ok &= df[p.user].notna().to_numpy() & df[p.product].notna().to_numpy()
    drop["products_incomplete"] = int((~ok).sum())
    if p.event and p.keep_events is not None:
        keep = df[p.event].isin(p.keep_events).to_numpy()
        drop["products_other_event"] = int((ok & ~keep).sum())
        ok &= keep
    if p.time_window:
        lo, hi = (_instant_ms(x, mp, "products.time_window") for x in p.time_window)
        inside = (ts >= lo) & (ts < hi)
        drop["products_outside_window"] = int((ok & ~inside).sum())
        ok &= inside
    user = (p.user_prefix + df[p.user].astype(str)).to_numpy()[ok]
    item, ts = df[p.product].astype(str).to_numpy()[ok], ts[ok]
    cat = df[p.category].astype(str).to_numpy()[ok] if p.category else np.full(ts.size, "unknown")
    if m.pairing == "activity_rank" and live_ev is not None:
        user, item, ts, cat = _pair(user, item, ts, cat, live_ev, drop)
    rows = []
    for i in range(ts.size):
        dims["products"][item[i]] = cat[i]
        rows.append({"event": "product_click", "event_id": f"{m.name}-p{i}", "ts": int(ts[i]),
                     "user_id": str(user[i]), "product_id": str(item[i])})  # fmt: skip
    return rows


def _rank(users: np.ndarray) -> np.ndarray:
    """Users by activity, most active first (ties by id)."""
    ids, counts = np.unique(users, return_counts=True)
    return ids[np.lexsort((ids, -counts))]


def _pair(user, item, ts, cat, live_ev: dict, drop: dict):  # type: ignore[no-untyped-def]
    """Pair product users with live users by activity rank; shift product days onto the live days."""
    prod_rank, live_rank = _rank(user), _rank(live_ev["user"])
    n = min(prod_rank.size, live_rank.size)
    to_live = dict(zip(prod_rank[:n], live_rank[:n], strict=True))
    paired = np.array([u in to_live for u in user], bool)
    drop["products_unpaired_user"] = int((~paired).sum())
    shift = (int(live_ev["ts"].min()) // DAY_MS - int(ts.min()) // DAY_MS) * DAY_MS if ts.size else 0
    user = np.array([to_live[u] for u in user[paired]], dtype=object)
    return user, item[paired], ts[paired] + shift, cat[paired]


def _write(settings: Settings, events: list[dict[str, Any]], dims: dict, drop: dict) -> dict[str, Any]:
    if not events:
        raise DataError("the import produced no events (check the mapping's filters and time window)")
    by_day: dict[str, list[dict[str, Any]]] = {}
    for e in events:  # a request's events stay on the day of its entry (``_d``)
        by_day.setdefault(e.pop("_d", None) or _day(e["ts"]), []).append(e)
    dim_tables = _dimension_tables(dims)
    root = settings.layout.raw()
    counts: dict[str, int] = {}
    derived: dict[str, int] = {}
    for e in events:
        counts[e["event"]] = counts.get(e["event"], 0) + 1
        if e.get("derived") or e["event"] == "channel_stats":
            derived[e["event"]] = derived.get(e["event"], 0) + 1
    for date, rows in sorted(by_day.items()):
        with staging(settings.data_dir, f"import-{date}") as stage:
            blob = b"".join(orjson.dumps(r) + b"\n" for r in rows)
            (stage / event_log_name("import", gzip=True)).write_bytes(gzip.compress(blob, compresslevel=5, mtime=0))
            for name, table in dim_tables.items():
                pq.write_table(table, table_file(stage, name))
            publish_dir(stage, settings.layout.raw(date))
    return {
        "dates": sorted(by_day),
        "events": counts,
        "derived": derived,
        "dropped": drop,
        "users": len(dims["users"]),
        "channels": len(dims["channels"]),
        "products": len(dims["products"]),
        "raw_dir": str(root),
    }


def _dimension_tables(dims: dict) -> dict[str, pa.Table]:
    users = sorted(dims["users"])
    chans = sorted(dims["channels"])
    prods = sorted(dims["products"])
    n = len(users)
    return {
        "users": pa.table({"user_id": users, "gender": ["U"] * n, "age_bucket": ["unknown"] * n,
                           "city_tier": ["unknown"] * n, "register_days": [0] * n}, schema=DIMENSIONS["users"]),
        "channels": pa.table({"channel_id": chans, "anchor_id": chans, "top_category": ["unknown"] * len(chans)},
                             schema=DIMENSIONS["channels"]),
        "products": pa.table({"product_id": prods, "category_id": [str(dims["products"][p]) for p in prods],
                              "brand_id": ["unknown"] * len(prods), "price_bucket": [0] * len(prods)},
                             schema=DIMENSIONS["products"]),
    }  # fmt: skip

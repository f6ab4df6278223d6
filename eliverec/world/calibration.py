"""Calibration statistics (the paper's Table I) measured from written raw logs.

What a feature stage would see: for every impression on the measured days, the user's last
``seq_len`` product clicks and last ``seq_len`` watched channels (a leave with
``stay_ms >= min_stay_ms``, known at the leave time) strictly before the impression, using
all history on disk. Reads only the needed columns with pyarrow's JSON reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from eliverec.layout import event_logs, partition

_COLUMNS = pa.schema([("event", pa.string()), ("ts", pa.int64()), ("user_id", pa.string()),
                      ("request_id", pa.string()), ("channel_id", pa.string()), ("stay_ms", pa.int64())])


def read_events(raw_dir: str | Path, dates: list[str]) -> pa.Table:
    """The columns event, ts, user_id, request_id, channel_id, stay_ms of the given days (other events dropped)."""
    parts = []
    opts = pj.ParseOptions(explicit_schema=_COLUMNS, unexpected_field_behavior="ignore")
    for date in dates:
        for path in event_logs(partition(Path(raw_dir), date)):
            comp = "gzip" if path.suffix == ".gz" else None
            with pa.input_stream(str(path), compression=comp) as f:
                t = pj.read_json(f, parse_options=opts, read_options=pj.ReadOptions(block_size=1 << 24))
            parts.append(t.filter(pc.is_in(t["event"], pa.array(["product_click", "impression", "leave"]))))
    if not parts:
        raise FileNotFoundError(f"no events-*.jsonl[.gz] under {raw_dir} for {dates}")
    return pa.concat_tables(parts)


def calibration_stats(raw_dir: str | Path, history: list[str], measured: list[str], min_stay_ms: int,
                      seq_len: int = 50, max_impressions: int = 300_000, seed: int = 0) -> dict[str, Any]:
    """Table I statistics over impressions of ``measured`` days, with sequences built from ``history``.

    Returns impressions/feed, watches/feed, mean product and channel sequence lengths, the share of
    channel-sequence entries that repeat an earlier entry of the same sequence, the share of impressions
    that go to the top 10 % of channels, and per-user impression counts for the low-activity check.
    """
    t = read_events(raw_dir, sorted(set(history) | set(measured))).to_pandas()
    t["user"] = t["user_id"].astype("category").cat.codes.astype(np.int64)
    t0 = int(t["ts"].min())
    t["k"] = t["user"] * (1 << 42) + (t["ts"] - t0)
    mday = t["ts"].between(*_day_bounds(measured))
    imp = t[(t.event == "impression") & mday]
    n_imp = len(imp)
    lv = t[(t.event == "leave") & mday]
    watches = int((lv["stay_ms"] >= min_stay_ms).sum())
    feeds = imp["request_id"].nunique()
    if len(imp) > max_impressions:
        imp = imp.sample(max_impressions, random_state=seed)
    clicks = np.sort(t.loc[t.event == "product_click", "k"].to_numpy())
    w = t[(t.event == "leave") & (t["stay_ms"] >= min_stay_ms)].sort_values("k")
    wk, wc = w["k"].to_numpy(), w["channel_id"].astype("category").cat.codes.to_numpy()
    ik, iu = imp["k"].to_numpy(), imp["user"].to_numpy()
    ustart = iu * (1 << 42)
    p_len = np.minimum(np.searchsorted(clicks, ik) - np.searchsorted(clicks, ustart), seq_len)
    end = np.searchsorted(wk, ik)
    c_len = np.minimum(end - np.searchsorted(wk, ustart), seq_len)
    repeats = _repeats(wc, wk >> 42, end - c_len, end, seq_len)
    share = imp["channel_id"].value_counts().to_numpy()
    top = share[: max(1, int(np.ceil(0.1 * share.size)))].sum() / max(share.sum(), 1)
    per_user = imp.groupby("user").size()
    return {
        "impressions": int(n_imp),
        "feeds": int(feeds),
        "impressions_per_feed": float(n_imp / max(feeds, 1)),
        "watches_per_feed": float(watches / max(feeds, 1)),
        "product_seq_mean": float(p_len.mean()),
        "channel_seq_mean": float(c_len.mean()),
        "channel_seq_repeat_share": float(repeats / max(c_len.sum(), 1)),
        "top10pct_channel_impression_share": float(top),
        "impressions_per_user_p10": float(np.percentile(per_user, 10)),
        "impressions_per_user_p90": float(np.percentile(per_user, 90)),
        "sampled_impressions": int(len(imp)),
    }


def _day_bounds(dates: list[str]) -> tuple[int, int]:
    from eliverec.world.world import DAY_MS, date_ms

    starts = [date_ms(d) for d in dates]
    return min(starts), max(starts) + DAY_MS - 1


def _repeats(chan: np.ndarray, user: np.ndarray, start: np.ndarray, end: np.ndarray, seq_len: int) -> int:
    """Entries in windows [start, end) whose channel occurs earlier in the same window (windows of one user)."""
    prev = np.full(chan.size, -1, np.int64)
    if chan.size:
        order = np.lexsort((np.arange(chan.size), chan, user))
        same = (chan[order][1:] == chan[order][:-1]) & (user[order][1:] == user[order][:-1])
        prev[order[1:][same]] = order[:-1][same]
    total = 0
    for lo in range(0, start.size, 50_000):  # (B, seq_len) windows, bounded memory
        s, e = start[lo : lo + 50_000], end[lo : lo + 50_000]
        j = s[:, None] + np.arange(seq_len)[None, :]
        valid = j < e[:, None]
        p = prev[np.minimum(j, max(chan.size - 1, 0))] if chan.size else np.zeros_like(j)
        total += int((valid & (p >= s[:, None])).sum())
    return total

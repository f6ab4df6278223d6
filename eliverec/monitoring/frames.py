"""The data frames monitoring feeds to Evidently, built from samples and bronze tables.

- :func:`drift_frame`: model inputs (+ labels, + served score) of sampled impressions of some days,
  read from ``features/<date>/samples.parquet`` and the sequence tensors; :func:`day_frames` one
  such frame per day and :func:`pooled` their union sampled as one (the drift reference).
- :func:`channel_frame`: one row per catalogue channel: impressions on day D (overall and per
  A/B variant), days since its last exposure before D, its popularity tier.
- :func:`impression_frame`: one row per impression of day D with its labels (joined from the
  bronze visit events of D), its variant and its user's activity segment.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eliverec.config import CATEGORICAL, NUMERICAL, PREDICTION, TARGETS_BINARY, TARGETS_NUMERICAL
from eliverec.errors import DataError
from eliverec.features.bronze import read_dimension, read_event
from eliverec.layout import DataLayout, as_date, previous_days

#: Latest behaviours whose categories are checked against the older part of a sequence (novelty).
NOVELTY_RECENT = 10
_SAMPLE_COLUMNS = [c for c in (*NUMERICAL, *CATEGORICAL, *TARGETS_BINARY, *TARGETS_NUMERICAL)
                   if c not in ("product_novelty", "channel_novelty", "product_target_share", "channel_target_share",
                                "last_product_category", "last_channel_category")]


def days_before(date: str, n: int) -> list[str]:
    """The ``n`` dates before ``date``, oldest first.

    >>> days_before("2026-09-03", 2)
    ['2026-09-01', '2026-09-02']
    """
    return previous_days(date, n)


def samples_path(data_dir: Path, date: str) -> Path:
    """``<data_dir>/features/<date>/samples.parquet``."""
    return DataLayout(Path(data_dir)).samples(date)


# ----------------------------------------------------------------------------- drift
def sequence_summaries(seq: np.ndarray, target: np.ndarray, cat_field: int) -> dict[str, np.ndarray]:
    """Per-row summaries of a left-padded behaviour sequence ``(n, L, F)`` (field 0 = id, 0 = padding).

    ``novelty``: share of the ``NOVELTY_RECENT`` latest behaviours whose category does not occur among
    the older ones (NaN when the sequence is not longer than that; an intent shift raises it);
    ``target_share``: share of the sequence in the target channel's top category ``target`` (n,);
    ``last``: category of the latest behaviour (0 when the sequence is empty).

    >>> s = np.array([[[0, 0], [1, 5], [2, 5], [3, 7]]])  # one row, L=4: pad, then categories 5, 5, 7
    >>> out = sequence_summaries(s, np.array([5]), 1)
    >>> float(out["target_share"][0]), int(out["last"][0])
    (0.6666666666666666, 7)
    """
    valid = seq[:, :, 0] > 0  # (n, L)
    cat = seq[:, :, cat_field]
    n_valid = valid.sum(1)
    k = NOVELTY_RECENT
    recent, old = cat[:, -k:], cat[:, :-k]
    seen = ((recent[:, :, None] == old[:, None, :]) & valid[:, None, :-k]).any(2)  # (n, k)
    rv = valid[:, -k:]
    novelty = ((~seen) & rv).sum(1) / np.maximum(rv.sum(1), 1)
    return {
        "novelty": np.where(n_valid > k, novelty, np.nan),
        "target_share": ((cat == target[:, None]) & valid).sum(1) / np.maximum(n_valid, 1),
        "last": np.where(n_valid > 0, cat[:, -1], 0),
    }


def _day_drift_rows(data_dir: Path, date: str, rows: np.ndarray) -> pd.DataFrame:
    """Drift columns of the given sample rows of one day (rows sorted ascending)."""
    lay = DataLayout(Path(data_dir))
    path, tensors = lay.samples(date), lay.tensors(date)
    table = pq.read_table(path, columns=[*_SAMPLE_COLUMNS, "request_id", "channel_id"]).take(pa.array(rows))
    df = table.to_pandas()
    try:
        ps = np.load(lay.tensor(date, "product_seq"), mmap_mode="r")
        cs = np.load(lay.tensor(date, "channel_seq"), mmap_mode="r")
        ch = np.load(lay.tensor(date, "channel"), mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{tensors}: sequence tensors missing or unreadable ({exc}); "
                        f"rebuild with `eliverec features --end-date {date}`") from exc
    target = np.asarray(ch[rows, 2])
    for name, seq, field in (("product", ps, 1), ("channel", cs, 2)):
        s = sequence_summaries(np.asarray(seq[rows]), target, field)
        df[f"{name}_novelty"] = s["novelty"]
        df[f"{name}_target_share"] = s["target_share"]
        df[f"last_{name}_category"] = s["last"]
    return df


def drift_frame(data_dir: Path, dates: list[str], sample_rows: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Model inputs and labels of up to ``sample_rows`` impressions drawn uniformly from ``dates``.

    Returns the frame (categorical columns as strings) and a description: rows available, rows
    sampled, days used. Raises :class:`DataError` naming the missing samples file and the fix.
    """
    counts = {}
    for d in dates:
        path = samples_path(data_dir, d)
        if not path.is_file():
            raise DataError(f"{path}: missing; build the features first (`eliverec features --end-date {d}`)")
        counts[d] = pq.ParquetFile(path).metadata.num_rows
    total = sum(counts.values())
    take = min(int(sample_rows), total)
    rng = np.random.default_rng([int(seed), *(int(x) for x in dates[-1].split("-")), len(dates)])
    chosen = np.sort(rng.choice(total, size=take, replace=False)) if take < total else np.arange(total)
    parts, start = [], 0
    for d, n in counts.items():
        rows = chosen[(chosen >= start) & (chosen < start + n)] - start
        if rows.size:
            parts.append(_day_drift_rows(data_dir, d, rows))
        start += n
    if not parts:
        raise DataError(f"no samples in {', '.join(str(samples_path(data_dir, d)) for d in dates)}")
    df = pd.concat(parts, ignore_index=True)
    for c in CATEGORICAL:
        df[c] = df[c].astype(str)
    info = {"days": list(dates), "rows_available": int(total), "rows_sampled": int(take),
            "sampled": bool(take < total)}
    return df, info


def day_frames(data_dir: Path, dates: list[str], sample_rows: int, seed: int
               ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Per day: the drift columns of up to ``sample_rows`` of its impressions (seeded per day), and its row count.

    Raises :class:`DataError` naming the missing samples file and the fix.
    """
    frames, counts = {}, {}
    for d in dates:
        path = samples_path(data_dir, d)
        stamp = path.stat().st_mtime_ns if path.is_file() else -1
        frame, counts[d] = _day_frame(str(data_dir), d, int(sample_rows), int(seed), stamp)
        frames[d] = frame.copy()
    return frames, counts


@functools.lru_cache(maxsize=12)
def _day_frame(data_dir: str, date: str, sample_rows: int, seed: int, stamp: int) -> tuple[pd.DataFrame, int]:
    """One day's drift sample, cached: a backfill reads each day once although it is the reference of the
    next days (``stamp``, the samples file's mtime, keys out a rebuilt day)."""
    frame, info = drift_frame(Path(data_dir), [date], sample_rows, seed)
    return frame, info["rows_available"]


def pooled(frames: dict[str, pd.DataFrame], counts: dict[str, int], take: int, seed: int) -> pd.DataFrame:
    """``take`` rows of the union of the days, as if drawn uniformly from all their impressions.

    Rows per day follow a multivariate hypergeometric draw on the days' row counts, so each
    day's share matches its share of impressions; ``frames`` must hold at least that many rows
    per day (:func:`day_frames` with ``sample_rows >= take``).
    """
    rng = np.random.default_rng([int(seed), len(frames), 7])
    take = min(int(take), sum(counts.values()))
    alloc = rng.multivariate_hypergeometric([counts[d] for d in frames], take)
    parts = [f.iloc[np.sort(rng.choice(len(f), size=int(n), replace=False))] for f, n in
             zip(frames.values(), alloc, strict=True) if n]
    return pd.concat(parts, ignore_index=True)


def attach_scores(df: pd.DataFrame, data_dir: Path, dates: list[str]) -> pd.DataFrame:
    """Add the served ``score`` of each sampled impression (NaN where the service did not score it)."""
    parts = []
    for d in dates:
        t = read_event(Path(data_dir), as_date(d), "impression", ["request_id", "channel_id", PREDICTION])
        parts.append(t.filter(pc.is_valid(t[PREDICTION])).to_pandas())
    scores = pd.concat(parts, ignore_index=True).drop_duplicates(["request_id", "channel_id"])
    return df.merge(scores, on=["request_id", "channel_id"], how="left")


# ----------------------------------------------------------------------------- bronze history
def existing_days(data_dir: Path, dates: list[str]) -> list[str]:
    """The dates among ``dates`` that have a bronze folder."""
    return [d for d in dates if DataLayout(Path(data_dir)).bronze(d).is_dir()]


def _counts(data_dir: Path, date: str, event: str, column: str) -> pd.Series:
    """Rows per value of ``column`` in one bronze event table of one day."""
    t = read_event(Path(data_dir), as_date(date), event, [column])
    vc = pc.value_counts(t[column].combine_chunks()) if t.num_rows else pa.array([], pa.struct(
        [("values", pa.string()), ("counts", pa.int64())]))
    return pd.Series(vc.field("counts").to_numpy(zero_copy_only=False),
                     index=vc.field("values").to_numpy(zero_copy_only=False), dtype=np.int64)


def trailing_counts(data_dir: Path, dates: list[str], event: str, column: str) -> pd.Series:
    """Rows per value of ``column`` summed over ``dates`` (days without bronze are skipped)."""
    series = [_counts(data_dir, d, event, column) for d in existing_days(data_dir, dates)]
    if not series:
        return pd.Series(dtype=np.int64)
    return pd.concat(series).groupby(level=0).sum()


# ----------------------------------------------------------------------------- discoverability
def channel_frame(data_dir: Path, date: str, max_window: int, popularity_days: int
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per channel of day D's catalogue (plus any channel impressed on D).

    Columns: ``channel_id``, ``impressions`` (on D), ``impressions:<variant>`` per A/B variant,
    ``days_since_exposure`` (1 = exposed the day before D; NaN = no exposure in the available
    history), ``trailing`` (impressions over the ``popularity_days`` before D) and ``tier``
    (``unpopular`` = the bottom half by ``trailing``, ties broken by channel id).
    """
    day = as_date(date)
    catalogue = read_dimension(Path(data_dir), day, "channels")["channel_id"].to_pylist()
    imp = read_event(Path(data_dir), day, "impression", ["channel_id", "variant"]).to_pandas()
    ids = pd.Index(sorted(set(catalogue) | set(imp["channel_id"])), name="channel_id")
    frame = pd.DataFrame(index=ids)
    frame["impressions"] = imp["channel_id"].value_counts().reindex(ids, fill_value=0).astype(np.int64)
    variants = sorted(v for v in imp["variant"].dropna().unique())
    for v in variants:
        sel = imp.loc[imp["variant"] == v, "channel_id"]
        frame[f"impressions:{v}"] = sel.value_counts().reindex(ids, fill_value=0).astype(np.int64)
    history = days_before(date, max_window)
    have = existing_days(data_dir, history)
    since = pd.Series(np.nan, index=ids)
    for d in have:  # oldest first: later days overwrite
        seen = _counts(data_dir, d, "impression", "channel_id")
        lag = (day - as_date(d)).days
        since[since.index.isin(seen.index[seen.to_numpy() > 0])] = lag
    frame["days_since_exposure"] = since
    trailing = trailing_counts(data_dir, days_before(date, popularity_days), "impression", "channel_id")
    frame["trailing"] = trailing.reindex(ids, fill_value=0).astype(np.int64)
    order = frame.reset_index().sort_values(["trailing", "channel_id"]).index.to_numpy()
    tier = np.full(len(frame), "popular", dtype=object)
    tier[order[: len(frame) // 2 + len(frame) % 2]] = "unpopular"
    frame["tier"] = tier
    info = {"channels": len(frame), "variants": variants, "history_days": len(have),
            "history_first": have[0] if have else None, "popularity_days_available":
            len(existing_days(data_dir, days_before(date, popularity_days)))}
    return frame.reset_index(), info


# ----------------------------------------------------------------------------- user segments
def impression_frame(data_dir: Path, date: str, min_stay_ms: int, activity_days: int, low_share: float
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Impressions of day D with labels, variant (``none`` when unassigned) and user segment.

    Activity of a user = impressions + product clicks over the ``activity_days`` before D; the
    users with an impression on D are ranked by it (ties by user id) and the bottom ``low_share``
    of them are ``low``, the rest ``high``. Labels come from D's bronze visit events only
    (a visit crossing midnight is cut: the next day is not there yet when D is monitored).
    """
    from eliverec.features.pointintime import visit_labels

    day = as_date(date)
    imp = read_event(Path(data_dir), day, "impression", ["user_id", "request_id", "channel_id", "variant"])
    visits = {e: read_event(Path(data_dir), day, e, cols) for e, cols in (
        ("enter", ["user_id", "request_id", "channel_id"]),
        ("leave", ["user_id", "request_id", "channel_id", "stay_ms"]),
        ("goods_bag_click", ["user_id", "request_id", "channel_id"]),
        ("channel_product_click", ["user_id", "request_id", "channel_id"]))}
    labels = visit_labels(imp["user_id"].combine_chunks(), imp["request_id"].combine_chunks(),
                          imp["channel_id"].combine_chunks(), visits, int(min_stay_ms))
    df = pd.DataFrame({"user_id": imp["user_id"].to_numpy(zero_copy_only=False),
                       "variant": pc.fill_null(imp["variant"], "none").to_numpy(zero_copy_only=False), **labels})
    window = days_before(date, activity_days)
    activity = trailing_counts(data_dir, window, "impression", "user_id").add(
        trailing_counts(data_dir, window, "product_click", "user_id"), fill_value=0)
    users = pd.DataFrame({"user_id": np.sort(df["user_id"].unique())})
    users["activity"] = activity.reindex(users["user_id"], fill_value=0).to_numpy()
    users = users.sort_values(["activity", "user_id"], kind="stable").reset_index(drop=True)
    n_low = int(np.floor(len(users) * float(low_share)))
    users["segment"] = np.where(np.arange(len(users)) < n_low, "low", "high")
    df = df.merge(users[["user_id", "segment"]], on="user_id", how="left")
    cut = int(users["activity"].iloc[n_low - 1]) if n_low else None
    info = {"users": len(users), "low_users": n_low, "low_activity_max": cut,
            "activity_days_available": len(existing_days(data_dir, window)), "activity_days": activity_days,
            "definition": f"activity = impressions + product clicks over the {activity_days} days before {date}; "
                          f"low = bottom {low_share:.0%} of the {len(users)} users with a feed on {date}"}
    return df, info

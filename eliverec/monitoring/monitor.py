"""``monitor_day``: the daily monitoring stage (drift, discoverability, user segments) with Evidently.

Three Evidently reports per day, each a snapshot in its workspace project and an HTML file:

- ``drift``: model inputs of sampled impressions of day D against the training window (the
  ``reference_days`` before D, sampled to ``monitor.sample_rows`` rows; day D sampled the same
  way), one ``ValueDrift`` test per column (normed Wasserstein for numbers, Jensen-Shannon for
  categories) at the column's threshold learned from the reference days (an empirical null with
  Bonferroni control over the columns, :mod:`eliverec.monitoring.thresholds`; reported, not
  tested, when the window is too short for ``monitor.min_null_draws`` draws; hand-set
  ``monitor.column_thresholds`` / ``monitor.drift_threshold`` override it), target drift of the labels
  and prediction drift of the served score when the ranking service logged one (``RateShift``:
  relative change of the mean, at most ``monitor.max_rate_change``);
- ``discoverability``: 7/14/30-day exposure discoverability, coverage, Gini and unpopular share,
  overall, by popularity tier and per A/B variant (gates: ``min_coverage``, ``max_gini``);
- ``ab``: CTR, stay time, goods-bag and product CTR and conversion of low- and high-activity users,
  overall and per variant (reported, not gated).

Outputs: ``<data_dir>/reports/monitoring/<date>/{drift,discoverability,ab}.html``, ``summary.json``
and ``summary.md``, plus the workspace snapshots. A failed test (an alarm) raises
:class:`~eliverec.errors.ValidationFailed` naming every failed test, after everything is written,
unless the caller asks for the verdict in the summary instead (the monitor flow does: an alarm
is a verdict, not a crash).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eliverec.config import CATEGORICAL, NUMERICAL, PREDICTION, TARGETS_BINARY, TARGETS_NUMERICAL, Settings
from eliverec.errors import DataError, ValidationFailed
from eliverec.layout import as_date, date_folders
from eliverec.monitoring import frames

log = logging.getLogger(__name__)


def monitor_day(settings: Settings, date: str, workspace: bool = True, raise_on_alarm: bool = True
                ) -> dict[str, Any]:
    """Monitor day ``date``; write reports (and workspace snapshots); return the summary.

    Needs ``bronze/<date>`` and ``features/<date>/samples.parquet`` plus samples of at least one
    reference day. Raises :class:`DataError` when inputs are missing and, with ``raise_on_alarm``,
    :class:`ValidationFailed` (after writing everything) when a test fails; without it the alarm
    is in the summary (``passed`` false, ``failures``, ``alarms``: one row per drifted column).
    """
    from rich.progress import Progress

    as_date(date)
    if not settings.layout.bronze(date).is_dir():
        raise DataError(f"{settings.layout.bronze(date)}: missing; run `eliverec ingest --date {date}` first")
    started = time.perf_counter()
    out = settings.layout.reports("monitoring", date)
    out.mkdir(parents=True, exist_ok=True)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"monitor {date}", total=4)
        drift_snap, drift = drift_report(settings, date)
        progress.advance(task)
        disc_snap, disc = discoverability_report(settings, date)
        progress.advance(task)
        ab_snap, ab = segments_report(settings, date)
        progress.advance(task)
        snaps = {"drift": drift_snap, "discoverability": disc_snap, "ab": ab_snap}
        paths = {}
        for key, snap in snaps.items():
            paths[key] = str(out / f"{key}.html")
            snap.save_html(paths[key])
        ids = publish(settings, date, snaps, disc["variants"]) if workspace else {}
        progress.advance(task)
    failures = [f"{key}: {t}" for key, snap in snaps.items() for t in failed_tests(snap)]
    summary = {"date": date, "passed": not failures, "failures": failures, "alarms": alarm_rows(date, drift),
               "drift": drift,
               "discoverability": disc, "ab": ab, "reports": paths, "snapshots": ids,
               "seconds": round(time.perf_counter() - started, 3)}
    if workspace:
        from eliverec.monitoring.workspace import resolve

        summary["workspace"] = str(resolve(settings, settings.monitor.workspace))
    files = settings.layout.report_files("monitoring", "summary", date)
    summary["reports"]["json"], summary["reports"]["markdown"] = str(files["json"]), str(files["markdown"])
    files["json"].write_text(json.dumps(_clean(summary), indent=2))
    files["markdown"].write_text(markdown(summary))
    if failures and raise_on_alarm:
        raise ValidationFailed(f"monitoring {date} failed {len(failures)} test(s) (reports in {out}):\n  - "
                               + "\n  - ".join(failures))
    return summary


# ----------------------------------------------------------------------------- drift
def reference_dates(settings: Settings, date: str) -> tuple[list[str], int]:
    """Reference days (the training window before D that has samples) and the days asked for."""
    n = settings.monitor.reference_days or settings.features.train_days
    wanted = frames.days_before(date, n)
    return [d for d in wanted if frames.samples_path(settings.data_dir, d).is_file()], n


def monitorable_days(settings: Settings, date: str) -> list[str]:
    """Days up to ``date`` (oldest first) with samples and at least one reference day with samples (a backfill)."""
    root = settings.layout.features()
    dated = [d for d in date_folders(root) if settings.layout.samples(d).is_file()]
    days = [d for d in dated if d <= date and reference_dates(settings, d)[0]]
    if not days:
        raise DataError(f"{root}: no day up to {date} has samples and reference samples before it; "
                        f"build a window ending at {date} (`eliverec features --end-date {date}`)")
    return days


def drift_report(settings: Settings, date: str) -> tuple[Any, dict[str, Any]]:
    """The drift snapshot of day D and its summary (per column: distance, learned threshold, its null, drifted)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.tests import gte, lte

    from eliverec.monitoring.metrics import RateShift
    from eliverec.monitoring.workspace import snapshot_time

    m = settings.monitor
    p = drift_plan(settings, date)
    cur, ref, ref_days, info, columns, methods, learned = (p["cur"], p["ref"], p["ref_days"], p["info"],
                                                           p["columns"], p["methods"], p["learned"])
    numerical, categorical, has_score = p["numerical"], p["categorical"], p["has_score"]
    thresholds = {c: learned[c]["threshold"] for c in columns}
    tested = [c for c in columns if thresholds[c] is not None]
    items: list[Any] = [ValueDrift(column=c, method=methods[c], threshold=thresholds[c]) for c in tested]
    items += [ValueDrift(column=c, method=methods[c], tests=[]) for c in columns if c not in tested]  # reported
    if tested:
        items.append(DriftedColumnsCount(columns=tested, per_column_method={c: methods[c] for c in tested},
                                         per_column_threshold={c: thresholds[c] for c in tested}, share_tests=[],
                                         count_tests=[]))
    rate_cols = [*TARGETS_BINARY, *TARGETS_NUMERICAL, *([PREDICTION] if has_score else [])]
    for c in TARGETS_BINARY:  # rates need numbers: keep a numeric copy beside the categorical column
        cur[f"{c}_rate"], ref[f"{c}_rate"] = cur[c].astype(float), ref[c].astype(float)
    rate_source = {c: f"{c}_rate" if c in TARGETS_BINARY else c for c in rate_cols}
    items += [RateShift(column=rate_source[c], tests=[gte(-m.max_rate_change), lte(m.max_rate_change)])
              for c in rate_cols]
    defn = DataDefinition(numerical_columns=[c for c in numerical if c in columns] + [f"{c}_rate" for c in
                                                                                      TARGETS_BINARY],
                          categorical_columns=[c for c in categorical if c in columns])
    keep = [*columns, *(f"{c}_rate" for c in TARGETS_BINARY)]
    snap = Report(items, include_tests=True).run(
        Dataset.from_pandas(cur[keep], data_definition=defn), Dataset.from_pandas(ref[keep], data_definition=defn),
        timestamp=snapshot_time(date), metadata={"date": date, "kind": "drift"}, tags=["drift"],
        name=f"drift {date}")
    values = _values(snap)
    per_column = {c: {"method": methods[c], "distance": values.get(("ValueDrift", c)), **learned[c],
                      "drifted": _is_drift(values.get(("ValueDrift", c)), thresholds[c])} for c in columns}
    rates = {c: {"current": float(np.nanmean(cur[rate_source[c]].astype(float))),
                 "reference": float(np.nanmean(ref[rate_source[c]].astype(float))),
                 "relative_change": values.get(("RateShift", rate_source[c]))} for c in rate_cols}
    n_ref, asked = info["rows_available"], info["days_asked"]
    summary = {
        "reference": {"days": ref_days, "rows_available": n_ref, "rows_sampled": len(ref),
                      "sampled": len(ref) < n_ref, "days_asked": asked,
                      "note": f"reference = {len(ref_days)} of the {asked} days before {date} with samples, "
                              + (f"sampled to {len(ref)} of {n_ref} rows" if len(ref) < n_ref
                                 else f"all {n_ref} rows")},
        "current": {"days": [date], "rows_available": info["current_rows"], "rows_sampled": len(cur),
                    "sampled": len(cur) < info["current_rows"],
                    "note": f"day {date}: {len(cur)} of {info['current_rows']} impressions"
                            + (" (sampled)" if len(cur) < info["current_rows"] else "")},
        "thresholds": control_note(settings, columns, len(ref_days)),
        "columns": per_column, "drifted": sorted(c for c, v in per_column.items() if v["drifted"]),
        "rates": rates, "prediction": "score drift included" if has_score else "no served scores on D or reference",
    }
    return snap, summary


def drift_plan(settings: Settings, date: str) -> dict[str, Any]:
    """Everything the drift test of day D needs before Evidently runs: samples, columns, methods, thresholds."""
    m = settings.monitor
    cur, ref_days, ref_frames, info = _drift_inputs(settings, date)
    ref = frames.pooled(ref_frames, info["counts"], m.sample_rows, settings.seed)
    has_score = bool(cur[PREDICTION].notna().any() and ref[PREDICTION].notna().any())
    numerical = [*NUMERICAL, *TARGETS_NUMERICAL, *([PREDICTION] if has_score else [])]
    categorical = [*CATEGORICAL, *TARGETS_BINARY]
    columns = [c for c in [*numerical, *categorical] if cur[c].notna().any() and ref[c].notna().any()]
    methods = {c: m.num_method if c in numerical else m.cat_method for c in columns}
    learned = learned_thresholds(settings, ref_frames, methods, len(cur))
    return {"cur": cur, "ref": ref, "ref_days": ref_days, "info": info, "columns": columns, "methods": methods,
            "numerical": numerical, "categorical": categorical, "has_score": has_score, "learned": learned}


def drift_check(settings: Settings, date: str) -> dict[str, Any]:
    """Day D's drift verdict without Evidently's report (same distances, computed with scipy): for backtests.

    Returns ``columns`` (per column: distance, threshold, source, null, drifted), ``drifted`` and
    ``rates`` (relative change of each label's mean, ``rate_alarms`` beyond ``monitor.max_rate_change``).
    """
    from eliverec.monitoring.thresholds import distances

    p = drift_plan(settings, date)
    dist = distances(p["cur"], p["ref"], p["methods"])
    columns = {c: {"distance": dist[c], **p["learned"][c], "drifted": _is_drift(dist[c], p["learned"][c]["threshold"])}
               for c in p["columns"]}
    rates = {}
    for c in (*TARGETS_BINARY, *TARGETS_NUMERICAL):
        cur, ref = (float(np.nanmean(f[c].astype(float))) for f in (p["cur"], p["ref"]))
        rates[c] = cur / ref - 1.0 if ref else float("nan")
    limit = settings.monitor.max_rate_change
    return {"date": date, "columns": columns, "drifted": sorted(c for c, v in columns.items() if v["drifted"]),
            "rates": rates, "rate_alarms": sorted(c for c, r in rates.items() if abs(r) > limit),
            "reference_days": p["ref_days"]}


def _drift_inputs(settings: Settings, date: str) -> tuple[pd.DataFrame, list[str], dict[str, pd.DataFrame],
                                                           dict[str, Any]]:
    """Day D's sample, the reference days, their per-day samples (with served scores) and row counts."""
    m, data_dir = settings.monitor, Path(settings.data_dir)
    ref_days, asked = reference_dates(settings, date)
    if not ref_days:
        raise DataError(f"no reference samples in the {asked} days before {date} under {settings.layout.features()}; "
                        f"build a window ending at {date} (`eliverec features --end-date {date}`)")
    cur_frames, cur_counts = frames.day_frames(data_dir, [date], m.sample_rows, settings.seed)
    ref_frames, ref_counts = frames.day_frames(data_dir, ref_days, m.sample_rows, settings.seed)
    ref_frames = {d: _labels_as_categories(frames.attach_scores(f, data_dir, [d])) for d, f in ref_frames.items()}
    cur = _labels_as_categories(frames.attach_scores(cur_frames[date], data_dir, [date]))
    info = {"counts": ref_counts, "rows_available": sum(ref_counts.values()), "days_asked": asked,
            "current_rows": cur_counts[date]}
    return cur, ref_days, ref_frames, info


def _labels_as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    for c in TARGETS_BINARY:
        frame[c] = frame[c].astype(str)
    return frame


def learned_thresholds(settings: Settings, ref_frames: dict[str, pd.DataFrame], methods: dict[str, str],
                       rows: int) -> dict[str, dict[str, Any]]:
    """Per column: the threshold (learned from the reference days' null, or a hand-set override) and its null."""
    from eliverec.monitoring import thresholds

    m = settings.monitor
    draws = thresholds.null_draws(ref_frames, methods, settings.seed, rows)
    return thresholds.learn(draws, m.false_alarm_rate, m.threshold_floor, m.column_thresholds, m.drift_threshold,
                            m.min_null_draws)


def control_note(settings: Settings, columns: list[str], n_days: int) -> str:
    """How the day's thresholds were set and the multiple-comparison control, in one sentence."""
    from eliverec.monitoring.thresholds import control_note as note
    from eliverec.monitoring.thresholds import n_draws

    m = settings.monitor
    text = note(m.false_alarm_rate, len(columns), n_draws(n_days), m.min_null_draws)
    overrides = sorted(m.column_thresholds) + (["all columns"] if m.drift_threshold is not None else [])
    return text + (f"; hand-set overrides: {', '.join(overrides)}" if overrides else "")


def alarm_rows(date: str, drift: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per drifted column of a day: distance, threshold, where the threshold came from, its null."""
    rows = []
    for c in drift["drifted"]:
        v = drift["columns"][c]
        rows.append({"date": date, "column": c, "method": v["method"], "distance": v["distance"],
                     "threshold": v["threshold"], "source": v["source"], "null_median": v["null"]["median"],
                     "null_max": v["null"]["max"], "null_draws": v["null"]["draws"]})
    return rows


def _is_drift(distance: float | None, threshold: float | None) -> bool | None:
    """Distance-type tests (wasserstein, jensenshannon, psi...) drift at or above the threshold (None: untested)."""
    if distance is None or threshold is None or math.isnan(distance):
        return None
    return bool(distance >= threshold)


# ----------------------------------------------------------------------------- discoverability
def discoverability_report(settings: Settings, date: str) -> tuple[Any, dict[str, Any]]:
    """The discoverability snapshot of day D and its summary."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.tests import gte, lte

    from eliverec.monitoring.metrics import (
        ALL,
        Discoverability,
        ExposureCoverage,
        ExposureGini,
        UnpopularShare,
        discoverability,
        impressions_of,
        select,
    )
    from eliverec.monitoring.workspace import snapshot_time

    m = settings.monitor
    frame, info = frames.channel_frame(Path(settings.data_dir), date, max(m.windows), m.popularity_days)
    variants = [ALL, *info["variants"]]
    items: list[Any] = []
    table: dict[str, Any] = {}
    for variant in variants:
        for tier in (ALL, "unpopular", "popular"):
            f = select(frame, tier=tier)
            row: dict[str, Any] = {}
            for w in m.windows:
                value, n = discoverability(f["days_since_exposure"].to_numpy(), impressions_of(f, variant), w)
                row[f"discoverability_{w}d"], row[f"dormant_{w}d"] = (None if n == 0 else value), n
                if n:
                    items.append(Discoverability(window=w, tier=tier, variant=variant))
            tests = {}
            if tier == ALL and variant == ALL:
                tests = {"coverage": [gte(m.min_coverage)] if m.min_coverage is not None else None,
                         "gini": [lte(m.max_gini)] if m.max_gini is not None else None}
            items += [ExposureCoverage(tier=tier, variant=variant, tests=tests.get("coverage")),
                      ExposureGini(tier=tier, variant=variant, tests=tests.get("gini"))]
            table[f"{variant}/{tier}"] = row
        items.append(UnpopularShare(variant=variant))
    numeric = [c for c in frame.columns if c.startswith("impressions")] + ["days_since_exposure", "trailing"]
    defn = DataDefinition(numerical_columns=numeric, categorical_columns=["tier"])
    snap = Report(items, include_tests=True).run(
        Dataset.from_pandas(frame[[*numeric, "tier"]], data_definition=defn), None, timestamp=snapshot_time(date),
        metadata={"date": date, "kind": "discoverability"}, tags=["discoverability"], name=f"discoverability {date}")
    values = _values(snap)
    for key, row in table.items():
        variant, tier = key.split("/")
        row["coverage"] = values.get(("ExposureCoverage", tier, variant))
        row["gini"] = values.get(("ExposureGini", tier, variant))
        if tier == ALL:
            row["unpopular_share"] = values.get(("UnpopularShare", variant))
    history = info["history_days"]
    notes = [f"{w}-day discoverability uses {min(history, w)} of {w} days of history" for w in m.windows
             if history < w]
    summary = {**info, "by": table, "notes": notes,
               "definition": "discoverability(N) = channels without impressions in the N days before D that get one "
                             "on D / channels without impressions in those N days; unpopular = bottom half of the "
                             f"catalogue by impressions over the {m.popularity_days} days before D"}
    return snap, summary


# ----------------------------------------------------------------------------- segments
def segments_report(settings: Settings, date: str) -> tuple[Any, dict[str, Any]]:
    """The user-segment snapshot of day D (KPIs of low- and high-activity users, per variant)."""
    from evidently import DataDefinition, Dataset, Report

    from eliverec.monitoring.metrics import ALL, KPIS, SegmentKPI, kpi, select
    from eliverec.monitoring.workspace import snapshot_time

    m = settings.monitor
    frame, info = frames.impression_frame(Path(settings.data_dir), date, settings.features.min_stay_ms,
                                          m.activity_days, m.low_activity_share)
    variants = [ALL, *sorted(v for v in frame["variant"].unique() if v != "none")]
    items, table = [], {}
    for variant in variants:
        for segment in (ALL, "low", "high"):
            f = select(frame, segment=segment, variant=variant)
            row = {"impressions": len(f)}
            for k in KPIS:
                value = kpi(f, k)
                row[k] = None if math.isnan(value) else value
                if not math.isnan(value):
                    items.append(SegmentKPI(kpi=k, segment=segment, variant=variant))
            table[f"{variant}/{segment}"] = row
    defn = DataDefinition(numerical_columns=list(TARGETS_BINARY) + list(TARGETS_NUMERICAL),
                          categorical_columns=["segment", "variant"])
    cols = [*TARGETS_BINARY, *TARGETS_NUMERICAL, "segment", "variant"]
    snap = Report(items, include_tests=True).run(
        Dataset.from_pandas(frame[cols], data_definition=defn), None, timestamp=snapshot_time(date),
        metadata={"date": date, "kind": "ab"}, tags=["ab"], name=f"users and A/B {date}")
    summary = {**info, "variants": variants[1:], "by": table,
               "kpis": "ctr = watch rate per impression; goods_bag_ctr, product_ctr per impression; stay_seconds "
                       "and conversion (share of watched visits with a mounted-product click) per watched visit"}
    return snap, summary


# ----------------------------------------------------------------------------- helpers
def publish(settings: Settings, date: str, snaps: dict[str, Any], variants: list[str]) -> dict[str, str]:
    """Add the day's snapshots to the workspace projects (replacing that day's earlier ones)."""
    from eliverec.monitoring.workspace import add_daily_snapshot, ensure_project, load_definitions, open_workspace

    definitions = load_definitions(settings)
    ws, path = open_workspace(settings)
    ids = {}
    for key, snap in snaps.items():
        project = ensure_project(ws, key, definitions[key], variants)
        ids[key] = add_daily_snapshot(ws, path, project, snap, date)
    return ids


def _values(snap: Any) -> dict[tuple[str, ...], float]:
    """Single values of a snapshot keyed by (metric class, its parameters in a fixed order)."""
    keys = {"ValueDrift": ("column",), "RateShift": ("column",), "ExposureCoverage": ("tier", "variant"),
            "ExposureGini": ("tier", "variant"), "UnpopularShare": ("variant",),
            "Discoverability": ("window", "tier", "variant"), "SegmentKPI": ("kpi", "segment", "variant")}
    out = {}
    for metric in snap.dict()["metrics"]:
        cfg = metric["config"]
        name = cfg["type"].rsplit(":", 1)[-1]
        if name in keys and not isinstance(metric["value"], dict):
            out[(name, *(str(cfg.get(k)) for k in keys[name]))] = float(metric["value"])
    return out


def failed_tests(snap: Any) -> list[str]:
    """Readable descriptions of a snapshot's failed tests."""
    return [f"{t['name']}: {t['description']}" for t in snap.dict()["tests"] if str(t["status"]).endswith("FAIL")]


def _clean(obj: Any) -> Any:
    """JSON-safe copy (NaN -> None, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}" if isinstance(
        v, float) else str(v)


def markdown(s: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`monitor_day`'s result."""
    d, disc, ab = s["drift"], s["discoverability"], s["ab"]
    lines = [f"# Monitoring {s['date']}: {'passed' if s['passed'] else 'FAILED'}", ""]
    lines += [f"- {f}" for f in s["failures"]] + ([""] if s["failures"] else [])
    lines += ["## Drift", "", d["reference"]["note"] + "; " + d["current"]["note"] + "; " + d["prediction"] + ".",
              "", d["thresholds"] + ".", "",
              "| column | method | distance | threshold | source | null median | null max | null draws | drifted |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {c} | {v['method']} | {_fmt(v['distance'])} | {_fmt(v['threshold'])} | {v['source']} | "
              f"{_fmt(v['null']['median'])} | {_fmt(v['null']['max'])} | {v['null']['draws']} | {v['drifted']} |"
              for c, v in d["columns"].items()]
    lines += ["", "| label | current | reference | relative change |", "| --- | --- | --- | --- |"]
    lines += [f"| {c} | {_fmt(v['current'])} | {_fmt(v['reference'])} | {_fmt(v['relative_change'])} |"
              for c, v in d["rates"].items()]
    windows = sorted({int(k.split("_")[1][:-1]) for row in disc["by"].values() for k in row
                      if k.startswith("discoverability_")})
    lines += ["", "## Discoverability", "", disc["definition"] + ".", *[f"- {n}" for n in disc["notes"]], "",
              "| variant/tier | " + " | ".join(f"{w}d" for w in windows) + " | coverage | gini |",
              "| --- |" + " --- |" * (len(windows) + 2)]
    lines += [f"| {k} | " + " | ".join(_fmt(r.get(f"discoverability_{w}d")) for w in windows)
              + f" | {_fmt(r['coverage'])} | {_fmt(r['gini'])} |" for k, r in disc["by"].items()]
    lines += ["", "## Users by activity", "", ab["definition"] + "; " + ab["kpis"] + ".", "",
              "| variant/segment | impressions | ctr | stay_seconds | goods_bag_ctr | product_ctr | conversion |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {r['impressions']} | " + " | ".join(_fmt(r[x]) for x in (
        "ctr", "stay_seconds", "goods_bag_ctr", "product_ctr", "conversion")) + " |" for k, r in ab["by"].items()]
    return "\n".join(lines) + "\n"


def drift_columns_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """The per-column drift table of a summary as a frame (for notebooks and tests)."""
    return pd.DataFrame.from_dict(summary["drift"]["columns"], orient="index")

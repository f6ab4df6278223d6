"""Great Expectations suites on bronze and the ``validate`` stage (``eliverec validate --date D``).

The ``bronze`` suite checks, per event table: required fields not null, ``event_id`` unique,
``ts`` inside the day (+- ``ingest.ts_tolerance_ms``), id lengths in ``[1, ingest.max_id_len]``,
counts, positions, stays and revenue non-negative, propensities in [0, 1], allowed values
(``validation.allowed``), foreign keys (channels of impressions and in-channel events exist in
``channels``, products of clicks in ``products``), and the row count within
``validation.row_count_band`` of the mean of the trailing ``validation.trailing_days`` bronze days
(when there are any). Dimension tables: ids not null and unique, allowed values. The day: the
watch rate (enters / impressions) within ``[validation.watch_rate_min, validation.watch_rate_max]``
(when the day has impressions).

Suites are named entries of :data:`SUITES` (a function ``(settings, date) -> list[SuiteResult]``);
another stage adds its own (e.g. ``samples``) by adding an entry, and :func:`validate_day` runs
any of them by name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import date as Date
from datetime import timedelta
from pathlib import Path
from typing import Any

from eliverec.config import Settings
from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, ID_FIELDS, REQUIRED
from eliverec.data.validation import SuiteResult, data_docs_index, docs_once, run_suite, write_report
from eliverec.errors import DataError, ValidationFailed
from eliverec.layout import DAY_MS, day_start_ms

_CHANNEL_FK = ("impression", "enter", "leave", "goods_bag_click", "channel_product_click", "channel_stats")
_PRODUCT_FK = ("product_click", "channel_product_click")
_NON_NEGATIVE = ("position", "stay_ms", "viewers", "revenue_window")


def validation_dir(settings: Settings, date: str) -> Path:
    """``<data_dir>/validation/<date>``."""
    return settings.layout.validation(date)


def trailing_row_counts(settings: Settings, date: str) -> dict[str, float]:
    """Mean rows per bronze table over the trailing days that have a manifest (empty if none)."""
    day = Date.fromisoformat(date)
    seen: dict[str, list[int]] = {}
    for k in range(1, settings.validation.trailing_days + 1):
        path = settings.layout.bronze_manifest(day - timedelta(days=k))
        if path.is_file():
            for name, info in json.loads(path.read_text())["tables"].items():
                seen.setdefault(name, []).append(int(info["rows"]))
    return {name: sum(v) / len(v) for name, v in seen.items()}


def _param(name: str) -> dict[str, str]:
    """A placeholder filled per run (see :func:`day_parameters`), so a suite is saved once, not per day."""
    return {"$PARAMETER": name}


def day_parameters(settings: Settings, date: str, trailing: dict[str, float], table: str) -> dict[str, Any]:
    """The day's values of the bronze suites' placeholders: the ``ts`` window and the row-count band."""
    start, tol = day_start_ms(date), settings.ingest.ts_tolerance_ms
    mean, band = trailing.get(table), settings.validation.row_count_band
    rows = (int(mean * (1 - band)), int(mean * (1 + band)) + 1) if mean else (0, None)  # no trailing days: no band
    return {"ts_min": start - tol, "ts_max": start + DAY_MS - 1 + tol, "rows_min": rows[0], "rows_max": rows[1]}


def _event_expectations(settings: Settings, event: str, columns: Sequence[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in REQUIRED[event]]
    out += [
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeBetween(column="ts", min_value=_param("ts_min"), max_value=_param("ts_max")),
    ]
    for c in columns:
        if c in ID_FIELDS:
            out.append(
                gxe.ExpectColumnValueLengthsToBeBetween(column=c, min_value=1, max_value=settings.ingest.max_id_len)
            )
        if c in _NON_NEGATIVE:
            out.append(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0))
    if "propensity" in columns:
        out.append(gxe.ExpectColumnValuesToBeBetween(column="propensity", min_value=0, max_value=1))
    # foreign keys: the membership test runs in pandas (see _with_fk_columns); a value_set of every
    # product id makes Great Expectations copy its configuration thousands of times (minutes per day)
    if event in _CHANNEL_FK:
        out.append(gxe.ExpectColumnValuesToBeNull(column="unknown_channel_id"))
    if event in _PRODUCT_FK:
        out.append(gxe.ExpectColumnValuesToBeNull(column="unknown_product_id"))
    return out


def _with_fk_columns(df: Any, event: str, refs: dict[str, Any]) -> Any:
    """``unknown_<id>``: the id where it is missing from its dimension table, else null."""
    if event in _CHANNEL_FK:
        df = df.assign(unknown_channel_id=df["channel_id"].where(~df["channel_id"].isin(refs["channels"])))
    if event in _PRODUCT_FK:
        df = df.assign(unknown_product_id=df["product_id"].where(~df["product_id"].isin(refs["products"])))
    return df


def _common(settings: Settings, table: str, columns: Sequence[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = []
    for key, values in settings.validation.allowed.items():
        t, _, c = key.partition(".")
        if t == table and c in columns:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(values)))
    # a band around the trailing days' mean rows (open when there are no trailing days)
    out.append(gxe.ExpectTableRowCountToBeBetween(min_value=_param("rows_min"), max_value=_param("rows_max")))
    return out


def bronze_suite(settings: Settings, date: str) -> list[SuiteResult]:
    """Run the ``bronze`` suite on one ingested day (see the module docstring)."""
    import great_expectations.expectations as gxe
    import pandas as pd

    folder = settings.layout.bronze(date)
    if not settings.layout.bronze_manifest(date).is_file():
        raise DataError(f"{folder}: no ingested bronze for {date}; run `eliverec ingest --date {date}` first")
    frames = {name: pd.read_parquet(settings.layout.bronze_table(date, name)) for name in (*EVENT_TYPES, *DIMENSIONS)}
    refs = {
        "channels": frames["channels"]["channel_id"].dropna().unique(),
        "products": frames["products"]["product_id"].dropna().unique(),
    }
    trailing = trailing_row_counts(settings, date)
    run = functools.partial(run_suite, "bronze", max_examples=settings.validation.max_examples,
                            data_dir=settings.data_dir, run_name=date)
    results = []
    for event in EVENT_TYPES:
        df = _with_fk_columns(frames[event], event, refs)
        exp = _event_expectations(settings, event, list(frames[event].columns))
        exp += _common(settings, event, list(df.columns))
        results.append(run(df, exp, table=event, parameters=day_parameters(settings, date, trailing, event)))
    for dim, schema in DIMENSIONS.items():
        df, key = frames[dim], schema.names[0]
        exp = [gxe.ExpectColumnValuesToNotBeNull(column=key), gxe.ExpectColumnValuesToBeUnique(column=key)]
        exp += _common(settings, dim, list(df.columns))
        results.append(run(df, exp, table=dim, parameters=day_parameters(settings, date, trailing, dim)))
    n_imp, n_enter = len(frames["impression"]), len(frames["enter"])
    if n_imp:
        day = pd.DataFrame({"impressions": [n_imp], "enters": [n_enter], "watch_rate": [n_enter / n_imp]})
        v = settings.validation
        exp = [
            gxe.ExpectColumnValuesToBeBetween(
                column="watch_rate", min_value=v.watch_rate_min, max_value=v.watch_rate_max
            )
        ]
        results.append(run(day, exp, table="day"))
    return results


#: Suites by name: ``(settings, date) -> results``. Add an entry to make ``validate_day`` run another suite.
def _samples_suite(settings: Settings, date: str) -> list[SuiteResult]:
    """The feature stage's suite on ``features/<date>/samples.parquet`` (defined beside the samples)."""
    from eliverec.features.expectations import samples_suite

    return samples_suite(settings, date)


SUITES: dict[str, Callable[[Settings, str], list[SuiteResult]]] = {"bronze": bronze_suite, "samples": _samples_suite}


def validate_day(settings: Settings, date: str, suites: Sequence[str] = ("bronze",)) -> dict[str, Any]:
    """Run the named suites on ``date``; write ``validation/<date>/<suite>.json`` and ``.md``.

    Returns ``{"date", "success", "data_docs", "suites": {name: {"success", "failed", "json", "markdown"}}}``
    (``data_docs``: the Data Docs home page, rebuilt once when the day's suites have run).
    Raises :class:`~eliverec.errors.ValidationFailed` naming each failed expectation (with examples
    of failing values) when any suite fails, after writing every report.
    """
    day_start_ms(date)  # a clear error for a bad date
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise DataError(f"unknown validation suite(s) {', '.join(unknown)} (known: {', '.join(sorted(SUITES))})")
    folder = validation_dir(settings, date)
    docs = data_docs_index(settings.data_dir)
    summary: dict[str, Any] = {"date": date, "success": True, "data_docs": str(docs), "suites": {}}
    problems: list[str] = []
    with docs_once(settings.data_dir):
        for name in suites:
            results = SUITES[name](settings, date)
            j, m = write_report(name, results, folder, date)
            failed = [f"{r.table}: {c.describe()}" for r in results for c in r.failed]
            summary["suites"][name] = {"success": not failed, "failed": failed, "json": str(j), "markdown": str(m)}
            problems += [f"[{name}] {f}" for f in failed]
    if problems:
        summary["success"] = False
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValidationFailed(f"validation of {date} failed ({len(problems)} expectations):\n  {shown}\n"
                               f"see {folder} or the Data Docs {docs}")
    return summary

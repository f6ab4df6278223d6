"""Great Expectations suite on the samples (``features/<date>/samples.parquet``).

Checks: not-null keys and labels; every hashed id (scalars and each sequence's maximum) in
``[1, vocab)`` (sequences: ``[0, vocab)``, 0 is padding); sequence lengths in ``[0, seq_len]``
and equal to the number of non-pad positions; mean lengths above ``features.min_mean_seq_len``;
binary labels in {0, 1} with their rates inside ``features.label_rate_bands``; stay time
non-negative; impression times inside the day (give or take the ingest tolerance).

``validate_samples(settings, date)`` runs it with :func:`eliverec.data.validation.run_suite`
(the data root's file context: a Checkpoint, Data Docs), writes ``features/<date>/samples.json`` and ``samples.md`` and
raises :class:`~eliverec.errors.ValidationFailed` naming each failed expectation.
``samples_suite`` has the form of an ``eliverec.data.suites.SUITES`` entry, so
``eliverec validate --suite samples`` can run it once registered there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eliverec.errors import DataError, ValidationFailed
from eliverec.layout import DAY_MS, day_start_ms

#: hashed scalar column -> vocabulary space
HASHED_COLUMNS: dict[str, str] = {
    "user_h": "user", "gender_h": "gender", "age_bucket_h": "age_bucket", "city_tier_h": "city_tier",
    "register_bucket": "register_bucket", "scene_h": "scene", "position_id": "position", "channel_h": "channel",
    "anchor_h": "anchor", "category_h": "category",
}
#: per-row sequence maximum column -> vocabulary space (0 allowed: an empty sequence)
SEQUENCE_MAX_COLUMNS: dict[str, str] = {
    "product_seq_max": "product", "category_seq_max": "category", "brand_seq_max": "brand",
    "channel_seq_max": "channel", "anchor_seq_max": "anchor", "channel_category_seq_max": "category",
    "dynamic_cats_max": "category",
}
NOT_NULL = ("date", "ts", "user_id", "request_id", "channel_id", "scene", "position", "watch", "stay_time",
            "goods_bag", "product_click", "product_len", "channel_len")
BINARY_LABELS = ("watch", "goods_bag", "product_click")


def samples_expectations(settings: Any, date: str) -> list[Any]:
    """The suite for one day's samples, as a list of ``great_expectations.expectations`` objects."""
    import great_expectations.expectations as gxe

    f = settings.features
    vocab, L = f.vocab, f.seq_len
    out: list[Any] = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in NOT_NULL]
    out += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=vocab[s] - 1)
            for c, s in HASHED_COLUMNS.items()]
    out += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=vocab[s] - 1)
            for c, s in SEQUENCE_MAX_COLUMNS.items()]
    for seq in ("product", "channel"):
        out += [gxe.ExpectColumnValuesToBeBetween(column=f"{seq}_len", min_value=0, max_value=L),
                gxe.ExpectColumnPairValuesToBeEqual(column_A=f"{seq}_len", column_B=f"{seq}_seq_nonpad")]
        if seq in f.min_mean_seq_len:
            out.append(gxe.ExpectColumnMeanToBeBetween(column=f"{seq}_len", min_value=f.min_mean_seq_len[seq],
                                                       max_value=L))
    for label in BINARY_LABELS:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0.0, 1.0]))
        if label in f.label_rate_bands:
            lo, hi = f.label_rate_bands[label]
            out.append(gxe.ExpectColumnMeanToBeBetween(column=label, min_value=lo, max_value=hi))
    out += [gxe.ExpectColumnValuesToBeBetween(column="stay_time", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="hour", min_value=0, max_value=23),
            gxe.ExpectColumnValuesToBeBetween(column="ts", min_value={"$PARAMETER": "ts_min"},
                                              max_value={"$PARAMETER": "ts_max"}),
            gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    return out


def samples_parameters(settings: Any, date: str) -> dict[str, int]:
    """The day's values of the suite's placeholders (the ``ts`` window), so the suite is saved once, not per day."""
    start, tol = day_start_ms(date), int(settings.ingest.ts_tolerance_ms)
    return {"ts_min": start - tol, "ts_max": start + DAY_MS + tol}


def samples_suite(settings: Any, date: str) -> list[Any]:
    """Run the suite on one day's samples: ``[SuiteResult]`` (the ``SUITES`` entry form of ``eliverec.data.suites``)."""
    import pandas as pd

    from eliverec.data.validation import run_suite

    path = settings.layout.samples(date)
    if not path.is_file():
        raise DataError(f"{path}: missing; run `eliverec features --end-date {date}` first")
    df = pd.read_parquet(path)
    return [run_suite("samples", df, samples_expectations(settings, date), table="samples",
                      data_dir=Path(settings.data_dir), parameters=samples_parameters(settings, date),
                      run_name=date)]


def validate_samples(settings: Any, date: str) -> dict[str, Any]:
    """Run the suite on one day's samples, write ``features/<date>/samples.json`` + ``.md``; raise on failure.

    Returns ``{"date", "rows", "success", "n_expectations", "json", "markdown", "data_docs"}``; raises
    :class:`~eliverec.errors.ValidationFailed` naming each failed expectation (after writing the reports).
    """
    from eliverec.data.validation import data_docs_index, write_report

    results = samples_suite(settings, date)
    folder = settings.layout.features(date)
    j, m = write_report("samples", results, folder, date)
    failed = [c.describe() for r in results for c in r.failed]
    if failed:
        raise ValidationFailed(f"samples of {date} failed {len(failed)} expectations:\n  " + "\n  ".join(failed)
                               + f"\nsee {m} or the Data Docs {data_docs_index(Path(settings.data_dir))}")
    return {"date": date, "rows": results[0].rows, "success": True, "n_expectations": len(results[0].checks),
            "json": str(j), "markdown": str(m), "data_docs": str(data_docs_index(Path(settings.data_dir)))}


def validate_window(settings: Any, dates: list[str]) -> dict[str, Any]:
    """Validate every day (all reports written first); raise one ``ValidationFailed`` listing every failure."""
    from eliverec.data.validation import docs_once

    out: dict[str, Any] = {}
    problems: list[str] = []
    with docs_once(Path(settings.data_dir)):  # one Data Docs build for the window, not one per day
        for date in dates:
            try:
                out[date] = validate_samples(settings, date)
            except ValidationFailed as exc:
                out[date] = {"date": date, "success": False}
                problems.append(str(exc))
    if problems:
        raise ValidationFailed("\n".join(problems))
    return out

"""Great Expectations gates on bronze, and the ingest/validate CLI exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eliverec.cli import app
from eliverec.data.ingest import ingest_day
from eliverec.data.suites import trailing_row_counts, validate_day
from eliverec.errors import ValidationFailed
from tests.conftest import PARAMS
from tests.data.conftest import DATE, T0, ev, good_lines, line


def _cli(settings, *args: str):
    return CliRunner().invoke(app, [*args, "--profile", "tiny", "--params", str(PARAMS),
                                    "--data-dir", str(settings.data_dir)])  # fmt: skip


def test_clean_day_passes_and_writes_reports(tiny_settings, raw_day):
    raw_day({"events-0.jsonl": [*good_lines(40), line(ev("impression", 99, scene="live_tab"))]})
    ingest_day(tiny_settings, DATE)
    r = validate_day(tiny_settings, DATE)
    assert r["success"] and r["suites"]["bronze"]["failed"] == []
    out = tiny_settings.data_dir / "validation" / DATE
    rep = json.loads((out / "bronze.json").read_text())
    tables = {t["table"] for t in rep["tables"]}
    assert {"impression", "enter", "users", "channels", "day"} <= tables and rep["success"]
    assert "PASSED" in (out / "bronze.md").read_text()


def test_failures_name_the_expectation_and_failing_values(tiny_settings, raw_day):
    lines = [*good_lines(40), line(ev("impression", 98, channel_id="c-ghost")), line(ev("impression", 99, scene="x"))]
    raw_day({"events-0.jsonl": lines})
    ingest_day(tiny_settings, DATE)
    with pytest.raises(ValidationFailed) as err:
        validate_day(tiny_settings, DATE)
    msg = str(err.value)
    assert "impression: unknown_channel_id: expect_column_values_to_be_null" in msg and "c-ghost" in msg
    assert "scene: expect_column_values_to_be_in_set" in msg and "'x'" in msg
    md = (tiny_settings.data_dir / "validation" / DATE / "bronze.md").read_text()
    assert "FAILED" in md and "c-ghost" in md


def test_watch_rate_band(tiny_settings, raw_day):
    imps = [line(ev("impression", i)) for i in range(20)]
    raw_day({"events-0.jsonl": imps + [line(ev("enter", i)) for i in range(100, 118)]})  # 90 % watch rate
    ingest_day(tiny_settings, DATE)
    with pytest.raises(ValidationFailed, match=r"day: watch_rate: expect_column_values_to_be_between.*0.9"):
        validate_day(tiny_settings, DATE)


def test_row_count_band_uses_trailing_days(tiny_settings, raw_day):
    for d, n, back in (("2026-08-30", 40, 2), ("2026-08-31", 44, 1)):
        earlier = [line(ev("enter", i, ts=T0 + 1000 * i - back * 86_400_000)) for i in range(n)]
        raw_day({"events-0.jsonl": earlier}, date=d)
    assert trailing_row_counts(tiny_settings, DATE) == {}
    ingest_day(tiny_settings, "2026-08-30")
    ingest_day(tiny_settings, "2026-08-31")
    assert trailing_row_counts(tiny_settings, DATE)["enter"] == 42
    raw_day(
        {"events-0.jsonl": [line(ev("enter", i)) for i in range(5)] + [line(ev("impression", i)) for i in range(20)]}
    )
    ingest_day(tiny_settings, DATE)
    with pytest.raises(ValidationFailed, match=r"enter: expect_table_row_count_to_be_between.*observed 5"):
        validate_day(tiny_settings, DATE)


def test_unknown_suite_and_missing_bronze(tiny_settings):
    from eliverec.errors import DataError

    with pytest.raises(DataError, match="run `eliverec ingest --date 2026-09-01` first"):
        validate_day(tiny_settings, DATE)
    with pytest.raises(DataError, match="unknown validation suite"):
        validate_day(tiny_settings, DATE, suites=("nope",))


def test_cli_exit_codes(tiny_settings, raw_day):
    assert _cli(tiny_settings, "ingest", "--date", DATE).exit_code == 1  # no raw logs
    raw_day({"events-0.jsonl": good_lines(40)})
    r = _cli(tiny_settings, "ingest", "--date", DATE)
    assert r.exit_code == 0 and "40 accepted" in r.output
    assert _cli(tiny_settings, "validate", "--date", DATE).exit_code == 0
    raw_day({"events-0.jsonl": [*good_lines(30), *([b"{broken"] * 10)]})
    r = _cli(tiny_settings, "ingest", "--date", DATE)
    assert r.exit_code == 1 and "max_quarantine_rate" in r.output
    raw_day({"events-0.jsonl": [*good_lines(40), line(ev("enter", 77, channel_id="c-ghost"))]})
    assert _cli(tiny_settings, "ingest", "--date", DATE).exit_code == 0
    r = _cli(tiny_settings, "validate", "--date", DATE)
    assert r.exit_code == 3 and "c-ghost" in r.output

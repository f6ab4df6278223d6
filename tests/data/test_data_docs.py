"""Great Expectations as its users run it: a file context in the data root, suites saved once, a Checkpoint
per suite, Data Docs rebuilt once per validation (not once per table) and served by ``eliverec ui docs`` (opened in headless Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess

import orjson
import pytest

from eliverec.data import validation
from eliverec.data.ingest import DAY_MS, ingest_day
from eliverec.data.suites import validate_day
from eliverec.data.validation import data_docs_index, gx_project_dir
from eliverec.errors import ValidationFailed
from tests.browser import CHROMIUM, NO_CHROMIUM, chromium, free_port, stop, wait_http
from tests.data.conftest import DATE, ev, good_lines, line

NEXT = "2026-09-02"


@pytest.fixture
def two_days(tiny_settings, raw_day):
    """Two clean ingested days, each validated once."""
    raw_day({"events-0.jsonl": good_lines(40)})
    events = [orjson.loads(x) for x in good_lines(40)]
    raw_day({"events-0.jsonl": [line({**e, "ts": e["ts"] + DAY_MS}) for e in events]}, date=NEXT)
    ingest_day(tiny_settings, DATE)
    first = validate_day(tiny_settings, DATE)
    gx = gx_project_dir(tiny_settings.data_dir)
    saved = {p: p.stat().st_mtime_ns for p in (gx / "expectations").rglob("*.json")}
    ingest_day(tiny_settings, NEXT)
    second = validate_day(tiny_settings, NEXT)
    return tiny_settings, first, second, saved


def test_suites_saved_once_checkpoint_per_suite_and_data_docs_per_run(two_days):
    s, first, second, saved = two_days
    gx = gx_project_dir(s.data_dir)
    tables = {t["table"] for t in json.loads((s.data_dir / "validation" / DATE / "bronze.json").read_text())["tables"]}
    assert {p.stem for p in (gx / "checkpoints").glob("*.json")} == {f"bronze.{t}" for t in tables}
    # the second day changed no suite: its own ts window came in as a parameter
    assert {p: p.stat().st_mtime_ns for p in (gx / "expectations").rglob("*.json")} == saved and saved
    results = list((gx / "uncommitted" / "validations").rglob("*.json"))
    assert len(results) == 2 * len(tables)
    checks = [c["expectation_config"] for r in results if "bronze/impression" in r.as_posix()
              for c in json.loads(r.read_text())["results"]]
    windows = {c["kwargs"]["min_value"] for c in checks
               if c["kwargs"].get("column") == "ts" and c["type"] == "expect_column_values_to_be_between"}
    assert len(windows) == 2, "each day validated against its own ts window"
    index = data_docs_index(s.data_dir)
    assert first["data_docs"] == second["data_docs"] == str(index) and index.is_file()
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == len(results)


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many results and suites each Data Docs build of ``validation`` is given."""
    sizes: list[int] = []
    build = validation._build_docs

    def counted(ctx, identifiers):
        sizes.append(len(identifiers))
        build(ctx, identifiers)

    monkeypatch.setattr(validation, "_build_docs", counted)
    return sizes


def test_a_day_builds_its_data_docs_once_with_a_page_per_table(tiny_settings, raw_day, monkeypatch):
    raw_day({"events-0.jsonl": good_lines(40)})
    ingest_day(tiny_settings, DATE)
    sizes = _count_builds(monkeypatch)
    validate_day(tiny_settings, DATE)
    tables = json.loads((tiny_settings.data_dir / "validation" / DATE / "bronze.json").read_text())["tables"]
    assert sizes == [2 * len(tables)], "one build for the day: every table's result and suite"
    pages = list((data_docs_index(tiny_settings.data_dir).parent / "validations").rglob("*.html"))
    assert len(pages) == len(tables)


def test_a_failed_day_still_builds_its_data_docs(tiny_settings, raw_day, monkeypatch):
    raw_day({"events-0.jsonl": [*good_lines(40), line(ev("impression", 98, channel_id="c-ghost"))]})
    ingest_day(tiny_settings, DATE)
    sizes = _count_builds(monkeypatch)
    with pytest.raises(ValidationFailed, match="c-ghost"):
        validate_day(tiny_settings, DATE)
    index = data_docs_index(tiny_settings.data_dir)
    assert len(sizes) == 1 and index.is_file() and "bronze.impression" in index.read_text()


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=NO_CHROMIUM)
def test_ui_docs_serves_data_docs_that_open_in_chromium(two_days, tmp_path):
    from eliverec import ui

    s = two_days[0]
    port = free_port()
    proc = subprocess.Popen(ui.data_docs_command(s, port=port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/index.html"
        wait_http(url, 30)
        dom = chromium(url, tmp_path / "chrome", "--dump-dom").stdout
        for name in ("bronze.impression", "bronze.channels", "bronze.day", DATE, NEXT):
            assert name in dom, f"{name} missing from the Data Docs index"
        shot = tmp_path / "data-docs.png"
        chromium(url, tmp_path / "chrome-shot", f"--screenshot={shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        stop(proc)

"""Ingest: every bad-line kind, corrupt gzip, empty files, duplicates, accounting, reruns, atomicity."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from eliverec.config import load_settings
from eliverec.data.ingest import IngestFailed, ingest_day
from eliverec.errors import DataError
from tests.conftest import PARAMS
from tests.data.conftest import DATE, T0, ev, good_lines, line


def _with(settings, *overrides: str):
    return load_settings("tiny", overrides=list(overrides), params=PARAMS, data_dir=settings.data_dir)


def _lenient(settings):
    return _with(settings, "ingest.max_quarantine_rate=1.0")


def _quarantine(settings):
    return pq.read_table(settings.data_dir / "quarantine" / DATE / "quarantine.parquet").to_pylist()


def _assert_invariant(manifest: dict) -> None:
    for f in manifest["files"]:
        q = sum(f["quarantined"].values())
        assert f["accepted"] + q + f["duplicates"] == f["lines_read"], f


BAD = [
    (b"", "blank_line", None),
    (b"   \t", "blank_line", None),
    (b'{"event": "enter", "event_id": "\xff\xfe"}', "not_utf8", None),
    (b'{"event": "enter", "event_id": "x"', "not_json", None),
    (b"[1, 2]", "not_object", None),
    (b'"just a string"', "not_object", None),
    (line(ev("enter", 1, event="teleport")), "unknown_event", None),
    (line({k: v for k, v in ev("enter", 1).items() if k != "event"}), "unknown_event", None),
    (line({k: v for k, v in ev("enter", 1).items() if k != "channel_id"}), "missing_field", "channel_id"),
    (line(ev("enter", 1, user_id=None)), "missing_field", "user_id"),
    (line(ev("enter", 1, ts="12:00")), "bad_type", "ts"),
    (line(ev("enter", 1, ts=1.5)), "bad_type", "ts"),
    (line(ev("impression", 1, position=True)), "bad_type", "position"),
    (line(ev("enter", 1, user_id={"a": 1})), "bad_type", "user_id"),
    (line(ev("channel_stats", 1, products_on_sale="p1")), "bad_type", "products_on_sale"),
    (line(ev("impression", 1, propensity="high")), "bad_type", "propensity"),
    (line(ev("enter", 1, user_id="")), "bad_id", "user_id"),
    (line(ev("enter", 1, channel_id="c" * 129)), "bad_id", "channel_id"),
    (line(ev("channel_stats", 1, products_on_sale=["p1", ""])), "bad_id", "products_on_sale"),
    (line(ev("leave", 1, stay_ms=-1)), "out_of_range", "stay_ms"),
    (line(ev("impression", 1, position=-2)), "out_of_range", "position"),
    (line(ev("channel_stats", 1, viewers=-5)), "out_of_range", "viewers"),
    (line(ev("impression", 1, propensity=1.5)), "out_of_range", "propensity"),
    (line(ev("enter", 1, ts=T0 - 3_600_001)), "ts_out_of_day", "ts"),
    (line(ev("enter", 1, ts=T0 + 86_400_000 + 3_600_000)), "ts_out_of_day", "ts"),
]


@pytest.mark.parametrize(("bad", "reason", "field"), BAD, ids=[f"{r}-{i}" for i, (_, r, _) in enumerate(BAD)])
def test_each_bad_line_kind_is_quarantined_with_its_reason(tiny_settings, raw_day, bad, reason, field):
    raw_day({"events-0.jsonl": [*good_lines(5), bad, *good_lines(5, start=100)]})
    m = ingest_day(_lenient(tiny_settings), DATE)
    assert m["totals"]["quarantined_by_reason"] == {reason: 1}
    assert m["totals"]["accepted"] == 10
    (q,) = _quarantine(tiny_settings)
    assert (q["line"], q["reason"], q["field"], q["raw"], q["raw_bytes"]) == (6, reason, field, bad, len(bad))
    _assert_invariant(m)


def test_edge_values_are_accepted(tiny_settings, raw_day):
    lines = [
        line(ev("enter", 1, ts=T0 - 3_600_000)),  # exactly at the tolerance
        line(ev("enter", 2, user_id=12345, channel_id=7)),  # integer ids become strings
        line(ev("impression", 3, position=0, propensity=1.0, derived=True, variant="b")),
        line(ev("channel_stats", 4, products_on_sale=[], viewers=0)),
        line(ev("enter", 5, unknown_extra_field=[1, 2])),
    ]
    raw_day({"events-0.jsonl": lines})
    m = ingest_day(tiny_settings, DATE)
    assert m["totals"]["accepted"] == 5 and m["totals"]["quarantined"] == 0
    enter = pq.read_table(tiny_settings.data_dir / "bronze" / DATE / "enter.parquet")
    assert enter["user_id"].to_pylist() == ["u1", "12345", "u0"] and enter["channel_id"][1].as_py() == "7"
    imp = pq.read_table(tiny_settings.data_dir / "bronze" / DATE / "impression.parquet").to_pylist()
    assert imp[0]["derived"] is True and imp[0]["variant"] == "b" and imp[0]["score"] is None


def test_bronze_is_typed_sorted_and_complete(tiny_settings, raw_day):
    from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, bronze_schema

    lines = good_lines(40)
    raw_day({"events-0.jsonl": lines[::-1]})
    m = ingest_day(tiny_settings, DATE)
    out = tiny_settings.data_dir / "bronze" / DATE
    total = 0
    for e in EVENT_TYPES:
        t = pq.read_table(out / f"{e}.parquet")
        assert t.schema.equals(bronze_schema(e)), e
        ts = t["ts"].to_pylist()
        assert ts == sorted(ts)
        total += t.num_rows
        assert m["tables"][e]["rows"] == t.num_rows
    assert total == 40 == m["totals"]["accepted"]
    for d in DIMENSIONS:
        assert pq.read_table(out / f"{d}.parquet").schema.equals(DIMENSIONS[d])
    assert json.loads((out / "_manifest.json").read_text()) == m


def test_truncated_gzip_keeps_lines_before_the_damage(tiny_settings, raw_day):
    data = gzip.compress(b"".join(x + b"\n" for x in good_lines(2000)), mtime=0)
    raw_day({"events-0.jsonl": good_lines(10, start=5000), "events-1.jsonl.gz": data[: len(data) * 2 // 3]})
    m = ingest_day(_lenient(tiny_settings), DATE)
    f0, f1 = m["files"]
    assert f0["accepted"] == 10
    assert f1["quarantined"] == {"corrupt_gzip": 1} and "truncated" in f1["error"]
    assert 100 < f1["accepted"] < 2000 and f1["lines_read"] == f1["accepted"] + 1
    _assert_invariant(m)


def test_not_gzip_at_all_is_one_corrupt_line_not_a_crash(tiny_settings, raw_day):
    raw_day({"events-0.jsonl": good_lines(10), "events-1.jsonl.gz": b"this is not gzip\n" * 10})
    m = ingest_day(_lenient(tiny_settings), DATE)
    assert m["files"][1]["quarantined"] == {"corrupt_gzip": 1} and m["files"][1]["accepted"] == 0
    assert m["files"][1]["error"] and m["totals"]["accepted"] == 10
    _assert_invariant(m)


def test_gzip_with_bad_crc_is_corrupt(tiny_settings, raw_day):
    data = bytearray(gzip.compress(b"".join(x + b"\n" for x in good_lines(10)), mtime=0))
    data[-6] ^= 0xFF  # the CRC32 trailer
    raw_day({"events-0.jsonl.gz": bytes(data)})
    m = ingest_day(_lenient(tiny_settings), DATE)
    assert m["files"][0]["quarantined"] == {"corrupt_gzip": 1}
    _assert_invariant(m)


def test_empty_files_and_concatenated_gzip_members(tiny_settings, raw_day):
    two = gzip.compress(b"".join(x + b"\n" for x in good_lines(3)), mtime=0) + gzip.compress(
        b"".join(x + b"\n" for x in good_lines(4, start=10)), mtime=0
    )
    raw_day({"events-0.jsonl": b"", "events-1.jsonl.gz": gzip.compress(b""), "events-2.jsonl.gz": two})
    m = ingest_day(tiny_settings, DATE)
    assert [f["lines_read"] for f in m["files"]] == [0, 0, 7]
    assert m["totals"]["accepted"] == 7 and m["quarantine_rate"] == 0.0


def test_last_line_without_newline_is_read(tiny_settings, raw_day):
    raw_day({"events-0.jsonl": b"\n".join(good_lines(3))})
    assert ingest_day(tiny_settings, DATE)["totals"]["accepted"] == 3


def test_duplicates_across_files_keep_the_first(tiny_settings, raw_day):
    a = good_lines(10)
    changed = line(ev("enter", 2, user_id="someone-else"))  # same event_id as a[2], other content
    raw_day({"events-0.jsonl": a, "events-1.jsonl.gz": [*a[:5], changed, *good_lines(3, start=50), a[0]]})
    m = ingest_day(tiny_settings, DATE)
    f0, f1 = m["files"]
    assert (f0["accepted"], f0["duplicates"]) == (10, 0)
    assert (f1["accepted"], f1["duplicates"], f1["duplicates_conflicting"]) == (3, 7, 1)
    enter = pq.read_table(tiny_settings.data_dir / "bronze" / DATE / "enter.parquet")
    assert "someone-else" not in enter["user_id"].to_pylist()
    _assert_invariant(m)


def test_same_event_id_across_event_types_is_a_conflicting_duplicate(tiny_settings, raw_day):
    raw_day({"events-0.jsonl": [line(ev("enter", 1)), line(ev("leave", 1, event_id="enter-1"))]})
    m = ingest_day(tiny_settings, DATE)
    assert m["totals"]["duplicates_conflicting"] == 1 and m["tables"]["leave"]["rows"] == 0


def test_accounting_invariant_on_a_messy_day(tiny_settings, raw_day):
    bad = [b, _r, _f] = BAD[0]  # noqa: F841
    lines = []
    for i, (b, _, _) in enumerate(BAD):
        lines += good_lines(7, start=100 * i) + [b]
    lines += good_lines(20, start=0)  # 20 duplicates of the first lines
    raw_day({"events-0.jsonl": lines[:100], "events-1.jsonl.gz": lines[100:]})
    m = ingest_day(_lenient(tiny_settings), DATE)
    _assert_invariant(m)
    t = m["totals"]
    assert t["lines_read"] == len(lines) and t["quarantined"] == len(BAD)
    assert t["accepted"] + t["quarantined"] + t["duplicates"] == t["lines_read"]
    assert len(_quarantine(tiny_settings)) == len(BAD)


def test_rerun_and_chunking_give_byte_identical_output(tiny_settings, raw_day):
    lines = [b for i, (b, _, _) in enumerate(BAD) for b in (*good_lines(30, start=100 * i), b)]
    lines += [b"x" * 3000]  # longer than the small chunk below
    raw_day({"events-0.jsonl": lines[:300], "events-1.jsonl.gz": lines[300:] + lines[:40]})
    out = tiny_settings.data_dir / "bronze" / DATE

    def snapshot() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    s = _lenient(tiny_settings)
    m1 = ingest_day(s, DATE)
    first = snapshot()
    ingest_day(s, DATE)
    assert snapshot() == first
    small = _with(tiny_settings, "ingest.max_quarantine_rate=1.0", "ingest.chunk_bytes=2048")
    m3 = ingest_day(small, DATE)  # many partitions and blocks: same table bytes
    tables = {k: v for k, v in first.items() if k != "_manifest.json"}
    assert {k: v for k, v in snapshot().items() if k != "_manifest.json"} == tables
    assert m3["content_hash"] == m1["content_hash"] and m3["rules"]["max_line_bytes"] == 2048
    assert m3["totals"]["quarantined_by_reason"]["line_too_long"] == 1
    assert m1["totals"]["quarantined_by_reason"].get("line_too_long") is None  # fits a default chunk
    assert not list((tiny_settings.data_dir / ".staging").iterdir())


@pytest.mark.slow
def test_parallel_workers_give_identical_output(tiny_settings, raw_day):
    lines = [b for i, (b, _, _) in enumerate(BAD) for b in (*good_lines(200, start=1000 * i), b)]
    raw_day({"events-0.jsonl": lines, "events-1.jsonl.gz": lines[::3]})
    one = ingest_day(_with(tiny_settings, "ingest.max_quarantine_rate=1", "ingest.chunk_bytes=8192"), DATE)
    two = _with(tiny_settings, "ingest.max_quarantine_rate=1", "ingest.chunk_bytes=8192", "ingest.workers=2")
    assert ingest_day(two, DATE) == one


def test_crash_mid_write_leaves_previous_output(tiny_settings, raw_day, monkeypatch):
    import eliverec.data.ingest as ingest

    raw_day({"events-0.jsonl": good_lines(20)})
    ingest_day(tiny_settings, DATE)
    out = tiny_settings.data_dir / "bronze" / DATE
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw_day({"events-0.jsonl": good_lines(50)})

    def boom(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ingest, "copy_dimensions", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest_day(tiny_settings, DATE)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list((tiny_settings.data_dir / ".staging").iterdir())


def test_quarantine_threshold_fails_and_keeps_previous_bronze(tiny_settings, raw_day):
    raw_day({"events-0.jsonl": good_lines(20)})
    ingest_day(tiny_settings, DATE)
    raw_day({"events-0.jsonl": [*good_lines(18), b"{", b"nope"]})  # 10 % > 5 %
    with pytest.raises(IngestFailed, match=r"2 of 20 lines quarantined.*max_quarantine_rate"):
        ingest_day(tiny_settings, DATE)
    m = json.loads((tiny_settings.data_dir / "bronze" / DATE / "_manifest.json").read_text())
    assert m["totals"]["lines_read"] == 20 and m["totals"]["quarantined"] == 0  # the previous run's
    qm = json.loads((tiny_settings.data_dir / "quarantine" / DATE / "_manifest.json").read_text())
    assert qm["status"] == "failed" and len(_quarantine(tiny_settings)) == 2


def test_missing_inputs_are_clear_errors(tiny_settings, raw_day):
    with pytest.raises(DataError, match="no raw logs for 2026-09-01"):
        ingest_day(tiny_settings, DATE)
    with pytest.raises(DataError, match="bad date"):
        ingest_day(tiny_settings, "2026-13-01")
    folder = raw_day({"events-0.jsonl": good_lines(3)})
    (folder / "events-1.jsonl").mkdir()  # cannot be opened as a file
    with pytest.raises(DataError, match="events-1.jsonl: cannot open"):
        ingest_day(tiny_settings, DATE)
    (folder / "events-1.jsonl").rmdir()
    (folder / "channels.parquet").unlink()
    with pytest.raises(DataError, match="channels.parquet: dimension snapshot missing"):
        ingest_day(tiny_settings, DATE)


@pytest.mark.parametrize("gz", [False, True])
def test_blocks_of_any_size_give_the_same_lines(tmp_path, gz):
    """read_blocks cuts parse tasks smaller than a chunk (issue 18): every size gives the file's lines
    in order with their numbers; a line longer than the chunk is one line_too_long block (or, when it
    ends within the piece that crosses the chunk size, an ordinary line that the parser judges too long)."""
    from eliverec.data.ingest import read_blocks

    lines = [*good_lines(300), b"", b"y" * 5000, *good_lines(50, start=900), b"z" * 700, b""]
    raw = b"\n".join(lines) + b"\n"
    path = tmp_path / ("events-0.jsonl.gz" if gz else "events-0.jsonl")
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    for chunk, block in [(4096, 4096), (4096, 1024), (4096, 333), (1 << 20, 2048), (1 << 20, 1 << 20)]:
        got: list[tuple[int, bytes | str]] = []
        for b in read_blocks(path, 0, chunk, block):
            if b.special:
                assert b.special == "line_too_long" and b.length == 5000 and b.data == b"y" * 4096
                got.append((b.first_line, "long"))
                continue
            assert len(b.data) < block + chunk
            got += [(b.first_line + i, "long" if len(x) > chunk else x) for i, x in enumerate(b.data.split(b"\n"))]
        expect = [(i + 1, "long" if len(x) > chunk else x) for i, x in enumerate(lines)]
        assert got == expect, (chunk, block)


def test_gzip_damage_after_many_small_blocks_keeps_every_line_before_it(tmp_path):
    from eliverec.data.ingest import read_blocks

    data = gzip.compress(b"".join(x + b"\n" for x in good_lines(3000)), mtime=0)
    path = tmp_path / "events-0.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    blocks = list(read_blocks(path, 0, 1 << 20, 4096))
    assert len(blocks) > 10 and blocks[-1].special == "corrupt_gzip" and "truncated" in (blocks[-1].error or "")
    good = [x for b in blocks[:-1] for x in b.data.split(b"\n")]
    assert good == good_lines(3000)[: len(good)] and blocks[-1].first_line == len(good) + 1
    assert good_lines(3000)[len(good)].startswith(blocks[-1].data)  # the partial line as the raw text


def test_task_size_changes_no_output_byte(tiny_settings, raw_day, monkeypatch):
    """Parse tasks smaller than a chunk (issue 18) leave bronze, quarantine and manifest bytes as they are."""
    import eliverec.data.ingest as ingest

    lines = [b for i, (b, _, _) in enumerate(BAD) for b in (*good_lines(40, start=100 * i), b)]
    raw_day({"events-0.jsonl": lines, "events-1.jsonl.gz": lines[::2] + good_lines(30, start=9000)})
    s = _lenient(tiny_settings)

    def day() -> dict[str, bytes]:
        ingest_day(s, DATE)
        folders = [tiny_settings.data_dir / "bronze" / DATE, tiny_settings.data_dir / "quarantine" / DATE]
        return {f"{d.parent.name}/{p.name}": p.read_bytes() for d in folders for p in sorted(d.iterdir())}

    whole = day()
    monkeypatch.setattr(ingest, "TASK_BYTES", 2000)  # many tasks per file
    assert day() == whole


def test_bronze_writer_bytes_follow_the_rows_not_their_chunks(tmp_path):
    """Enough distinct ids that the parquet writer falls back from dictionary to plain encoding
    within a row group: where it does so followed the input's chunks, so bronze bytes changed with
    the number of partitions (ingest.chunk_bytes, and ingest.workers once partitions were rounded to
    the workers). Every chunking of the same rows now gives the same file."""
    import pyarrow as pa

    from eliverec.data.ingest import ROW_GROUP_ROWS, _FixedGroupWriter

    n = ROW_GROUP_ROWS + 60_000
    rows = pa.table({"event_id": pa.array([f"event-{i:09d}" for i in range(n)]), "ts": pa.array(range(n))})
    files = []
    for cuts in ([n], [1000, 150_000, n - 151_000], [ROW_GROUP_ROWS - 5, 10, n - ROW_GROUP_ROWS - 5]):
        w = _FixedGroupWriter(tmp_path / f"{len(files)}.parquet", rows.schema)
        start = 0
        for size in cuts:
            w.write(pa.Table.from_batches(rows.slice(start, size).to_batches(max_chunksize=7_000)))
            start += size
        w.close()
        files.append((tmp_path / f"{len(files)}.parquet").read_bytes())
    assert files[0] == files[1] == files[2]
    assert pq.read_table(tmp_path / "0.parquet").equals(rows)

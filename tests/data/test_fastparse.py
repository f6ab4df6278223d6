"""The chunk fast path (pyarrow's JSON reader) judges every line exactly as the line-by-line parser."""

from __future__ import annotations

import random

import numpy as np

import pyarrow as pa
import pytest

from eliverec.data.fastparse import parse_chunk
from eliverec.data.ingest import ingest_day
from eliverec.data.parse import ParsedChunk, Rules, parse_lines
from tests.data.conftest import DATE, T0, ev, good_lines, line
from tests.data.test_ingest import BAD, _with

RULES = Rules(max_id_len=128, ts_min=T0 - 3_600_000, ts_max=T0 + 86_400_000 + 3_600_000)

#: Lines where pyarrow's reader and orjson could disagree (each must go the slow way or agree).
TRICKY = [
    b'{"event":"enter","event_id":"a","ts":1,"user_id":"u","request_id":"r","channel_id":"c"}{"event":"enter"}',
    line(ev("enter", 1)) + b" " + line(ev("enter", 2)),
    line(ev("enter", 3)) + b"\r",
    b"  " + line(ev("enter", 4)),
    b"\xef\xbb\xbf" + line(ev("enter", 5)),
    line(ev("enter", 6))[:-1] + b',"z":NaN}',
    line(ev("enter", 7))[:-1] + b',"z":-Infinity}',
    line(ev("enter", 8))[:-1] + b',"z":1' + b"0" * 400 + b"}",
    line(ev("enter", 9))[:-1] + b',"z":' + b"[" * 1100 + b"]" * 1100 + b"}",
    line(ev("enter", 10))[:-1] + b',"z":' + b"[" * 500 + b"]" * 500 + b"}",
    line(ev("enter", 11))[:-1] + b',"z":{"q":[1,"x",{"r":null}]}}',
    line(ev("enter", 12))[:-1] + b',"ts":5}',  # duplicate key: orjson keeps the last
    line(ev("enter", 13))[:-1] + b',"z":"\\ud800"}',
    line(ev("enter", 14))[:-1] + b',"position":"not for enter"}',
    line(ev("enter", 15, user_id="\u00e9t\u00e9")),
    line(ev("enter", 16, user_id="x\\u0000")),
    b'{"\\u0065vent":"enter","event_id":"e17","ts":' + str(T0).encode() + b',"user_id":"u","request_id":"r",'
    b'"channel_id":"c"}',
    line(ev("impression", 18, position=2**31)),
    line(ev("impression", 19, score=1e308, propensity=0)),
    line(ev("impression", 20, position=1.0)),
    line(ev("impression", 21, derived=1)),
    line(ev("channel_stats", 22, products_on_sale=[1, "p"])),
    line(ev("channel_stats", 23, products_on_sale=["p", None])),
    line(ev("enter", 24, ts=2**63)),
    line(ev("enter", 25, ts=-(2**63))),
    line(ev("enter", 26, event=5)),
    line(ev("enter", 27, event=None)),
    line(ev("enter", 28, channel_id=7.5)),
    line(ev("enter", 29, channel_id=-7)),
    b"{}",
    b"{ }",
    b"null",
    b"}",
    b"{",
]


def _same(a: ParsedChunk, b: ParsedChunk) -> None:
    assert a.counts == b.counts
    assert a.quarantine.equals(b.quarantine)
    assert sorted(a.tables) == sorted(b.tables)
    for e in a.tables:
        assert a.tables[e].sort_by("_line").equals(b.tables[e].sort_by("_line")), e


def _check(lines: list[bytes], first_line: int = 1, rules: Rules = RULES) -> ParsedChunk:
    slow = parse_lines(lines, rules, "f.jsonl", 3, first_line)
    fast = parse_chunk(b"\n".join(lines), rules, "f.jsonl", 3, first_line)
    _same(slow, fast)
    return fast


@pytest.mark.parametrize("i", range(len(TRICKY)))
def test_each_tricky_line_is_judged_as_line_by_line(i):
    _check([*good_lines(4), TRICKY[i], *good_lines(4, start=50)], first_line=11)


@pytest.mark.parametrize("i", range(len(BAD)))
def test_each_bad_line_kind_is_judged_as_line_by_line(i):
    _check([*good_lines(3), BAD[i][0], *good_lines(3, start=50)])


def test_random_messy_chunks_match(monkeypatch):
    import eliverec.data.fastparse as fp

    monkeypatch.setattr(fp, "_WINDOW", 64)  # many reader windows, errors at their edges
    rnd = random.Random(18)
    pool = [b for b, _, _ in BAD] + TRICKY
    for trial in range(12):
        lines = good_lines(400, start=1000 * trial)
        for _ in range(rnd.randrange(0, 40)):
            lines[rnd.randrange(len(lines))] = rnd.choice(pool)
        _check(lines, first_line=rnd.randrange(1, 10**6))


def test_clean_chunk_needs_no_line_by_line(monkeypatch):
    import eliverec.data.fastparse as fp

    def refuse(*a, **k):
        raise AssertionError("a clean chunk went line by line")

    monkeypatch.setattr(fp, "parse_lines", refuse)
    out = parse_chunk(b"\n".join(good_lines(300)), RULES, "f.jsonl", 0, 1)
    assert sum(t.num_rows for t in out.tables.values()) == 300 and not out.counts


def test_a_null_in_an_id_list_is_a_bad_type_whatever_the_other_lines():
    null_in_list = line(ev("channel_stats", 1, products_on_sale=["p", None]))
    alone = parse_lines([null_in_list], RULES, "f", 0, 1)
    mixed = parse_lines([null_in_list, line(ev("channel_stats", 2, products_on_sale=[1, "p"]))], RULES, "f", 0, 1)
    assert alone.counts == mixed.counts == {"bad_type": 1}


def test_edge_chunks():
    _check([b""])
    _check([b"", b""])
    _check([line(ev("enter", 1))])
    _check([b"\xff"])
    _check([line(ev("enter", 1, user_id="ok")), b'{"event":"enter","user_id":"\xff"}'])


def test_fast_and_line_by_line_ingest_give_byte_identical_days(tiny_settings, raw_day):
    lines = [b for i, (b, _, _) in enumerate(BAD) for b in (*good_lines(30, start=100 * i), b)] + TRICKY
    raw_day({"events-0.jsonl": lines[:300], "events-1.jsonl.gz": lines[300:] + lines[:40]})
    out = tiny_settings.data_dir / "bronze" / DATE
    days = []
    for fast in ("true", "false"):
        s = _with(tiny_settings, "ingest.max_quarantine_rate=1.0", f"ingest.fast_parse={fast}")
        m = ingest_day(s, DATE)
        q = (tiny_settings.data_dir / "quarantine" / DATE / "quarantine.parquet").read_bytes()
        days.append((m, q, {p.name: p.read_bytes() for p in sorted(out.iterdir())}))
    assert days[0] == days[1]
    assert days[0][0]["totals"]["quarantined"] > len(BAD)


def test_a_valid_line_longer_than_a_chunk_is_too_long_in_the_fast_path_too():
    """A block can hold a line a little longer than ``ingest.chunk_bytes`` (it ended inside the piece
    that crossed the chunk size): the fast path quarantines it as line_too_long, as parse_lines does."""
    long = line(ev("enter", 7, user_id="u" * 100))
    rules = Rules(RULES.max_id_len, RULES.ts_min, RULES.ts_max, max_line_bytes=len(long) - 1)
    out = _check([*good_lines(40), long, *good_lines(40, start=50)], rules=rules)
    assert out.counts == {"line_too_long": 1}


def test_reader_schema_covers_every_field():
    from eliverec.data.fastparse import _SCHEMA
    from eliverec.data.parse import FIELDS

    assert _SCHEMA.names == ["event", *FIELDS] and _SCHEMA.field("ts").type == pa.int64()


def test_type_screen_finds_the_values_that_stop_the_reader():
    from eliverec.data.fastparse import _type_screen

    ok = line(ev("impression", 1))
    bad = [line(ev("enter", 2, ts="soon")), line(ev("impression", 3, position="7")), line(ev("impression", 4,
           derived="yes")), line(ev("enter", 5, channel_id=7)), line(ev("enter", 6, event_id=-1))]  # fmt: skip
    for b in bad:
        data = b"\n".join([ok, b, ok])
        hits = _type_screen(np.frombuffer(data, np.uint8))
        assert len(hits) == 1 and len(ok) < hits[0] < len(ok) + len(b), b
    assert not len(_type_screen(np.frombuffer(b"\n".join(good_lines(64)), np.uint8)))


def test_a_refused_chunk_is_read_again_once_after_the_type_screen(monkeypatch):
    import eliverec.data.fastparse as fp

    calls = []
    real = fp._read
    monkeypatch.setattr(fp, "_read", lambda buf, threads=False: calls.append(len(buf)) or real(buf, threads))
    lines = good_lines(400)
    for i in range(5, 400, 37):
        lines[i] = line(ev("enter", 10_000 + i, ts=str(T0), channel_id=i))  # string ts, integer id
    out = _check(lines)
    assert len(calls) == 2  # the refused whole read, then one read without the screened lines
    assert out.counts == {"bad_type": len(range(5, 400, 37))}


def test_threaded_workers_give_the_same_bytes(tiny_settings, raw_day):
    lines = [b for i, (b, _, _) in enumerate(BAD) for b in (*good_lines(60, start=1000 * i), b)]
    raw_day({"events-0.jsonl": lines, "events-1.jsonl.gz": lines[::3] + TRICKY})
    out = tiny_settings.data_dir / "bronze" / DATE
    days = []
    for workers in (1, 2):
        s = _with(tiny_settings, "ingest.max_quarantine_rate=1", "ingest.chunk_bytes=4096", f"ingest.workers={workers}")
        m = ingest_day(s, DATE)
        q = (tiny_settings.data_dir / "quarantine" / DATE / "quarantine.parquet").read_bytes()
        days.append((m, q, {p.name: p.read_bytes() for p in sorted(out.iterdir())}))
    assert days[0] == days[1] and days[0][0]["totals"]["duplicates"] > 0


def test_strings_under_numeric_fields_are_found_by_their_key_alone(monkeypatch):
    """A refusal that names a numeric field screens only ``"field":"`` (one substring search per field
    named), not every key of the chunk; the result is parse_lines' all the same."""
    import eliverec.data.fastparse as fp

    def no_full_screen(view):
        raise AssertionError("the full type screen ran")

    calls = []
    real = fp._read
    monkeypatch.setattr(fp, "_type_screen", no_full_screen)
    monkeypatch.setattr(fp, "_read", lambda buf, threads=False: calls.append(len(buf)) or real(buf, threads))
    lines = good_lines(300)
    for i in range(7, 300, 41):
        lines[i] = line(ev("enter", 20_000 + i, ts="soon"))
    for i in range(11, 300, 53):
        lines[i] = line(ev("impression", 30_000 + i, position="3"))
    for i in range(13, 300, 67):
        lines[i] = line(ev("impression", 40_000 + i, derived="no"))
    out = _check(lines)
    assert len(calls) == 4  # refused, then once per field named (ts, position, derived)
    assert out.counts == {"bad_type": len(range(7, 300, 41)) + len(range(11, 300, 53)) + len(range(13, 300, 67))}


def test_a_string_value_the_key_search_misses_goes_to_the_full_screen():
    escaped = b'{"event":"enter","event_id":"x1","\\u0074s":"soon","user_id":"u","request_id":"r","channel_id":"c"}'
    spaced = line(ev("enter", 2))[:-1].replace(b'"ts":', b'"ts": ') + b"}"
    lines = good_lines(200)
    lines[50], lines[120] = escaped, spaced.replace(str(T0 + 2).encode(), b'"2"')
    _check(lines)
    _check([*good_lines(30), line(ev("enter", 3, ts="soon")), escaped, *good_lines(30, start=90)])

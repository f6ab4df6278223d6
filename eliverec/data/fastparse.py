"""Fast path of :func:`~eliverec.data.parse.parse_lines` for a chunk of whole lines (issue 18).

:func:`parse_chunk` parses a chunk (its lines joined by ``\\n``) with pyarrow's JSON reader,
typed by the contract (:data:`~eliverec.data.parse.FIELDS`), and runs the checks of
:func:`~eliverec.data.parse.check_columns` on whole columns. Only lines the vectorised reader cannot
judge exactly as :func:`~eliverec.data.parse.parse_lines` does go through ``parse_lines`` (orjson,
line by line); the result (tables, quarantine in line order, counts) is the same as
``parse_lines`` on the whole chunk. Those lines are found in two ways:

- screened before reading (numpy over the chunk's bytes): blank lines, a line not of the form
  ``{...}`` (leading or trailing whitespace, truncated JSON, a byte order mark), a ``}`` inside a
  line (several objects on one line, nested objects), ``NaN``/``Infinity`` literals, lines longer
  than :data:`SCREEN_LINE_BYTES` that hold very deep nesting or a number too long for a double
  (orjson rejects those; pyarrow would ignore them in an unknown field), and the whole chunk when
  it is not valid UTF-8; when the reader refuses the chunk, also a string value under a numeric or
  boolean field and a number under an id field (:func:`_type_screen`: these stop the reader);
- reported by the reader: a type conflict or syntax error names its row; a conversion error that
  does not is found by halving the range until one line is left.

With the screens, every line that reaches the reader is one object, so a row is a line. The
reader first takes the whole chunk at once (multi-threaded, ``_BLOCK`` bytes per thread task); only
for a chunk it refuses does the type screen run, and what the reader still refuses is re-read in
windows of ``_WINDOW`` lines to find the refused lines.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from eliverec.data.parse import (
    _KIND,
    FIELDS,
    LINEAGE,
    QUARANTINE_SCHEMA,
    REASONS,
    ParsedChunk,
    Rules,
    _target,
    accepted_table,
    check_columns,
    null_elements_bad,
    parse_lines,
    quarantine_table,
    reason_counts,
)
from eliverec.data.schemas import EVENT_TYPES, OPTIONAL, REQUIRED

#: Lines longer than this get per-line screens (deep nesting, overlong numbers) before the reader.
SCREEN_LINE_BYTES = 300
_SCHEMA = pa.schema([("event", pa.string())] + [(f, _target(_KIND[f])) for f in FIELDS])
_PARSE = pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
_ROW = re.compile(r"in row (\d+)")
_STRING_UNDER = re.compile(r"Column\(/(\w+)\) changed from \w+ to string")
_LONG_NUMBER = re.compile(rb"\d{300}")
_MAX_DEPTH = 1000  # orjson refuses deeper documents (its limit is 1024)
_WINDOW = 1 << 14  # lines per reader call: a failure re-reads at most this many lines
_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
_BLOCK = 1 << 20  # bytes per reader block when a whole chunk is read at once (one thread task each)
#: Last four bytes of a key (before its closing quote) of the numeric and boolean fields, and of the id
#: fields (``event`` included): a string value under the first or a number under the second makes the
#: reader fail (the type screen).
_NUMERIC_KEYS = {"ts", "position", "stay_ms", "viewers", "revenue_window", "score", "propensity", "derived"}
_ID_KEYS = {"event", *(f for f in FIELDS if _KIND[f] == "id")}


def parse_chunk(
    data: bytes, rules: Rules, file: str, file_idx: int, first_line: int, threads: bool = True
) -> ParsedChunk:
    """Parse and validate the lines of ``data`` (joined by ``\\n``, no final newline) of one file.

    Same result as ``parse_lines(data.split(b"\\n"), rules, file, file_idx, first_line)``. ``threads``:
    the reader may use pyarrow's thread pool (worth it when one chunk is parsed at a time; with
    several chunks in parallel, one thread per chunk costs less and gives one Arrow chunk per column).
    """
    if not data or not _utf8(data):
        return parse_lines(data.split(b"\n"), rules, file, file_idx, first_line)
    view = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(view == 10)
    starts = np.r_[0, nl + 1].astype(np.int64)
    ends = np.r_[nl, len(data)].astype(np.int64)
    suspect = _screen(data, view, starts, ends)
    suspect |= ends - starts > rules.max_line_bytes  # parse_lines quarantines them as line_too_long
    good, tables, failed = _read_screened(data, view, starts, ends, suspect, threads)
    if tables is None:  # the reader disagrees with the screens: judge every line the slow way
        return parse_lines(data.split(b"\n"), rules, file, file_idx, first_line)
    suspect[good[failed]] = True
    fast = np.delete(good, failed)
    table = pa.concat_tables(tables) if tables else _SCHEMA.empty_table()
    line_no = np.arange(first_line, first_line + len(starts), dtype=np.int64)
    out = _judge(table, fast, data, starts, ends, rules, file, file_idx, line_no)
    slow = np.flatnonzero(suspect)
    if len(slow):
        lines = [data[starts[i] : ends[i]] for i in slow]
        out = _merge(out, parse_lines(lines, rules, file, file_idx, first_line, line_numbers=line_no[slow]))
    return out


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _screen(data: bytes, view: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines the reader cannot judge as orjson does (see the module docstring)."""
    length = ends - starts
    suspect = length == 0
    full = np.flatnonzero(~suspect)
    suspect[full] = (view[starts[full]] != ord("{")) | (view[ends[full] - 1] != ord("}"))
    close = np.flatnonzero(view == ord("}"))
    marks = [close[(close + 1 < len(view)) & (view[np.minimum(close + 1, len(view) - 1)] != 10)]]  # mid-line
    for word in (b"NaN", b"Inf"):
        at = np.flatnonzero(view == word[0])
        at = at[at + 2 < len(view)]
        marks.append(at[(view[at + 1] == word[1]) & (view[at + 2] == word[2])])
    hit = np.concatenate(marks)
    if len(hit):
        suspect[np.searchsorted(starts, hit, side="right") - 1] = True
    for i in np.flatnonzero(length > SCREEN_LINE_BYTES):
        line = data[starts[i] : ends[i]]
        if line.count(b"[") + line.count(b"{") > _MAX_DEPTH or _LONG_NUMBER.search(line):
            suspect[i] = True
    return suspect


def _suffixes(keys: set[str]) -> np.ndarray:
    """The last four bytes before the closing quote of each key, as little-endian uint32 (a short
    key with each byte that can precede its opening quote: ``{``, ``,`` or a space)."""
    out = []
    for k in keys:
        quoted = b'"' + k.encode()
        tails = [quoted[-4:]] if len(quoted) >= 4 else [(c + quoted)[-4:] for c in (b"{", b",", b" ")]
        out += [int.from_bytes(t, "little") for t in tails]
    return np.unique(np.asarray(out, np.uint32))


_NUMERIC_TAILS = _suffixes(_NUMERIC_KEYS)
_ID_TAILS = _suffixes(_ID_KEYS)
_DIGIT_OR_MINUS = np.zeros(256, bool)
_DIGIT_OR_MINUS[[*range(ord("0"), ord("9") + 1), ord("-")]] = True


def _type_screen(view: np.ndarray) -> np.ndarray:
    """Byte positions of a key-value pair whose value has a type the reader refuses for that field:
    a string under a numeric/boolean field, a number under an id field (an integer id is valid, but
    goes the slow way). Keys are told apart by their last four bytes; a false match only sends a line
    the slow way. Other type errors (a list under a scalar, a number too large) the reader reports."""
    if len(view) < 6:
        return np.zeros(0, np.int64)
    colon = np.flatnonzero(view[5:-1] == ord(":")) + 5  # room for a 4-byte key tail and a value byte
    colon = colon[view[colon - 1] == ord('"')]
    value = view[colon + 1]
    string, number = value == ord('"'), _DIGIT_OR_MINUS[value]
    colon, string, number = colon[string | number], string[string | number], number[string | number]
    q = colon - 1  # the key's closing quote
    tail = (view[q - 4].astype(np.uint32) | (view[q - 3].astype(np.uint32) << 8)
            | (view[q - 2].astype(np.uint32) << 16) | (view[q - 1].astype(np.uint32) << 24))
    bad = (string & _member(tail, _NUMERIC_TAILS)) | (number & _member(tail, _ID_TAILS))
    return colon[bad]


def _member(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``np.isin`` against a small sorted table (binary search; ``np.isin`` would sort ``values``)."""
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def _joined(view: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bytes:
    """The given lines, each followed by ``\\n``, as one buffer (one copy per run of consecutive lines)."""
    if not len(starts):
        return b""
    gap = np.flatnonzero(starts[1:] != ends[:-1] + 1)
    first = np.r_[0, gap + 1]
    last = np.r_[gap, len(starts) - 1]
    data = memoryview(view)
    return b"\n".join([data[a:b] for a, b in zip(starts[first].tolist(), ends[last].tolist(), strict=True)]) + b"\n"


def _read_screened(data: bytes, view: np.ndarray, starts: np.ndarray, ends: np.ndarray, suspect: np.ndarray,
                   threads: bool = True) -> tuple[np.ndarray, list[pa.Table] | None, np.ndarray]:
    """The reader's tables of the lines not ``suspect`` (None: it disagrees with the screens), those
    lines (chunk indices) and the ones among them it refused (indices into them).

    The whole buffer is read at once first. If the reader refuses it for a string under a numeric or
    boolean field, :func:`_string_values` marks the lines with that key followed by a string
    ``suspect`` (in place) and the rest is read again, once per such field. Otherwise (or if that does
    not settle it), :func:`_type_screen` marks more lines and the rest is read by :func:`_read_lines`.
    A refusal costs little: the reader stops at the first bad row.
    """
    good = np.flatnonzero(~suspect)
    if not len(good):
        return good, [], np.zeros(0, np.int64)
    if good[-1] - good[0] == len(good) - 1:  # consecutive lines (a clean chunk): the chunk's bytes, no copy
        buf = pa.py_buffer(view[starts[good[0]] : ends[good[-1]]])
    else:
        buf = pa.py_buffer(_joined(view, starts[good], ends[good]))
    try:
        table = _read(buf, threads=threads and len(good) > _WINDOW)
    except _READ_ERRORS as exc:
        retried = _read_without_string_values(data, view, starts, ends, suspect, exc, threads)
        if retried is not None:
            good = np.flatnonzero(~suspect)
            return good, ([retried] if retried.num_rows == len(good) else None), np.zeros(0, np.int64)
        hit = _type_screen(view)
        if len(hit):
            suspect[np.searchsorted(starts, hit, side="right") - 1] = True
            good = np.flatnonzero(~suspect)
        buf = pa.py_buffer(_joined(view, starts[good], ends[good]))  # every line with its newline: windows
        tables, failed = _read_lines(buf, np.r_[0, np.cumsum(ends[good] - starts[good] + 1)], threads)
        return good, tables, failed
    return good, ([table] if table.num_rows == len(good) else None), np.zeros(0, np.int64)


def _read_without_string_values(data: bytes, view: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                                 suspect: np.ndarray, exc: Exception, threads: bool) -> pa.Table | None:
    """The reader's table once the lines with a string under the numeric or boolean field it names in
    ``exc`` are ``suspect`` (marked in place), one field at a time; None when a refusal names no such
    field, or one already screened (then :func:`_type_screen` takes over)."""
    screened: set[str] = set()
    while (m := _STRING_UNDER.search(str(exc))) and m.group(1) in _NUMERIC_KEYS and m.group(1) not in screened:
        screened.add(m.group(1))
        hit = _string_values(data, m.group(1))
        if not len(hit):
            return None
        suspect[np.searchsorted(starts, hit, side="right") - 1] = True
        good = np.flatnonzero(~suspect)
        try:
            return _read(pa.py_buffer(_joined(view, starts[good], ends[good])), threads and len(good) > _WINDOW)
        except _READ_ERRORS as again:
            exc = again
    return None


def _string_values(data: bytes, key: str) -> np.ndarray:
    """Byte positions of ``"key":"`` (a string value right after the key): C-speed substring search,
    one pass over the chunk; bad lines are few, so the loop is short."""
    pattern = b'"' + key.encode() + b'":"'
    out = []
    at = data.find(pattern)
    while at >= 0:
        out.append(at)
        at = data.find(pattern, at + 1)
    return np.asarray(out, np.int64)


def _read(buf: pa.Buffer, threads: bool = False) -> pa.Table:
    block = _BLOCK if threads else max(len(buf), 1 << 16)
    opts = pj.ReadOptions(use_threads=threads, block_size=block)
    return pj.read_json(pa.BufferReader(buf), read_options=opts, parse_options=_PARSE)


def _read_lines(buf: pa.Buffer, offsets: np.ndarray, threads: bool = True) -> tuple[list[pa.Table] | None, np.ndarray]:
    """Tables of lines ``[0, n)`` in order, and the lines the reader refused (as indices)."""
    n = len(offsets) - 1
    if n > _WINDOW:  # the whole chunk at once, on the reader's threads; windows only if it refuses
        try:
            table = _read(buf, threads=threads)
        except _READ_ERRORS:
            pass
        else:
            return ([table] if table.num_rows == n else None), np.zeros(0, np.int64)
    tables: list[pa.Table] = []
    failed: list[int] = []
    todo = [(a, min(a + _WINDOW, n)) for a in range(0, n, _WINDOW)][::-1]
    while todo:
        a, b = todo.pop()
        if a >= b:
            continue
        try:
            table = _read(buf.slice(int(offsets[a]), int(offsets[b] - offsets[a])))
        except _READ_ERRORS as exc:
            m = _ROW.search(str(exc))
            row = int(m.group(1)) if m else -1
            if 0 <= row < b - a:
                failed.append(a + row)
                todo += [(a + row + 1, b), (a, a + row)]
            elif b - a == 1:
                failed.append(a)
            else:
                mid = (a + b) // 2
                todo += [(mid, b), (a, mid)]
            continue
        if table.num_rows != b - a:
            return None, np.zeros(0, np.int64)
        tables.append(table)
    return tables, np.asarray(sorted(failed), np.int64)


def _judge(
    table: pa.Table,
    rows: np.ndarray,
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    rules: Rules,
    file: str,
    file_idx: int,
    line_no: np.ndarray,
) -> ParsedChunk:
    """Checks on the reader's rows (``rows[i]`` is the chunk line of row ``i``)."""
    n = table.num_rows
    reason = np.zeros(n, np.int8)
    field = np.full(n, -1, np.int16)
    ev = pc.index_in(table["event"], pa.array(EVENT_TYPES))
    ev_idx = np.asarray(ev.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    reason[ev_idx < 0] = REASONS.index("unknown_event") + 1
    tables: dict[str, pa.Table] = {}
    for e, event in enumerate(EVENT_TYPES):
        idx = np.flatnonzero(ev_idx == e)
        if not len(idx):
            continue
        take = pa.array(idx)
        cols = {f: table[f].take(take).combine_chunks() for f in (*REQUIRED[event], *OPTIONAL.get(event, ()))}
        bad = {f: np.zeros(len(idx), bool) for f in cols}
        for f in cols:
            if _KIND[f] == "id_list":
                cols[f], bad[f] = null_elements_bad(cols[f])
        g_reason, g_field = check_columns(event, cols, bad, rules)
        reason[idx], field[idx] = g_reason, g_field
        keep = g_reason == 0
        if keep.any():
            tables[event] = accepted_table(event, cols, keep, rows[idx[keep]], file_idx, line_no)
    bad = np.flatnonzero(reason)
    lines = [b""] * n
    for i in bad:
        lines[i] = data[starts[rows[i]] : ends[rows[i]]]
    q = quarantine_table(lines, reason, field, file, line_no[rows])
    return ParsedChunk(tables, q, reason_counts(reason))


def _merge(a: ParsedChunk, b: ParsedChunk) -> ParsedChunk:
    """One chunk's results from two disjoint sets of its lines (quarantine back in line order)."""
    tables = dict(a.tables)
    for e, t in b.tables.items():
        tables[e] = pa.concat_tables([tables[e], t]) if e in tables else t
    q = pa.concat_tables([a.quarantine, b.quarantine])
    if a.quarantine.num_rows and b.quarantine.num_rows:
        q = q.take(pc.sort_indices(q["line"]))
    counts = dict(a.counts)
    for r, k in b.counts.items():
        counts[r] = counts.get(r, 0) + k
    counts = {r: counts[r] for r in REASONS if r in counts}
    assert q.schema == QUARANTINE_SCHEMA and not set(LINEAGE) & set(q.column_names)
    return ParsedChunk(tables, q, counts)

"""Vectorised parsing and validation of raw-log lines (DESIGN section 3, "Raw logs").

One call, :func:`parse_lines`, turns a list of raw lines into typed Arrow tables per event type
and the quarantine rows of the lines that break the contract. Each line is decoded once with
orjson (C); fields are then gathered column by column and converted by pyarrow with strict type
inference, and every check (required fields, types, id length, ranges, the day's window) runs on
whole columns. Only a column whose inference fails in a chunk (mixed or wrong types) falls back to
a per-value type check of that column.

Reason codes (a line gets the first that applies, in this order): ``line_too_long`` (longer than
``ingest.chunk_bytes``), ``blank_line``, ``not_utf8``,
``not_json``, ``not_object``, ``unknown_event`` (``event`` missing or not one of
:data:`~eliverec.data.schemas.EVENT_TYPES`), ``missing_field`` (a required field absent or null),
``bad_type``, ``bad_id`` (an id empty or longer than ``ingest.max_id_len``), ``out_of_range``
(a negative count, position, stay or revenue; a propensity outside [0, 1]; a position beyond
int32), ``ts_out_of_day`` (outside the partition's day +- ``ingest.ts_tolerance_ms``). The reader
adds ``corrupt_gzip`` (see :mod:`eliverec.data.ingest`). Fields that do not
belong to a line's event type are ignored. Ids may be strings or integers (stored as strings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from eliverec.data.schemas import EVENT_TYPES, ID_FIELDS, OPTIONAL, REQUIRED, bronze_schema

REASONS: tuple[str, ...] = (
    "blank_line",
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_event",
    "missing_field",
    "bad_type",
    "bad_id",
    "out_of_range",
    "ts_out_of_day",
    "line_too_long",
    "corrupt_gzip",
)
RAW_PREFIX_BYTES = 4096  # quarantine keeps at most this much of a line, plus its length

#: Every field of any event type, in a fixed order (field index = position here).
FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for e in EVENT_TYPES for f in (*REQUIRED[e], *OPTIONAL.get(e, ()))))
_KIND: dict[str, str] = {
    **{f: "id" for f in ID_FIELDS},
    "ts": "int",
    "position": "int",
    "stay_ms": "int",
    "viewers": "int",
    "revenue_window": "float",
    "score": "float",
    "propensity": "float",
    "products_on_sale": "id_list",
    "derived": "bool",
}
_NON_NEGATIVE = ("position", "stay_ms", "viewers", "revenue_window")
_INT32_MAX = 2**31 - 1
_INT64 = (-(2**63), 2**63 - 1)
_CODE = {r: i + 1 for i, r in enumerate(REASONS)}  # 0 = accepted

QUARANTINE_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("field", pa.string()),
        ("raw", pa.binary()),
        ("raw_bytes", pa.int64()),
        ("raw_truncated", pa.bool_()),
    ]
)
#: Lineage columns carried with accepted rows until deduplication (dropped before bronze).
LINEAGE = ("_file", "_line")


@dataclass(frozen=True)
class Rules:
    """The per-day parameters of validation."""

    max_id_len: int
    ts_min: int
    ts_max: int
    max_line_bytes: int = 2**62  # longer lines are ``line_too_long``


@dataclass
class ParsedChunk:
    """Result of :func:`parse_lines`: accepted rows per event type and the quarantine rows."""

    tables: dict[str, pa.Table]  # bronze columns + LINEAGE, unsorted
    quarantine: pa.Table  # QUARANTINE_SCHEMA
    counts: dict[str, int]  # reason -> lines


_BAD = object()


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _BAD


def _infer(col: list[object]) -> pa.Array | None:
    """Strict pyarrow inference; None when the values have mixed or unsupported types."""
    try:
        return pa.array(col)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _is_int(x: object) -> bool:
    return type(x) is int and _INT64[0] <= x <= _INT64[1]  # type: ignore[operator]


def _id_value(x: object) -> str | None:
    if type(x) is str:
        return x
    return str(x) if _is_int(x) else None


def _convert(col: list[object] | pa.Array, kind: str, values: Callable[[], list] | None = None) -> tuple:
    """Typed array of one field (nulls where absent or bad) and the mask of wrongly typed values.

    ``col`` is the field's Python values, or an array pyarrow already inferred from them; then
    ``values()`` gives the Python values for the per-value check when the inferred type is wrong
    (an inferred array has lost them: ``[1, 1.5]`` became doubles).
    """
    n = len(col)
    arr = col if isinstance(col, pa.Array) else _infer(col)
    if arr is not None:
        t = arr.type
        if pa.types.is_null(t):
            return pa.nulls(n, _target(kind)), np.zeros(n, bool)
        fast = {
            "id": pa.types.is_string(t) or pa.types.is_integer(t),
            "int": pa.types.is_integer(t),
            "float": pa.types.is_floating(t) or pa.types.is_integer(t),
            "bool": pa.types.is_boolean(t),
            "id_list": pa.types.is_list(t)
            and (
                pa.types.is_string(t.value_type) or pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type)
            ),
        }[kind]
        if fast:
            out = arr.cast(_target(kind))
            return null_elements_bad(out) if kind == "id_list" else (out, np.zeros(n, bool))
    if isinstance(col, pa.Array):
        assert values is not None
        col = values()
    return _convert_slow(col, kind)


def null_elements_bad(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A list of ids holding a null is a wrong type (as in the per-value check): nulled, and flagged."""
    bad = np.zeros(len(arr), bool)
    flat = pc.list_flatten(arr)
    if flat.null_count:
        parents = pc.list_parent_indices(arr).to_numpy()
        bad[parents[_mask(flat.is_null())]] = True
        arr = pc.if_else(pa.array(bad), pa.nulls(len(arr), arr.type), arr)
    return arr, bad


def _convert_slow(col: list[object], kind: str) -> tuple[pa.Array, np.ndarray]:
    """Per-value fallback for a column whose values do not share one valid type."""
    if kind == "id":
        vals: list[object] = [_id_value(x) for x in col]
    elif kind == "int":
        vals = [x if _is_int(x) else None for x in col]
    elif kind == "float":
        vals = [float(x) if type(x) is float or _is_int(x) else None for x in col]  # type: ignore[arg-type]
    elif kind == "bool":
        vals = [x if type(x) is bool else None for x in col]
    else:
        vals = [_id_list(x) for x in col]
    bad = np.fromiter((x is not None and v is None for x, v in zip(col, vals, strict=True)), bool, len(col))
    return pa.array(vals, type=_target(kind)), bad


def _id_list(x: object) -> list[str] | None:
    if type(x) is not list:
        return None
    out = [_id_value(v) for v in x]
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def _target(kind: str) -> pa.DataType:
    return {
        "id": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "id_list": pa.list_(pa.string()),
    }[kind]


def _mask(arr: pa.Array) -> np.ndarray:
    """Boolean Arrow array (nulls false) as numpy."""
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _bad_id(arr: pa.Array, kind: str, max_len: int) -> np.ndarray:
    if kind == "id":
        return _bad_length(arr, max_len)
    flat = pc.list_flatten(arr)
    out = np.zeros(len(arr), bool)
    if len(flat):
        bad = _bad_length(flat, max_len)
        parents = pc.list_parent_indices(arr).to_numpy()
        out[parents[bad]] = True
    return out


def _bad_length(strings: pa.Array, max_len: int) -> np.ndarray:
    """Empty, or longer than ``max_len`` characters (nulls: whatever; callers mask them). Byte lengths
    come from the offsets; characters are counted only where the bytes exceed ``max_len``."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type):
        width = np.int32 if pa.types.is_string(strings.type) else np.int64
        offsets = np.frombuffer(strings.buffers()[1], width)[strings.offset : strings.offset + len(strings) + 1]
        nbytes = np.diff(offsets)
    else:
        nbytes = np.asarray(pc.binary_length(strings).fill_null(0).to_numpy(zero_copy_only=False))
    bad = nbytes == 0
    if strings.null_count:
        bad &= _mask(strings.is_valid())
    over = nbytes > max_len  # bytes >= characters: only these can be too long
    if over.any():
        bad |= over & _mask(pc.greater(pc.utf8_length(strings), max_len))
    return bad


def _out_of_range(name: str, arr: pa.Array) -> np.ndarray:
    if name in _NON_NEGATIVE:
        bad = _mask(pc.less(arr, 0))
        if name == "position":
            bad |= _mask(pc.greater(arr, _INT32_MAX))
        return bad
    if name == "propensity":
        return _mask(pc.or_(pc.less(arr, 0.0), pc.greater(arr, 1.0)))
    return np.zeros(len(arr), bool)


def parse_lines(
    lines: list[bytes],
    rules: Rules,
    file: str,
    file_idx: int,
    first_line: int,
    line_numbers: np.ndarray | None = None,
) -> ParsedChunk:
    """Parse and validate ``lines`` (raw bytes, newline removed) of one file.

    ``first_line`` is the 1-based line number of ``lines[0]`` in ``file`` (or ``line_numbers``
    gives each line's number, for lines that are not consecutive). Accepted rows keep the lineage
    columns ``_file`` (= ``file_idx``) and ``_line`` for deduplication. Every line is judged on its
    own: the result for a line does not depend on the other lines of the call.

    >>> rules = Rules(max_id_len=8, ts_min=0, ts_max=10**13)
    >>> ok = b'{"event":"enter","event_id":"e1","ts":5,"user_id":"u","request_id":"r","channel_id":7}'
    >>> out = parse_lines([ok, b"", b"{", b'{"event":"enter"}'], rules, "f.jsonl", 0, 1)
    >>> out.tables["enter"].num_rows, out.counts
    (1, {'blank_line': 1, 'not_json': 1, 'missing_field': 1})
    """
    n = len(lines)
    objs = [_loads(b) for b in lines]
    reason = np.zeros(n, np.int8)
    field = np.full(n, -1, np.int16)
    failed = np.fromiter((o is _BAD for o in objs), bool, n)
    too_long = np.fromiter(map(len, lines), np.int64, n) > rules.max_line_bytes
    for i in np.flatnonzero(too_long):
        objs[i], failed[i] = _BAD, False
        reason[i] = _CODE["line_too_long"]
    for i in np.flatnonzero(failed):
        reason[i] = _CODE[_syntax_reason(lines[i])]
    is_dict = np.fromiter((type(o) is dict for o in objs), bool, n)
    reason[~failed & ~is_dict & ~too_long] = _CODE["not_object"]

    rows = np.flatnonzero(is_dict)
    ev_raw = [objs[i].get("event") for i in rows]  # type: ignore[union-attr]
    ev = pc.index_in(pa.array([e if type(e) is str else None for e in ev_raw], pa.string()), pa.array(EVENT_TYPES))
    known = _mask(ev.is_valid())
    ev_idx = np.asarray(ev.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    reason[rows[~known]] = _CODE["unknown_event"]

    line_no = (
        np.arange(first_line, first_line + n, dtype=np.int64)
        if line_numbers is None
        else np.asarray(line_numbers, np.int64)
    )
    tables: dict[str, pa.Table] = {}
    for e, event in enumerate(EVENT_TYPES):
        idx = rows[ev_idx == e]
        if not len(idx):
            continue
        g_reason, g_field, cols = _check_group(event, [objs[i] for i in idx], rules)  # type: ignore[misc]
        reason[idx] = g_reason
        field[idx] = g_field
        keep = g_reason == 0
        if keep.any():
            tables[event] = accepted_table(event, cols, keep, idx[keep], file_idx, line_no)
    return ParsedChunk(tables, quarantine_table(lines, reason, field, file, line_no), reason_counts(reason))


def _extract(dicts: list[dict[str, object]], required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, list]:
    """Columns of the required and optional fields (None where absent).

    Fast path: one C-level ``itemgetter`` call per row for the required fields, and optional
    fields read only from rows that have more keys than ``event`` + the required ones.
    """
    n = len(dicts)
    try:
        cols = dict(zip(required, map(list, zip(*map(itemgetter(*required), dicts), strict=True)), strict=True))
        if len(required) == 1:  # itemgetter of one key returns the value, not a tuple
            cols = {required[0]: [d[required[0]] for d in dicts]}
    except KeyError:
        cols = {f: [d.get(f) for d in dicts] for f in required}
    if not n:
        return {f: [] for f in (*required, *optional)}
    if optional:
        extra = np.flatnonzero(np.fromiter(map(len, dicts), np.int64, n) > len(required) + 1).tolist()
        sub = dicts if len(extra) == n else [dicts[i] for i in extra]
        seen = set().union(*sub) if sub else set()
        for f in optional:
            if f not in seen:
                cols[f] = [None] * n
                continue
            vals = [d.get(f) for d in sub]
            if len(extra) == n:
                cols[f] = vals
            else:
                col: list[object] = [None] * n
                for i, v in zip(extra, vals, strict=True):
                    col[i] = v
                cols[f] = col
    return cols


def _columns(dicts: list[dict[str, object]], required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    """The fields' values: one C-level struct inference over all rows when their types agree
    (the common case), else :func:`_extract` (Python values per field)."""
    try:
        st = pa.array(dicts)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _extract(dicts, required, optional)
    if not pa.types.is_struct(st.type):
        return _extract(dicts, required, optional)
    names = {st.type.field(i).name for i in range(st.type.num_fields)}
    n = len(dicts)
    return {f: (st.field(f) if f in names else pa.nulls(n)) for f in (*required, *optional)}


def _check_group(event: str, dicts: list[dict[str, object]], rules: Rules) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reason code and failing field per row of one event type, and the typed columns."""
    required, optional = REQUIRED[event], OPTIONAL.get(event, ())
    raw = _columns(dicts, required, optional)
    cols: dict[str, pa.Array] = {}
    bad: dict[str, np.ndarray] = {}
    for name in (*required, *optional):
        getter = lambda f=name: [d.get(f) for d in dicts]  # noqa: E731
        cols[name], bad[name] = _convert(raw[name], _KIND[name], getter)  # type: ignore[misc]
    reason, field = check_columns(event, cols, bad, rules)
    return reason, field, cols


def check_columns(
    event: str, cols: dict[str, pa.Array], bad_types: dict[str, np.ndarray] | None, rules: Rules
) -> tuple[np.ndarray, np.ndarray]:
    """Reason code (0 = accepted) and failing field index per row of one event type.

    ``cols`` holds the event type's fields already typed per :func:`_target` (nulls where absent),
    ``bad_types`` the rows whose value had a wrong type (None: no such row).
    """
    required, optional = REQUIRED[event], OPTIONAL.get(event, ())
    n = len(cols[required[0]])
    checks: dict[str, list[tuple[int, np.ndarray]]] = {c: [] for c in _ROW_CHECKS}
    no_bad = np.zeros(n, bool)
    for name in (*required, *optional):
        fi = FIELDS.index(name)
        kind = _KIND[name]
        arr = cols[name]
        bad_type = no_bad if bad_types is None else bad_types[name]
        present = _mask(arr.is_valid())
        if name in required:
            checks["missing_field"].append((fi, ~present & ~bad_type))
        checks["bad_type"].append((fi, bad_type))
        if kind in ("id", "id_list"):
            checks["bad_id"].append((fi, present & _bad_id(arr, kind, rules.max_id_len)))
        checks["out_of_range"].append((fi, present & _out_of_range(name, arr)))
        if name == "ts":
            ts = np.asarray(arr.fill_null(rules.ts_min).to_numpy(zero_copy_only=False))
            checks["ts_out_of_day"].append((fi, present & ((ts < rules.ts_min) | (ts > rules.ts_max))))
    reason = np.zeros(n, np.int8)
    field = np.full(n, -1, np.int16)
    for code in _ROW_CHECKS:  # priority order; within a reason, the first field in contract order
        for fi, fail in checks[code]:
            sel = fail & (reason == 0)
            reason[sel] = _CODE[code]
            field[sel] = fi
    return reason, field


_ROW_CHECKS = ("missing_field", "bad_type", "bad_id", "out_of_range", "ts_out_of_day")


def accepted_table(
    event: str,
    cols: dict[str, pa.Array],
    keep: np.ndarray,
    idx: np.ndarray,
    file_idx: int,
    line_no: np.ndarray,
) -> pa.Table:
    """The accepted rows of one event type, typed per the bronze schema, with lineage columns."""
    sel = pa.array(keep)
    schema = bronze_schema(event)
    arrays = [cols[f.name].filter(sel).cast(f.type) for f in schema]
    arrays += [
        pa.array(np.full(len(idx), file_idx, np.int32)),
        pa.array(line_no[idx]),
    ]
    return pa.Table.from_arrays(arrays, schema=_with_lineage(schema))


def _with_lineage(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("_file", pa.int32())).append(pa.field("_line", pa.int64()))


def _syntax_reason(line: bytes) -> str:
    if not line.strip():
        return "blank_line"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    return "not_json"


def reason_counts(reason: np.ndarray) -> dict[str, int]:
    codes, counts = np.unique(reason[reason > 0], return_counts=True)
    return {REASONS[c - 1]: int(k) for c, k in zip(codes, counts, strict=True)}


def quarantine_rows(
    file: str, lines: list[bytes], line_no: list[int], reasons: list[str], fields: list[str | None]
) -> pa.Table:
    """Quarantine table for the given raw lines (each cut to its first 4 KB, with its length)."""
    return pa.table(
        {
            "file": pa.array([file] * len(lines), pa.string()),
            "line": pa.array(line_no, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "field": pa.array(fields, pa.string()),
            "raw": pa.array([b[:RAW_PREFIX_BYTES] for b in lines], pa.binary()),
            "raw_bytes": pa.array([len(b) for b in lines], pa.int64()),
            "raw_truncated": pa.array([len(b) > RAW_PREFIX_BYTES for b in lines], pa.bool_()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def quarantine_table(
    lines: list[bytes], reason: np.ndarray, field: np.ndarray, file: str, line_no: np.ndarray
) -> pa.Table:
    """Quarantine rows of the lines with a reason (``reason > 0``), in line order."""
    bad = np.flatnonzero(reason)
    return quarantine_rows(
        file,
        [lines[i] for i in bad],
        line_no[bad].tolist(),
        [REASONS[reason[i] - 1] for i in bad],
        [FIELDS[field[i]] if field[i] >= 0 else None for i in bad],
    )

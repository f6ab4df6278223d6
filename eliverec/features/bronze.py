"""Reading the bronze tables the feature stage needs, with clear errors.

Layout (DESIGN section 3): ``<data_dir>/bronze/<date>/<event>.parquet`` typed per
:func:`eliverec.data.schemas.bronze_schema`, and the day's dimension snapshots
``users.parquet``, ``channels.parquet``, ``products.parquet`` in the same folder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eliverec.data.partition import string_partition
from eliverec.data.schemas import DIMENSIONS, bronze_schema
from eliverec.errors import DataError
from eliverec.layout import DataLayout

#: Which rows of a record batch to keep (a boolean mask), for reads that must not hold a whole table.
RowFilter = Callable[[pa.RecordBatch], np.ndarray]
ROW = "_row"  # the row's index in its file, added by :func:`read_table` when asked
_BATCH_ROWS = 65_536


def read_table(path: Path, schema: pa.Schema, columns: list[str] | None = None, where: RowFilter | None = None,
               row_index: bool = False) -> pa.Table:
    """Read ``columns`` of a bronze parquet file, checked and cast to the contract's types.

    ``where``: keep only the rows it selects, reading the file a batch at a time (memory: the kept
    rows and one batch of the projected columns, not the file); ``row_index``: add the rows' indices
    in the file as column ``_row``. Raises :class:`DataError` naming the file, the missing or
    mistyped column and the fix.
    """
    names = columns or schema.names
    if not path.is_file():
        raise DataError(f"{path}: missing; run `eliverec ingest` for {path.parent.name} first")
    try:
        found = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc}); re-run `eliverec ingest`") from exc
    missing = [n for n in names if n not in found.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(found.names)}); "
                        "the bronze contract is eliverec/data/schemas.py: re-run `eliverec ingest`")
    table = pq.read_table(path, columns=names) if where is None and not row_index else \
        _read_filtered(path, names, where, row_index)
    target = pa.schema([pa.field(n, schema.field(n).type) for n in names])
    if row_index:
        target = target.append(pa.field(ROW, pa.int64()))
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{path}: column types {table.schema} do not match the bronze contract ({exc}); "
                        "re-run `eliverec ingest`") from exc


def _read_filtered(path: Path, names: list[str], where: RowFilter | None, row_index: bool) -> pa.Table:
    """The rows ``where`` keeps, one record batch at a time (plus ``_row`` if asked)."""
    parts, offset = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=names):
        keep = np.ones(batch.num_rows, bool) if where is None else np.asarray(where(batch), bool)
        kept = batch.filter(pa.array(keep))
        if row_index:
            kept = kept.append_column(ROW, pa.array(offset + np.flatnonzero(keep), pa.int64()))
        parts.append(kept)
        offset += batch.num_rows
    if parts:
        return pa.Table.from_batches(parts)
    empty = pq.read_schema(path).empty_table().select(names)
    return empty.append_column(ROW, pa.array([], pa.int64())) if row_index else empty


def of_partition(column: str, k: int, n: int) -> RowFilter:
    """Rows whose ``column`` falls in partition ``k`` of ``n`` (:func:`~eliverec.data.partition.string_partition`)."""
    return lambda batch: string_partition(batch.column(column), n) == k


def read_event(data_dir: Path, day: dt.date, event: str, columns: list[str], where: RowFilter | None = None,
               row_index: bool = False) -> pa.Table:
    """One event table of one day (the rows ``where`` keeps; see :func:`read_table`)."""
    return read_table(DataLayout(data_dir).bronze_table(day, event), bronze_schema(event), columns, where, row_index)


def read_dimension(data_dir: Path, day: dt.date, name: str, where: RowFilter | None = None) -> pa.Table:
    """One dimension snapshot (users, channels, products) of one day (the rows ``where`` keeps)."""
    return read_table(DataLayout(data_dir).bronze_table(day, name), DIMENSIONS[name], where=where)


def require_window(data_dir: Path, days: list[dt.date]) -> None:
    """Every window day must have a bronze folder; the error names the folder and the fix."""
    lay = DataLayout(data_dir)
    missing = [d for d in days if not lay.bronze(d).is_dir()]
    if missing:
        names = ", ".join(str(lay.bronze(d)) for d in missing)
        raise DataError(f"missing bronze day folder(s): {names}; ingest them first "
                        f"(`eliverec ingest --date {missing[0].isoformat()}`) or choose another --end-date")

"""Reading the bronze tables the feature stage needs, with clear errors.

Layout (DESIGN section 3): ``<data_dir>/bronze/<date>/<event>.parquet`` typed per
:func:`eliverec.data.schemas.bronze_schema`, and the day's dimension snapshots
``users.parquet``, ``channels.parquet``, ``products.parquet`` in the same folder.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from eliverec.data.schemas import DIMENSIONS, bronze_schema
from eliverec.errors import DataError
from eliverec.layout import DataLayout


def read_table(path: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read ``columns`` of a bronze parquet file, checked and cast to the contract's types.

    Raises :class:`DataError` naming the file, the missing or mistyped column and the fix.
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
    table = pq.read_table(path, columns=names)
    target = pa.schema([pa.field(n, schema.field(n).type) for n in names])
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{path}: column types {table.schema} do not match the bronze contract ({exc}); "
                        "re-run `eliverec ingest`") from exc


def read_event(data_dir: Path, day: dt.date, event: str, columns: list[str]) -> pa.Table:
    """One event table of one day."""
    return read_table(DataLayout(data_dir).bronze_table(day, event), bronze_schema(event), columns)


def read_dimension(data_dir: Path, day: dt.date, name: str) -> pa.Table:
    """One dimension snapshot (users, channels, products) of one day."""
    return read_table(DataLayout(data_dir).bronze_table(day, name), DIMENSIONS[name])


def require_window(data_dir: Path, days: list[dt.date]) -> None:
    """Every window day must have a bronze folder; the error names the folder and the fix."""
    lay = DataLayout(data_dir)
    missing = [d for d in days if not lay.bronze(d).is_dir()]
    if missing:
        names = ", ".join(str(lay.bronze(d)) for d in missing)
        raise DataError(f"missing bronze day folder(s): {names}; ingest them first "
                        f"(`eliverec ingest --date {missing[0].isoformat()}`) or choose another --end-date")

"""Hand-made bronze tables for the feature tests (written with the bronze contract's schemas)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, bronze_schema

DAY_MS = 86_400_000


def ms(date: str, hour: int = 0, minute: int = 0, second: int = 0, milli: int = 0) -> int:
    """Milliseconds since epoch of a UTC time on ``date``."""
    d = dt.date.fromisoformat(date)
    return (d - dt.date(1970, 1, 1)).days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + milli


def write_bronze_day(data_dir: Path, date: str, events: Mapping[str, Sequence[Mapping[str, Any]]],
                     users: Sequence[Mapping[str, Any]] = (), channels: Sequence[Mapping[str, Any]] = (),
                     products: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write one bronze day folder; event tables not given are written empty."""
    folder = Path(data_dir) / "bronze" / date
    folder.mkdir(parents=True, exist_ok=True)
    for event in EVENT_TYPES:
        schema = bronze_schema(event)
        rows = [
            {**{n: None for n in schema.names}, "event_id": f"{event}-{date}-{i}", **r}
            for i, r in enumerate(events.get(event, ()))
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{event}.parquet")
    for name, rows in (("users", users), ("channels", channels), ("products", products)):
        pq.write_table(pa.Table.from_pylist(list(rows), schema=DIMENSIONS[name]), folder / f"{name}.parquet")
    return folder


@pytest.fixture
def bronze_writer():
    """The :func:`write_bronze_day` helper."""
    return write_bronze_day

"""Reading bronze tables a batch at a time, keeping only a shard's rows (issue 18)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import eliverec.features.bronze as bronze
from eliverec.data.partition import string_partition
from eliverec.data.schemas import bronze_schema
from eliverec.errors import DataError


@pytest.fixture
def clicks(tmp_path, monkeypatch):
    """A product_click table of 1,000 rows in row groups of 128, read in batches of 100."""
    monkeypatch.setattr(bronze, "_BATCH_ROWS", 100)
    n = 1000
    t = pa.table({"event_id": [f"e{i}" for i in range(n)], "ts": np.arange(n, dtype=np.int64),
                  "user_id": [f"u{i % 37}" for i in range(n)], "product_id": [f"p{i % 11}" for i in range(n)]})
    path = tmp_path / "product_click.parquet"
    pq.write_table(t.cast(bronze_schema("product_click")), path, row_group_size=128)
    return path, t


def test_a_partition_read_keeps_exactly_its_rows_with_their_file_row_index(clicks):
    path, t = clicks
    schema = bronze_schema("product_click")
    seen = []
    for k in range(3):
        got = bronze.read_table(path, schema, ["user_id", "ts"], bronze.of_partition("user_id", k, 3), row_index=True)
        mask = string_partition(t["user_id"], 3) == k
        assert got.column_names == ["user_id", "ts", bronze.ROW]
        want = t.select(["user_id", "ts"]).filter(pa.array(mask))
        assert got.select(["user_id", "ts"]).to_pylist() == want.to_pylist()
        assert got[bronze.ROW].to_numpy().tolist() == np.flatnonzero(mask).tolist()
        seen += got[bronze.ROW].to_pylist()
    assert sorted(seen) == list(range(t.num_rows))


def test_a_read_that_keeps_nothing_has_the_columns_and_types(clicks):
    path, _ = clicks
    got = bronze.read_table(path, bronze_schema("product_click"), ["user_id", "ts"],
                            lambda b: np.zeros(b.num_rows, bool), row_index=True)
    assert got.num_rows == 0 and got.schema.field("ts").type == pa.int64() and bronze.ROW in got.column_names


def test_a_filtered_read_still_names_a_missing_column(clicks):
    path, _ = clicks
    with pytest.raises(DataError, match="missing column"):
        bronze.read_table(path, bronze_schema("impression"), ["position"], bronze.of_partition("user_id", 0, 2))

"""The Great Expectations suite on samples passes on good samples and names what breaks on bad ones."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eliverec.config import load_settings
from eliverec.errors import ValidationFailed
from eliverec.features.build import build_features
from eliverec.features.expectations import validate_samples
from eliverec.features.synthetic import SyntheticSize, write_days
from eliverec.layout import DataLayout
from tests.conftest import PARAMS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("expect") / "data"
    settings = load_settings("tiny", overrides=["features.seq_len=6", "features.lookback_days=1"], params=PARAMS,
                             data_dir=root)
    write_days(root, "2026-09-01", 2, SyntheticSize(n_users=30, n_channels=10, n_products=50,
                                                    impressions_per_day=400, clicks_per_day=300), seed=5)
    return settings


def test_suite_passes_then_fails_on_corruption(built):
    build_features(built, "2026-09-02", 1)
    ok = validate_samples(built, "2026-09-02")
    assert ok["success"] and ok["n_expectations"] > 30 and ok["rows"] == 400
    path = DataLayout(built.data_dir).features("2026-09-02") / "samples.parquet"
    t = pq.read_table(path)
    bad_len = pa.array([99] * t.num_rows, pa.int32())  # longer than seq_len and not the non-pad count
    bad_id = pa.array([built.features.vocab["channel"]] * t.num_rows, pa.int32())  # outside [1, vocab)
    t = t.set_column(t.schema.get_field_index("product_len"), "product_len", bad_len)
    t = t.set_column(t.schema.get_field_index("channel_h"), "channel_h", bad_id)
    pq.write_table(t, path)
    with pytest.raises(ValidationFailed) as err:
        validate_samples(built, "2026-09-02")
    msg = str(err.value)
    assert "product_len" in msg and "channel_h" in msg and "expect_column_pair_values_to_be_equal" in msg
    assert (path.parent / "samples.md").read_text().count("FAILED") == 1


def test_label_rate_band(built):
    build_features(built, "2026-09-02", 1)
    strict = built.model_copy(update={"features": built.features.model_copy(
        update={"label_rate_bands": {"watch": (0.9, 1.0)}})})
    with pytest.raises(ValidationFailed, match="watch"):
        validate_samples(strict, "2026-09-02")

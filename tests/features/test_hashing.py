"""Id hashing: stable across processes, in range, vectorised equals one-by-one, spec pinned by its hash."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from eliverec.config import ConfigError, load_settings
from eliverec.errors import DataError
from eliverec.features.hashing import FeatureSpec, hash_array, hash_strings
from tests.conftest import PARAMS, REPO

IDS = ["u1", "u2", "ü-ñ", "", "x" * 128, "u1"]


def test_stable_across_processes():
    code = ("import json; from eliverec.features.hashing import hash_array; "
            f"print(json.dumps(hash_array({IDS!r}, 'eliverec-v1', 'user', 200003).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(out.stdout) == hash_array(IDS, "eliverec-v1", "user", 200003).tolist()


def test_range_and_vectorised_equals_scalar():
    values = [f"id{i}" for i in range(5000)]
    h = hash_array(pa.array(values), "s", "product", 101)
    assert h.min() >= 1 and h.max() <= 100 and h.dtype == np.int32
    assert h.tolist() == [int(hash_strings([v], "s", "product", 101)[0]) for v in values]
    assert len(np.unique(h)) == 100  # spreads over the whole table


def test_salt_and_space_change_the_hash_nulls_are_not_padding():
    a = hash_array(["a", "b", "c"], "s1", "user", 10_007)
    assert (a != hash_array(["a", "b", "c"], "s2", "user", 10_007)).any()
    assert (a != hash_array(["a", "b", "c"], "s1", "product", 10_007)).any()
    nulls = hash_array(pa.array([None, None], pa.string()), "s1", "user", 10_007)
    assert nulls[0] == nulls[1] != 0


def test_spec_round_trip_and_tamper(tmp_path, tiny_settings):
    spec = FeatureSpec.from_settings(tiny_settings)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert FeatureSpec.load(path) == spec
    other = load_settings("tiny", overrides=["features.hash_salt=other"], params=PARAMS)
    assert FeatureSpec.from_settings(other).spec_hash != spec.spec_hash
    data = json.loads(path.read_text())
    data["seq_len"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="spec_hash"):
        FeatureSpec.load(path)


def test_bad_vocab_is_a_config_error():
    with pytest.raises(ConfigError, match="hour must be >= 25"):
        load_settings("tiny", overrides=["features.vocab.hour=24"], params=PARAMS)

"""Partitions of string keys: stable, equal strings together, balanced."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from eliverec.data.partition import sampled_partition, string_partition


@pytest.mark.parametrize("fn", [string_partition, sampled_partition])
def test_equal_strings_share_a_partition_wherever_they_sit(fn):
    words = ["", "a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "e20260901-1234567", "\u00e9t\u00e9", "x" * 40]
    whole = fn(pa.array(words), 13)
    sliced = fn(pa.array(["pad", *words]).slice(1), 13)
    chunked = fn(pa.chunked_array([pa.array(words[:4]), pa.array(words[4:])]), 13)
    single = [int(fn(pa.array([w]), 13)[0]) for w in words]
    assert whole.tolist() == sliced.tolist() == chunked.tolist() == single
    assert ((whole >= 0) & (whole < 13)).all()
    assert fn(pa.array([None, ""]), 13)[0] == fn(pa.array([None, ""]), 13)[1]  # null counts as ""


@pytest.mark.parametrize("fn", [string_partition, sampled_partition])
def test_ids_spread_evenly(fn):
    ids = pa.array([f"e2026090{d}-{i}" for d in range(3) for i in range(20_000)])
    counts = np.bincount(fn(ids, 8), minlength=8)
    assert counts.min() > 0.9 * len(ids) / 8 and counts.max() < 1.1 * len(ids) / 8


def test_sampled_partition_reads_head_tail_and_length():
    a = sampled_partition(pa.array(["headhead" + "m" * 9 + "tailtail", "headhead" + "n" * 9 + "tailtail",
                                    "headhead" + "n" * 8 + "tailtail"]), 1 << 30)
    assert a[0] == a[1]  # same length, first and last 8 bytes: same partition (only balance suffers)
    assert a[0] != a[2]

"""The sharded data stages (issue 18): a 2-worker local Dask cluster through Prefect gives byte-identical
samples and tensors to the single-process build."""

from __future__ import annotations

import pytest

from eliverec.config import ConfigError, load_settings
from tests.conftest import PARAMS
from tests.pipeline import build, tiny


def _features(settings) -> dict[str, bytes]:
    """Every file of every feature day (samples, tensors, spec, summary), by path."""
    root = settings.data_dir / "features"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("20*/**/*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny world, ingested, with the single-process build's files (small chunks: many merge chunks)."""
    settings = tiny(tmp_path_factory.mktemp("scale"), "features.chunk_rows=700")
    info = build(settings)
    return settings, info, _features(settings)


def test_sharded_build_in_process_is_byte_identical(world):
    from eliverec.features.shards import build_sharded

    settings, info, single = world
    out = build_sharded(settings, info["test_day"], None, 3)
    assert _features(settings) == single
    assert out["shards"]["count"] == 3 and sum(out["shards"]["rows"]) == out["rows"] > 0
    assert min(out["shards"]["rows"]) > 0  # every shard had users: the merge interleaved them


def test_sharded_flow_on_two_local_dask_workers_is_byte_identical(world, harness):
    from flows import scale
    from flows.common import Target

    settings, info, single = world
    (settings.data_dir / "features" / info["test_day"] / "samples.parquet").unlink()  # must be rebuilt
    target = Target.resolve("tiny", (f"tracking.uri={settings.tracking.uri}", "features.chunk_rows=700",
                                     "flows.cluster=local", "flows.cluster_workers=2"), str(settings.data_dir),
                            str(PARAMS))
    out = scale.run(target, info["test_day"])
    assert _features(settings) == single
    f = out["features"]
    assert f["shards"]["count"] == 2 and f["rows"] == sum(f["shards"]["rows"])  # features.shards 0: one per worker
    assert not list((settings.data_dir / "features").glob(".shards-*"))  # scratch removed


@pytest.mark.parametrize("cluster", ["local", "tcp://10.0.0.5:8786", "tls://scheduler:8786"])
def test_cluster_setting_accepts_local_or_an_address(cluster):
    assert load_settings("tiny", overrides=[f"flows.cluster={cluster}"], params=PARAMS).flows.cluster == cluster


@pytest.mark.parametrize("cluster", ["remote", "10.0.0.5:8786", "tcp://host", "http://host:8786"])
def test_cluster_setting_refuses_anything_else(cluster):
    with pytest.raises(ConfigError, match="flows.cluster"):
        load_settings("tiny", overrides=[f"flows.cluster={cluster}"], params=PARAMS)


def test_a_shard_task_reads_only_its_rows(world, monkeypatch, tmp_path):
    """Memory follows the shard: user shards read their users' rows only (a batch at a time) and no
    channel stats; channel-stats shards read their channels' stats and impressions only."""
    import inspect

    import eliverec.features.build as build
    import eliverec.features.shards as shards

    settings, info, _ = world
    calls: list[tuple[str, str, object]] = []
    for mod in (build, shards):
        for name in ("read_event", "read_dimension"):
            real = getattr(mod, name)
            sig = inspect.signature(real)

            def spy(*a, _real=real, _name=name, _sig=sig, **k):
                args = _sig.bind(*a, **k).arguments
                calls.append((_name, args.get("event", args.get("name")), args.get("where")))
                return _real(*a, **k)

            monkeypatch.setattr(mod, name, spy)
    for j in range(2):
        shards.build_stats_shard(settings, info["test_day"], None, j, 2, tmp_path)
    stats_calls, calls[:] = list(calls), []
    out = shards.build_shard(settings, info["test_day"], None, 0, 2, tmp_path)
    assert out["rows"] > 0 and out["peak_rss_mb"] > 0
    assert {e for f, e, _ in stats_calls if f == "read_event"} == {"channel_stats", "impression"}
    assert all(w is not None for _, _, w in stats_calls)  # its channels' rows, their on-sale products only
    events = {e for f, e, _ in calls if f == "read_event"}
    assert "channel_stats" not in events and {"product_click", "leave", "impression"} <= events
    assert all(w is not None for f, e, w in calls if f == "read_event")  # its users' rows only
    assert {e for f, e, w in calls if f == "read_dimension" and w is None} == {"channels"}  # small: whole


def test_shard_stats_refuse_rows_they_do_not_cover(tmp_path):
    import datetime as dt

    import numpy as np

    from eliverec.features.shards import _stats_file, shard_stats

    day = dt.date(2026, 9, 1)
    for j, rows in enumerate(([0, 4], [2])):
        path = _stats_file(tmp_path, j, day, 0)
        path.parent.mkdir(parents=True)
        r = np.asarray(rows, np.int64)
        np.savez(path, row=r, dynamic=np.c_[r, r, r, r].astype(np.float32), cats=np.c_[r, r].astype(np.int32),
                 has=r > 0)
    dyn, cats, has = shard_stats(tmp_path, 0, 2)(day, np.array([4, 0, 2]))  # in sample order
    assert dyn[:, 0].tolist() == [4, 0, 2] and cats[:, 1].tolist() == [4, 0, 2] and has.tolist() == [True, False, True]
    with pytest.raises(RuntimeError, match="do not cover"):
        shard_stats(tmp_path, 0, 2)(day, np.array([0, 2, 5]))


def test_peak_memory_count_restarts_per_task():
    import numpy as np

    from eliverec.features.shards import _peak_rss_mb, _reset_peak_rss

    big = np.ones(300 * 2**20 // 8)  # 300 MB touched
    high = _peak_rss_mb()
    del big
    _reset_peak_rss()
    assert _peak_rss_mb() < high - 200


MERGE_HELD = r"""
import json, sys, tracemalloc
from pathlib import Path
import pyarrow as pa
from eliverec.config import load_settings
from eliverec.features.shards import merge_day
from eliverec.layout import as_date
params, data, day, root, *overrides = sys.argv[1:]
settings = load_settings("tiny", overrides=overrides, params=params, data_dir=data)
tracemalloc.start()
merge_day(settings, as_date(day), "test", [as_date(day)], 2, Path(root))
print(json.dumps({"numpy": tracemalloc.get_traced_memory()[1], "arrow": pa.default_memory_pool().max_memory()}))
"""
SYNTH_OVERRIDES = ("features.seq_len=6", "features.lookback_days=0", "features.chunk_rows=500",
                   "features.vocab.user=257")  # 300 users: user-id hash collisions, split across shards


def _synthetic_shards(root, impressions: int):
    """A 2-day synthetic window (the same 300 users; coarse timestamps: many equal ts across shards),
    its single-process build's test day, and the window's 2 channel-stats and 2 user shards under
    ``root/shards``; ``(settings, test day, the test day's files)``."""
    from eliverec.features.build import build_features
    from eliverec.features.shards import build_shard, build_stats_shard
    from eliverec.features.synthetic import SyntheticSize, write_days

    settings = load_settings("tiny", overrides=list(SYNTH_OVERRIDES), params=PARAMS, data_dir=root / "data")
    size = SyntheticSize(n_users=300, n_channels=40, n_products=200, impressions_per_day=impressions,
                         clicks_per_day=impressions // 2, tick_ms=60_000)
    end = write_days(root / "data", "2026-09-01", 2, size, seed=5)[-1]
    build_features(settings, end, 1)
    for j in range(2):
        build_stats_shard(settings, end, 1, j, 2, root / "shards")
    for k in range(2):
        build_shard(settings, end, 1, k, 2, root / "shards")
    return settings, end, _features(settings)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Small and 8x bigger days (same users and channels), with their shards."""
    return {n: _synthetic_shards(tmp_path_factory.mktemp(f"merge{n}"), n) for n in (2_000, 16_000)}


def test_merge_of_synthetic_shards_is_byte_identical_with_ties_across_shards(synthetic):
    import datetime as dt
    import json

    from eliverec.features.shards import merge_day
    from eliverec.layout import DAY_SUMMARY

    settings, end, single = synthetic[2_000]
    day = dt.date.fromisoformat(end)
    merge_day(settings, day, "test", [day - dt.timedelta(days=1), day], 2, settings.data_dir.parent / "shards")
    assert _features(settings) == single
    assert json.loads(single[f"{end}/{DAY_SUMMARY}"])["hash_collisions"]["user"] > 0  # counted across shards


def test_merge_memory_does_not_grow_with_the_day(synthetic):
    """What the merge holds (numpy allocations, traced, plus the Arrow pool's peak), each day merged in a
    fresh process: 8x the impressions (same users, chunk 500 rows) adds less than 4 bytes per extra
    impression (measured: about 1.6, the output parquet footer's entry per row group; holding the day's
    impression keys, as the merge did before, costs about 50)."""
    import json
    import os
    import subprocess
    import sys

    held = {}
    for n, (settings, end, _) in synthetic.items():
        out = subprocess.run([sys.executable, "-c", MERGE_HELD, str(PARAMS), str(settings.data_dir), end,
                              str(settings.data_dir.parent / "shards"), *SYNTH_OVERRIDES],
                             capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.getcwd()})
        assert out.returncode == 0, out.stderr[-2000:]
        held[n] = json.loads(out.stdout.strip().splitlines()[-1])
    small, big = (held[n]["numpy"] + held[n]["arrow"] for n in (2_000, 16_000))
    assert big - small < 4 * (16_000 - 2_000), held


@pytest.mark.parametrize("damage", ["samples.arrow:truncate", "tensors/product_seq.npy:truncate",
                                    "tensors/user.npy:remove", "rows:remove", "samples.arrow:remove", "users:remove"])
def test_merge_names_a_missing_or_truncated_shard_file(synthetic, tmp_path, damage):
    import datetime as dt
    import shutil

    from eliverec.errors import DataError
    from eliverec.features.shards import _rows_file, _users_file, merge_day

    settings, end, _ = synthetic[2_000]
    root = tmp_path / "shards"
    shutil.copytree(settings.data_dir.parent / "shards", root)
    day = dt.date.fromisoformat(end)
    name, how = damage.split(":")
    files = {"rows": _rows_file(root, 1, day), "users": _users_file(root, 1, day)}
    path = files.get(name, root / "shard-0001" / end / name)
    if how == "remove":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=str(path)):
        merge_day(settings, day, "test", [day], 2, root)

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

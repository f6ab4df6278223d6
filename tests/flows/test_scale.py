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

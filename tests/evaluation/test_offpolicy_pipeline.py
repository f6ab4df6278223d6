"""``eliverec ope`` and the gate's off-policy check on a tiny simulated world with a trained toy model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from eliverec.errors import DataError, EliverecError
from eliverec.evaluation import offpolicy as ope
from eliverec.evaluation.evaluate import load_model
from eliverec.training.trainer import train
from tests.pipeline import build, tiny
from tests.training.toy import BUILDER, LOSS


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ope")
    s = tiny(root)
    info = build(s)
    res = train(s, end_date=info["test_day"], builder=BUILDER, loss_builder=LOSS)
    return s, info["test_day"], f"runs:/{res.run_id}/model"


class Reversed:
    """A pyfunc-like model that ranks in the reverse order of another (the negative control's effect)."""

    def __init__(self, model: object) -> None:
        self.model = model

    def predict(self, inputs: dict[str, np.ndarray]) -> pd.DataFrame:
        return 1.0 - self.model.predict(inputs)  # type: ignore[attr-defined]


def test_logged_day_recovers_feeds_propensities_and_pools(world) -> None:
    s, day, _ = world
    feeds = ope.load_day_feeds(s, day, max_feeds=10**9, seed=0)
    logs = feeds.logs["watch"]
    w = ope.pl_weights(ope.feed_matrix(logs, logs.propensity))
    assert (w.sum(1) <= 1 + 1e-9).all() and (w[ope.feed_matrix(logs, logs.propensity) > 0] > 0).all()
    assert (feeds.pool_codes.max(1) >= 0).all()
    in_pool = (feeds.pool_codes[logs.feed] == feeds.channel[:, None]).any(1)
    assert in_pool.all()  # a feed's own channels are in its pool
    stats = pq.read_table(s.data_dir / "bronze" / day / "channel_stats.parquet", columns=["channel_id", "ts"])
    stats = stats.to_pandas()
    slot = stats["ts"] // (s.world.stats_interval_min * 60_000)
    code = pd.Index(feeds.channel_ids).get_indexer(stats["channel_id"])
    live = {(int(a), int(c)) for a, c in zip(slot, code, strict=True) if c >= 0}
    ids = pq.read_table(s.data_dir / "features" / day / "samples.parquet", columns=["ts"]).to_pandas()
    feed_slot = ids["ts"].to_numpy()[feeds.feed_row] // (s.world.stats_interval_min * 60_000)
    pooled = {(int(feed_slot[f]), int(c)) for f in range(len(feed_slot)) for c in feeds.pool_codes[f] if c >= 0}
    wanted = {(a, c) for a, c in live if a in set(feed_slot.tolist())}
    assert wanted <= pooled  # every channel the snapshots show live in a feed's slot is ranked for it
    assert logs.reward.sum() == pytest.approx(np.asarray(feeds.dataset.column("watch")).sum())


def test_sampling_keeps_whole_users(world) -> None:
    s, day, _ = world
    small = ope.load_day_feeds(s, day, max_feeds=100, seed=1)
    logs = small.logs["watch"]
    assert 0 < logs.n_feeds <= 100
    full = ope.load_day_feeds(s, day, max_feeds=10**9, seed=0)
    kept_users = np.unique(full.dataset.column("user")[small.rows])
    all_rows_of_kept = np.isin(full.dataset.column("user"), kept_users).sum()
    assert all_rows_of_kept == small.rows.size  # every impression of a kept user is kept


def test_a_model_against_itself_has_zero_difference_and_the_report_is_written(world) -> None:
    s, day, uri = world
    r = ope.run_ope(s, uri, day, champion_uri=uri)
    for est in ope.ESTIMATORS:
        assert r["watch"][est]["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
        assert r["watch"][est]["candidate"]["ess"] > 0
    assert Path(r["paths"]["markdown"]).read_text().count("| watch |") == len(ope.ESTIMATORS)


def test_swapping_candidate_and_champion_negates_the_paired_difference(world) -> None:
    s, day, uri = world
    model = load_model(s, uri)
    res = ope.evaluate_models(s, day, model, Reversed(model))
    flipped = ope.evaluate_models(s, day, Reversed(model), model)
    for est in ope.ESTIMATORS:
        d, d2 = res["watch"][est]["difference"], flipped["watch"][est]["difference"]
        assert d2["value"] == pytest.approx(-d["value"], abs=1e-12)
        assert (d2["low"], d2["high"]) == pytest.approx((-d["high"], -d["low"]), abs=1e-9)


def test_gate_with_ope_on_reports_the_check(world) -> None:
    from eliverec.evaluation.gate import gate

    s, day, uri = world
    on = s.model_copy(update={"gate": s.gate.model_copy(update={"ope": True})})
    result = gate(on, uri, day, champion_uri=uri)
    check = next(c for c in result.checks if c.name == "ope/watch")
    assert check.passed and "diff +0.0000" in check.detail
    assert all(c.name != "ope/watch" for c in gate(s, uri, day, champion_uri=uri).checks)  # off by default


def test_cli_ope_and_its_errors(world) -> None:
    from eliverec.cli import app

    s, day, uri = world
    common = ["--profile", "tiny", "--data-dir", str(s.data_dir), "--set", f"tracking.uri={s.tracking.uri}"]
    out = CliRunner().invoke(app, ["ope", "--candidate", uri, "--champion", uri, "--date", day, *common])
    assert out.exit_code == 0, out.output
    assert "difference +0.0000" in out.output and "ESS" in out.output
    bad = CliRunner().invoke(app, ["ope", "--candidate", "runs:/nope/model", "--date", day, *common])
    assert bad.exit_code == 1 and "cannot load model 'runs:/nope/model'" in " ".join(bad.output.split())
    none = CliRunner().invoke(app, ["ope", "--candidate", uri, "--date", "2030-01-01", *common])
    assert none.exit_code == 1 and "eliverec features --end-date 2030-01-01" in " ".join(none.output.split())


def _rewrite_propensity(s, day: str, tmp: Path, value: float | None) -> object:
    """A copy of the data root whose bronze impressions of ``day`` carry ``value`` as propensity."""
    root = tmp / "data"
    shutil.copytree(s.data_dir / "features" / day, root / "features" / day)
    src = s.data_dir / "bronze" / day / "impression.parquet"
    (root / "bronze" / day).mkdir(parents=True)
    t = pq.read_table(src)
    col = pa.array([value] * t.num_rows, pa.float64())
    pq.write_table(t.set_column(t.schema.get_field_index("propensity"), "propensity", col),
                   root / "bronze" / day / "impression.parquet")
    return s.model_copy(update={"data_dir": root})


@pytest.mark.parametrize(("value", "words"), [(None, "carries a propensity"), (1.0, "deterministic ranker")])
def test_days_without_usable_propensities_are_refused(world, tmp_path, value, words) -> None:
    s, day, _ = world
    bad = _rewrite_propensity(s, day, tmp_path, value)
    with pytest.raises(DataError, match=words) as err:
        ope.load_day_feeds(bad, day, 10**9, 0)
    assert "impression.parquet" in str(err.value)


def test_missing_channel_stats_name_the_file(world, tmp_path) -> None:
    s, day, _ = world
    bad = _rewrite_propensity(s, day, tmp_path, 0.5)  # usable propensities, but no channel_stats snapshots
    with pytest.raises(EliverecError, match="channel_stats.parquet"):
        ope.load_day_feeds(bad, day, 10**9, 0)


def test_missing_bronze_impressions_name_the_file(world, tmp_path) -> None:
    s, day, _ = world
    root = tmp_path / "data"
    shutil.copytree(s.data_dir / "features" / day, root / "features" / day)
    with pytest.raises(EliverecError, match="impression.parquet"):
        ope.load_day_feeds(s.model_copy(update={"data_dir": root}), day, 10**9, 0)

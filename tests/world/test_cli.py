"""``eliverec simulate`` from the command line."""

from __future__ import annotations

from typer.testing import CliRunner

from eliverec.cli import app
from tests.conftest import PARAMS


def test_simulate_command_writes_raw_logs(tmp_path):
    res = CliRunner().invoke(app, ["simulate", "--profile", "tiny", "--data-dir", str(tmp_path), "--days", "1",
                                   "--users", "40", "--params", str(PARAMS), "--set", "world.warmup_days=0"])
    assert res.exit_code == 0, res.output
    assert "raw logs:" in res.output
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["2026-09-01"]
    assert len(list((tmp_path / "raw" / "2026-09-01").glob("events-*.jsonl.gz"))) == 2


def test_bad_arguments_fail_clearly(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "--profile", "tiny", "--data-dir", str(tmp_path), "--days", "0"])
    assert res.exit_code != 0 and "--days" in res.output
    res = runner.invoke(app, ["simulate", "--profile", "nope", "--data-dir", str(tmp_path), "--params", str(PARAMS)])
    assert res.exit_code != 0 and "unknown profile" in res.output
    res = runner.invoke(app, ["simulate", "--profile", "tiny", "--data-dir", str(tmp_path), "--params", str(PARAMS),
                              "--set", "world.n_live_specific=20"])
    assert res.exit_code == 1 and "n_categories" in res.output
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())

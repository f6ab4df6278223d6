"""Settings hand-off from a flow to its tasks (issue 17): params.yaml is read once, at the flow's start; tasks
get a settings file with its hash, and no secret is stored with the flow run in Prefect's database."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from prefect import flow, task

from eliverec.config import ConfigError, load_settings, settings_hash
from flows import common
from flows.common import Target
from tests.conftest import PARAMS

ADMIN = "handoff-admin-" + "x" * 40
PRODUCER = "handoff-producer-" + "y" * 40


def _params_with_secrets(tmp_path: Path) -> Path:
    """A params.yaml copy whose serving tokens are set in the file (not on the command line)."""
    params = tmp_path / "params.yaml"
    text = PARAMS.read_text()
    for name, value in (("admin_token", ADMIN), ("producer_token", PRODUCER)):
        line = f'  {name}: "change-me-{name.split("_")[0]}-token"'
        assert text.count(line) == 1, f"{PARAMS}: no '{line}' line to replace"
        text = text.replace(line, f'  {name}: "{value}"')
    params.write_text(text)
    return params


def test_tasks_read_the_flows_settings_without_params_yaml(tmp_path: Path, monkeypatch) -> None:
    params = _params_with_secrets(tmp_path)
    target = Target.resolve("tiny", ["train.lr=0.3"], str(tmp_path / "data"), str(params))
    s = target.settings()
    assert s.serving.admin_token == ADMIN and s.train.lr == 0.3
    handoff = Path(target.settings_file)
    assert handoff == s.layout.settings_handoff(settings_hash(s)) and handoff.stat().st_mode & 0o077 == 0
    assert ADMIN not in json.dumps(dataclasses.asdict(target))  # what Prefect sees of a task's inputs

    params.unlink()  # no params.yaml any more, and another process (a Dask worker) has no copy in memory
    monkeypatch.setattr(common, "_RESOLVED", {})
    back = target.settings()
    assert back == s and back is not s and back.serving.admin_token == ADMIN
    assert Target.of(back) == target  # the same settings, the same file

    payload = json.loads(handoff.read_text())
    payload["settings"]["train"]["lr"] = 0.5
    handoff.write_text(json.dumps(payload))
    monkeypatch.setattr(common, "_RESOLVED", {})
    with pytest.raises(ConfigError, match="does not match its content"):
        target.settings()


def test_a_flow_refuses_a_secret_on_its_command_line(tmp_path: Path) -> None:
    for override in (f"serving.admin_token={ADMIN}", "serving={}"):
        with pytest.raises(ConfigError, match="stored with its run in Prefect's database"):
            Target.resolve("tiny", ["train.lr=0.3", override], str(tmp_path / "data"), str(PARAMS))


@task
def _token_length(target: Target) -> int:
    return len(target.settings().serving.admin_token)


@flow
def _handed_off(target: Target) -> int:  # a Target as a flow parameter, as flows.scale.data_sharded takes it
    return _token_length(target)


def test_no_secret_reaches_prefects_database(harness, tmp_path: Path) -> None:
    import prefect.settings

    target = Target.resolve("tiny", [], str(tmp_path / "data"), str(_params_with_secrets(tmp_path)))
    assert _handed_off(target) == len(ADMIN)  # the task had the secret
    url = prefect.settings.PREFECT_API_DATABASE_CONNECTION_URL.value()
    db = Path(url.split("///", 1)[1])
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # the database and its WAL
    assert target.settings_hash.encode() in stored  # the flow run's parameters are there...
    assert ADMIN.encode() not in stored and PRODUCER.encode() not in stored  # ...the secrets are not


def test_a_stage_subprocess_reads_the_settings_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from eliverec.cli import app

    s = load_settings("tiny", params=PARAMS, data_dir=tmp_path / "elsewhere")  # a data root no params.yaml names
    target = Target.of(s)
    out = CliRunner().invoke(app, ["train", *target.cli_args()])
    said = "".join(out.output.split())  # rich wraps long lines, also inside a long path
    assert out.exit_code != 0 and "".join(f"{s.layout.bronze()}: no ingested day".split()) in said  # the file's root
    mixed = CliRunner().invoke(app, ["train", *target.cli_args(), "--profile", "tiny"])
    assert mixed.exit_code != 0 and "drop --profile" in " ".join(mixed.output.split())

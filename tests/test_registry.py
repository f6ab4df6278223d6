"""Registry: registration, audited promotion, refusal of failed versions, rollback, races."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from eliverec import registry
from eliverec.config import Settings
from tests.conftest import PARAMS


def _log_model(settings: Settings) -> tuple[str, str]:
    import mlflow
    import pandas as pd

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return pd.Series([0.5] * len(model_input))

    mlflow.set_tracking_uri(settings.tracking.uri)
    mlflow.set_experiment("registry-test")
    with mlflow.start_run() as run:
        mlflow.log_metric("test/auc", 0.61)
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
    return info.model_uri, run.info.run_id


@pytest.fixture
def versions(tiny_settings: Settings) -> list[str]:
    out = []
    for verdict in ("pass", "pass", "fail"):
        uri, run_id = _log_model(tiny_settings)
        v = registry.register(tiny_settings, uri, {"model_name": "x", "data_window": "d1..d2"}, run_id=run_id)
        registry.set_verdict(tiny_settings, v, verdict)
        out.append(v)
    return out


def test_promote_rollback_and_audit(tiny_settings: Settings, versions: list[str]) -> None:
    v1, v2, v3 = versions
    registry.bootstrap_champion(tiny_settings, v1, "first champion")
    registry.set_challenger(tiny_settings, v2, "gate passed")
    registry.promote(tiny_settings, v2, "A/B won")
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == v2
    registry.rollback(tiny_settings, "conversion dropped")
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == v1
    audit = registry.read_audit(tiny_settings)
    assert [(r["action"], r["from_version"], r["to_version"]) for r in audit] == [
        ("bootstrap", None, v1), ("challenger", None, v2), ("promote", v1, v2), ("rollback", v2, v1)]
    assert all(r["actor"] and r["ts"] and r["reason"] for r in audit)
    rows = {r["version"]: r for r in registry.list_versions(tiny_settings)}
    assert rows[v1]["aliases"] == ["champion"] and rows[v2]["aliases"] == ["challenger"]
    assert rows[v3]["verdict"] == "fail" and rows[v1]["auc"] == pytest.approx(0.61)


def test_failed_version_is_refused_without_force(tiny_settings: Settings, versions: list[str]) -> None:
    v1, _, v3 = versions
    registry.bootstrap_champion(tiny_settings, v1, "first")
    with pytest.raises(registry.RegistryError, match="refusing to promote"):
        registry.promote(tiny_settings, v3, "I want it")
    with pytest.raises(registry.RegistryError, match="reason"):
        registry.promote(tiny_settings, v3, " ", force=True)
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == v1
    rec = registry.promote(tiny_settings, v3, "hotfix approved by on-call", force=True)
    assert rec.forced and registry.alias_version(tiny_settings, registry.CHAMPION) == v3
    with pytest.raises(registry.RegistryError, match="not found"):
        registry.promote(tiny_settings, "999", "nope")


def _promote_in_process(data_dir: str, uri: str, version: str) -> None:
    from eliverec.config import load_settings

    s = load_settings("tiny", overrides=[f"tracking.uri={uri}"], params=PARAMS, data_dir=data_dir)
    registry.promote(s, version, f"race {version}")


def test_racing_promotions_leave_consistent_state(tiny_settings: Settings, versions: list[str]) -> None:
    v1, v2, _ = versions
    uri, run_id = _log_model(tiny_settings)
    v4 = registry.register(tiny_settings, uri, {}, run_id=run_id)
    registry.set_verdict(tiny_settings, v4, "pass")
    registry.bootstrap_champion(tiny_settings, v1, "first")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_promote_in_process, args=(str(tiny_settings.data_dir), tiny_settings.tracking.uri, v))
             for v in (v2, v4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    audit = registry.read_audit(tiny_settings)[1:]
    assert sorted(r["to_version"] for r in audit) == sorted([v2, v4])
    # the log is a chain: the second change starts where the first ended, and the alias is the last "to"
    assert audit[1]["from_version"] == audit[0]["to_version"]
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == audit[1]["to_version"]


def test_rollback_without_history_is_refused(tiny_settings: Settings, versions: list[str]) -> None:
    with pytest.raises(registry.RegistryError, match="no champion"):
        registry.rollback(tiny_settings, "x")
    registry.bootstrap_champion(tiny_settings, versions[0], "first")
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(tiny_settings, "x")
    assert Path(registry.audit_path(tiny_settings)).exists()


def test_mlflow_ui_serves_the_registry_over_http(tiny_settings: Settings, versions: list[str]) -> None:
    import subprocess
    import time

    import httpx

    from eliverec import ui
    from eliverec.serving.launcher import free_port

    registry.bootstrap_champion(tiny_settings, versions[0], "first")
    port = free_port()
    proc = subprocess.Popen(ui.mlflow_command(tiny_settings, port=port), env=ui.mlflow_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        name = tiny_settings.tracking.registered_model
        got = httpx.get(f"{base}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=10).json()
        aliases = {a["alias"]: a["version"] for a in got["registered_model"].get("aliases", [])}
        assert aliases.get("champion") == versions[0]
        found = httpx.get(f"{base}/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{name}'"},
                          timeout=10).json()
        assert {v["version"] for v in found["model_versions"]} == set(versions)
        assert httpx.get(base, timeout=10).status_code == 200  # the UI page itself
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_clearing_the_challenger_is_audited(tiny_settings: Settings, versions: list[str]) -> None:
    assert registry.clear_challenger(tiny_settings, "nothing to clear") is None
    registry.set_challenger(tiny_settings, versions[1], "gate passed")
    rec = registry.clear_challenger(tiny_settings, "ramp over")
    assert rec is not None and (rec.from_version, rec.to_version) == (versions[1], None)
    assert registry.alias_version(tiny_settings, registry.CHALLENGER) is None
    assert registry.read_audit(tiny_settings)[-1]["action"] == "clear"


def _pass_versions(settings: Settings, n: int) -> list[str]:
    out = []
    for _ in range(n):
        uri, run_id = _log_model(settings)
        v = registry.register(settings, uri, {"model_name": "x"}, run_id=run_id)
        registry.set_verdict(settings, v, "pass")
        out.append(v)
    return out


def test_repeated_rollbacks_walk_back_the_champion_history(tiny_settings: Settings) -> None:
    versions = _pass_versions(tiny_settings, 4)
    registry.bootstrap_champion(tiny_settings, versions[0], "first")
    for v in versions[1:]:
        registry.promote(tiny_settings, v, f"promote {v}")
    for expected in reversed(versions[:-1]):
        registry.rollback(tiny_settings, "walk back")
        assert registry.alias_version(tiny_settings, registry.CHAMPION) == expected
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(tiny_settings, "nothing before the first")
    registry.promote(tiny_settings, versions[2], "forward again")  # history restarts from here
    registry.rollback(tiny_settings, "one back")
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == versions[0]


def test_no_alias_is_none_but_an_unreachable_registry_is_an_error(tiny_settings: Settings) -> None:
    assert registry.alias_version(tiny_settings, registry.CHAMPION) is None  # nothing registered yet
    registry.register(tiny_settings, _log_model(tiny_settings)[0], {})
    assert registry.alias_version(tiny_settings, registry.CHAMPION) is None  # a model, no alias
    db = Path(tiny_settings.tracking.uri[len("sqlite:///"):])
    db.write_bytes(b"this is not a database " * 4096)  # the store answers nothing
    fast = tiny_settings.model_copy(update={"tracking": tiny_settings.tracking.model_copy(
        update={"retries": 2, "retry_delay_s": 0.01})})
    with pytest.raises(registry.RegistryUnavailable, match=r"unreachable.*3 attempts"):
        registry.alias_version(fast, registry.CHAMPION)


def test_the_audit_line_is_durable_before_the_move_and_a_failed_move_is_audited(tiny_settings: Settings) -> None:
    (v1,) = _pass_versions(tiny_settings, 1)
    registry.bootstrap_champion(tiny_settings, v1, "first")
    with pytest.raises(registry.RegistryError, match="audited as failed"):
        registry._move_alias(tiny_settings, registry.CHAMPION, "999", "promote", "to a version that is gone")
    assert registry.alias_version(tiny_settings, registry.CHAMPION) == v1
    every = registry.read_audit(tiny_settings, intents=True)
    assert [(r["status"], r["to_version"]) for r in every] == [("intent", v1), ("done", v1), ("intent", "999"),
                                                              ("failed", "999")]
    assert [r["status"] for r in registry.read_audit(tiny_settings)] == ["done", "failed"]


def test_registering_a_run_again_after_a_crash_returns_its_version(tiny_settings: Settings) -> None:
    uri, run_id = _log_model(tiny_settings)
    first = registry.register(tiny_settings, uri, {"model_name": "x"}, run_id=run_id)
    again = registry.register(tiny_settings, uri, {"model_name": "x", "data_window": "d1..d2"}, run_id=run_id)
    assert again == first and [r["version"] for r in registry.list_versions(tiny_settings)] == [first]
    assert registry.list_versions(tiny_settings)[0]["window"] == "d1..d2"
    other_uri, other_run = _log_model(tiny_settings)
    assert registry.register(tiny_settings, other_uri, {}, run_id=other_run) != first


def test_the_nightly_gate_stage_fails_clearly_when_the_registry_is_unreachable(tiny_settings: Settings) -> None:
    # the function behind the nightly's gate task, the CLI and DVC: an outage is an error, never "no champion"
    from eliverec.pipeline import release

    uri, run_id = _log_model(tiny_settings)
    version = registry.register(tiny_settings, uri, {}, run_id=run_id)
    db = Path(tiny_settings.tracking.uri[len("sqlite:///"):])
    db.write_bytes(b"this is not a database " * 4096)
    fast = tiny_settings.model_copy(update={"tracking": tiny_settings.tracking.model_copy(
        update={"retries": 1, "retry_delay_s": 0.01})})
    result = {"model_uri": uri, "run_id": run_id, "end_date": "2026-09-04", "model": "eta_dual"}
    with pytest.raises(registry.RegistryUnavailable, match=r"unreachable.*2 attempts"):
        release(fast, result, version)
    assert not (Path(tiny_settings.data_dir) / "reports" / "gate").exists()  # no verdict was written

"""The flows end to end on the tiny profile, under a real (temporary) Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from eliverec import registry
from tests.conftest import tracking_uri
from tests.pipeline import tiny

pytestmark = pytest.mark.slow


def _overrides(root: Path, *extra: str) -> list[str]:
    return [f"tracking.uri={tracking_uri(root / 'mlruns')}", "train.max_steps=30",
            "gate.latency_budget_ms=60000", *extra]


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact '{key}'"
    return str(found[0].data)


def test_nightly_then_monitor_and_a_rerun_skips_finished_work(harness, tmp_path: Path) -> None:
    from flows.monitor import monitor
    from flows.nightly import nightly

    ov = _overrides(tmp_path)
    state = nightly("tiny", ov, str(tmp_path / "data"), source="simulate", return_state=True)
    s = tiny(tmp_path)
    assert state.is_completed(), state.message
    versions = registry.list_versions(s)
    champion = registry.alias_version(s, registry.CHAMPION)
    by_version = {v["version"]: v for v in versions}
    assert by_version[champion]["model"] == s.flows.baseline_model  # bootstrapped with the paper's baseline
    assert {v["model"] for v in versions} == {s.flows.baseline_model, s.flows.challenger_model}
    assert all(v["verdict"] in ("pass", "fail") for v in versions)
    summary = _artifact("nightly-summary")
    assert "Models vs champion" in summary and s.flows.challenger_model in summary
    docs = s.data_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert f"`{docs}`" in summary and "bronze.impression" in docs.read_text()  # the Data Docs of every validation
    assert docs.as_uri() in _artifact("data-docs")
    assert "gauc" in _artifact("nightly-metrics") and "verdict" in _artifact("gate-verdict")

    manifest = s.data_dir / "bronze" / "2026-09-01" / "_manifest.json"
    stamp = manifest.stat().st_mtime_ns
    again = nightly("tiny", ov, str(tmp_path / "data"), source="collect", return_state=True)
    assert again.is_completed(), again.message
    assert manifest.stat().st_mtime_ns == stamp  # ingest was cached, not redone
    assert len(registry.list_versions(s)) == len(versions)  # train and register were cached too

    # rollout: ramp a challenger with simulated users through the real service. The champion here
    # trained 30 steps (near random), so its reversed copy may win or lose: the ramp's decisions on
    # a clearly better / worse model are tested in tests/experiments/test_ramp.py; here the chain.
    from eliverec.experiments.controls import register_control
    from flows.rollout import rollout

    other = register_control(s, champion, "negative", reason="flow test")
    registry.set_challenger(s, other, "flow test: negative control")
    ramp = rollout("tiny", ov, str(tmp_path / "data"), None, 300, 5.0, return_state=True)
    assert ramp.is_completed(), ramp.message
    result = ramp.result()
    assert result["outcome"] in ("promoted", "rolled_back", "completed_not_promoted"), result["outcome"]
    assert result["outcome"] in _artifact("rollout-summary")
    expected = other if result["outcome"] == "promoted" else champion
    assert registry.alias_version(s, registry.CHAMPION) == expected
    if result["outcome"] == "promoted":
        assert registry.read_audit(s)[-1]["actor"] == "ab-ramp"
    assert list((s.data_dir / "raw").glob("*/events-serving-*.jsonl"))  # served traffic for the next nightly

    # monitoring: the day passes or alarms, a verdict either way (Completed or Alarm, never Failed); the
    # reports are written in both cases (alarms on planted shifts: tests/flows/test_monitor_flow.py)
    mon = monitor("tiny", ov, str(tmp_path / "data"), return_state=True)
    reports = s.data_dir / "reports" / "monitoring" / "2026-09-04"
    assert (reports / "summary.md").exists() and (reports / "drift.html").exists()
    assert mon.is_completed() and mon.name in ("Completed", "Alarm"), mon.message
    assert f"Monitoring 2026-09-04: {'passed' if mon.name == 'Completed' else 'Alarm'}" in _artifact("monitor-summary")


def test_failed_validation_stops_the_flow_and_names_the_stage(harness, tmp_path: Path) -> None:
    from flows.nightly import nightly

    state = nightly("tiny", _overrides(tmp_path, "validation.watch_rate_max=0.001"), str(tmp_path / "data"),
                    source="simulate", return_state=True)
    assert state.is_failed()
    assert "watch" in state.message.lower() or "validat" in state.message.lower(), state.message
    s = tiny(tmp_path)
    assert not (s.data_dir / "features").exists()  # nothing downstream of the failed stage ran
    assert registry.alias_version(s, registry.CHAMPION) is None

"""End to end on the real simulated world: a planted intent shift alarms on its day (thresholds learned from the
reference days), the quiet days before it and the same day of the world's quiet twin do not; the workspace keeps
one snapshot per day; the real Evidently UI renders the dashboards in headless Chromium (screenshot saved under
the pytest tmp folder)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eliverec.errors import ValidationFailed
from tests.browser import CHROMIUM, NO_CHROMIUM, chromium, free_port, stop, wait_http
from tests.monitoring.worlds import QUIET, REFERENCE_DAYS, SHIFT, SHIFTED, tiny_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The world with an intent shift on SHIFT (half of every user's intents move), monitored on QUIET and SHIFT."""
    from eliverec.monitoring.monitor import monitor_day

    s = tiny_world(tmp_path_factory.mktemp("monitor-world"), *SHIFTED)
    results: dict[str, dict | ValidationFailed] = {}
    for d in (*QUIET, SHIFT):
        try:
            results[d] = monitor_day(s, d)
        except ValidationFailed as exc:
            results[d] = exc
    return s, results


def test_planted_shift_alarms_on_its_day_and_not_on_its_quiet_twin(world, tmp_path: Path):
    from eliverec.monitoring.monitor import drift_check, monitor_day

    s, results = world
    for d in QUIET:
        assert not isinstance(results[d], ValidationFailed), f"quiet day {d} flagged: {results[d]}"
        assert results[d]["passed"] and results[d]["drift"]["drifted"] == []
    exc = results[SHIFT]
    assert isinstance(exc, ValidationFailed), "the intent shift was not flagged"
    assert "product_novelty" in str(exc) and exc.exit_code == 3
    summary = json.loads((Path(s.data_dir) / "reports" / "monitoring" / SHIFT / "summary.json").read_text())
    assert summary["passed"] is False and "product_novelty" in summary["drift"]["drifted"]
    novelty = summary["drift"]["columns"]["product_novelty"]
    assert novelty["source"] == "learned" and novelty["null"]["draws"] == REFERENCE_DAYS * (REFERENCE_DAYS - 1) // 2
    assert novelty["distance"] >= novelty["threshold"] >= novelty["null"]["max"]
    assert [a["column"] for a in summary["alarms"]] == summary["drift"]["drifted"]
    assert drift_check(s, SHIFT)["drifted"] == summary["drift"]["drifted"]  # the backtest's verdict is the report's
    for key in ("drift", "discoverability", "ab"):  # reports are written before the failure is raised
        assert (Path(s.data_dir) / "reports" / "monitoring" / SHIFT / f"{key}.html").stat().st_size > 10_000

    twin = tiny_world(tmp_path)  # same seed, no shift: identical up to SHIFT, quiet on it
    quiet = monitor_day(twin, SHIFT, workspace=False)
    assert quiet["passed"] and quiet["drift"]["drifted"] == [] and quiet["alarms"] == []
    q = quiet["drift"]["columns"]["product_novelty"]
    assert q["distance"] < q["threshold"] < novelty["distance"]


def test_summary_states_reference_sampling_thresholds_and_definitions(world):
    s, results = world
    r = results[QUIET[1]]
    ref = r["drift"]["reference"]
    assert ref["days"] == ["2026-09-02", "2026-09-03", "2026-09-04", "2026-09-05"]
    assert ref["rows_sampled"] <= s.monitor.sample_rows
    assert f"reference = {REFERENCE_DAYS} of the {REFERENCE_DAYS} days" in ref["note"]
    assert "Bonferroni" in r["drift"]["thresholds"] and f"false-alarm rate {s.monitor.false_alarm_rate}" in \
        r["drift"]["thresholds"]
    assert {v["source"] for v in r["drift"]["columns"].values()} <= {"learned", "floor"}
    assert r["discoverability"]["history_days"] == 7  # warm-up starts 2026-08-30
    assert any("30-day discoverability uses 7 of 30 days" in n for n in r["discoverability"]["notes"])
    assert r["ab"]["low_users"] > 0 and 0 < r["ab"]["by"]["all/low"]["ctr"] < 1
    assert "no served scores" in r["drift"]["prediction"]
    md = Path(r["reports"]["markdown"]).read_text()
    assert "| product_novelty |" in md and "## Users by activity" in md and "| all/low |" in md
    assert "| null median | null max | null draws |" in md


def test_rerunning_a_day_replaces_its_snapshot(world):
    from evidently.ui.workspace import Workspace

    from eliverec.monitoring.monitor import monitor_day

    s, results = world
    ws = Workspace(str(s.monitor.workspace))
    projects = {p.name: p for p in ws.list_projects()}
    assert set(projects) == {"eLiveRec: drift", "eLiveRec: discoverability", "eLiveRec: users and A/B"}
    drift = projects["eLiveRec: drift"]
    before = set(ws.list_runs(drift.id))
    assert len(before) == 3
    again = monitor_day(s, QUIET[0])
    after = set(ws.list_runs(drift.id))
    assert len(after) == 3 and str(again["snapshots"]["drift"]) in {str(r) for r in after}
    assert str(results[QUIET[0]]["snapshots"]["drift"]) not in {str(r) for r in after}


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=NO_CHROMIUM)
def test_evidently_ui_renders_dashboards_in_chromium(world, tmp_path: Path):
    import httpx
    import yaml

    from eliverec.monitoring.workspace import resolve, ui_command, ui_env

    s, _ = world
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(ui_command(s, port=port), env=ui_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/projects", 60)
        projects = {p["name"]: p["id"] for p in httpx.get(f"{base}/api/projects", timeout=10).json()}
        spec = yaml.safe_load(resolve(s, s.monitor.dashboards).read_text())["projects"]
        for key, definition in spec.items():
            url = f"{base}/projects/{projects[definition['name']]}"
            dom = chromium(url, tmp_path / f"chrome-{key}", "--dump-dom").stdout
            titles = [p["title"] for p in definition["panels"] if not p.get("per_variant") and p.get("tab") in (
                None, definition["panels"][0].get("tab"))]
            missing = [t for t in titles if t not in dom]
            assert not missing, f"{key}: panels not rendered: {missing}"
            assert dom.count("Timestamps") >= 1, f"{key}: no time-series chart rendered"
        shot = tmp_path / "monitoring-dashboard.png"
        chromium(f"{base}/projects/{projects[spec['drift']['name']]}", tmp_path / "chrome-shot",
                 f"--screenshot={shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        print(f"dashboard screenshot: {shot}")
    finally:
        stop(proc)
        log.close()

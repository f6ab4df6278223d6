"""The monitor flow under a real (temporary) Prefect server: an alarm is a named verdict with a table and a webhook
call, a quiet backfill completes with one dashboard point per day, a broken run fails."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.flows.test_flows import _artifact
from tests.monitoring.worlds import REFERENCE_DAYS, SHIFT, SHIFTED, overrides, tiny_world

pytestmark = pytest.mark.slow


@pytest.fixture
def webhook():
    """A local HTTP endpoint that records the JSON bodies POSTed to it; yields (url, received bodies)."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_planted_shift_ends_in_alarm_with_table_and_webhook(harness, tmp_path: Path, webhook) -> None:
    from flows.monitor import ALARM, monitor

    url, received = webhook
    s = tiny_world(tmp_path, *SHIFTED)
    state = monitor("tiny", overrides(tmp_path, *SHIFTED, f"monitor.alarm_webhook={url}"), str(s.data_dir),
                    date=SHIFT, return_state=True)
    assert state.is_completed() and state.name == ALARM, state.message
    assert "product_novelty" in state.message and SHIFT in state.message
    table = _artifact("monitor-alarms")
    assert "| date | column | distance | threshold |" in table and "product_novelty" in table
    (body,) = received
    assert body["state"] == ALARM and body["days"] == [SHIFT]
    novelty = next(a for a in body["alarms"] if a["column"] == "product_novelty")
    assert novelty["distance"] >= novelty["threshold"] >= novelty["null_max"]


def test_quiet_backfill_completes_with_one_snapshot_per_day(harness, tmp_path: Path, webhook) -> None:
    from evidently.ui.workspace import Workspace

    from eliverec.monitoring.monitor import monitorable_days
    from flows.monitor import monitor

    url, received = webhook
    s = tiny_world(tmp_path)
    state = monitor("tiny", overrides(tmp_path, f"monitor.alarm_webhook={url}"), str(s.data_dir), date=SHIFT,
                    backfill=True, return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    days = monitorable_days(s, SHIFT)
    assert days[0] == "2026-09-02" and days[-1] == SHIFT and len(days) == 6  # every day with a reference day
    assert list(state.result()) == days and received == []
    ws = Workspace(str(s.monitor.workspace))
    for project in ws.list_projects():
        assert len(ws.list_runs(project.id)) == len(days), project.name  # one dashboard point per day
    novelty = {d: r["drift"]["columns"]["product_novelty"] for d, r in state.result().items()}
    thin = days[:REFERENCE_DAYS - 1]  # 1-3 reference days: fewer than monitor.min_null_draws pairs
    assert all(novelty[d]["source"] == "untested" and novelty[d]["drifted"] is None for d in thin)
    assert all(novelty[d]["source"] in ("learned", "floor") and novelty[d]["drifted"] is False
               for d in days[len(thin):])


def test_broken_run_fails_and_names_the_fix(harness, tmp_path: Path) -> None:
    from flows.monitor import monitor

    state = monitor("tiny", overrides(tmp_path), str(tmp_path / "data"), date="2026-09-04", return_state=True)
    assert state.is_failed() and "eliverec ingest --date 2026-09-04" in state.message

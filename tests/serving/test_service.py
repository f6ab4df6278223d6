"""The real service under uvicorn: ranking, bad input, auth, events, reload, registry down, metrics, logs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from eliverec import registry
from eliverec.data.ingest import ingest_day
from eliverec.serving.schemas import RankResponse
from tests.serving.helpers import Running, TinyWorld, register_untrained, running_service

TOKEN = "test-admin-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCER = "test-producer-token-456"
EVENTS_AUTH = {"Authorization": f"Bearer {PRODUCER}"}


@pytest.fixture(scope="module")
def live(world: TinyWorld, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("service")
    s = world.settings(tmp, f"serving.admin_token={TOKEN}", f"serving.producer_token={PRODUCER}",
                       "serving.max_candidates=200")
    v1 = register_untrained(s, seed=0)
    registry.bootstrap_champion(s, v1, "first champion")
    with running_service(s) as run:
        yield run, s


def _ts(world: TinyWorld) -> int:
    from eliverec.world.world import date_ms

    return date_ms(world.dates[-1]) + 14 * 3_600_000


def _rank(run: Running, world: TinyWorld, user: str = "u3", n: int = 30, **extra) -> httpx.Response:
    body = {"user_id": user, "request_id": f"r-{user}-{time.time_ns()}", "candidates": [f"c{i}" for i in range(n)],
            "context": {"scene": "homepage", "ts": _ts(world)}, **extra}
    return httpx.post(f"{run.url}/rank", json=body, timeout=30)


def test_rank_returns_ranked_channels_with_predictions(live, world: TinyWorld) -> None:
    run, _ = live
    r = _rank(run, world, limit=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert RankResponse.model_validate_json(r.content).model_dump() == body  # the documented schema, nothing else
    assert body["variant"] == "champion" and body["model_version"] == "1" and body["model_name"] == "eliverec"
    items = body["items"]
    assert [i["position"] for i in items] == list(range(5))
    watch = [i["watch"] for i in items]
    assert watch == sorted(watch, reverse=True) and all(0 < w < 1 for w in watch)
    assert all(0 <= i["goods_bag"] <= 1 and 0 <= i["product_click"] <= 1 and i["stay_time"] >= 0 for i in items)
    full = _rank(run, world).json()["items"]  # the top 5 of the full ranking are the limited answer
    assert [i["channel_id"] for i in full[:5]] == [i["channel_id"] for i in items]
    unknown = httpx.post(f"{run.url}/rank", json={"user_id": 12345, "request_id": "r-unknown",
                                                  "candidates": ["never-seen-channel", "c1"]}, timeout=30)
    assert unknown.status_code == 200 and len(unknown.json()["items"]) == 2  # unknown ids and int ids are fine


@pytest.mark.parametrize(("body", "field"), [
    ({"request_id": "r", "candidates": ["c1"]}, "user_id"),
    ({"user_id": "u", "request_id": "r", "candidates": []}, "candidates"),
    ({"user_id": "u", "request_id": "r", "candidates": ["c1", "c1"]}, "unique"),
    ({"user_id": "u", "request_id": "r", "candidates": "c1"}, "candidates"),
    ({"user_id": "u", "request_id": "r", "candidates": ["c1"], "context": {"ts": -5}}, "context.ts"),
    ({"user_id": "u", "request_id": "r", "candidates": ["c1"], "limit": 0}, "limit"),
    ({"user_id": "u", "request_id": "r", "candidates": ["c1"], "colour": "red"}, "colour"),
    ({"user_id": "x" * 129, "request_id": "r", "candidates": ["c1"]}, "user_id"),
    ({"user_id": "u", "request_id": "r", "candidates": [f"c{i}" for i in range(201)]}, "at most 200"),
])
def test_bad_input_gets_422_with_a_clear_message(live, body: dict, field: str) -> None:
    run, _ = live
    r = httpx.post(f"{run.url}/rank", json=body, timeout=30)
    assert r.status_code == 422, r.text
    text = r.json().get("message") or r.json().get("detail")
    assert field in str(text), text


def test_admin_endpoints_need_the_token(live) -> None:
    run, s = live
    url = f"{run.url}/admin/allocation"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    assert httpx.post(f"{run.url}/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 403
    ok = httpx.get(url, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["challenger_share"] == 0.0
    bad = {"experiment": "e", "salt": "s", "buckets": 1000, "ranges": [{"start": 0, "end": 2000,
                                                                        "variant": "challenger"}]}
    assert httpx.put(url, json=bad, headers=AUTH).status_code == 422
    assert httpx.put(url, json=bad).status_code == 401


def test_events_update_the_state_and_everything_served_is_logged_for_ingestion(live, world: TinyWorld) -> None:
    run, s = live
    ts = _ts(world)
    late = ts - 14 * 3_600_000 + 86_399_000  # later than every warm-start snapshot of that day
    before = len(run.service.state.history("u5").leave_ts)
    events = [
        {"event": "leave", "event_id": "ev-1", "ts": ts - 5000, "user_id": "u5", "request_id": "r-x",
         "channel_id": "c2", "stay_ms": 60000},
        {"event": "product_click", "event_id": "ev-2", "ts": ts - 4000, "user_id": "u5", "product_id": "p3"},
        {"event": "channel_stats", "event_id": "ev-3", "ts": late, "channel_id": "c2", "viewers": 10,
         "revenue_window": 1.5, "products_on_sale": ["p3", "p4"]},
    ]
    r = httpx.post(f"{run.url}/events", json={"events": events}, headers=EVENTS_AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 3
    assert len(run.service.state.history("u5").leave_ts) == before + 1
    assert any(row[0] == late and row[1] == 10 for row in run.service.state.stats["c2"])
    for bad in ({"event": "leave", "event_id": "e", "ts": ts, "user_id": "u", "request_id": "r", "channel_id": "c",
                 "stay_ms": -1},
                {"event": "impression", "event_id": "e", "ts": ts, "user_id": "u", "request_id": "r",
                 "channel_id": "c", "position": 0, "scene": "homepage"},
                {"event": "enter", "event_id": "e", "ts": ts, "user_id": "u"}):
        assert httpx.post(f"{run.url}/events", json={"events": [bad]}, headers=EVENTS_AUTH).status_code == 422
    assert _rank(run, world, user="u5", limit=4).status_code == 200
    assert httpx.post(f"{run.url}/admin/flush", headers=AUTH).status_code == 200
    day = world.dates[-1]
    files = list((Path(s.data_dir) / "raw" / day).glob("events-serving-*.jsonl"))
    assert len(files) == 1
    m = ingest_day(s, day)  # the nightly ingestion reads the served log like any collector file
    assert m["totals"]["quarantined"] == 0 and m["tables"]["impression"]["rows"] >= 4
    import pyarrow.parquet as pq

    imp = pq.read_table(Path(s.data_dir) / "bronze" / day / "impression.parquet").to_pandas()
    served = imp[imp.variant.notna()]
    assert len(served) >= 4 and set(served.model_version) == {"1"} and served.score.between(0, 1).all()
    assert sorted(served[served.user_id == "u5"].position) == [0, 1, 2, 3]


def test_metrics_are_prometheus_text_per_variant(live, world: TinyWorld) -> None:
    run, _ = live
    _rank(run, world)
    leave = {"event": "leave", "event_id": f"m-{time.time_ns()}", "ts": _ts(world) - 1000, "user_id": "u7",
             "request_id": "r-m", "channel_id": "c1", "stay_ms": 1000}
    assert httpx.post(f"{run.url}/events", json={"events": [leave]}, headers=EVENTS_AUTH).status_code == 200
    text = httpx.get(f"{run.url}/metrics").text
    assert 'eliverec_rank_requests_total{status="ok",variant="champion"}' in text
    assert 'eliverec_rank_latency_seconds_bucket{le="0.05",variant="champion"}' in text
    assert 'eliverec_events_total{event="leave"}' in text and 'eliverec_model_version{alias="champion"} 1.0' in text


def test_metrics_time_the_garbage_collector(live) -> None:
    import gc
    import re

    run, _ = live

    def full_collections() -> float:
        text = httpx.get(f"{run.url}/metrics").text
        found = re.search(r'^eliverec_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    before = full_collections()
    gc.collect()  # the service runs in this process: its hook sees this full collection
    assert full_collections() == before + 1


def test_reload_on_alias_change_without_dropping_requests(live, world: TinyWorld) -> None:
    run, s = live
    v2 = register_untrained(s, seed=1)
    failures: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            code = _rank(run, world, user="u9", n=20).status_code
            if code != 200:
                failures.append(code)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        registry.set_challenger(s, v2, "gate passed")
        deadline = time.monotonic() + 30
        while run.service.models.models.get("challenger") is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the poller (serving.reload_poll_s = 0.5) picks the alias up by itself
    finally:
        stop.set()
        t.join()
    assert run.service.models.models["challenger"].version == v2 and not failures
    full = {"experiment": "e", "salt": "s", "buckets": 1000, "ranges": [{"start": 0, "end": 1000,
                                                                         "variant": "challenger"}]}
    assert httpx.put(f"{run.url}/admin/allocation", json=full, headers=AUTH).status_code == 200
    body = _rank(run, world, user="u11").json()
    assert body["variant"] == "challenger" and body["model_version"] == v2
    health = httpx.get(f"{run.url}/healthz").json()
    assert health["status"] == "ok" and health["models"]["challenger"]["version"] == v2


def _logged(caplog: pytest.LogCaptureFixture, error_id: str) -> str:
    """The log lines that carry ``error_id`` (the answer shows only the id)."""
    return "\n".join(r.getMessage() for r in caplog.records if error_id in r.getMessage())


def test_a_version_that_fails_to_load_leaves_the_old_models_serving(live, world: TinyWorld,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import mlflow
    import pandas as pd

    run, s = live
    if "challenger" not in run.service.models.models:  # run alone: the reload test before sets one, to everyone
        registry.set_challenger(s, register_untrained(s, seed=1), "a loadable challenger")
        httpx.post(f"{run.url}/admin/reload", headers=AUTH, timeout=60).raise_for_status()
        everyone = {"experiment": "e", "salt": "s", "buckets": 1000,
                    "ranges": [{"start": 0, "end": 1000, "variant": "challenger"}]}
        httpx.put(f"{run.url}/admin/allocation", json=everyone, headers=AUTH).raise_for_status()
    held = run.service.models.models["challenger"].version

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return pd.Series([0.5] * len(model_input))

    mlflow.set_tracking_uri(s.tracking.uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
    v = registry.register(s, info.model_uri, {"model_name": "constant"})
    registry.set_verdict(s, v, "pass")
    registry.set_challenger(s, v, "not a ranker")
    r = httpx.post(f"{run.url}/admin/reload", headers=AUTH, timeout=60).json()
    assert "not an eLiveRec ranker" in _logged(caplog, r["error_id"])
    health = httpx.get(f"{run.url}/healthz").json()
    assert health["status"] == "degraded" and health["registry"]["not_loaded"] == {"challenger": v}
    assert health["registry"]["last_error_id"] == r["error_id"]
    assert _rank(run, world, user="u11").json()["model_version"] == held


def test_registry_down_keeps_serving_and_reports_it(live, world: TinyWorld, caplog: pytest.LogCaptureFixture) -> None:
    run, s = live
    db = Path(s.tracking.uri[len("sqlite:///"):])
    saved = db.read_bytes()
    db.write_bytes(b"this is not a database " * 4096)  # same file, unreadable: every registry call fails
    try:
        r = httpx.post(f"{run.url}/admin/reload", headers=AUTH, timeout=60).json()
        assert "registry unreachable" in _logged(caplog, r["error_id"])
        health = httpx.get(f"{run.url}/healthz")
        assert health.status_code == 200 and health.json()["registry"]["reachable"] is False
        assert health.json()["status"] == "degraded"
        assert _rank(run, world).status_code == 200
    finally:
        db.write_bytes(saved)
    httpx.post(f"{run.url}/admin/reload", headers=AUTH, timeout=60)
    assert httpx.get(f"{run.url}/healthz").json()["registry"]["reachable"] is True


def test_scoring_runs_off_the_event_loop(live, world: TinyWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a slow /rank is being scored, the event loop still answers /healthz (issue 18)."""
    run, _ = live
    svc = run.service
    started, release = threading.Event(), threading.Event()
    score = svc.score

    def slow_score(*args, **kwargs):
        started.set()
        release.wait(10)
        return score(*args, **kwargs)

    monkeypatch.setattr(svc, "score", slow_score)
    answer: dict[str, httpx.Response] = {}
    ranking = threading.Thread(target=lambda: answer.setdefault("rank", _rank(run, world, n=5)))
    ranking.start()
    try:
        assert started.wait(10), "the rank request never reached scoring"
        t0 = time.perf_counter()
        health = httpx.get(f"{run.url}/healthz", timeout=5)
        assert health.status_code == 200 and time.perf_counter() - t0 < 2 and "rank" not in answer
    finally:
        release.set()
        ranking.join(15)
    assert answer["rank"].status_code == 200

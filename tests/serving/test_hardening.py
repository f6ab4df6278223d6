"""The service against hostile or broken callers: producer token, bounded events, body limit, error ids, health."""

from __future__ import annotations

import time

import httpx
import pytest

from eliverec import registry
from eliverec.errors import EliverecError
from eliverec.serving.app import build_service
from eliverec.serving.state import OnlineState
from tests.serving.helpers import Running, TinyWorld, register_untrained, running_service

ADMIN = "hardening-admin-token"
PRODUCER = "hardening-producer-token"
BODY_LIMIT = 4096
MAX_AGE_S = 3600


@pytest.fixture(scope="module")
def live(world: TinyWorld, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("hardening")
    s = world.settings(tmp, f"serving.admin_token={ADMIN}", f"serving.producer_token={PRODUCER}",
                       f"serving.event_max_age_s={MAX_AGE_S}", f"serving.max_body_bytes={BODY_LIMIT}")
    registry.bootstrap_champion(s, register_untrained(s, seed=0), "first champion")
    with running_service(s) as run:
        yield run, s


def _now() -> int:
    return int(time.time() * 1000)


def _stats(ts: int, channel: str = "c1", revenue: object = 1.5) -> dict:
    return {"event": "channel_stats", "event_id": f"s-{ts}", "ts": ts, "channel_id": channel, "viewers": 3,
            "revenue_window": revenue, "products_on_sale": []}


def _post(run: Running, events: list[dict], token: str | None = PRODUCER) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{run.url}/events", json={"events": events}, headers=headers, timeout=30)


def _rejected(run: Running, reason: str) -> float:
    text = httpx.get(f"{run.url}/metrics", timeout=30).text
    line = next((x for x in text.splitlines() if x.startswith(f'eliverec_events_rejected_total{{reason="{reason}"}}')),
                None)
    return float(line.split()[-1]) if line else 0.0


def test_events_need_the_producer_token_not_the_admin_token(live) -> None:
    run, _ = live
    before = _rejected(run, "unauthorized")
    assert _post(run, [_stats(_now())], token=None).status_code == 401
    assert _post(run, [_stats(_now())], token=ADMIN).status_code == 403
    assert _post(run, [_stats(_now())]).status_code == 200
    assert _rejected(run, "unauthorized") == before + 2


def test_one_secret_for_both_roles_is_refused(world: TinyWorld, tmp_path) -> None:
    s = world.settings(tmp_path, f"serving.admin_token={ADMIN}", f"serving.producer_token={ADMIN}", private=False)
    with pytest.raises(EliverecError, match="producer_token"):
        build_service(s)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422_and_change_nothing(live, literal: str) -> None:
    run, _ = live
    rejected = _rejected(run, "invalid")
    body = httpx.Request("POST", "http://x", json={"events": [_stats(_now(), "new-nan", "REVENUE")]}).content
    body = body.replace(b'"REVENUE"', literal.encode())  # JSON has no NaN; Python's parser reads it anyway
    r = httpx.post(f"{run.url}/events", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {PRODUCER}", "Content-Type": "application/json"})
    assert r.status_code == 422 and "revenue_window" in r.text
    assert "new-nan" not in run.service.state.stats
    assert _rejected(run, "invalid") == rejected + 1


@pytest.mark.parametrize(("offset_ms", "setting"), [(10**14 - 1, "serving.event_max_ahead_s"),
                                                    (-(MAX_AGE_S + 60) * 1000, "serving.event_max_age_s")])
def test_ts_outside_the_window_of_the_server_clock_is_422(live, offset_ms: int, setting: str) -> None:
    run, s = live
    ts = min(_now() + offset_ms, 10**14)
    before = _rejected(run, "ts_window")
    r = _post(run, [_stats(_now(), "new-a"), _stats(ts, "new-b")])
    assert r.status_code == 422 and setting in r.text and "events.1.ts" in r.text
    assert not {"new-a", "new-b"} & set(run.service.state.stats)  # the batch is refused whole
    assert _rejected(run, "ts_window") == before + 2
    httpx.post(f"{run.url}/admin/flush", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    from eliverec.serving.eventlog import date_of

    if date_of(ts) != date_of(_now()):  # the far-future case: no partition in year 5138
        assert not (s.data_dir / "raw" / date_of(ts)).exists()


def test_a_rank_request_time_outside_the_window_is_422_and_logs_nothing(live) -> None:
    run, s = live
    far = 10**14 - 1  # year 5138
    body = {"user_id": "u1", "request_id": "r-far", "candidates": ["c1"], "context": {"ts": far}}
    r = httpx.post(f"{run.url}/rank", json=body, timeout=30)
    assert r.status_code == 422 and "serving.event_max_ahead_s" in r.text and "context.ts" in r.text
    httpx.post(f"{run.url}/admin/flush", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    from eliverec.serving.eventlog import date_of

    assert not (s.data_dir / "raw" / date_of(far)).exists()


def test_an_unknown_scene_is_a_clear_422(live, world: TinyWorld) -> None:
    run, s = live
    body = {"user_id": "u1", "request_id": "r-scene", "candidates": ["c1"], "context": {"scene": "moon_base"}}
    r = httpx.post(f"{run.url}/rank", json=body, timeout=30)
    assert r.status_code == 422
    assert "moon_base" in r.text and all(scene in r.text for scene in s.validation.allowed["impression.scene"])


def test_bodies_above_the_limit_are_413_declared_or_streamed(live) -> None:
    run, _ = live
    before = _rejected(run, "too_large")
    big = [_stats(_now(), f"c{i}") for i in range(BODY_LIMIT // 50)]
    assert _post(run, big).status_code == 413

    def chunks():  # no Content-Length: the limit counts the streamed bytes
        data = httpx.Request("POST", "http://x", json={"events": big}).content
        for lo in range(0, len(data), 512):
            yield data[lo : lo + 512]

    r = httpx.post(f"{run.url}/events", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {PRODUCER}", "Content-Type": "application/json"})
    assert r.status_code == 413 and "serving.max_body_bytes" in r.text
    assert _rejected(run, "too_large") == before + 2


def test_an_internal_error_answers_an_id_and_logs_the_text(live, caplog: pytest.LogCaptureFixture) -> None:
    run, _ = live
    secret_text = "disk /secret/path exploded"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(secret_text)

    run.service.score = broken
    try:
        r = httpx.post(f"{run.url}/rank", json={"user_id": "u1", "request_id": "r-err", "candidates": ["c1"]},
                       timeout=30)
    finally:
        del run.service.score
    assert r.status_code == 500 and secret_text not in r.text
    error_id = r.json()["detail"]["error_id"]
    assert any(error_id in rec.getMessage() and rec.exc_info and secret_text in str(rec.exc_info[1])
               for rec in caplog.records)


def test_healthz_shows_no_uri_error_text_or_secret(live) -> None:
    run, s = live
    text = httpx.get(f"{run.url}/healthz", timeout=30).text
    for hidden in (s.tracking.uri, ADMIN, PRODUCER, "last_error\""):
        assert hidden not in text


def test_online_state_is_bounded_and_evicts_the_least_recent() -> None:
    state = OnlineState(seq_len=4, min_stay_ms=0, max_users=2, max_channels=1)
    for user in ("u1", "u2", "u3", "u2"):
        state.apply([{"event": "product_click", "user_id": user, "product_id": "p1", "ts": 1}])
    state.apply([_stats(1, "c1"), _stats(2, "c2")])
    assert list(state.clicks) == ["u3", "u2"] and list(state.stats) == ["c2"]
    assert state.describe()["evicted"] == 2

"""The served process takes its start-up heap out of the cyclic garbage collector's full collections
and hands the GIL over at ``serving.gil_switch_ms``."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from eliverec import registry
from eliverec.config import write_settings
from eliverec.serving.app import create_app
from eliverec.serving.launcher import service_process
from tests.serving.helpers import TinyWorld, register_untrained


def test_a_started_app_freezes_what_it_holds_and_full_collections_skip_it(tiny_settings) -> None:
    walked = len(gc.get_objects())  # what a full collection traverses
    try:
        with TestClient(create_app(tiny_settings, freeze_gc=True)) as client:
            assert client.get("/healthz").status_code in (200, 503)
            frozen = gc.get_freeze_count()
            assert frozen > walked // 2  # the libraries, the service and the state are out of reach
            assert len(gc.get_objects()) < frozen // 10  # a full collection now walks only what came after
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(tiny_settings)):  # freeze_gc off (tests, embedding apps): nothing frozen
        assert gc.get_freeze_count() == 0


@pytest.mark.slow
def test_the_served_process_sets_its_gil_interval_and_freezes_its_heap(world: TinyWorld, tmp_path: Path) -> None:
    s = world.settings(tmp_path, "serving.gil_switch_ms=2.5", "serving.reload_poll_s=0")
    registry.bootstrap_champion(s, register_untrained(s, seed=0), "champion")
    with service_process(["--settings", str(write_settings(s, tmp_path / "settings.json"))]) as url:
        process = httpx.get(f"{url}/healthz", timeout=30).json()["process"]
    assert process["gil_switch_ms"] == pytest.approx(2.5)
    assert process["gc_frozen"] > 100_000  # torch, MLflow, the loaded network and the state
    assert sys.getswitchinterval() == pytest.approx(0.005)  # this process (the test) is left alone


def test_gc_pauses_fall_in_their_buckets() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from eliverec.serving.app import GcPauses

    now = iter([1.0, 1.004, 2.0, 2.01, 3.0, 3.3])  # pauses of 4 ms, 10 ms (on a bound: le) and 300 ms
    pauses = GcPauses((0.005, 0.01, 0.1), clock=lambda: next(now))
    for gen in (0, 2, 2):
        pauses.hook("start", {"generation": gen})
        pauses.hook("stop", {"generation": gen})
    registry = CollectorRegistry()
    registry.register(pauses)
    text = generate_latest(registry).decode()
    for line in ('eliverec_gc_pause_seconds_bucket{generation="0",le="0.005"} 1.0',
                 'eliverec_gc_pause_seconds_bucket{generation="2",le="0.005"} 0.0',
                 'eliverec_gc_pause_seconds_bucket{generation="2",le="0.01"} 1.0',
                 'eliverec_gc_pause_seconds_bucket{generation="2",le="0.1"} 1.0',
                 'eliverec_gc_pause_seconds_bucket{generation="2",le="+Inf"} 2.0',
                 'eliverec_gc_pause_seconds_count{generation="1"} 0.0'):
        assert line in text, line
    assert float(text.split('eliverec_gc_pause_seconds_sum{generation="2"} ')[1].split()[0]) == pytest.approx(0.31)


def test_a_collection_while_a_thread_holds_the_metric_locks_does_not_hang(tiny_settings) -> None:
    """A collection starts at any allocation, also in a thread inside a metric's (non-reentrant) lock, e.g.
    during a /metrics scrape; the hook then runs in that thread and must not wait for such a lock."""
    import threading

    done = threading.Event()
    with TestClient(create_app(tiny_settings)) as client:
        collectors = list(client.app.state.service.metrics.registry._collector_to_names)
        locks = [c._lock for c in collectors if hasattr(c, "_lock")]
        assert len(locks) >= 5  # the request, latency, event, ... metrics

        def collect_holding_locks() -> None:
            for lock in locks:
                lock.acquire()
            try:
                gc.collect()  # the hook runs here, in this thread
            finally:
                for lock in locks:
                    lock.release()
            done.set()

        worker = threading.Thread(target=collect_holding_locks, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert done.is_set(), "the GC hook waited for a metric lock its own thread held"
        assert client.get("/metrics").text.count("eliverec_gc_pause_seconds_count") == 3

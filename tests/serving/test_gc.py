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

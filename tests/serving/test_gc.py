"""The served process takes its start-up heap out of the cyclic garbage collector's full collections."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from eliverec.serving.app import create_app


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

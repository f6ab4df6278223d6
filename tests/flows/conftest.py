"""The flow tests' temporary Prefect server (one per test module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield

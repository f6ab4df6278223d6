"""Fixtures of the experiment tests (the tiny world is shared with tests/serving through helpers)."""

from __future__ import annotations

import pytest

from tests.serving.helpers import TinyWorld, tiny_world


@pytest.fixture(scope="session")
def world() -> TinyWorld:
    """The tiny world on disk: raw, bronze and features (built once per session)."""
    return tiny_world()

"""Fixtures of the world tests: one tiny simulated world shared by a module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PARAMS


def tiny(data_dir: Path, *overrides: str):
    """Tiny-profile settings with a data root of their own."""
    from eliverec.config import load_settings

    return load_settings("tiny", overrides=list(overrides), params=PARAMS, data_dir=data_dir)


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    """(settings, summary) of one tiny simulation, shared by the world tests."""
    from eliverec.world import simulate

    s = tiny(tmp_path_factory.mktemp("world") / "data")
    return s, simulate(s, progress=False)

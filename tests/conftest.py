"""Shared test fixtures. Tests never touch the network or the repository's data/ folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# the toy network of tests/training is trusted on load in tests (eliverec.artifact.trusted_builder)
os.environ.setdefault("ELIVEREC_TRUSTED_BUILDERS", "tests.training.toy:build_toy_model")

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def tiny_settings(tmp_path: Path):
    """Tiny-profile settings whose data root and MLflow store live in a temporary folder."""
    from eliverec.config import load_settings

    return load_settings(
        "tiny",
        overrides=[f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db"],
        params=PARAMS,
        data_dir=tmp_path / "data",
    )


@pytest.fixture(autouse=True)
def _isolate_mlflow_env(monkeypatch: pytest.MonkeyPatch):
    """mlflow.set_tracking_uri() / set_registry_uri() export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; keep
    them from leaking between tests (a leaked registry URI sent a later test's subprocess to another store)."""
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    yield

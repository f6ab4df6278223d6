"""eliverec.store.use_store points MLflow at a store without exporting it to child processes."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from eliverec.store import STORE_VARIABLES, use_store


def test_use_store_sets_the_client_and_leaves_the_environment_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///operator.db")  # set by the operator: kept
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    use_store(uri)
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///operator.db"
    assert "MLFLOW_REGISTRY_URI" not in os.environ  # mlflow.set_registry_uri alone would export it
    assert set(STORE_VARIABLES) == {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}

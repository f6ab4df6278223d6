"""Shared test fixtures. Tests never touch the network or the repository's data/ folder."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
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


@functools.cache
def _empty_store() -> Path:
    """An empty MLflow store with every schema migration applied, made once per test process."""
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="eliverec-empty-store-"))
    atexit.register(shutil.rmtree, folder, True)
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
    return folder / "mlflow.db"


def tracking_uri(folder: Path) -> str:
    """``sqlite:///<folder>/mlflow.db``, a new store copied from :func:`_empty_store` when the file is not there yet.

    MLflow applies its schema migrations to every new database (3-6 s on 2 cores, and most tests
    start one); the copy is the same empty store, made in milliseconds.
    """
    db = Path(folder) / "mlflow.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store(), db)
    return f"sqlite:///{db}"


@pytest.fixture
def tiny_settings(tmp_path: Path):
    """Tiny-profile settings whose data root and MLflow store live in a temporary folder."""
    from eliverec.config import load_settings

    return load_settings(
        "tiny",
        overrides=[f"tracking.uri={tracking_uri(tmp_path / 'mlruns')}"],
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
    _forget_mlflow_uris()


def _forget_mlflow_uris() -> None:
    """Put MLflow's process-wide tracking and registry URIs (set by ``eliverec.store.use_store``) back to unset.

    Otherwise a test that names no URI reads the store of whichever test ran before it in the same
    worker: a leaked registry URI once made the chaos register test count 0 versions in another store.
    The module globals are MLflow 3's (pinned in pyproject.toml); a test fails here if they move.
    """
    if "mlflow" not in sys.modules:
        return
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    assert hasattr(tracking_utils, "_tracking_uri") and hasattr(registry_utils, "_registry_uri"), \
        "MLflow moved its URI globals: update tests/conftest.py _forget_mlflow_uris"
    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a ``slow`` test first (each file's tests kept together and in order).

    ``make test`` hands whole files to its two workers (``--dist loadfile``) in this order: the
    long files start at once instead of last, when one worker would run a long file alone.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # a stable sort keeps the order within a file

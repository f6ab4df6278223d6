"""The platform's web UIs as real servers on 127.0.0.1: MLflow (runs + registry), Prefect (flows) and
the Great Expectations Data Docs (validation results).

The Evidently UI lives in :mod:`eliverec.monitoring.workspace`. Each function returns the exact
command line, so the CLI, the tests and the deploy files start the same thing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.layout import sqlite_artifacts


def _bin(name: str) -> str:
    """An executable of the running environment (the venv's, even when it is not activated)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise EliverecError(f"'{name}' is not installed in this environment; run `make install`")
    return found


def mlflow_command(settings: Settings, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """``mlflow server`` on the configured tracking store (one worker, no background jobs)."""
    uri = settings.tracking.uri
    cmd = [_bin("mlflow"), "server", "--host", host, "--port", str(port), "--backend-store-uri", uri, "--workers", "1"]
    artifacts = sqlite_artifacts(uri)
    if artifacts is not None:
        cmd += ["--artifacts-destination", str(artifacts)]
    return cmd


def mlflow_env() -> dict[str, str]:
    """Environment for the MLflow server: no telemetry, no job processes that outlive SIGTERM (STACK.md)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def prefect_command(host: str = "127.0.0.1", port: int = 4200) -> list[str]:
    """``prefect server start`` (UI and API on the same port)."""
    return [_bin("prefect"), "server", "start", "--host", host, "--port", str(port)]


def prefect_env() -> dict[str, str]:
    """Environment for the Prefect server: analytics off."""
    return {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def data_docs_command(settings: Settings, host: str = "127.0.0.1", port: int = 8001) -> list[str]:
    """A static file server on the data root's Data Docs site (``python -m http.server``)."""
    from eliverec.data.validation import data_docs_index

    index = data_docs_index(settings.data_dir)
    if not index.is_file():
        raise EliverecError(f"{index}: no Data Docs yet; run `eliverec validate --all` (or `make demo`) first")
    return [sys.executable, "-m", "http.server", str(port), "--bind", host, "--directory", str(index.parent)]


def run_foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run a server until Ctrl-C; returns its exit code."""
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait(timeout=30)

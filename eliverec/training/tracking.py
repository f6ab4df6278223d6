"""MLflow tracking for training runs (rank 0 only; other ranks get a tracker that does nothing).

The store comes from ``settings.tracking.uri`` (SQLite by default); the experiment's artifacts go
to ``<store folder>/artifacts`` for a ``sqlite:///`` store. Metrics are buffered by the trainer and
written every ``train.log_every`` steps in one ``log_metrics`` call, so tracking stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from eliverec.config import Settings, TrackingConfig
from eliverec.layout import sqlite_artifacts
from eliverec.store import feature_days_input, use_store

_PARENT_RUN: ContextVar[str | None] = ContextVar("eliverec_parent_run", default=None)


@contextlib.contextmanager
def nested_under(parent_run_id: str) -> Iterator[None]:
    """Runs that a :class:`Tracker` starts inside this block are MLflow children of ``parent_run_id``.

    (MLflow nests a run under the one named by its ``mlflow.parentRunId`` tag; ``eliverec tune`` uses
    this for its trials, whose training runs are started deep inside the trainer.)
    """
    token = _PARENT_RUN.set(parent_run_id)
    try:
        yield
    finally:
        _PARENT_RUN.reset(token)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as flat ``a.b.c`` params (lists as JSON).

    >>> flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"})
    {'a.b': '1', 'a.c': '[1, 2]', 'd': 'x'}
    """
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def artifact_location(uri: str) -> str | None:
    """``<folder of the sqlite file>/artifacts`` for a SQLite store, else None (the server decides).

    >>> artifact_location("sqlite:////tmp/x/mlflow.db")
    'file:///tmp/x/artifacts'
    """
    artifacts = sqlite_artifacts(uri)
    if artifacts is not None:
        return artifacts.resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return None
    return None


def setup_experiment(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    import mlflow

    if cfg.uri.startswith("sqlite:///"):
        Path(cfg.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    use_store(cfg.uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(cfg.experiment, artifact_location=artifact_location(cfg.uri))


class Tracker:
    """One MLflow run of the trainer; every method is a no-op when ``enabled`` is False."""

    def __init__(self, settings: Settings, enabled: bool) -> None:
        self.settings = settings
        self.enabled = enabled
        self.run_id: str | None = None

    def start(self, run_name: str, run_id: str | None = None) -> str | None:
        """Start a new run, or reopen ``run_id`` (a resumed training run keeps its MLflow run)."""
        if not self.enabled:
            return None
        import mlflow

        exp_id = setup_experiment(self.settings.tracking)
        if mlflow.active_run() is not None:
            mlflow.end_run()
        parent = None if run_id else _PARENT_RUN.get()
        run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id, run_name=run_name,
                               parent_run_id=parent)
        self.run_id = run.info.run_id
        if run_id is None:
            mlflow.log_params(flatten(self.settings.section_dict()))
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_params({k: str(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.enabled and metrics:
            import mlflow

            mlflow.log_metrics({_metric_name(k): float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled and path is not None and Path(path).exists():
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=folder)

    def log_dict(self, obj: Mapping[str, Any], name: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_dict(dict(obj), name)

    def log_loss_curve(self, prefix: str = "loss/") -> None:
        """Plot every ``loss/*`` metric over steps (read back from the store, so resumed runs are whole)."""
        if not self.enabled:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mlflow

        client = mlflow.MlflowClient()
        keys = sorted(k for k in client.get_run(self.run_id).data.metrics if k.startswith(prefix))
        if not keys:
            return
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for key in keys:
            hist = sorted(client.get_metric_history(self.run_id, key), key=lambda m: m.step)
            ax.plot([m.step for m in hist], [m.value for m in hist], label=key[len(prefix) :])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"training losses ({self.settings.model.name})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "loss_curve.png"
            fig.savefig(path, dpi=110)
            mlflow.log_artifact(str(path), artifact_path="plots")
        plt.close(fig)

    def log_model(self, blob_path: Path, example: Mapping[str, Any]) -> str | None:
        """Log the network blob as the run's pyfunc model (:func:`eliverec.artifact.log_network`); its URI."""
        if not self.enabled:
            return None
        from eliverec.artifact import log_network

        return log_network(blob_path, example)

    def log_days(self, context: str, name: str, folders: Mapping[str, Path]) -> None:
        """Log feature days as an MLflow dataset input (name, digest of the day arrays, source folder)."""
        if self.enabled and folders:
            import mlflow

            run = mlflow.active_run()
            if run is not None:
                mlflow.MlflowClient().log_inputs(run.info.run_id, [feature_days_input(context, name, folders)])

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.end_run(status=status)


def _metric_name(key: str) -> str:
    """MLflow metric names allow ``/``, ``.``, ``-``, ``_``, spaces and alphanumerics; map others to ``_``.

    >>> _metric_name("ndcg@10")
    'ndcg_at_10'
    """
    return key.replace("@", "_at_")

"""Point MLflow at a run's store without leaking it into the environment.

``mlflow.set_tracking_uri`` also exports ``$MLFLOW_TRACKING_URI`` for child processes. That
variable overrides ``tracking.uri`` in :func:`eliverec.config.load_settings`, so in one process
(a Prefect worker, a test) the first world's store would become every later world's store. Here
the client is pointed at the URI and the variable is put back as it was: the environment keeps
saying only what the operator set.
"""

from __future__ import annotations

import os


def use_store(uri: str, registry: bool = True) -> None:
    """Set MLflow's tracking (and registry) URI to ``uri``; ``$MLFLOW_TRACKING_URI`` is left unchanged."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if registry:
        mlflow.set_registry_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before

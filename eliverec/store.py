"""The MLflow store: pointing at it without leaking it into the environment; the feature days a run read.

``mlflow.set_tracking_uri`` also exports ``$MLFLOW_TRACKING_URI`` for child processes (and
``set_registry_uri`` exports ``$MLFLOW_REGISTRY_URI``, which a child's registry client then uses). The
first variable overrides ``tracking.uri`` in :func:`eliverec.config.load_settings`, so in one process
(a Prefect worker, a test) the first world's store would become every later world's store. Here
the client is pointed at the URI and the variables are put back as they were: the environment keeps
saying only what the operator set.

:func:`feature_days_input` describes feature days as an MLflow dataset input (name, digest of the day
arrays, source folder, context): training logs its training days with it, the gate its test day.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: What ``mlflow.set_tracking_uri`` / ``set_registry_uri`` export to the environment (and so to child processes).
STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def use_store(uri: str, registry: bool = True) -> None:
    """Set MLflow's tracking (and registry) URI to ``uri``; :data:`STORE_VARIABLES` are left unchanged."""
    import mlflow

    before = {k: os.environ.get(k) for k in STORE_VARIABLES}
    mlflow.set_tracking_uri(uri)
    if registry:
        mlflow.set_registry_uri(uri)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def feature_days_input(context: str, name: str, folders: Mapping[str, Path]) -> Any:
    """Feature days (``{date: folder}``) as an ``mlflow.entities.DatasetInput`` for ``MlflowClient.log_inputs``.

    The dataset's digest is the days' array fingerprint (names, sizes, times), its source the first
    folder's parent; tags: ``days`` (the dates) and ``mlflow.data.context`` (``training`` or ``evaluation``).
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    h = hashlib.sha256()
    for date, folder in sorted(folders.items()):
        for p in sorted(Path(folder).glob("**/*.npy")):
            st = p.stat()
            h.update(f"{date}/{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    root = Path(next(iter(folders.values()))).parent
    with warnings.catch_warnings():  # a local path matches two equivalent local source types
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(root))
    d = MetaDataset(source, name=name, digest=h.hexdigest()[:16]).to_dict()
    entity = Dataset(name=d["name"], digest=d["digest"], source_type=d["source_type"], source=d["source"],
                     schema=d.get("schema"), profile=d.get("profile"))
    tags = [InputTag(key="days", value=",".join(sorted(folders))), InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
    return DatasetInput(dataset=entity, tags=tags)

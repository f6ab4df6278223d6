"""What the flows publish and how they are guarded: table and link artifacts, one nightly per data root,
task time limits.

- Artifacts: metrics and the gate verdict as table artifacts (sortable in the Prefect UI), the MLflow
  run, the Great Expectations Data Docs and the Evidently dashboards as link artifacts.
- :func:`nightly_slot`: a Prefect global concurrency limit of one, named after the data root, held for
  the whole nightly run: a second nightly on the same data root waits for the first; runs on other
  data roots do not wait.
- :data:`TIMEOUT_S`: each task's time limit. Prefect cannot interrupt a synchronous task's thread
  (STACK.md), so training, the one long stage, runs as a subprocess with its own timeout
  (``flows.train_timeout_s``); the task limit marks the others failed when exceeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: time limit per task name (seconds)
TIMEOUT_S: dict[str, float] = {"simulate": 3600, "collect": 300, "ingest": 3600, "validate": 1800,
                               "features": 7200, "evaluate": 3600, "register": 600, "gate": 3600,
                               "monitor": 3600, "notify": 60, "ramp": 4 * 3600}


def slot_name(data_dir: Path) -> str:
    """The concurrency limit of a data root: ``nightly-<12 hex of its absolute path>``.

    >>> slot_name(Path("/data/a")) == slot_name(Path("/data/a/.")), slot_name(Path("/a")) == slot_name(Path("/b"))
    (True, False)
    """
    return "nightly-" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


@contextmanager
def nightly_slot(data_dir: Path, timeout_s: float | None = None) -> Iterator[str]:
    """Hold the data root's one nightly slot (created with limit 1 if missing); ``TimeoutError`` after ``timeout_s``."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    name = slot_name(data_dir)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield name


def mlflow_run_url(settings: Any, run_id: str) -> str:
    """The run's page in the MLflow UI (the tracking server's own for http stores, else ``eliverec ui mlflow``'s)."""
    from mlflow.tracking import MlflowClient

    uri = settings.tracking.uri
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def publish_nightly(settings: Any, summary: dict[str, Any]) -> None:
    """Table artifacts of the models' metrics and the gate verdicts; links to the MLflow runs and the Data Docs."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    from eliverec.data.validation import data_docs_index

    releases = summary["releases"]
    create_table_artifact(
        [{"model": r["model"], "version": r["version"], **{k: r["metrics"].get(k) for k in ("auc", "gauc", "ndcg@10")}}
         for r in releases], key="nightly-metrics", description=f"Held-out day {summary['end_date']}: metrics")
    create_table_artifact(
        [{"model": r["model"], "version": r["version"], "verdict": r["verdict"], "failed": ", ".join(r["failed"]),
          "report": r["report"]} for r in releases], key="gate-verdict", description="Gate verdict vs the champion")
    for r in releases:
        create_link_artifact(mlflow_run_url(settings, r["run_id"]), link_text=f"MLflow run of {r['model']}",
                             key=f"mlflow-run-{_key(r['model'])}", description="Training run, metrics, model")
    docs = data_docs_index(settings.data_dir)
    create_link_artifact(docs.as_uri(), link_text="Great Expectations Data Docs", key="data-docs",
                         description=f"Every validation result (serve: eliverec ui docs); {docs}")


def publish_monitor(settings: Any, summaries: dict[str, dict[str, Any]]) -> None:
    """A table of the monitored days and links to the Evidently dashboards and each day's HTML reports."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    create_table_artifact([{"date": d, "passed": r["passed"], "failures": len(r["failures"]),
                            "drifted": ", ".join(r["drift"].get("drifted", []))} for d, r in summaries.items()],
                          key="monitor-days", description="Monitored days")
    m = settings.monitor
    create_link_artifact(f"http://{m.ui_host}:{m.ui_port}/", link_text="Evidently dashboards",
                         key="evidently-dashboards", description="Serve them with `eliverec ui monitoring`")
    for d, r in summaries.items():
        for kind, path in r["reports"].items():
            if str(path).endswith(".html"):
                create_link_artifact(Path(path).as_uri(), link_text=f"{kind} {d}", key=f"evidently-{_key(kind)}",
                                     description=f"Evidently {kind} report of {d}")


def _key(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())

"""The nightly flow: collect (or simulate, ``flows.source``) -> ingest -> validate -> features -> train -> evaluate
-> register -> gate. Orchestration only: every task is one call into ``eliverec``.

With no champion in the registry, the flow first trains the paper's online baseline
(``flows.baseline_model``, ETA with dual sequences) and makes it champion, then trains the
challenger (``flows.challenger_model``, eLiveRec) and gates it against that champion, as in the
paper's own A/B setup. A failed gate is a verdict, not a platform error: the flow ends in a
``Completed`` state named ``Rejected`` whose message says which checks failed.

Reruns skip finished work: ingest, features, train and register are cached on their inputs (the
raw/bronze fingerprints, the settings and the model name) plus the presence of their outputs, so
a rerun for the same date resumes at the stage that failed.

The flow reads ``params.yaml`` once, at its start; tasks and cache keys get the resolved settings
through :class:`flows.common.Target` (a settings file with its hash; no secret among the task
parameters), training gets them as ``eliverec train --settings FILE``. A cache key holds the
sections its stage reads (``ingest``, ``features``, ``model`` + ``train``), not the hash of all the
settings, so a changed ``train.lr`` retrains without re-ingesting.

Run it: ``python -m flows.nightly --profile tiny`` (``make demo`` runs the demo around it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from eliverec.pipeline import bronze_dates
from flows.common import Target, markdown_table, target_parser
from flows.ops import TIMEOUT_S, nightly_slot, publish_nightly


# ----------------------------------------------------------------------------- cache keys
# Keys depend on inputs only; where a stage's outputs have gone missing, the flow forces the task
# to run again (refresh_cache) instead of trusting the cached result.
def _fingerprint(paths: list[Path]) -> str:
    """Names, sizes and modification times of the files under ``paths`` (cheap; no reading)."""
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for f in files:
            st = f.stat()
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
        h.update(f"[{root}:{root.exists()}]".encode())
    return h.hexdigest()[:24]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _ingest_key(ctx: Any, args: dict[str, Any]) -> str:
    t: Target = args["target"]
    s = t.settings()
    day = args["date"]
    return _key("ingest", str(s.data_dir), day, s.ingest.model_dump(), _fingerprint([s.layout.raw(day)]))


def _features_key(ctx: Any, args: dict[str, Any]) -> str:
    t: Target = args["target"]
    s = t.settings()
    manifests = [s.layout.bronze_manifest(d) for d in bronze_dates(s)]
    return _key("features", str(s.data_dir), args["end_date"], s.features.model_dump(), _fingerprint(manifests))


def _train_key(ctx: Any, args: dict[str, Any]) -> str:
    t: Target = args["target"]
    s = t.settings()
    build = s.layout.build_record()
    return _key("train", args["model"], args["end_date"], s.model.model_dump(), s.train.model_dump(),
                build.read_text() if build.exists() else None, s.tracking.uri)


def _register_key(ctx: Any, args: dict[str, Any]) -> str:
    t: Target = args["target"]
    return _key("register", args["result"]["run_id"], t.settings().tracking.uri)


# ----------------------------------------------------------------------------- tasks
@task(name="simulate", retries=1, retry_delay_seconds=5, timeout_seconds=TIMEOUT_S["simulate"])
def simulate_task(target: Target) -> dict[str, Any]:
    """Write the simulated world's raw logs (the embedded default data source)."""
    from eliverec.world import simulate

    r = simulate(target.settings(), progress=False)
    return {k: r[k] for k in ("dates", "warmup_dates", "events", "raw_dir", "seconds")}


@task(name="collect", timeout_seconds=TIMEOUT_S["collect"])
def collect_task(target: Target) -> dict[str, Any]:
    """Use the raw days already collected under the data root (logs, imports, served traffic)."""
    from eliverec.errors import DataError
    from eliverec.pipeline import raw_dates

    s = target.settings()
    dates = raw_dates(s)
    if not dates:
        raise DataError(f"{s.layout.raw()}: no raw day to train on (flows.source=collect reads collected, "
                        "served and imported logs); import logs with `eliverec import`, or set "
                        "flows.source=simulate to train on the simulated world")
    return {"dates": dates, "warmup_dates": [], "raw_dir": str(s.layout.raw())}


@task(name="ingest", retries=2, retry_delay_seconds=10, cache_key_fn=_ingest_key, persist_result=True,
      timeout_seconds=TIMEOUT_S["ingest"])
def ingest_task(target: Target, date: str) -> dict[str, Any]:
    """raw/<date> -> bronze/<date> + quarantine (retried: file systems hiccup)."""
    from eliverec.data.ingest import ingest_day

    return ingest_day(target.settings(), date)["totals"]


@task(name="validate", timeout_seconds=TIMEOUT_S["validate"])
def validate_task(target: Target, date: str) -> dict[str, Any]:
    """Great Expectations on bronze/<date>; raises ValidationFailed (the flow stops) on failure."""
    from eliverec.data.suites import validate_day

    return validate_day(target.settings(), date, ("bronze",))


@task(name="features", cache_key_fn=_features_key, persist_result=True, timeout_seconds=TIMEOUT_S["features"])
def features_task(target: Target, end_date: str) -> dict[str, Any]:
    """Point-in-time samples for the window ending at ``end_date``, validated per day."""
    from eliverec.features.build import build_features

    r = build_features(target.settings(), end_date, validate=True)
    return {k: r[k] for k in ("train_days", "test_day", "rows", "train_rows", "test_rows", "spec_hash")}


@task(name="train", cache_key_fn=_train_key, persist_result=True, retries=1, retry_delay_seconds=10)
def train_task(target: Target, model: str, end_date: str) -> dict[str, Any]:
    """Train ``model`` in a subprocess (torchrun when train.nproc > 1) with its own timeout.

    A retry (a crashed or killed training) resumes from the run's last checkpoint (``--resume``)
    instead of starting again; the first attempt starts fresh.
    """
    from prefect.runtime import task_run

    from eliverec.pipeline import read_result

    s = target.settings()
    with tempfile.TemporaryDirectory(prefix="eliverec-flow-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "eliverec", "train", "--model", model, "--end-date", end_date,
               "--result-json", str(out), *target.cli_args(), *(["--resume"] if task_run.run_count > 1 else [])]
        proc = subprocess.run(cmd, timeout=s.flows.train_timeout_s, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training {model} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return read_result(out)


@task(name="evaluate", timeout_seconds=TIMEOUT_S["evaluate"])
def evaluate_task(target: Target, result: dict[str, Any]) -> dict[str, Any]:
    """Offline metrics of the trained model on the held-out day (JSON + markdown report)."""
    from eliverec.evaluation.evaluate import evaluate

    rep = evaluate(target.settings(), result["model_uri"], result["end_date"], name=result["model"])
    return {"metrics": rep["metrics"], "paths": rep["paths"]}


@task(name="register", retries=2, retry_delay_seconds=5, cache_key_fn=_register_key, persist_result=True,
      timeout_seconds=TIMEOUT_S["register"])
def register_task(target: Target, result: dict[str, Any]) -> str:
    """A new registry version with its data window, commit and feature-spec hash."""
    from eliverec.pipeline import register_result

    return register_result(target.settings(), result)


@task(name="gate", timeout_seconds=TIMEOUT_S["gate"])
def gate_task(target: Target, result: dict[str, Any], version: str) -> dict[str, Any]:
    """Candidate vs champion on the held-out day; a first model becomes champion if it passes."""
    from eliverec.pipeline import release

    return release(target.settings(), result, version)


# ----------------------------------------------------------------------------- flow
def _stored(stage: Any, settings: Any) -> Any:
    """The task with its results persisted under the data root (a world's cache is its own)."""
    return stage.with_options(result_storage=settings.layout.prefect_results())


def _fresh(stage: Any, settings: Any, outputs_present: bool) -> Any:
    """The task as is when its outputs are on disk, else forced to run (and refresh its cache)."""
    stage = _stored(stage, settings)
    return stage if outputs_present else stage.with_options(refresh_cache=True)


def _features_present(settings: Any, end_date: str) -> bool:
    build = settings.layout.build_record()
    return build.exists() and json.loads(build.read_text()).get("end_date") == end_date


def _release(target: Target, settings: Any, model: str, end_date: str) -> dict[str, Any]:
    result = _stored(train_task, settings)(target, model, end_date)
    evaluation = evaluate_task(target, result)
    version = _stored(register_task, settings)(target, result)
    verdict = gate_task(target, result, version)
    from eliverec.training.trainer import describe_stop

    return {"model": model, "run_id": result["run_id"], "version": version, **verdict,
            "metrics": evaluation["metrics"], "evaluation": evaluation["paths"]["markdown"],
            "training": describe_stop(result.get("metrics") or {})}


@flow(name="nightly", log_prints=True)
def nightly(profile: str = "default", overrides: list[str] | None = None, data_dir: str | None = None,
            params: str | None = None, source: Literal["simulate", "collect"] | None = None,
            end_date: str | None = None) -> Any:
    """The nightly training pipeline (see the module docstring); ``source`` (default ``flows.source``).

    One nightly at a time per data root: a second run on the same root waits for the first
    (:func:`flows.ops.nightly_slot`).
    """
    target = Target.resolve(profile, overrides or (), data_dir, params)  # params.yaml read here, once
    with nightly_slot(target.settings().data_dir):
        return _nightly(target, source, end_date)


def _nightly(target: Target, source: str | None, end_date: str | None) -> Any:
    from eliverec import registry
    from eliverec.data.validation import data_docs_index

    s = target.settings()
    raw = simulate_task(target) if (source or s.flows.source) == "simulate" else collect_task(target)
    dates = raw["dates"]
    end = end_date or dates[-1]
    ingested = {d: _fresh(ingest_task, s, s.layout.bronze_manifest(d).exists())(target, d) for d in dates if d <= end}
    for d in ingested:
        validate_task(target, d)
    feats = _fresh(features_task, s, _features_present(s, end))(target, end)
    releases = []
    if registry.alias_version(s, registry.CHAMPION) is None:
        releases.append(_release(target, s, s.flows.baseline_model, end))
    releases.append(_release(target, s, s.flows.challenger_model, end))
    summary = {"profile": s.profile, "end_date": end, "raw": raw, "ingested": ingested, "features": feats,
               "releases": releases, "data_dir": str(s.data_dir), "tracking_uri": s.tracking.uri,
               "data_docs": str(data_docs_index(s.data_dir))}
    _artifact(summary)
    publish_nightly(s, summary)
    last = releases[-1]
    if last["verdict"] != "pass":
        return Completed(name="Rejected", message=f"gate rejected {last['model']} v{last['version']}: "
                         f"{', '.join(last['failed'])} (report {last['report']})", data=summary)
    return summary


def _artifact(summary: dict[str, Any]) -> None:
    rows = [{"day": d, "lines": t["lines_read"], "accepted": t["accepted"], "quarantined": t["quarantined"],
             "duplicates": t["duplicates"]} for d, t in summary["ingested"].items()]
    rel = [{"model": r["model"], "version": r["version"], "auc": r["metrics"].get("auc"),
            "gauc": r["metrics"].get("gauc"), "ndcg@10": r["metrics"].get("ndcg@10"), "gate": r["verdict"],
            "failed": ", ".join(r["failed"]), "training ended by": r.get("training", ""), "report": r["report"]}
           for r in summary["releases"]]
    f = summary["features"]
    text = "\n\n".join([
        f"# Nightly run, test day {summary['end_date']} (profile {summary['profile']})",
        "## Data (ingest; every day passed validation)", markdown_table(rows),
        f"## Features\n{f['rows']} samples ({f['train_rows']} train on {', '.join(f['train_days'])}; "
        f"{f['test_rows']} test on {f['test_day']}), feature spec {f['spec_hash']}",
        "## Models vs champion (held-out day)", markdown_table(rel),
        f"Data Docs (every validation result): `{summary['data_docs']}` (serve with `eliverec ui docs`)",
        f"MLflow: `{summary['tracking_uri']}` (open with `eliverec ui mlflow`); data root `{summary['data_dir']}`",
    ])
    create_markdown_artifact(text, key="nightly-summary", description="Nightly run summary")


def main() -> None:
    """``python -m flows.nightly [--profile P] [--set k=v ...] [--data-dir D] [--source simulate|collect]``."""
    ap = target_parser(__doc__)
    ap.add_argument("--source", choices=["simulate", "collect"], help="the raw data (default: flows.source)")
    ap.add_argument("--end-date")
    a = ap.parse_args()
    nightly(a.profile, a.overrides, a.data_dir, a.params, a.source, a.end_date)


if __name__ == "__main__":
    main()

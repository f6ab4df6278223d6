"""Stage glue shared by the CLI, the Prefect flows and ``dvc.yaml``: one function per step.

The per-day stages (``ingest_day``, ``validate_day``) and the model stages (``train``,
``evaluate``, ``gate``) live in their packages; this module adds what runs *over* them: which
days exist, all days at once, and the release of a trained model (register, gate, first champion).
A training result travels between steps (and DVC stages) as a small JSON file, written by
``eliverec train --result-json FILE``: ``{"model": ..., "run_id": ..., "model_uri": ...,
"end_date": ..., "metrics": {...}}``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from eliverec.config import Settings
from eliverec.data.atomic import write_bytes_atomic
from eliverec.errors import DataError
from eliverec.layout import date_folders, previous_days


def raw_dates(settings: Settings) -> list[str]:
    """Days with raw logs (``raw/<date>/``), oldest first."""
    return date_folders(settings.layout.raw())


def bronze_dates(settings: Settings) -> list[str]:
    """Days ingested into bronze, oldest first."""
    return settings.layout.bronze_dates()


def latest_bronze_date(settings: Settings) -> str:
    """The newest ingested day (the default test day of the feature and model stages)."""
    days = bronze_dates(settings)
    if not days:
        raise DataError(f"{settings.layout.bronze()}: no ingested day; run `eliverec ingest --all` first")
    return days[-1]


def ingest_all(settings: Settings, dates: list[str] | None = None) -> dict[str, Any]:
    """Ingest every raw day (or ``dates``); returns ``{date: totals}``."""
    from eliverec.data.ingest import ingest_day

    days = dates or raw_dates(settings)
    if not days:
        raise DataError(f"{settings.layout.raw()}: no raw days; run `eliverec simulate` or `eliverec import`")
    return {d: ingest_day(settings, d)["totals"] for d in days}


def validate_all(settings: Settings, dates: list[str] | None = None, suites: tuple[str, ...] = ("bronze",)) -> dict:
    """Validate every ingested day; raises on the first failing day (after writing its report)."""
    from eliverec.data.suites import validate_day

    return {d: validate_day(settings, d, suites) for d in (dates or bronze_dates(settings))}


def git_commit() -> str:
    """The source commit (tags on model versions); ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def read_result(path: str | Path) -> dict[str, Any]:
    """A training result JSON (see the module docstring), with a clear error when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: cannot read the training result ({exc}); "
                        f"run `eliverec train --result-json {p}`") from exc
    missing = [k for k in ("model", "model_uri", "run_id", "end_date") if not data.get(k)]
    if missing:
        raise DataError(f"{p}: training result lacks {', '.join(missing)}")
    return data


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a training result JSON atomically."""
    p = Path(path)
    write_bytes_atomic(p, json.dumps(result, indent=2, sort_keys=True, default=float).encode())
    return p


def version_tags(settings: Settings, result: dict[str, Any]) -> dict[str, str]:
    """Registry tags of a trained model: name, data window, commit, feature-spec hash."""
    days = previous_days(result["end_date"], settings.features.train_days)
    spec = settings.layout.feature_spec()
    spec_hash = json.loads(spec.read_text()).get("spec_hash", "") if spec.exists() else ""
    from eliverec.training.trainer import stop_reason

    return {"model_name": result["model"], "data_window": f"{days[0]}..{days[-1]}", "test_day": result["end_date"],
            "git_commit": git_commit(), "feature_spec_hash": spec_hash, "profile": settings.profile,
            "training_stop": stop_reason(result.get("metrics") or {})}


def register_result(settings: Settings, result: dict[str, Any]) -> str:
    """Register a trained model as a new version with its tags; returns the version."""
    from eliverec import registry

    return registry.register(settings, result["model_uri"], version_tags(settings, result), run_id=result["run_id"])


def release(settings: Settings, result: dict[str, Any], version: str) -> dict[str, Any]:
    """Gate a registered version against the champion; with no champion yet it becomes the first one.

    Returns ``{"version", "verdict", "failed", "report", "champion", "challenger"}``.
    """
    from eliverec import registry
    from eliverec.evaluation.gate import gate

    first = registry.alias_version(settings, registry.CHAMPION) is None
    verdict = gate(settings, result["model_uri"], result["end_date"], version=version, run_id=result["run_id"])
    if first and verdict.passed:
        registry.bootstrap_champion(settings, version, f"first champion ({result['model']}), gate passed")
    return {"version": version, "verdict": verdict.verdict, "failed": [c.name for c in verdict.failed()],
            "report": verdict.paths["markdown"], "champion": registry.alias_version(settings, registry.CHAMPION),
            "challenger": registry.alias_version(settings, registry.CHALLENGER)}


def bootstrap(settings: Settings, end_date: str) -> dict[str, Any]:
    """The first champion when the registry has none: train, register and gate ``flows.baseline_model``.

    The nightly flow runs the same steps as separate tasks; this is the one-call form for the CLI
    and ``dvc.yaml``. With a champion already present it does nothing and says so.
    """
    from eliverec import registry
    from eliverec.training.trainer import train

    current = registry.alias_version(settings, registry.CHAMPION)
    if current is not None:
        return {"champion": current, "trained": False, "message": f"champion exists (version {current}): nothing to do"}
    name = settings.flows.baseline_model
    r = train(settings, model_name=name, end_date=end_date, run_name=f"{name}-{end_date}-baseline")
    result = {"model": name, "run_id": r.run_id, "model_uri": r.model_uri, "end_date": end_date, "metrics": r.metrics}
    out = release(settings, result, register_result(settings, result))
    verdict = "champion" if out["champion"] == out["version"] else f"not champion (gate {out['verdict']})"
    return {**out, "trained": True, "message": f"baseline {name} version {out['version']}: {verdict}"}

"""MLflow model registry: register, aliases, audited promotion and rollback (DESIGN section 6).

Every trained model becomes a version of ``settings.tracking.registered_model`` with tags
(data window, git commit, feature-spec hash, gate verdict). Aliases carry the roles:
``champion`` (serves most traffic) and ``challenger`` (passed the gate, waits for a human or a
finished A/B ramp). Every alias change is audited twice: as tags in the registry (so the state
and its history travel with the MLflow server) and as a line in ``<data_dir>/registry/audit.jsonl``
(who, when, action, alias, from, to, why). Alias changes are serialised with a file lock beside
the audit log, so two promotions racing on one machine leave one consistent winner and two
complete audit records; against a shared MLflow server, run promotions from one place (the CLI on
the orchestration host) or hold a lock of your own.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eliverec.config import Settings
from eliverec.errors import EliverecError

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
VERDICT_TAG = "gate_verdict"
PREVIOUS_TAG = "previous_champion"


class RegistryError(EliverecError):
    """A registry action was refused or is impossible (the message says why and what to do)."""


@dataclass(frozen=True)
class AuditRecord:
    """One alias change."""

    ts: str
    actor: str
    action: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    forced: bool = False


def client(settings: Settings) -> MlflowClient:
    """An MlflowClient on the configured tracking/registry URI."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking.uri)
    mlflow.set_registry_uri(settings.tracking.uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking.uri, registry_uri=settings.tracking.uri)


def audit_path(settings: Settings) -> Path:
    """Where the JSON-lines audit log lives."""
    return settings.data_dir / "registry" / "audit.jsonl"


def actor() -> str:
    """Who acts: ``$ELIVEREC_ACTOR`` (set by automation) or the OS user."""
    return os.environ.get("ELIVEREC_ACTOR") or getpass.getuser()


def register(settings: Settings, model_uri: str, tags: dict[str, str], run_id: str | None = None) -> str:
    """Register ``model_uri`` as a new version with ``tags``; returns the version number."""
    c = client(settings)
    name = settings.tracking.registered_model
    try:
        c.get_registered_model(name)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException when absent
        c.create_registered_model(name, description="eLiveRec live-channel ranker (DESIGN section 3, Models)")
    source = model_uri
    mv = c.create_model_version(name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version an alias points to, or ``None``."""
    c = client(settings)
    try:
        return str(c.get_model_version_by_alias(settings.tracking.registered_model, alias).version)
    except Exception:  # noqa: BLE001 - absent alias or absent model
        return None


def set_verdict(settings: Settings, version: str, verdict: str, report: str = "") -> None:
    """Record the gate verdict (``pass``/``fail``) and where its report is."""
    if verdict not in ("pass", "fail"):
        raise RegistryError(f"gate verdict must be 'pass' or 'fail', got {verdict!r}")
    c = client(settings)
    name = settings.tracking.registered_model
    c.set_model_version_tag(name, version, VERDICT_TAG, verdict)
    if report:
        c.set_model_version_tag(name, version, "gate_report", report)


def _lock(settings: Settings):  # noqa: ANN202 - filelock type
    from filelock import FileLock

    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=60)


def _append_audit(settings: Settings, record: AuditRecord) -> None:
    path = audit_path(settings)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    c = client(settings)
    c.set_registered_model_tag(
        settings.tracking.registered_model, f"audit.{record.ts}.{record.alias}", json.dumps(asdict(record))[:4900]
    )


def _move_alias(
    settings: Settings, alias: str, to_version: str, action: str, reason: str, forced: bool = False
) -> AuditRecord:
    c = client(settings)
    name = settings.tracking.registered_model
    previous = alias_version(settings, alias)
    c.set_registered_model_alias(name, alias, to_version)
    if alias == CHAMPION and previous is not None and previous != to_version:
        c.set_model_version_tag(name, to_version, PREVIOUS_TAG, previous)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
    record = AuditRecord(stamp, actor(), action, alias, previous, to_version, reason, forced)
    _append_audit(settings, record)
    return record


def _version(settings: Settings, version: str) -> Any:
    try:
        return client(settings).get_model_version(settings.tracking.registered_model, str(version))
    except Exception as exc:  # noqa: BLE001
        raise RegistryError(
            f"model version {version} of '{settings.tracking.registered_model}' not found; "
            "list versions with `eliverec models`"
        ) from exc


def set_challenger(settings: Settings, version: str, reason: str) -> AuditRecord:
    """Point ``challenger`` at a version that passed the gate."""
    with _lock(settings):
        mv = _version(settings, version)
        if mv.tags.get(VERDICT_TAG) != "pass":
            raise RegistryError(f"version {version} has gate verdict {mv.tags.get(VERDICT_TAG)!r}, not 'pass'")
        return _move_alias(settings, CHALLENGER, str(version), "challenger", reason)


def clear_challenger(settings: Settings, reason: str) -> AuditRecord | None:
    """Remove the ``challenger`` alias (audited); ``None`` when there was none."""
    with _lock(settings):
        previous = alias_version(settings, CHALLENGER)
        if previous is None:
            return None
        client(settings).delete_registered_model_alias(settings.tracking.registered_model, CHALLENGER)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        record = AuditRecord(stamp, actor(), "clear", CHALLENGER, previous, None, reason)
        _append_audit(settings, record)
        return record


def promote(settings: Settings, version: str, reason: str, force: bool = False) -> AuditRecord:
    """Move ``champion`` to ``version``; refuses a failed (or ungated) version unless ``force``."""
    if not reason.strip():
        raise RegistryError("a promotion needs a reason: --reason '...'")
    with _lock(settings):
        mv = _version(settings, version)
        verdict = mv.tags.get(VERDICT_TAG)
        if verdict != "pass" and not force:
            raise RegistryError(
                f"version {version} has gate verdict {verdict or 'none'!r}: refusing to promote it. "
                "Re-run `eliverec gate`, or pass --force with a --reason that says why"
            )
        return _move_alias(settings, CHAMPION, str(version), "force-promote" if force else "promote", reason, force)


def bootstrap_champion(settings: Settings, version: str, reason: str) -> AuditRecord:
    """Make the first champion when none exists (the paper's online baseline)."""
    with _lock(settings):
        if alias_version(settings, CHAMPION) is not None:
            raise RegistryError("a champion exists already; use `eliverec promote`")
        _version(settings, version)
        return _move_alias(settings, CHAMPION, str(version), "bootstrap", reason)


def rollback(settings: Settings, reason: str) -> AuditRecord:
    """Return ``champion`` to the version it replaced."""
    with _lock(settings):
        current = alias_version(settings, CHAMPION)
        if current is None:
            raise RegistryError("there is no champion to roll back")
        previous = _version(settings, current).tags.get(PREVIOUS_TAG)
        if not previous:
            raise RegistryError(f"champion version {current} has no previous champion to return to")
        return _move_alias(settings, CHAMPION, previous, "rollback", reason or "rollback")


def read_audit(settings: Settings) -> list[dict[str, Any]]:
    """All audit records, oldest first."""
    path = audit_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Versions with aliases, verdicts, tags and the key metrics of their runs, newest first."""
    c = client(settings)
    name = settings.tracking.registered_model
    rows: list[dict[str, Any]] = []
    for mv in c.search_model_versions(f"name='{name}'"):
        full = c.get_model_version(name, mv.version)  # search may show empty aliases (STACK.md)
        metrics: dict[str, float] = {}
        if full.run_id:
            try:
                metrics = dict(c.get_run(full.run_id).data.metrics)
            except Exception:  # noqa: BLE001 - a deleted run leaves the version listed
                metrics = {}
        rows.append(
            {
                "version": str(full.version),
                "aliases": sorted(full.aliases),
                "verdict": full.tags.get(VERDICT_TAG, ""),
                "model": full.tags.get("model_name", ""),
                "window": full.tags.get("data_window", ""),
                "auc": metrics.get("test/auc"),
                "gauc": metrics.get("test/gauc"),
                "created": full.creation_timestamp,
                "tags": dict(full.tags),
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)

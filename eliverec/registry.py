"""MLflow model registry: register, aliases, audited promotion and rollback (DESIGN section 6).

Every trained model becomes a version of ``settings.tracking.registered_model`` with tags
(data window, git commit, feature-spec hash, gate verdict). Aliases carry the roles:
``champion`` (serves most traffic) and ``challenger`` (passed the gate, waits for a human or a
finished A/B ramp). Every alias change is audited twice: as tags in the registry (so the state
and its history travel with the MLflow server) and as a line in ``<data_dir>/registry/audit.jsonl``
(who, when, action, alias, from, to, why, status). The audit line is durable (fsync) *before* the
alias moves (status ``intent``) and is followed by ``done`` or, when the move fails, ``failed``.
The champion's history (every version it held, in order) is the registered model's
``champion_history`` tag, so repeated rollbacks go back version by version.

"No such alias" (``None``) and "registry unreachable" are different outcomes: reads are retried
(``tracking.retries``, ``tracking.retry_delay_s`` doubling), then :class:`RegistryUnavailable` names
the tracking URI. Alias changes are serialised with a file lock beside
the audit log, so two promotions racing on one machine leave one consistent winner and two
complete audit records; against a shared MLflow server, run promotions from one place (the CLI on
the orchestration host) or hold a lock of your own.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.store import use_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
VERDICT_TAG = "gate_verdict"
PREVIOUS_TAG = "previous_champion"
HISTORY_TAG = "champion_history"
HISTORY_KEPT = 200  # versions kept in the champion history tag (MLflow tag values are short)


class RegistryError(EliverecError):
    """A registry action was refused or is impossible (the message says why and what to do)."""


class RegistryUnavailable(EliverecError):
    """The tracking server could not be read after retries (not the same as "nothing registered")."""


def is_absent(exc: BaseException) -> bool:
    """Whether an MLflow error means "no such model / version / alias" (rather than an outage)."""
    text = str(exc).lower()
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in text or \
        "does not exist" in text


def _read(settings: Settings, what: str, call: Any) -> Any:
    """``call()`` with retries on outages; absent resources raise at once (the caller decides)."""
    t = settings.tracking
    for attempt in range(t.retries + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - MLflow raises MlflowException, requests/sqlalchemy errors
            if is_absent(exc):
                raise
            if attempt == t.retries:
                raise RegistryUnavailable(
                    f"model registry at {t.uri} unreachable while reading {what} ({type(exc).__name__}; "
                    f"{t.retries + 1} attempts): start or fix the tracking server (tracking.uri, "
                    "MLFLOW_TRACKING_URI) and rerun") from exc
            time.sleep(t.retry_delay_s * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


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
    status: str = "done"  # intent (written before the move), done, failed


def client(settings: Settings) -> MlflowClient:
    """An MlflowClient on the configured tracking/registry URI."""
    import mlflow

    use_store(settings.tracking.uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking.uri, registry_uri=settings.tracking.uri)


def audit_path(settings: Settings) -> Path:
    """Where the JSON-lines audit log lives."""
    return settings.layout.audit_log()


def actor() -> str:
    """Who acts: ``$ELIVEREC_ACTOR`` (set by automation) or the OS user."""
    return os.environ.get("ELIVEREC_ACTOR") or getpass.getuser()


def register(settings: Settings, model_uri: str, tags: dict[str, str], run_id: str | None = None) -> str:
    """Register ``model_uri`` as a new version with ``tags``; returns the version number.

    Idempotent for a run: when a version of ``run_id`` with the same source exists (a rerun after a
    crash), that version gets the tags and is returned instead of a duplicate.
    """
    c = client(settings)
    name = settings.tracking.registered_model
    try:
        c.get_registered_model(name)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException when absent
        c.create_registered_model(name, description="eLiveRec live-channel ranker (DESIGN section 3, Models)")
    plain_tags = {k: str(v) for k, v in tags.items()}
    if run_id:
        same = [mv for mv in c.search_model_versions(f"name='{name}' and run_id='{run_id}'") if mv.source == model_uri]
        if same:
            version = str(min(int(mv.version) for mv in same))
            for key, value in plain_tags.items():
                c.set_model_version_tag(name, version, key, value)
            return version
    mv = c.create_model_version(name, source=model_uri, run_id=run_id, tags=plain_tags)
    return str(mv.version)


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version an alias points to, ``None`` when the alias (or the model) does not exist.

    Raises :class:`RegistryUnavailable` when the registry cannot be read after retries.
    """
    c = client(settings)
    name = settings.tracking.registered_model
    try:
        return str(_read(settings, f"alias '{alias}'", lambda: c.get_model_version_by_alias(name, alias)).version)
    except RegistryUnavailable:
        raise
    except Exception:  # noqa: BLE001 - is_absent(): no such alias or model
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


def _write_audit_line(settings: Settings, record: AuditRecord) -> None:
    """Append one record and fsync the file (and, when new, its folder) before returning."""
    path = audit_path(settings)
    new = not path.exists()
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if new:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _append_audit(settings: Settings, record: AuditRecord) -> None:
    _write_audit_line(settings, record)
    c = client(settings)
    c.set_registered_model_tag(
        settings.tracking.registered_model, f"audit.{record.ts}.{record.alias}", json.dumps(asdict(record))[:4900]
    )


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"


def champion_history(settings: Settings) -> list[str]:
    """Every version the champion alias held, oldest first (empty for a registry without the tag)."""
    c = client(settings)
    name = settings.tracking.registered_model
    try:
        tags = _read(settings, "the champion history", lambda: c.get_registered_model(name)).tags
    except RegistryUnavailable:
        raise
    except Exception:  # noqa: BLE001 - is_absent(): no registered model yet
        return []
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _record_history(settings: Settings, action: str, previous: str | None, to_version: str) -> None:
    """Update the champion history after the alias moved: a rollback drops the versions after its
    target, any other move appends the new champion."""
    history = champion_history(settings) or ([previous] if previous is not None else [])
    if action == "rollback":
        while history and history[-1] != to_version:
            history.pop()
    if not history or history[-1] != to_version:
        history.append(to_version)
    client(settings).set_registered_model_tag(settings.tracking.registered_model, HISTORY_TAG,
                                              json.dumps(history[-HISTORY_KEPT:]))


def _move_alias(
    settings: Settings, alias: str, to_version: str, action: str, reason: str, forced: bool = False
) -> AuditRecord:
    """Audit (durably) the intent, move the alias, audit the outcome (``done`` or ``failed``)."""
    c = client(settings)
    name = settings.tracking.registered_model
    previous = alias_version(settings, alias)
    record = AuditRecord(_stamp(), actor(), action, alias, previous, to_version, reason, forced, "intent")
    _write_audit_line(settings, record)
    try:
        c.set_registered_model_alias(name, alias, to_version)
        if alias == CHAMPION:
            if previous is not None and previous != to_version and action != "rollback":
                c.set_model_version_tag(name, to_version, PREVIOUS_TAG, previous)
            _record_history(settings, action, previous, to_version)
    except Exception as exc:
        failed = replace(record, ts=_stamp(), status="failed", reason=f"{reason} [failed: {type(exc).__name__}]")
        _write_audit_line(settings, failed)
        raise RegistryError(f"moving '{alias}' to version {to_version} failed ({type(exc).__name__}: {exc}); "
                            f"audited as failed in {audit_path(settings)}; check the aliases with "
                            "`eliverec models` before retrying") from exc
    done = replace(record, ts=_stamp(), status="done")
    _append_audit(settings, done)
    return done


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
        record = AuditRecord(_stamp(), actor(), "clear", CHALLENGER, previous, None, reason, status="intent")
        _write_audit_line(settings, record)
        client(settings).delete_registered_model_alias(settings.tracking.registered_model, CHALLENGER)
        done = replace(record, ts=_stamp(), status="done")
        _append_audit(settings, done)
        return done


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
    """Return ``champion`` to the version before it in the champion history (repeatable, one step each)."""
    with _lock(settings):
        current = alias_version(settings, CHAMPION)
        if current is None:
            raise RegistryError("there is no champion to roll back")
        history = champion_history(settings)
        if history and history[-1] == current:
            previous = history[-2] if len(history) > 1 else None
        else:  # a registry from before the history tag: one step back, from the version's own tag
            previous = _version(settings, current).tags.get(PREVIOUS_TAG)
        if not previous:
            raise RegistryError(f"champion version {current} has no previous champion to return to")
        return _move_alias(settings, CHAMPION, previous, "rollback", reason or "rollback")


def read_audit(settings: Settings, intents: bool = False) -> list[dict[str, Any]]:
    """Audit records, oldest first: finished changes (``done``, ``failed``); ``intents`` adds the lines
    written before each move (an intent without an outcome: the process died during the move)."""
    path = audit_path(settings)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if intents or r.get("status", "done") != "intent"]


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

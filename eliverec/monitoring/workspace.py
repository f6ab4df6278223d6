"""The Evidently workspace: projects and dashboards from ``monitoring/dashboards.yaml``, one snapshot per day.

Re-monitoring a day replaces that day's snapshot: a small index file in the workspace
(``eliverec_index.json``: project id -> date -> snapshot id) finds the old one, which is deleted
before the new one is added, so every panel keeps exactly one point per day.
``eliverec ui monitoring`` serves the workspace with ``evidently ui`` on the loopback interface.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from eliverec.config import ConfigError, Settings, find_params

INDEX = "eliverec_index.json"
_PLOTS = {"line": "line_plot_panel", "bar": "bar_plot_panel", "counter": "counter_panel"}


def resolve(settings: Settings, path: str) -> Path:
    """A ``monitor`` path: absolute as given, relative against the folder of ``params.yaml``."""
    p = Path(path)
    return p if p.is_absolute() else (find_params().parent / p).resolve()


def load_definitions(settings: Settings) -> dict[str, Any]:
    """The project and panel definitions (``monitor.dashboards``); errors name the file and the key."""
    path = resolve(settings, settings.monitor.dashboards)
    if not path.is_file():
        raise ConfigError(f"{path}: dashboard definitions missing (monitor.dashboards); restore it from git")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    projects = spec.get("projects")
    if not isinstance(projects, dict) or not {"drift", "discoverability", "ab"} <= set(projects):
        raise ConfigError(f"{path}: 'projects' must define drift, discoverability and ab")
    for key, proj in projects.items():
        for i, panel in enumerate(proj.get("panels", [])):
            if panel.get("type", "line") not in _PLOTS or not panel.get("title") or not panel.get("values"):
                raise ConfigError(f"{path}: projects.{key}.panels[{i}]: needs title, values and a type in "
                                  f"{', '.join(_PLOTS)}")
    return projects


def _panel(panel: dict[str, Any], variant: str | None) -> Any:
    """One Evidently panel from a definition (``variant`` fills the series of per-variant panels)."""
    from evidently.sdk import panels
    from evidently.sdk.models import PanelMetric

    values = []
    for v in panel["values"]:
        labels = {k: str(x) for k, x in (v.get("labels") or {}).items()}
        if variant is not None:
            labels["variant"] = variant
        values.append(PanelMetric(legend=v.get("legend"), metric=v["metric"], metric_labels=labels))
    title = panel["title"] if variant is None else f"{panel['title']}: {variant}"
    return getattr(panels, _PLOTS[panel.get("type", "line")])(title, values, size=panel.get("size", "full"))


def ensure_project(ws: Any, key: str, definition: dict[str, Any], variants: list[str]) -> Any:
    """The project of ``definition`` (created on first use) with every defined panel present."""
    found = [p for p in ws.search_project(definition["name"]) if p.name == definition["name"]]
    project = found[0] if found else ws.create_project(definition["name"], description=definition.get("description"))
    have = {p.title for p in project.dashboard.model().panels}
    for panel in definition.get("panels", []):
        for variant in (variants if panel.get("per_variant") else [None]):
            plot = _panel(panel, variant)
            if plot.title not in have:
                project.dashboard.add_panel(plot, tab=panel.get("tab"))
                have.add(plot.title)
    return project


def open_workspace(settings: Settings) -> tuple[Any, Path]:
    """The workspace of ``monitor.workspace`` (created when missing) and its folder."""
    from evidently.ui.workspace import Workspace

    path = resolve(settings, settings.monitor.workspace)
    path.mkdir(parents=True, exist_ok=True)
    return Workspace.create(str(path)), path


def add_daily_snapshot(ws: Any, path: Path, project: Any, snapshot: Any, date: str) -> str:
    """Add ``snapshot`` as the project's point for ``date``, replacing an earlier one of that date."""
    index_path = path / INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    days = index.setdefault(str(project.id), {})
    old = days.get(date)
    if old and any(str(r) == old for r in ws.list_runs(project.id)):
        ws.delete_run(project.id, old)
    ref = ws.add_run(project.id, snapshot)
    days[date] = str(ref.id)
    tmp = index_path.with_name(f".{INDEX}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True))
    os.replace(tmp, index_path)
    return str(ref.id)


def snapshot_time(date: str) -> dt.datetime:
    """The timestamp a day's snapshots carry on the dashboards (00:00 UTC of that day, naive).

    >>> snapshot_time("2026-09-08").isoformat()
    '2026-09-08T00:00:00'
    """
    return dt.datetime.combine(dt.date.fromisoformat(date), dt.time())


def ui_command(settings: Settings, port: int | None = None, host: str | None = None) -> list[str]:
    """The ``evidently ui`` command line that serves the workspace."""
    exe = Path(sys.executable).with_name("evidently")
    return [str(exe) if exe.exists() else "evidently", "ui", "--workspace",
            str(resolve(settings, settings.monitor.workspace)), "--host", host or settings.monitor.ui_host,
            "--port", str(port or settings.monitor.ui_port)]


def ui_env() -> dict[str, str]:
    """Environment of the UI process: no telemetry."""
    return {**os.environ, "DO_NOT_TRACK": "1"}


def serve_ui(settings: Settings, port: int | None = None, host: str | None = None) -> int:
    """Run the Evidently UI in the foreground until interrupted; return its exit code."""
    path = resolve(settings, settings.monitor.workspace)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.call(ui_command(settings, port, host), env=ui_env())
    except KeyboardInterrupt:
        return 0

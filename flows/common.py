"""What every flow shares: the hand-off of resolved settings to tasks, the command line, markdown artifacts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eliverec.config import (
    ConfigError,
    Settings,
    add_settings_options,
    load_settings,
    read_settings,
    secret_overrides,
    settings_hash,
    write_settings,
)

_RESOLVED: dict[tuple[str, str], Settings] = {}  # (settings file, hash) -> the settings, in this process


@dataclass(frozen=True)
class Target:
    """A flow run's resolved settings as its tasks receive them: the settings file and the settings hash.

    A flow resolves ``params.yaml`` once, at its start (:meth:`resolve`); tasks and cache-key functions
    call :meth:`settings`, which never parses ``params.yaml`` again: in the flow's process it gives the
    flow's own object, in another process (a Dask worker) it reads the file once and checks its hash.
    Stages run as subprocesses get ``--settings FILE`` (:meth:`cli_args`).

    Secrets: Prefect stores flow-run parameters (and what it records of task inputs) in its database,
    so no secret (:data:`eliverec.config.SECRET_KEYS`) travels as a parameter. A target is only a path
    and a hash; the secrets stay in the file, owner-only (mode 0600,
    :func:`eliverec.config.write_settings`) under the data root (``.settings/<hash>.json``, where a
    Dask worker that shares the data root finds it). For the same reason :meth:`resolve` refuses a
    ``--set`` of a secret (the overrides are the flow's parameters): set tokens in ``params.yaml``
    or the environment (``ELIVEREC_ADMIN_TOKEN``, ``ELIVEREC_PRODUCER_TOKEN``).
    """

    settings_file: str
    settings_hash: str

    @classmethod
    def resolve(cls, profile: str | None = "default", overrides: Sequence[str] = (), data_dir: str | None = None,
                params: str | None = None) -> Target:
        """Read ``params.yaml`` (profile, overrides, data root) once and hand the result off."""
        secret = secret_overrides(overrides)
        if secret:
            raise ConfigError(f"--set {', '.join(secret)}: a flow's overrides are stored with its run in Prefect's "
                              "database; set secrets in params.yaml or the environment (ELIVEREC_ADMIN_TOKEN, "
                              "ELIVEREC_PRODUCER_TOKEN) instead")
        return cls.of(load_settings(profile, overrides=overrides, params=params, data_dir=data_dir))

    @classmethod
    def of(cls, settings: Settings) -> Target:
        """Hand ``settings`` off: write their file under their data root unless it is there already."""
        digest = settings_hash(settings)
        path = settings.layout.settings_handoff(digest)
        if not path.exists():
            write_settings(settings, path)
        _RESOLVED[(str(path), digest)] = settings
        return cls(str(path), digest)

    def settings(self) -> Settings:
        """The flow's settings (no ``params.yaml`` involved): this process's copy, else the file's, hash-checked."""
        key = (self.settings_file, self.settings_hash)
        if key not in _RESOLVED:
            s = read_settings(self.settings_file)
            if settings_hash(s) != self.settings_hash:
                raise ConfigError(f"{self.settings_file}: holds settings {settings_hash(s)}, not the flow's "
                                  f"{self.settings_hash}; run the flow again to write them")
            _RESOLVED[key] = s
        return _RESOLVED[key]

    def cli_args(self) -> list[str]:
        """The same settings as ``eliverec`` CLI options (for stages launched as subprocesses)."""
        return ["--settings", self.settings_file]


def target_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line every flow module shares: the settings options of the torchrun launcher too
    (:func:`eliverec.config.add_settings_options`: --profile, --set (repeatable), --data-dir, --params)."""
    ap = add_settings_options(argparse.ArgumentParser(description=(doc or "").splitlines()[0]), resolved=False)
    ap.set_defaults(profile="default")
    return ap


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A small markdown table from a list of flat dicts (keys of the first row are the columns)."""
    if not rows:
        return "_(none)_"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)

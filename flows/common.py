"""What every flow shares: how a task finds its settings, and the markdown artifacts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from eliverec.config import Settings, add_settings_options, load_settings


@dataclass(frozen=True)
class Target:
    """Where and how a flow runs: profile, overrides, data root, params file (all JSON-able)."""

    profile: str = "default"
    overrides: tuple[str, ...] = field(default_factory=tuple)
    data_dir: str | None = None
    params: str | None = None

    def settings(self) -> Settings:
        """Settings resolved afresh in each task (cheap), so a task needs only its arguments."""
        return load_settings(self.profile, overrides=self.overrides, params=self.params, data_dir=self.data_dir)

    def cli_args(self) -> list[str]:
        """The same target as ``eliverec`` CLI options (for stages launched as subprocesses)."""
        args = ["--profile", self.profile]
        for o in self.overrides:
            args += ["--set", o]
        if self.data_dir:
            args += ["--data-dir", self.data_dir]
        if self.params:
            args += ["--params", self.params]
        return args


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

"""The ``eliverec`` command line: one Typer app, one command per pipeline stage.

Each command only parses options, loads settings and calls one package function:
the Prefect flows and ``dvc.yaml`` call the same functions.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from eliverec.config import Settings, load_settings
from eliverec.errors import EliverecError

app = typer.Typer(
    help="eLiveRec platform: simulate, ingest, validate, features, train, evaluate, gate, serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="Settings profile: tiny, default or paper.", show_default=False)
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data root (default: data_dir in params.yaml).", show_default=False)
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting, e.g. --set world.n_users=500 (repeatable).")
]
ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="params.yaml to read (default: ./params.yaml).", show_default=False)
]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Print an :class:`EliverecError` as one clear message and exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EliverecError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def settings(
    profile: str | None, data_dir: Path | None, overrides: list[str] | None, params: Path | None
) -> Settings:
    """Resolve the settings for one command."""
    return load_settings(profile=profile, overrides=overrides or (), params=params, data_dir=data_dir)


@app.callback()
def main() -> None:
    """eLiveRec platform: every pipeline stage is a command; see each command's --help."""


@app.command("config")
@friendly_errors
def config_cmd(
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None
) -> None:
    """Print the resolved settings (after profile and overrides) as YAML."""
    import yaml

    s = settings(profile, data_dir, overrides, params)
    typer.echo(yaml.safe_dump(s.section_dict(), sort_keys=False))


# Stage commands are added below, each one call into the package.

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

from eliverec.config import Settings, resolve_settings
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
SettingsFileOpt = Annotated[
    Path | None, typer.Option("--settings", help="Settings a flow resolved (JSON with their hash), instead of "
                              "--profile/--set/--data-dir/--params.", show_default=False)
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
    profile: str | None, data_dir: Path | None, overrides: list[str] | None, params: Path | None,
    settings_file: Path | None = None,
) -> Settings:
    """Resolve the settings for one command (or read those a flow resolved: ``--settings FILE``)."""
    return resolve_settings(profile, overrides or (), params, data_dir, settings_file)


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


@app.command("simulate")
@friendly_errors
def simulate_cmd(
    days: Annotated[int | None, typer.Option("--days", min=1, help="Main days (default world.days).")] = None,
    users: Annotated[int | None, typer.Option("--users", min=10, help="Users (default world.n_users).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="World seed (default: seed).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Simulate the Taobao-Live world and write raw logs (warm-up days, then the main days) under DATA_DIR/raw."""
    from eliverec.world import simulate

    r = simulate(settings(profile, data_dir, overrides, params), days=days, users=users, seed=seed)
    typer.echo(f"{r['events']} events for {r['users']} users, {len(r['dates'])} days "
               f"({len(r['warmup_dates'])} warm-up) in {r['seconds']:.1f}s ({r['events_per_s']:.0f} events/s)")
    typer.echo(f"raw logs: {r['raw_dir']}/<date>/ ({r['dates'][0]} .. {r['dates'][-1]})")


# ----------------------------------------------------------------------------- registry
@app.command("ingest")
@friendly_errors
def ingest_cmd(
    date: Annotated[str | None, typer.Option("--date", help="Day to ingest (YYYY-MM-DD): raw/DATE -> bronze/DATE.")]
    = None,
    all_days: Annotated[bool, typer.Option("--all", help="Ingest every raw day.")] = False,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Validate raw logs, write typed bronze tables, quarantine bad lines (fails above the threshold)."""
    from eliverec.data.ingest import ingest_day
    from eliverec.pipeline import raw_dates

    s = settings(profile, data_dir, overrides, params)
    for day in _days(date, all_days, raw_dates(s)):
        m = ingest_day(s, day, progress=True)
        t = m["totals"]
        typer.echo(f"{day}: {t['lines_read']} lines from {t['files']} files: {t['accepted']} accepted, "
                   f"{t['quarantined']} quarantined ({m['quarantine_rate']:.3%}), {t['duplicates']} duplicates; "
                   f"content {m['content_hash'][:12]}")


def _days(date: str | None, all_days: bool, available: list[str]) -> list[str]:
    """``--date D`` or ``--all`` (exactly one), as a list of days."""
    if bool(date) == all_days:
        raise EliverecError("give exactly one of --date YYYY-MM-DD or --all")
    if all_days and not available:
        raise EliverecError("no days found; run the previous stage first (eliverec simulate / ingest)")
    return available if all_days else [date or ""]


@app.command("validate")
@friendly_errors
def validate_cmd(
    date: Annotated[str | None, typer.Option("--date", help="Day to validate (YYYY-MM-DD).")] = None,
    all_days: Annotated[bool, typer.Option("--all", help="Validate every ingested day.")] = False,
    suite: Annotated[list[str] | None, typer.Option("--suite", help="Suite(s): bronze (default), samples.")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Run the Great Expectations suites; write validation/DATE/<suite>.json + .md; exit 3 on failure."""
    from eliverec.data.suites import validate_day
    from eliverec.data.validation import data_docs_index
    from eliverec.pipeline import bronze_dates

    s = settings(profile, data_dir, overrides, params)
    for day in _days(date, all_days, bronze_dates(s)):
        r = validate_day(s, day, tuple(suite or ("bronze",)))
        for name, info in r["suites"].items():
            typer.echo(f"{day} {name}: passed ({info['markdown']})")
    typer.echo(f"Data Docs: {data_docs_index(s.data_dir)} (serve them: eliverec ui docs)")


@app.command("import")
@friendly_errors
def import_cmd(
    mapping: Annotated[Path, typer.Option("--mapping", help="Mapping YAML (see mappings/).")],
    live: Annotated[Path | None, typer.Option("--live", help="Live-room log (CSV or parquet).")] = None,
    products: Annotated[Path | None, typer.Option("--products", help="Product log (CSV or parquet).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Import foreign interaction logs into raw logs of our contract (derived events are marked)."""
    from eliverec.data.importer import import_logs

    r = import_logs(settings(profile, data_dir, overrides, params), live=live, products=products, mapping=mapping)
    typer.echo(f"imported {sum(r['events'].values())} events over {len(r['dates'])} days "
               f"({r['dates'][0]}..{r['dates'][-1]}) into {r['raw_dir']}; derived: {r['derived']}")


@app.command("models")
@friendly_errors
def models_cmd(
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None
) -> None:
    """List registered model versions with aliases, key metrics and gate verdicts."""
    from rich.table import Table

    from eliverec import registry

    s = settings(profile, data_dir, overrides, params)
    table = Table(title=f"registered model '{s.tracking.registered_model}'")
    for col in ("version", "aliases", "model", "data window", "test AUC", "test gAUC", "gate"):
        table.add_column(col)
    for row in registry.list_versions(s):
        fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
        table.add_row(row["version"], ",".join(row["aliases"]), row["model"], row["window"],
                      fmt(row["auc"]), fmt(row["gauc"]), row["verdict"])
    Console().print(table)


@app.command("promote")
@friendly_errors
def promote_cmd(
    version: Annotated[str, typer.Option("--version", help="Model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (goes to the audit log).")],
    force: Annotated[bool, typer.Option("--force", help="Promote even if its gate failed.")] = False,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Move the `champion` alias to a version (audited; refuses a failed gate without --force)."""
    from eliverec import registry

    rec = registry.promote(settings(profile, data_dir, overrides, params), version, reason, force=force)
    typer.echo(f"champion: version {rec.from_version} -> {rec.to_version} (by {rec.actor}: {rec.reason})")


@app.command("rollback")
@friendly_errors
def rollback_cmd(
    reason: Annotated[str, typer.Option("--reason", help="Why (goes to the audit log).")] = "manual rollback",
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Return `champion` to the version before it in the champion history (audited; repeat to step back further)."""
    from eliverec import registry

    rec = registry.rollback(settings(profile, data_dir, overrides, params), reason)
    typer.echo(f"champion: version {rec.from_version} -> {rec.to_version} (by {rec.actor}: {rec.reason})")


@app.command("train")
@friendly_errors
def train_cmd(
    model: Annotated[str | None, typer.Option("--model", help="Model name (default: model.name).")] = None,
    end_date: Annotated[str | None, typer.Option("--end-date", help="Test day; trains on the days before.")] = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes (torchrun DDP when > 1).")] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Machines (multi-node via torchrun c10d).")] = 1,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0.")] = None,
    rdzv_id: Annotated[str | None, typer.Option("--rdzv-id", help="Job id shared by all nodes.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's latest checkpoint.")] = False,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Default: <model>-<end date>.")] = None,
    result_json: Annotated[
        Path | None, typer.Option("--result-json", help="Write {model, run_id, model_uri, end_date, metrics} here.")
    ] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
    settings_file: SettingsFileOpt = None,
) -> None:
    """Train a model (one process, or DDP under torchrun with --nproc K) and log it to MLflow."""
    import os

    from eliverec.pipeline import latest_bronze_date, write_result

    s = settings(profile, data_dir, overrides, params, settings_file)
    end_date = end_date or latest_bronze_date(s)
    k = nproc or s.train.nproc
    if (k > 1 or nnodes > 1) and "WORLD_SIZE" not in os.environ:
        from eliverec.training import launch

        args = launch.child_args(model=model, end_date=end_date, resume=resume, run_name=run_name)
        res = launch.launch(k, args, nnodes, rdzv_endpoint, rdzv_id, settings=s)  # ranks read s, not params.yaml
        uri, run_id, metrics = res.get("model_uri"), res.get("run_id"), res.get("metrics", {})
    else:
        from eliverec.training.trainer import train

        r = train(s, model, end_date, resume, run_name)
        uri, run_id, metrics = r.model_uri, r.run_id, r.metrics
    typer.echo(f"run {run_id}: model {uri}; validation auc {metrics.get('val/auc', float('nan')):.4f}, "
               f"gauc {metrics.get('val/gauc', float('nan')):.4f}, steps {int(metrics.get('steps', 0))}")
    if result_json is not None:
        write_result(result_json, {"model": model or s.model.name, "run_id": run_id, "model_uri": uri,
                                   "end_date": end_date, "metrics": metrics})


@app.command("tune")
@friendly_errors
def tune_cmd(
    model: Annotated[str, typer.Option("--model", help="Model name to tune (e.g. eliverec, eta_dual).")],
    trials: Annotated[int, typer.Option("--trials", help="Trials (the same number for every family).")] = 20,
    minutes_per_trial: Annotated[
        float | None, typer.Option("--minutes-per-trial", help="Wall-clock cap per trial (default train.max_minutes).")
    ] = None,
    end_date: Annotated[str | None, typer.Option("--end-date", help="Test day; tunes on the days before.")] = None,
    write: Annotated[bool, typer.Option("--write", help="Store the best values in params.yaml (tuned.MODEL).")] = False,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Search MODEL's hyper-parameters with Optuna on the validation tail (MLflow parent run + nested trials)."""
    from rich.progress import Progress

    from eliverec.config import find_params
    from eliverec.pipeline import latest_bronze_date
    from eliverec.training.tune import TrialRecord, TuneResult, tune

    s = settings(profile, data_dir, overrides, params)
    end_date = end_date or latest_bronze_date(s)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(f"tuning {model}", total=trials)

        def done(rec: TrialRecord, best: TuneResult | None) -> None:
            auc = f"val auc {rec.value:.4f}" if rec.value is not None else f"failed ({rec.error[:80]})"
            best_text = f"best {best.best_value:.4f} (trial {best.best_trial})" if best else "no best yet"
            values = ", ".join(f"{k.split('.')[1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[1]}={v}"
                               for k, v in rec.values.items())
            typer.echo(f"trial {rec.number + 1}/{trials}: {auc}; {best_text}; {values}; {rec.seconds:.1f} s")
            bar.advance(task)

        r = tune(s, model, trials, end_date, minutes_per_trial, find_params(params) if write else None,
                 on_trial=done)
    typer.echo(f"best val auc {r.best_value:.4f} (trial {r.best_trial}): {r.tuned}; MLflow run {r.parent_run_id}")
    typer.echo(f"report: {r.paths['markdown']}" + (f"; written to {'.'.join(r.written)}" if r.written else ""))


@app.command("evaluate")
@friendly_errors
def evaluate_cmd(
    model_uri: Annotated[
        str | None, typer.Option("--model-uri", help="models:/NAME@ALIAS, models:/m-..., runs:/ID/model")
    ] = None,
    date: Annotated[str | None, typer.Option("--date", help="Test day (YYYY-MM-DD).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Report file name (default from the URI).")] = None,
    train_result: Annotated[
        Path | None, typer.Option("--train-result", help="JSON from `eliverec train --result-json` (URI and day).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the flat metrics JSON here (DVC).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Score the test day with a logged model; write the JSON + markdown report."""
    from eliverec.evaluation.evaluate import evaluate
    from eliverec.pipeline import read_result, write_result

    if train_result is not None:
        r = read_result(train_result)
        model_uri, date, name = r["model_uri"], date or r["end_date"], name or r["model"]
    if not model_uri or not date:
        raise EliverecError("give --model-uri URI --date YYYY-MM-DD, or --train-result FILE")
    rep = evaluate(settings(profile, data_dir, overrides, params), model_uri, date, name)
    m, k = rep["metrics"], rep["k"]
    typer.echo(f"{rep['rows']} rows: auc {m.get('auc')}, gauc {m.get('gauc')}, ndcg@{k} {m.get(f'ndcg@{k}')}")
    typer.echo(f"report: {rep['paths']['json']}")
    if out is not None:
        write_result(out, {key: v for key, v in m.items() if v is not None})


@app.command("ope")
@friendly_errors
def ope_cmd(
    candidate: Annotated[str, typer.Option("--candidate", help="Model URI: models:/NAME@ALIAS, runs:/ID/model")],
    date: Annotated[str, typer.Option("--date", help="A day logged by the stochastic logging policy (YYYY-MM-DD).")],
    champion: Annotated[
        str | None, typer.Option("--champion", help="Champion URI (default: the registry's champion alias).")
    ] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Off-policy estimate of watches per feed: candidate, champion, their difference, effective sample size."""
    from eliverec.evaluation.offpolicy import run_ope

    s = settings(profile, data_dir, overrides, params)
    r = run_ope(s, candidate, date, champion)
    est = r["watch"][s.ope.estimator]
    c, d = est["candidate"], est.get("difference")
    typer.echo(f"{s.ope.estimator}: candidate {c['value']:.4f} [{c['low']:.4f}, {c['high']:.4f}] watches per feed "
               f"(ESS {c['ess']:.0f} of {r['feeds']} feeds; logged policy {r['watch']['logged']:.4f})")
    if d is not None:
        h = est["champion"]
        typer.echo(f"champion {h['value']:.4f}; difference {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
    typer.echo(f"report: {r['paths']['markdown']}")


@app.command("features")
@friendly_errors
def features_cmd(
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Test day (YYYY-MM-DD; default: newest ingested day).")
    ] = None,
    train_days: Annotated[
        int | None, typer.Option("--train-days", help="Train days before the test day (default: features.train_days).")
    ] = None,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Run the samples suite per day.")] = True,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Build point-in-time samples (parquet + memory-mapped tensors) for END_DATE-N .. END_DATE."""
    from eliverec.features.build import build_features
    from eliverec.pipeline import latest_bronze_date

    s = settings(profile, data_dir, overrides, params)
    r = build_features(s, end_date or latest_bronze_date(s), train_days, validate=validate)
    for day, d in r["days"].items():
        rates = ", ".join(f"{k} {v:.3f}" for k, v in d["label_rates"].items())
        typer.echo(f"{day} ({d['split']}): {d['rows']} samples; {rates}; mean lengths product "
                   f"{d['mean_product_len']:.1f}, channel {d['mean_channel_len']:.1f}")
    typer.echo(f"{r['rows']} samples in {r['seconds']:.1f} s ({r['impressions_per_s']:.0f}/s), spec {r['spec_hash']}")
    if validate:
        from eliverec.data.validation import data_docs_index

        typer.echo(f"Data Docs: {data_docs_index(s.data_dir)} (serve them: eliverec ui docs)")


# ----------------------------------------------------------------------------- monitoring
WorkspaceOpt = Annotated[bool, typer.Option("--workspace/--no-workspace", help="Add the snapshots to the workspace.")]


@app.command("monitor")
@friendly_errors
def monitor_cmd(
    date: Annotated[str, typer.Option("--date", help="Day to monitor (YYYY-MM-DD).")],
    workspace: WorkspaceOpt = True,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Drift, discoverability and user segments of DATE (Evidently); exit 3 when a test fails."""
    from eliverec.monitoring.monitor import monitor_day

    r = monitor_day(settings(profile, data_dir, overrides, params), date, workspace=workspace)
    typer.echo(f"{date}: passed; drifted columns: {', '.join(r['drift']['drifted']) or 'none'}; "
               f"{r['drift']['reference']['note']}")
    typer.echo(f"reports: {r['reports']['markdown']}" + ("; open the dashboards: eliverec ui monitoring"
                                                           if workspace else ""))


ui_app = typer.Typer(help="Open the web UIs (Evidently monitoring, MLflow, Prefect) on 127.0.0.1.",
                     no_args_is_help=True)
app.add_typer(ui_app, name="ui")


@ui_app.command("monitoring")
@friendly_errors
def ui_monitoring_cmd(
    port: Annotated[int | None, typer.Option("--port", help="Port (default monitor.ui_port).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Serve the Evidently workspace (dashboards over days) until Ctrl-C."""
    from eliverec.monitoring.workspace import serve_ui

    s = settings(profile, data_dir, overrides, params)
    typer.echo(f"Evidently UI on http://{s.monitor.ui_host}:{port or s.monitor.ui_port} (Ctrl-C to stop)")
    raise typer.Exit(serve_ui(s, port))


# ----------------------------------------------------------------------------- serving and A/B
@app.command("serve")
@friendly_errors
def serve_cmd(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default serving.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default serving.port).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
    settings_file: SettingsFileOpt = None,
) -> None:
    """Run the ranking service (champion + challenger by alias, A/B buckets, impression log) until Ctrl-C."""
    from eliverec.serving.app import serve

    s = settings(profile, data_dir, overrides, params, settings_file)
    typer.echo(f"ranking service on http://{host or s.serving.host}:{port or s.serving.port} "
               f"(models from {s.tracking.uri}; impressions to {s.layout.raw()}/<date>/)")
    serve(s, host, port)


@app.command("traffic")
@friendly_errors
def traffic_cmd(
    users: Annotated[int, typer.Option("--users", min=1, help="Simulated users taking part.")] = 200,
    minutes: Annotated[float, typer.Option("--minutes", min=0.1, help="World minutes to play.")] = 10.0,
    url: Annotated[str | None, typer.Option("--url", help="Service URL (default from serving.host/port).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="World time to start, YYYY-MM-DDTHH:MM (UTC); "
                                                             "default: the busiest slot of the next day.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Traffic seed (default: seed).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Play the simulated world's users against the running service; their true behaviour goes back as events."""
    from eliverec.experiments.traffic import run_traffic

    r = run_traffic(settings(profile, data_dir, overrides, params), url=url, users=users, minutes=minutes,
                    start=start, seed=seed)
    variants = ", ".join(f"{v} {n['requests']} req / {n['watches']} watches" for v, n in r["variants"].items())
    typer.echo(f"{r['requests']} requests ({r['errors']} errors), {r['impressions']} impressions, "
               f"{r['watches']} watches, {r['events']} events in {r['seconds']:.1f}s ({r['requests_per_s']:.0f}/s); "
               f"{variants}")


ab_app = typer.Typer(help="A/B experiments: analysis report and the ramped rollout.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")


@ab_app.command("report")
@friendly_errors
def ab_report_cmd(
    date: Annotated[list[str] | None, typer.Option("--date", help="Day(s) of served logs (default: all).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Per-variant metrics with user-level delta-method intervals, SRM check; JSON + markdown + plot."""
    from eliverec.experiments.analysis import ab_report

    r = ab_report(settings(profile, data_dir, overrides, params), dates=date)
    p = r["comparison"].get(r["primary_metric"], {})
    typer.echo(f"{r['users']} users, {r['impressions']} impressions; {r['primary_metric']} lift "
               f"{p.get('relative_lift', float('nan')):+.2%} (p={p.get('p_value', float('nan')):.3g}); "
               f"SRM p={r['srm']['p_value']:.3g}")
    typer.echo(f"report: {r['paths']['markdown']}")


@ab_app.command("ramp")
@friendly_errors
def ab_ramp_cmd(
    url: Annotated[str | None, typer.Option("--url", help="Service URL (default from serving.host/port).")] = None,
    simulate_traffic: Annotated[bool, typer.Option(
        "--simulate-traffic/--live", help="Drive each stage with simulated users, or wait for live traffic.")] = False,
    traffic_users: Annotated[int | None, typer.Option("--traffic-users", help="Users per simulated round.")] = None,
    traffic_minutes: Annotated[float, typer.Option("--traffic-minutes", help="World minutes per round.")] = 5.0,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="Promote a winner at the end.")] = True,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Ramp the challenger through ab.stages while guardrails hold; roll back on a breach; promote at the end."""
    from eliverec.experiments.ramp import ramp

    r = ramp(settings(profile, data_dir, overrides, params), url=url, simulate_traffic=simulate_traffic,
             traffic_users=traffic_users, traffic_minutes=traffic_minutes, promote=promote)
    for st in r["stages"]:
        typer.echo(f"stage {st['percent']}%: {st['decision']} ({st['reason']})")
    typer.echo(f"outcome: {r['outcome']}; challenger share now {r['final_percent']}%; report {r['paths']['json']}")


@app.command("register")
@friendly_errors
def register_cmd(
    train_result: Annotated[Path, typer.Option("--train-result", help="JSON from `eliverec train --result-json`.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write {version, ...} here (for the gate stage).")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Register a trained model as a new version (tags: data window, git commit, feature-spec hash)."""
    from eliverec.pipeline import read_result, register_result, write_result

    s = settings(profile, data_dir, overrides, params)
    result = read_result(train_result)
    version = register_result(s, result)
    typer.echo(f"registered {result['model']} as version {version} of '{s.tracking.registered_model}'")
    if out is not None:
        write_result(out, {**result, "version": version})


@app.command("gate")
@friendly_errors
def gate_cmd(
    candidate: Annotated[str | None, typer.Option("--candidate", help="Model URI to gate.")] = None,
    date: Annotated[str | None, typer.Option("--date", help="Held-out day (default: newest feature day).")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Registry version of the candidate.")] = None,
    registered: Annotated[
        Path | None, typer.Option("--registered", help="JSON from `eliverec register --out` (instead of the above).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the verdict JSON here (DVC metrics).")] = None,
    exit_zero: Annotated[bool, typer.Option("--exit-zero", help="Exit 0 on a failed verdict (record it only).")]
    = False,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Candidate vs champion on the same held-out day; exit 0 on pass, 3 on fail (the report says why)."""
    from eliverec.errors import ValidationFailed
    from eliverec.pipeline import latest_bronze_date, read_result, release

    s = settings(profile, data_dir, overrides, params)
    if registered is not None:
        result = read_result(registered)
        if not result.get("version"):
            raise EliverecError(f"{registered}: has no version; write it with `eliverec register --out`")
    elif candidate is not None:
        result = {"model": candidate, "model_uri": candidate, "run_id": None,
                  "end_date": date or latest_bronze_date(s)}
    else:
        raise EliverecError("give --candidate URI (with --version N to tag a registry version) or --registered FILE")
    if version is not None or registered is not None:
        r = release(s, result, str(version or result["version"]))
    else:
        from eliverec.evaluation.gate import gate

        g = gate(s, result["model_uri"], result["end_date"])
        r = {"verdict": g.verdict, "failed": [c.name for c in g.failed()], "report": g.paths["markdown"]}
    failed = f" (failed: {', '.join(r['failed'])})" if r["failed"] else ""
    typer.echo(f"gate verdict: {r['verdict'].upper()}{failed}")
    typer.echo(f"report: {r['report']}")
    if r.get("challenger"):
        typer.echo(f"champion: version {r.get('champion')}; challenger: version {r['challenger']}; promote with "
                   f"`eliverec promote --version {r['challenger']} --reason \"...\"`")
    if out is not None:
        from eliverec.pipeline import write_result

        write_result(out, {"passed": int(r["verdict"] == "pass"), "failed": r["failed"], "report": r["report"]})
    if r["verdict"] != "pass" and not exit_zero:
        raise ValidationFailed(f"gate failed: {', '.join(r['failed'])}; see {r['report']}")


@app.command("plots")
@friendly_errors
def plots_cmd(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder of the CSV files (dvc plots).")],
    train_result: Annotated[
        Path | None, typer.Option("--train-result", help="JSON from `eliverec train --result-json`: its curve.")
    ] = None,
    gate: Annotated[Path | None, typer.Option("--gate", help="JSON from `eliverec gate --out`.")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Write train_curve.csv, gate.csv (one row per nightly date) and discoverability.csv for `dvc plots`."""
    from eliverec import plots
    from eliverec.pipeline import read_result

    s = settings(profile, data_dir, overrides, params)
    written = [plots.discoverability_days(s, out_dir / "discoverability.csv")]
    if train_result is not None:
        written.append(plots.training_curve(s, read_result(train_result)["run_id"], out_dir / "train_curve.csv"))
    if gate is not None:
        written.append(plots.upsert_by_date(out_dir / "gate.csv", plots.gate_row(gate)))
    typer.echo("wrote " + ", ".join(str(p) for p in written))


@app.command("bootstrap")
@friendly_errors
def bootstrap_cmd(
    end_date: Annotated[str | None, typer.Option("--end-date", help="Test day (default: newest ingested day).")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write what happened as JSON here.")] = None,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """With no champion yet: train the online baseline (flows.baseline_model), gate it, make it champion."""
    from eliverec.pipeline import bootstrap, latest_bronze_date, write_result

    s = settings(profile, data_dir, overrides, params)
    r = bootstrap(s, end_date or latest_bronze_date(s))
    typer.echo(r["message"])
    if out is not None:
        write_result(out, r)


@ui_app.command("docs")
@friendly_errors
def ui_docs_cmd(
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8001,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Serve the Great Expectations Data Docs of the data root (every validation result) until Ctrl-C."""
    import os

    from eliverec import ui

    cmd = ui.data_docs_command(settings(profile, data_dir, overrides, params), port=port)
    typer.echo(f"Data Docs on http://127.0.0.1:{port}/index.html (Ctrl-C to stop)")
    raise typer.Exit(ui.run_foreground(cmd, dict(os.environ)))


@ui_app.command("mlflow")
@friendly_errors
def ui_mlflow_cmd(
    port: Annotated[int, typer.Option("--port", help="Port.")] = 5000,
    profile: ProfileOpt = None, data_dir: DataDirOpt = None, overrides: SetOpt = None, params: ParamsOpt = None,
) -> None:
    """Serve the MLflow UI (runs and the model registry) on the configured store until Ctrl-C."""
    from eliverec import ui

    s = settings(profile, data_dir, overrides, params)
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} (store {s.tracking.uri}; Ctrl-C to stop)")
    raise typer.Exit(ui.run_foreground(ui.mlflow_command(s, port=port), ui.mlflow_env()))


@ui_app.command("prefect")
@friendly_errors
def ui_prefect_cmd(port: Annotated[int, typer.Option("--port", help="Port.")] = 4200) -> None:
    """Start a local Prefect server (UI + API); point flows at it with PREFECT_API_URL."""
    from eliverec import ui

    typer.echo(f"Prefect UI on http://127.0.0.1:{port}; in other shells: "
               f"export PREFECT_API_URL=http://127.0.0.1:{port}/api (Ctrl-C to stop)")
    raise typer.Exit(ui.run_foreground(ui.prefect_command(port=port), ui.prefect_env()))


flows_app = typer.Typer(help="Prefect flows: serve the scheduled deployments.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")


@flows_app.command("serve")
@friendly_errors
def flows_serve_cmd(
    profile: ProfileOpt = None, overrides: SetOpt = None, params: ParamsOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Serve the nightly and monitoring deployments on their cron schedules (needs a Prefect server)."""
    from flows.serve import serve_all

    serve_all(profile or "default", list(overrides or []), str(data_dir) if data_dir else None,
              str(params) if params else None)

"""Equal-budget hyper-parameter search per model family with Optuna (``eliverec tune``).

``tune(settings, "eliverec", trials=20)`` searches the learning rate (log-uniform in [1e-4, 1e-2]
for Adam, [1e-3, 0.1] for Adagrad), the embedding dim (half, same or double ``model.dim``, kept a
multiple of ``model.heads``), dropout ([0, 0.3]), weight decay (0 or log-uniform in [1e-7, 1e-3])
and, for eLiveRec models, the eq. 10 weights ``lambda1``/``lambda2`` (log-uniform in [1e-3, 1]) and
the InfoNCE temperature ``tau`` ([0.1, 1]) -- each only where the model uses it (``eliverec_wo_c``
has no dCor term, ``eliverec_wo_n`` no consistency term, only InfoNCE has a temperature). Keys given
with ``--set`` are held fixed, not searched.

Trial 0 is always the configured values (so the best is never worse than them on the validation
days). The objective is the best validation watch AUC the trainer reaches (the time-ordered tail of the
training days, ``train.val_share``; the test day is never looked at): early stopping and restoring
the best weights are the trainer's. The days are read once; every trial is one :func:`fit` with the
same seed and the same budget: the same ``train.max_steps``/``epochs`` and the same wall-clock cap
``train.max_minutes`` (``minutes_per_trial``), so that every family gets the same number of trials
of the same size. The sampler is Optuna's TPE seeded with ``settings.seed``.

MLflow: one parent run ``tune-<model>`` in ``tracking.experiment`` (search space, budget, each
trial's AUC as ``trial/val_auc`` by trial number, then the best values and ``best/val_auc``, and the
report as artifacts); each trial's training run is its nested child (with ``tune/objective``), logged
without a model. Trial checkpoints are scratch and removed after each trial.

Writes ``<data_dir>/reports/tune/<model>.json`` and ``.md``; with ``write_params`` the best values go
to that params.yaml (``eliverec.training.params_file``), where training picks them up
(``eliverec.config.apply_tuned``). Floats are written with 4 significant digits.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eliverec.config import ConfigError, Settings, apply_tuned, is_explicit
from eliverec.data.atomic import write_bytes_atomic
from eliverec.errors import EliverecError
from eliverec.training.data import TrainingData, load_training_data
from eliverec.training.distributed import DistContext, setup, teardown
from eliverec.training.tracking import nested_under
from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, fit


@dataclass(frozen=True)
class Param:
    """One search dimension over a dotted settings key (a range, or ``choices``)."""

    key: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    zero_option: bool = False  # 0, or a value from the range (weight decay)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial."""

    number: int
    state: str  # COMPLETE | FAIL
    value: float | None  # best validation watch AUC
    values: dict[str, Any]  # dotted key -> value tried
    seconds: float
    steps: int = 0
    stop_reason: str = ""
    run_id: str | None = None
    error: str = ""


@dataclass(frozen=True)
class TuneResult:
    """The outcome of :func:`tune`."""

    model: str
    best_value: float
    best_trial: int
    tuned: dict[str, dict[str, Any]]  # {"train": {...}, "model": {...}}: what --write stores
    trials: list[TrialRecord]
    parent_run_id: str
    paths: dict[str, Path] = field(default_factory=dict)
    written: list[str] | None = None  # the params.yaml key path written, if any


TrialCallback = Callable[[TrialRecord, TuneResult | None], None]


# --------------------------------------------------------------------------- search space
def dim_choices(dim: int, heads: int) -> tuple[int, ...]:
    """Half, same and double ``dim``, each a multiple of ``heads`` (and at least 2).

    >>> dim_choices(32, 2), dim_choices(8, 8), dim_choices(6, 3)
    ((16, 32, 64), (8, 16), (3, 6, 12))
    """
    return tuple(sorted({max(heads, 2, round(dim * f / heads) * heads) for f in (0.5, 1.0, 2.0)}))


def search_space(settings: Settings) -> list[Param]:
    """The dimensions searched for ``settings.model.name`` (keys given with ``--set`` are left out)."""
    from eliverec.models import effective_model_config

    m, optimizer = effective_model_config(settings.model), settings.train.optimizer
    lr = (1e-3, 0.1) if optimizer == "adagrad" else (1e-4, 1e-2)
    space = [Param("train.lr", *lr, log=True), Param("train.weight_decay", 1e-7, 1e-3, log=True, zero_option=True),
             Param("model.dim", choices=dim_choices(m.dim, m.heads)), Param("model.dropout", 0.0, 0.3)]
    if m.name.startswith("eliverec") and m.disentangle:
        if m.dcor:
            space.append(Param("model.lambda1", 1e-3, 1.0, log=True))
        if m.consistency != "none":
            space.append(Param("model.lambda2", 1e-3, 1.0, log=True))
        if m.consistency == "infonce":
            space.append(Param("model.tau", 0.1, 1.0))
    return [p for p in space if not is_explicit(p.key, settings.explicit)]


def suggest(trial: Any, space: Sequence[Param]) -> dict[str, Any]:
    """One Optuna trial's values, by dotted key."""
    out: dict[str, Any] = {}
    for p in space:
        if p.choices:
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.zero_option and not trial.suggest_categorical(f"{p.key}/on", [False, True]):
            out[p.key] = 0.0
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
    return out


def current_params(settings: Settings, space: Sequence[Param]) -> dict[str, Any]:
    """The configured values as Optuna parameters: trial 0 of every search, so a search never returns
    values that did worse on the validation days than the ones already configured."""
    from eliverec.models import effective_model_config

    sections = {"train": settings.train, "model": effective_model_config(settings.model)}
    out: dict[str, Any] = {}
    for p in space:
        section, key = p.key.split(".", 1)
        value = getattr(sections[section], key)
        if p.choices:
            out[p.key] = value
        elif p.zero_option and value == 0:
            out[f"{p.key}/on"] = False
        else:
            if p.zero_option:
                out[f"{p.key}/on"] = True
            out[p.key] = min(max(float(value), p.low), p.high)
    return out


def trial_settings(base: Settings, values: Mapping[str, Any], minutes: float | None) -> Settings:
    """``base`` with a trial's values, the per-trial wall-clock cap, no logged model, no periodic checkpoints."""
    from pydantic import ValidationError

    tree = base.section_dict(secrets=True)
    for key, value in values.items():
        section, name = key.split(".")
        tree[section][name] = value
    tree["tracking"]["log_model"], tree["train"]["checkpoint_every"] = False, 0
    if minutes is not None:
        tree["train"]["max_minutes"] = minutes
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"trial values {dict(values)} are invalid: {exc.errors()[0]['msg']}") from exc


def nested(values: Mapping[str, Any], digits: int = 4) -> dict[str, dict[str, Any]]:
    """Dotted values as ``{"train": {...}, "model": {...}}``, floats to ``digits`` significant digits.

    >>> nested({"train.lr": 0.0012345678, "model.dim": 16, "train.weight_decay": 0.0})
    {'train': {'lr': 0.001235, 'weight_decay': 0.0}, 'model': {'dim': 16}}
    """
    out: dict[str, dict[str, Any]] = {"train": {}, "model": {}}
    for key, value in values.items():
        section, name = key.split(".")
        out[section][name] = float(f"{value:.{digits}g}") if isinstance(value, float) else value
    return {k: v for k, v in out.items() if v}


# --------------------------------------------------------------------------- MLflow
def _client(settings: Settings) -> tuple[Any, str]:
    import mlflow

    from eliverec.training.tracking import setup_experiment

    exp_id = setup_experiment(settings.tracking)
    return mlflow.MlflowClient(), exp_id


def start_parent(settings: Settings, model: str, info: Mapping[str, Any]) -> str:
    """Create the ``tune-<model>`` parent run (not made active: the trainer's runs start and end their own)."""
    from mlflow.entities import Param as MlflowParam

    client, exp_id = _client(settings)
    run = client.create_run(exp_id, run_name=f"tune-{model}", tags={"eliverec.kind": "tune", "eliverec.model": model})
    params = [MlflowParam(k, v if isinstance(v, str) else json.dumps(v)) for k, v in info.items()]
    client.log_batch(run.info.run_id, params=params)
    return str(run.info.run_id)


def _log_trial(settings: Settings, parent: str, rec: TrialRecord) -> None:
    client, _ = _client(settings)
    if rec.run_id is not None:
        client.set_tag(rec.run_id, "eliverec.tune.trial", str(rec.number))
        if rec.value is not None:
            client.log_metric(rec.run_id, "tune/objective", rec.value)
    if rec.value is not None:
        client.log_metric(parent, "trial/val_auc", rec.value, step=rec.number)


def _finish_parent(settings: Settings, parent: str, result: TuneResult | None, status: str) -> None:
    from mlflow.entities import Metric
    from mlflow.entities import Param as MlflowParam

    client, _ = _client(settings)
    if result is not None:
        best = {f"best.{s}.{k}": str(v) for s, part in result.tuned.items() for k, v in part.items()}
        client.log_batch(parent, metrics=[Metric("best/val_auc", result.best_value, int(time.time() * 1000), 0)],
                         params=[MlflowParam(k, v) for k, v in {**best, "best.trial": str(result.best_trial)}.items()])
        for path in result.paths.values():
            client.log_artifact(parent, str(path), "report")
    client.set_terminated(parent, status)


# --------------------------------------------------------------------------- trials
@dataclass
class _Study:
    """What every trial shares: base settings, data, device context, budget, builders."""

    base: Settings
    data: TrainingData
    ctx: DistContext
    parent: str
    minutes: float | None
    builder: str
    loss_builder: str

    def run(self, number: int, values: dict[str, Any]) -> TrialRecord:
        """Train one trial; a failed trial (e.g. diverged at a high learning rate) is a FAIL record."""
        name = f"tune-{self.base.model.name}-{self.parent[:8]}-t{number:03d}"
        started = time.perf_counter()
        try:
            settings = trial_settings(self.base, values, self.minutes)
            with nested_under(self.parent):
                res = fit(settings, self.data, self.ctx, run_name=name, builder=self.builder,
                          loss_builder=self.loss_builder)
        except EliverecError as exc:
            return TrialRecord(number, "FAIL", None, values, time.perf_counter() - started, error=str(exc))
        finally:
            shutil.rmtree(self.base.layout.checkpoints(name), ignore_errors=True)
        auc = float(res.metrics.get("val/auc", math.nan))
        ok = math.isfinite(auc)
        return TrialRecord(number, "COMPLETE" if ok else "FAIL", auc if ok else None, values,
                           time.perf_counter() - started, res.steps, res.stop_reason, res.run_id,
                           "" if ok else "validation AUC is undefined (one label only in the validation tail)")


def _check(settings: Settings, trials: int, minutes: float | None) -> None:
    if trials < 1:
        raise EliverecError(f"--trials must be at least 1 (got {trials})")
    if minutes is not None and minutes <= 0:
        raise EliverecError(f"--minutes-per-trial must be positive (got {minutes})")
    if settings.train.val_share <= 0:
        raise EliverecError("tuning optimises the validation AUC: set train.val_share > 0")


def tune(settings: Settings, model_name: str, trials: int, end_date: str | None = None,
         minutes_per_trial: float | None = None, write_params: Path | None = None, *,
         on_trial: TrialCallback | None = None, builder: str = DEFAULT_BUILDER,
         loss_builder: str = DEFAULT_LOSS) -> TuneResult:
    """Search ``model_name``'s hyper-parameters for ``trials`` trials (see the module docstring).

    ``end_date`` is the test day (default: the latest feature day); training uses the days before
    it, and the objective their validation tail. ``minutes_per_trial`` overrides ``train.max_minutes``.
    ``write_params``: a params.yaml to store the best values in. ``on_trial(record, best_so_far)`` is
    called after every trial; ``builder``/``loss_builder`` are the trainer's (tests use a toy model).
    """
    _check(settings, trials, minutes_per_trial)
    base = apply_tuned(settings, model_name)
    space = search_space(base)
    ctx = setup()
    try:
        if ctx.distributed:
            raise EliverecError("eliverec tune runs in one process (not under torchrun)")
        data = load_training_data(base.data_dir, end_date, base.features.train_days, base.train.val_share)
        if len(data.val) == 0:
            raise EliverecError(f"no validation rows in {', '.join(data.dates)}; raise train.val_share")
        parent = start_parent(base, model_name, _budget(base, trials, minutes_per_trial, data, space))
        study = _Study(base, data, ctx, parent, minutes_per_trial, builder, loss_builder)
        try:
            best = _optimize(study, space, trials, on_trial)
            result = _report(base, best, data, trials, minutes_per_trial, space, write_params)
        except BaseException:
            _finish_parent(base, parent, None, "FAILED")
            raise
        _finish_parent(base, parent, result, "FINISHED")
        return result
    finally:
        teardown(ctx)


def _budget(base: Settings, trials: int, minutes: float | None, data: TrainingData,
            space: Sequence[Param]) -> dict[str, Any]:
    t = base.train
    return {"model": base.model.name, "profile": base.profile, "trials": trials, "end_date": data.end_date,
            "train_days": ",".join(data.dates), "max_minutes": t.max_minutes if minutes is None else minutes,
            "max_steps": t.max_steps, "epochs": t.epochs, "batch_size": t.batch_size, "optimizer": t.optimizer,
            "sampler": f"TPE(seed={base.seed})", "space": [asdict(p) for p in space]}


def _optimize(study: _Study, space: Sequence[Param], trials: int, on_trial: TrialCallback | None) -> TuneResult:
    """The ask-and-tell loop over trials."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=study.base.seed),
                              study_name=f"tune-{study.base.model.name}")
    opt.enqueue_trial(current_params(study.base, space))  # trial 0: the configured values
    records: list[TrialRecord] = []
    best: TuneResult | None = None
    for number in range(trials):
        trial = opt.ask()
        rec = study.run(number, suggest(trial, space))
        if rec.value is None:
            opt.tell(trial, state=TrialState.FAIL)
        else:
            opt.tell(trial, rec.value)
        records.append(rec)
        _log_trial(study.base, study.parent, rec)
        best = _best(study.base.model.name, records, study.parent)
        if on_trial is not None:
            on_trial(rec, best)
    if best is None:
        errors = "; ".join(sorted({r.error for r in records}))
        raise EliverecError(f"no tuning trial of '{study.base.model.name}' finished: {errors}")
    return best


def _best(model: str, records: list[TrialRecord], parent: str) -> TuneResult | None:
    done = [r for r in records if r.value is not None]
    if not done:
        return None
    top = max(done, key=lambda r: (r.value or 0.0, -r.number))  # the earliest of equal values
    return TuneResult(model, float(top.value or 0.0), top.number, nested(top.values), list(records), parent)


# --------------------------------------------------------------------------- report
def _report(base: Settings, result: TuneResult, data: TrainingData, trials: int, minutes: float | None,
            space: Sequence[Param], write_params: Path | None) -> TuneResult:
    """Write params.yaml (with ``write_params``) and the JSON + markdown report (also when that write fails)."""
    from dataclasses import replace

    from eliverec.training.params_file import write_tuned

    paths = base.layout.report_files("tune", result.model)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    written: list[str] | None = None
    try:
        if write_params is not None:
            written = write_tuned(write_params, base.profile, result.model, result.tuned)
    finally:
        doc = {"model": result.model, "best": {"val_auc": result.best_value, "trial": result.best_trial,
                                               "tuned": result.tuned},
               "budget": _budget(base, trials, minutes, data, space), "parent_run_id": result.parent_run_id,
               "written": ".".join(written) if written else None,
               "params_file": str(write_params) if written else None,
               "trials": [asdict(r) for r in result.trials]}
        write_bytes_atomic(paths["json"], json.dumps(doc, indent=2, default=str).encode())
        write_bytes_atomic(paths["markdown"], markdown(doc).encode())
    return replace(result, paths=paths, written=written)


def markdown(doc: Mapping[str, Any]) -> str:
    """The report as markdown: budget, best values, one row per trial."""
    b, best = doc["budget"], doc["best"]
    keys = [p["key"] for p in b["space"]]
    lines = [f"# Hyper-parameter search: `{doc['model']}` ({b['profile']} profile)", "",
             f"{b['trials']} trials, sampler {b['sampler']}, on the validation tail of {b['train_days']} "
             f"(test day {b['end_date']}, not used). Budget per trial: max_minutes {b['max_minutes']}, "
             f"max_steps {b['max_steps']}, epochs {b['epochs']}, batch {b['batch_size']}, {b['optimizer']}.", "",
             f"**Best: validation AUC {best['val_auc']:.4f}** (trial {best['trial']}): "
             f"`{json.dumps(best['tuned'])}`" + (f"; written to `{doc['written']}`." if doc["written"] else
                                                 "; not written (`--write` stores it in params.yaml)."), "",
             f"MLflow parent run `{doc['parent_run_id']}`.", "",
             "| trial | state | val AUC | " + " | ".join(keys) + " | steps | stop | seconds |",
             "| --- " * (len(keys) + 6) + "|"]
    for r in doc["trials"]:
        vals = " | ".join(_fmt(r["values"].get(k)) for k in keys)
        auc = _fmt(r["value"]) if r["state"] == "COMPLETE" else f"failed: {r['error'][:60]}"
        lines.append(f"| {r['number']} | {r['state']} | {auc} | {vals} | {r['steps']} | {r['stop_reason']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    """Short cell text.

    >>> _fmt(0.00123456), _fmt(16), _fmt(None)
    ('0.001235', '16', '')
    """
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)

"""Score a test day with a logged model and write the offline evaluation report.

``evaluate(settings, model_uri, date)`` loads the model from MLflow (``models:/name@alias``,
``models:/m-...``, ``runs:/<run>/model``), scores every sample of ``<data_dir>/features/<date>/``
and writes ``<data_dir>/reports/evaluation/<date>/<name>.json`` and ``.md``: the metrics of
:mod:`eliverec.scoring.metrics` overall and per segment, and the reliability table. Segments use
the impression counts of the ``features.train_days`` days before ``date`` (those present).

Every impression is scored twice (:func:`score_day`): at the model's serving position (its stored
``model.serve_position``, what serving does) and at its logged feed position. The logged position
carries the logging policy's ranking (the policy put the channels it liked best on top), so scores
that read it are partly credited for the policy's own ranking, which serving never sees. The
primary keys (``auc``, ``gauc``, ``prec@10``, ``ndcg@10``, ``segment/<s>/...``) are therefore the
serving-position metrics, the ones the gate (:mod:`eliverec.evaluation.gate`) and the paper tables
use; ``logged_pos/<metric>`` reports the same metrics at the logged position. Calibration and the
reliability table read the logged-position scores, the positions the labels were observed at.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.features.batch import LABELS
from eliverec.features.dataset import ArrayDataset, day_dir, load_days
from eliverec.layout import previous_days
from eliverec.scoring.metrics import (
    LOGGED_PREFIX,
    LOGGED_WATCH,
    compute_metrics,
    reliability_table,
    segment_metrics,
)
from eliverec.scoring.scores import at_position, scored_frame, set_threads

SCORE_CHUNK = 65536  # rows per pyfunc call (bounded memory on big days)


def report_name(model_uri: str) -> str:
    """A file-name-safe name for a model URI.

    >>> report_name("models:/eliverec-ranker@champion"), report_name("runs:/abc123/model")
    ('eliverec-ranker@champion', 'abc123-model')
    """
    body = re.sub(r"^[a-z]+:/+", "", model_uri)
    return re.sub(r"[^A-Za-z0-9@._-]+", "-", body).strip("-") or "model"


def load_model(settings: Settings, model_uri: str) -> Any:
    """The pyfunc model behind ``model_uri`` (a clear error when it cannot be found)."""
    from eliverec.artifact import load_network

    set_threads(settings)  # scoring shares the machine like training does
    return load_network(settings.tracking.uri, model_uri).pyfunc


def score(model: Any, ds: ArrayDataset) -> pd.DataFrame:
    """Every task output for every row of ``ds``, in chunks."""
    parts = []
    for start in range(0, len(ds), SCORE_CHUNK):
        batch = ds[np.arange(start, min(start + SCORE_CHUNK, len(ds)))]
        parts.append(model.predict({k: v.numpy() for k, v in batch.items() if k not in LABELS and k != "ts"}))
    return pd.concat(parts, ignore_index=True)


def serve_position(settings: Settings, model: Any) -> int:
    """The position ``model`` is served at: its stored ``model.serve_position`` (else the current settings')."""
    try:
        return int(model.unwrap_python_model().model.cfg.serve_position)
    except AttributeError:  # not an eLiveRec pyfunc wrapper (a stand-in model)
        return int(settings.model.serve_position)


def score_day(settings: Settings, model: Any, ds: ArrayDataset, logged: bool = True) -> tuple[pd.DataFrame, bool]:
    """The scored frame of ``ds`` (serving position; with ``logged`` the logged-position watch beside, which
    calibration reads) and whether all is finite."""
    serving = score(model, at_position(ds, serve_position(settings, model)))
    at_logged = score(model, ds) if logged else None
    parts = [p for p in (serving, at_logged) if p is not None]
    finite = all(bool(np.isfinite(p[list(LABELS)].to_numpy(dtype=np.float64)).all()) for p in parts)
    return scored_frame(ds, serving, at_logged), finite


def day_fingerprint(folder: Path) -> str:
    """Name, size and modification time of every array of a feature day: changes when the day is rebuilt."""
    import hashlib

    stats = [(p.relative_to(folder), p.stat()) for p in sorted(Path(folder).glob("**/*.npy"))]
    text = "\n".join(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_score_day(settings: Settings, model: Any, ds: ArrayDataset, date: str,
                     logged: bool = True) -> tuple[pd.DataFrame, bool]:
    """:func:`score_day`, kept per logged model and feature day under ``reports/evaluation/<date>/scores/``.

    The nightly evaluates a candidate and then gates it (and a champion gated earlier the same night is
    the next candidate's comparison): the second reader gets the first one's scores instead of scoring
    the day again. The key is the logged model's ``model_uuid`` (an alias and a run URI of one model
    share it) and :func:`day_fingerprint` of the day's arrays; a model without one is always scored.
    """
    uuid = getattr(getattr(model, "metadata", None), "model_uuid", None)
    if not uuid:
        return score_day(settings, model, ds, logged)
    path, meta_path = settings.layout.score_cache(date, uuid)
    key = f"{uuid}:{day_fingerprint(day_dir(settings.data_dir, date))}:{len(ds)}"
    if meta_path.is_file() and path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and (meta.get("logged") or not logged):
            return pd.read_parquet(path), bool(meta["finite"])
    frame, finite = score_day(settings, model, ds, logged)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    meta_path.write_text(json.dumps({"key": key, "logged": logged, "finite": finite}))
    return frame, finite


def trailing_counts(settings: Settings, date: str) -> tuple[pd.Series, pd.Series]:
    """Impressions per user and per channel in the training window before ``date`` (days present)."""
    days = [d for d in previous_days(date, settings.features.train_days) if settings.layout.features(d).is_dir()]
    if not days:
        return pd.Series(dtype=np.int64), pd.Series(dtype=np.int64)
    window = load_days(settings.data_dir, days)
    users = pd.Series(window.column("user")).value_counts()
    channels = pd.Series(window.column("channel")[:, 0]).value_counts()
    return users, channels


def evaluate(settings: Settings, model_uri: str, date: str, name: str | None = None) -> dict[str, Any]:
    """Evaluate ``model_uri`` on the test day ``date``; returns the report (also written to disk)."""
    folder = day_dir(settings.data_dir, date)
    test = load_days(settings.data_dir, [date])
    if len(test) == 0:
        raise EliverecError(f"{folder}: the test day has no samples")
    model = load_model(settings, model_uri)
    frame, _ = cached_score_day(settings, model, test, date)
    cfg = settings.evaluation
    users, channels = trailing_counts(settings, date)
    metrics = compute_metrics(frame, cfg.k, cfg.calibration_bins)
    metrics.update(segment_metrics(frame, users, channels, cfg.k, cfg.calibration_bins))
    table = reliability_table(frame["watch"].to_numpy(), frame[LOGGED_WATCH].to_numpy(), cfg.calibration_bins)
    report = {"model_uri": model_uri, "date": date, "rows": len(frame), "k": cfg.k,
              "serve_position": serve_position(settings, model),
              "metrics": {k: _clean(v) for k, v in metrics.items()},
              "reliability": [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")]}
    files = settings.layout.report_files("evaluation", name or report_name(model_uri), date)
    json_path, md_path = files["json"], files["markdown"]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    md_path.write_text(markdown(report))
    report["paths"] = {"json": str(json_path), "markdown": str(md_path)}
    return report


def _clean(v: Any) -> Any:
    """NaN as None (valid JSON); numpy scalars as Python numbers."""
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def markdown(report: dict[str, Any]) -> str:
    """The report as a short markdown page: headline metrics, segments, reliability table."""
    m, k = report["metrics"], report["k"]
    ranking = ["auc", "gauc", f"prec@{k}", f"ndcg@{k}"]
    other = ["stay_time/rmse", "goods_bag/auc", "product_click/auc", "calibration/mean_pred", "calibration/observed",
             "calibration/ece"]
    pos = report.get("serve_position")
    lines = [f"# Offline evaluation: `{report['model_uri']}` on {report['date']}", "",
             f"{report['rows']} test impressions, {int(m.get('users') or 0)} users. Ranking metrics at the serving "
             f"position ({'n/a' if pos is None else pos}; the primary ones, gated) and at the logged feed position "
             "(`logged_pos/`, reported); calibration at the logged position.", "",
             "| metric | serving position | logged position |", "| --- | --- | --- |",
             *[f"| {h} | {_fmt(m.get(h))} | {_fmt(m.get(LOGGED_PREFIX + h))} |" for h in ranking],
             *[f"| {h} | {_fmt(m.get(h))} | |" for h in other], "",
             "## Segments", "", "| segment | rows | auc | gauc | prec@k | ndcg@k | auc (logged pos.) | "
             "calibration ratio |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seg in ("low_activity", "high_activity", "unpopular", "popular"):
        g = lambda key, s=seg: m.get(f"segment/{s}/{key}")  # noqa: E731
        lines.append(f"| {seg} | {_fmt(g('rows'))} | {_fmt(g('auc'))} | {_fmt(g('gauc'))} | {_fmt(g(f'prec@{k}'))} "
                     f"| {_fmt(g(f'ndcg@{k}'))} | {_fmt(m.get(f'{LOGGED_PREFIX}segment/{seg}/auc'))} "
                     f"| {_fmt(g('calibration/ratio'))} |")
    lines += ["", "## Reliability (watch, logged position)", "", "| bin | count | mean predicted | observed |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['count']} | {_fmt(r['mean_pred'])} | {_fmt(r['observed'])} |"
              for r in report["reliability"]]
    return "\n".join(lines) + "\n"

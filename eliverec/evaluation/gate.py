"""The evaluation gate: may a candidate model reach users? (DESIGN section 6)

``gate(settings, candidate_uri, date)`` scores the candidate and the current champion on the
same held-out day in one run and applies these checks (thresholds in ``params.yaml`` ``gate:``):

- ``primary/auc``, ``primary/gauc``: non-inferiority. The candidate-minus-champion difference gets
  a paired bootstrap interval over users (users are resampled with replacement, the same draw for
  both models); the check passes when the interval's lower bound is at least ``-tolerance``.
- ``aux/<task>``: goods-bag and product-click AUC (on watched impressions) may not drop by more
  than ``aux_tolerance``; stay-time RMSE may not grow by more than ``aux_tolerance`` (relative).
- ``segment/<segment>/<metric>``: AUC and gAUC on low-activity users and on unpopular channels
  (segments as in :mod:`eliverec.scoring.metrics`) may not drop by more than ``segment_tolerance``.
- ``calibration``: mean predicted over observed watch rate inside ``calibration_band``.
- ``finite``: no NaN or infinite output on the whole day.
- ``latency``: p99 time to score one request of ``latency_candidates`` candidates within
  ``latency_budget_ms``, on the runtime the service would use (``serving.runtime``: the ONNX Runtime
  export checked against torch at load, or torch; :func:`eliverec.scoring.runtime.build_scorer`, one
  user, in process).
- ``ope/watch`` (only with ``gate.ope: true``): the off-policy estimate of watches per feed
  (``ope.estimator``, :mod:`eliverec.evaluation.offpolicy`) may not be significantly below the champion's.

Every model is scored at its serving position (``model.serve_position``, what users will get), and
the primary, segment and bootstrap checks read those scores: the logged feed position carries the
logging policy's own ranking, which serving never sees (a model that leans on it looks better
offline than it ranks online). The logged-position metrics (``logged_pos/...``) and calibration
(which needs the positions the labels were observed at) come from a second pass and are reported;
see :mod:`eliverec.scoring.metrics`.

With no champion yet (bootstrapping) the comparative checks are skipped and say so. The verdict
and every number are written to ``<data_dir>/reports/gate/<date>/<name>.json`` and ``.md`` and
logged to the candidate's MLflow run; with a registry version, the verdict is tagged on it and a
passing version becomes ``challenger``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from eliverec.config import Settings
from eliverec.features.batch import LABELS, REQUEST_KEYS
from eliverec.scoring.metrics import (
    LOGGED_PREFIX,
    auc,
    compute_metrics,
    per_user_auc,
    segment_metrics,
    weighted_auc,
)

GUARDED_SEGMENTS: tuple[str, ...] = ("low_activity", "unpopular")


@dataclass(frozen=True)
class Check:
    """One gate check: what was compared, the numbers, and whether it passed."""

    name: str
    passed: bool
    candidate: float | None
    champion: float | None
    threshold: str
    detail: str = ""


def user_draws(users: np.ndarray, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row user codes (N,) and ``samples`` bootstrap resamplings of the users, as counts per user (S, U).

    Reusing one ``(codes, draws)`` for several models makes their replicates paired.
    """
    codes, uniq = pd.factorize(np.asarray(users))
    rng = np.random.default_rng(seed)
    return codes, rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=samples)


def replicates(codes: np.ndarray, draws: np.ndarray, labels: np.ndarray,
               scores: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """One model's AUC and gAUC on the day and under every resampling of :func:`user_draws`.

    Returns ``{"auc": (value, (S,) replicates), "gauc": (value, (S,) replicates)}``; a replicate is
    NaN when it lacks a class (AUC) or every user with both classes (gAUC).
    """
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    out = {"auc": (auc(y, s), weighted_auc(y, s, draws, columns=codes))}
    per_user = per_user_auc(codes, y, s)  # users with both classes: the same for any score on these labels
    if per_user.empty:
        return {**out, "gauc": (float("nan"), np.full(len(draws), np.nan))}
    w = draws[:, per_user.index.to_numpy()] * per_user["n"].to_numpy()  # (S, users with both classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (w @ per_user["auc"].to_numpy()) / w.sum(axis=1)
    return {**out, "gauc": (float(np.average(per_user["auc"], weights=per_user["n"])), reps)}


def percentile_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite replicates (NaN, NaN when none).

    >>> percentile_interval(np.arange(101.0), 0.5)
    (25.0, 75.0)
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not d.size:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(d, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_bootstrap(
    users: np.ndarray, labels: np.ndarray, cand: np.ndarray, champ: np.ndarray,
    samples: int, confidence: float, seed: int,
) -> dict[str, tuple[float, float, float]]:
    """Bootstrap over users of the AUC and gAUC differences (candidate - champion).

    Users are resampled with replacement, the same draws for both models (:func:`user_draws`).
    Returns ``{"auc": (diff, lo, hi), "gauc": (diff, lo, hi)}`` with a percentile interval.

    >>> rng = np.random.default_rng(0)
    >>> u = np.repeat(np.arange(50), 8); y = rng.random(400) < 0.3
    >>> r = paired_bootstrap(u, y, y + rng.random(400), rng.random(400), 50, 0.9, 0)
    >>> r["auc"][1] > 0.2 and r["gauc"][1] > 0.2
    True
    """
    codes, draws = user_draws(users, samples, seed)
    a, b = replicates(codes, draws, labels, cand), replicates(codes, draws, labels, champ)
    out = {}
    for key in ("auc", "gauc"):
        out[key] = (float(a[key][0] - b[key][0]), *percentile_interval(a[key][1] - b[key][1], confidence))
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def compare(
    cand: dict[str, float], champ: dict[str, float] | None, boot: dict[str, tuple[float, float, float]] | None,
    settings: Settings,
) -> list[Check]:
    """The comparative checks (primary, auxiliary, segments) from both models' metrics."""
    g = settings.gate
    if champ is None or boot is None:
        return [Check("champion", True, None, None, "none yet", "no champion: comparative checks skipped")]
    checks = []
    for key, tol in (("auc", g.auc_tolerance), ("gauc", g.gauc_tolerance)):
        diff, lo, hi = boot[key]
        checks.append(Check(f"primary/{key}", bool(np.isfinite(lo) and lo >= -tol), cand.get(key), champ.get(key),
                            f"CI lower bound of difference >= -{tol}",
                            f"diff {diff:+.4f}, {g.confidence:.0%} CI [{lo:+.4f}, {hi:+.4f}]"))
    for key in ("goods_bag/auc", "product_click/auc"):
        c, h = _num(cand.get(key)), _num(champ.get(key))
        ok = h is None or (c is not None and c - h >= -g.aux_tolerance)
        checks.append(Check(f"aux/{key}", ok, c, h, f"drop <= {g.aux_tolerance}"))
    c, h = _num(cand.get("stay_time/rmse")), _num(champ.get("stay_time/rmse"))
    ok = h is None or (c is not None and c <= h * (1.0 + g.aux_tolerance))
    checks.append(Check("aux/stay_time/rmse", ok, c, h, f"growth <= {g.aux_tolerance:.0%}"))
    for seg in GUARDED_SEGMENTS:
        for metric in ("auc", "gauc"):
            key = f"segment/{seg}/{metric}"
            c, h = _num(cand.get(key)), _num(champ.get(key))
            ok = h is None or (c is not None and c - h >= -g.segment_tolerance)
            checks.append(Check(key, ok, c, h, f"drop <= {g.segment_tolerance}"))
    return checks


def absolute_checks(cand: dict[str, float], finite: bool, latency_p99_ms: float, settings: Settings) -> list[Check]:
    """Checks of the candidate alone: calibration, finite outputs, latency."""
    g = settings.gate
    ratio = _num(cand.get("calibration/ratio"))
    lo, hi = g.calibration_band
    return [
        Check("calibration", ratio is not None and lo <= ratio <= hi, ratio, None, f"ratio in [{lo}, {hi}]",
              "mean predicted / observed watch rate"),
        Check("finite", finite, None, None, "no NaN/inf outputs"),
        Check("latency", latency_p99_ms <= g.latency_budget_ms, latency_p99_ms, None,
              f"p99 <= {g.latency_budget_ms} ms", f"one request of {g.latency_candidates} candidates on "
              f"serving.runtime {settings.serving.runtime} (torch for a network that does not export)"),
    ]


def serving_scorer(settings: Settings, network: Any, spec: dict[str, Any] | None = None) -> Any:
    """The network as the service would score it (as :mod:`eliverec.serving.models` loads it): ``serving.runtime``,
    ``serving.torch_threads`` and the feature spec saved with the model (``spec``; else the settings' own)."""
    from eliverec.features.hashing import FeatureSpec
    from eliverec.scoring.runtime import build_scorer

    fs = FeatureSpec.saved(spec or {}, settings)
    return build_scorer(network, fs.vocab, fs.seq_len, settings.serving.runtime, settings.serving.torch_threads,
                        name=f"gate latency ({getattr(network, 'name', '')})")


def request_latency_ms(scorer: Any, batch: dict[str, np.ndarray], candidates: int, repeats: int = 30) -> float:
    """p99 wall time (ms) of scoring one user's request of ``candidates`` candidates with ``scorer``
    (:func:`serving_scorer`: the runtime that serves, on the request's tensors)."""
    from eliverec.artifact import to_tensor_batch

    n = len(next(iter(batch.values())))
    rows = np.arange(candidates) % n
    request = {k: v[rows].copy() for k, v in batch.items()}
    for key in REQUEST_KEYS:
        if key in request:
            request[key][:] = request[key][0]  # one user, many candidate channels
    tensors = to_tensor_batch(request)
    for _ in range(3):
        scorer(tensors)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scorer(tensors)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.percentile(times, 99))


@dataclass
class GateResult:
    """The verdict and everything it rests on."""

    passed: bool
    candidate_uri: str
    champion_uri: str | None
    date: str
    checks: list[Check]
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    paths: dict[str, str]
    training: str = ""  # how the candidate's training ended (early stopping or a budget), from its MLflow run

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def gate(
    settings: Settings, candidate_uri: str, date: str, champion_uri: str | None = None,
    version: str | None = None, run_id: str | None = None,
) -> GateResult:
    """Evaluate candidate vs champion on ``date``; write and log the verdict (see module docstring)."""
    from eliverec import registry
    from eliverec.evaluation.evaluate import cached_score_day, load_model, trailing_counts
    from eliverec.features.dataset import load_days

    if champion_uri is None and registry.alias_version(settings, registry.CHAMPION) is not None:
        champion_uri = f"models:/{settings.tracking.registered_model}@{registry.CHAMPION}"
    test = load_days(settings.data_dir, [date])
    users, channels = trailing_counts(settings, date)
    cand_model = load_model(settings, candidate_uri)
    cand_frame, finite = cached_score_day(settings, cand_model, test, date)  # serving position, logged beside
    sample = test[np.arange(min(len(test), settings.gate.latency_candidates))]
    arrays = {k: v.numpy() for k, v in sample.items() if k not in (*LABELS, "ts")}
    ranker = cand_model.unwrap_python_model()
    scorer = serving_scorer(settings, ranker.model, ranker.spec)
    latency = request_latency_ms(scorer, arrays, settings.gate.latency_candidates)
    champ_frame = None
    if champion_uri is not None:
        # the comparison reads the serving position only (calibration is a check of the candidate alone)
        champ_frame, _ = cached_score_day(settings, load_model(settings, champion_uri), test, date, logged=False)
    checks, cand, champ = decide(cand_frame, champ_frame, users, channels, finite, latency, settings)
    if settings.gate.ope:
        checks.append(ope_check(settings, date, cand_model, champion_uri))
    result = GateResult(all(c.passed for c in checks), candidate_uri, champion_uri, date, checks, cand, champ, {},
                        training_note(settings, run_id, version))
    result.paths = _write(settings, result, version)
    _record(settings, result, version, run_id)
    return result


def decide(
    cand_frame: pd.DataFrame, champ_frame: pd.DataFrame | None, users: pd.Series, channels: pd.Series,
    finite: bool, latency_p99_ms: float, settings: Settings,
) -> tuple[list[Check], dict[str, float], dict[str, float] | None]:
    """Every check from the scored frames of both models (same rows, same order)."""
    cand = _metrics(cand_frame, users, channels, settings)
    champ = boot = None
    if champ_frame is not None:
        champ = _metrics(champ_frame, users, channels, settings)
        boot = paired_bootstrap(cand_frame["user"].to_numpy(), cand_frame["watch"].to_numpy(),
                                cand_frame["pred_watch"].to_numpy(), champ_frame["pred_watch"].to_numpy(),
                                settings.gate.bootstrap_samples, settings.gate.confidence, settings.seed)
    checks = compare(cand, champ, boot, settings) + absolute_checks(cand, finite, latency_p99_ms, settings)
    return checks, cand, champ


def ope_check(settings: Settings, date: str, cand_model: Any, champion_uri: str | None) -> Check:
    """``ope/watch`` (with ``gate.ope``): fail when the candidate's off-policy watches per feed
    (``ope.estimator``) are significantly below the champion's (the difference's interval lies below 0)."""
    from eliverec.evaluation.evaluate import load_model
    from eliverec.evaluation.offpolicy import evaluate_models, significantly_below

    est = settings.ope.estimator
    if champion_uri is None:
        return Check("ope/watch", True, None, None, "none yet", "no champion: the off-policy check is skipped")
    res = evaluate_models(settings, date, cand_model, load_model(settings, champion_uri))
    r = res["watch"][est]
    d = r["difference"]
    return Check("ope/watch", not significantly_below(res, est), r["candidate"]["value"], r["champion"]["value"],
                 f"{settings.ope.level:.0%} CI upper bound of difference >= 0",
                 f"{est} watches per feed, diff {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}], "
                 f"ESS {r['candidate']['ess']:.0f} of {res['feeds']} feeds")


def training_note(settings: Settings, run_id: str | None, version: str | None) -> str:
    """How the candidate's training run ended (``stop/*`` metrics of its MLflow run); empty when unknown."""
    from eliverec import registry
    from eliverec.training.trainer import describe_stop, stop_reason

    try:
        client = registry.client(settings)
        if run_id is None and version is not None:
            run_id = client.get_model_version(settings.tracking.registered_model, version).run_id
        metrics = client.get_run(run_id).data.metrics if run_id else {}
    except Exception as exc:  # MLflow raises several types; the verdict does not depend on this note
        return f"unknown (the training run could not be read: {exc})"
    return describe_stop(metrics) if stop_reason(metrics) != "unknown" else ""


def _metrics(frame: pd.DataFrame, users: pd.Series, channels: pd.Series, settings: Settings) -> dict[str, float]:
    k, bins = settings.evaluation.k, settings.evaluation.calibration_bins
    out = compute_metrics(frame, k, bins)
    out.update(segment_metrics(frame, users, channels, k, bins))
    return out


def _write(settings: Settings, result: GateResult, version: str | None) -> dict[str, str]:
    files = settings.layout.report_files("gate", f"v{version}" if version else "candidate", result.date)
    files["json"].parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "verdict": result.verdict, "candidate_uri": result.candidate_uri, "champion_uri": result.champion_uri,
        "date": result.date, "version": version, "training": result.training,
        "checks": [asdict(c) for c in result.checks],
        "candidate_metrics": {k: _num(v) for k, v in result.candidate_metrics.items()},
        "champion_metrics": None if result.champion_metrics is None
        else {k: _num(v) for k, v in result.champion_metrics.items()},
    }
    json_path, md_path = files["json"], files["markdown"]
    json_path.write_text(json.dumps(payload, indent=2))
    md_path.write_text(markdown(result, version))
    return {"json": str(json_path), "markdown": str(md_path)}


def markdown(result: GateResult, version: str | None = None) -> str:
    """The verdict as a short markdown page."""
    f = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    head = f"# Gate: **{result.verdict.upper()}** for {'version ' + version if version else result.candidate_uri}"
    lines = [head, "", f"Test day {result.date}; champion: `{result.champion_uri or 'none'}`.", ""]
    if result.training:
        lines += [f"Training ended by {result.training}.", ""]
    lines += ["| check | passed | candidate | champion | threshold | detail |", "|---|---|---|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.passed else '**NO**'} | {f(c.candidate)} | {f(c.champion)} | "
              f"{c.threshold} | {c.detail} |" for c in result.checks]
    cand, champ = result.candidate_metrics, result.champion_metrics or {}
    g = lambda m, key: f(_num(m.get(f"{LOGGED_PREFIX}{key}"))) or "n/a"  # noqa: E731
    both = _num(champ.get(f"{LOGGED_PREFIX}auc")) is not None  # the gate scores the champion as served only
    logged = [f"{key} {g(cand, key)}" + (f" vs {g(champ, key)}" if both else "") for key in ("auc", "gauc")]
    if _num(cand.get(f"{LOGGED_PREFIX}auc")) is not None:
        lines += ["", "Checks read the scores at the serving position. At the logged feed position (reported, not "
                  f"gated; candidate{' vs champion' if both else ''}): {', '.join(logged)}."]
    return "\n".join(lines) + "\n"


def _record(settings: Settings, result: GateResult, version: str | None, run_id: str | None) -> None:
    """Log the verdict and the test day (a dataset input, context ``evaluation``) to the candidate's MLflow run,
    and tag the registry version."""
    from eliverec import registry
    from eliverec.store import feature_days_input

    client = registry.client(settings)
    if run_id is None and version is not None:
        run_id = client.get_model_version(settings.tracking.registered_model, version).run_id
    if run_id:
        client.set_tag(run_id, "gate_verdict", result.verdict)
        day = {result.date: settings.layout.features(result.date)}
        client.log_inputs(run_id, [feature_days_input("evaluation", f"features {result.date}", day)])
        for c in result.checks:
            if c.candidate is not None and math.isfinite(c.candidate):
                client.log_metric(run_id, f"gate/{c.name}".replace("@", "_at_"), c.candidate)
        client.log_metric(run_id, "gate/passed", float(result.passed))
        for path in result.paths.values():
            client.log_artifact(run_id, path, artifact_path="gate")
    if version is not None:
        registry.set_verdict(settings, version, result.verdict, result.paths["json"])
        if result.passed:
            registry.set_challenger(settings, version, f"gate passed on {result.date}")

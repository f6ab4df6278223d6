"""The ramped rollout of the challenger (DESIGN section 6): stages, guardrails, rollback, promotion.

For each stage of ``ab.stages`` (percent of buckets to the challenger, e.g. 1 -> 5 -> 20 -> 50):

1. the allocation is set on the running service (``PUT /admin/allocation``; stored durably);
2. traffic accumulates until both variants have ``ab.min_users`` users and ``ab.min_impressions``
   impressions *in this stage* (a byte cursor on the serving logs marks where the stage began;
   live traffic is re-checked every ``ab.poll_s``; ``--simulate-traffic`` plays one round of
   simulated users instead of waiting); a stage that starves past ``ab.max_stage_minutes`` fails;
3. the guardrails are judged on the stage's data: no significant loss on ``ab.primary_metric``
   (one-sided, ``z < -z(1 - ab.alpha)``, delta-method z-test of :mod:`eliverec.experiments.analysis`),
   no sample-ratio mismatch (chi-square p >= 0.001), challenger error rate <= ``ab.max_error_rate``
   and challenger p99 latency <= ``ab.max_p99_ms`` (from ``/admin/stats`` since the stage began);
4. a breach sets the challenger back to 0 % at once and ends the ramp; otherwise the next stage.
   Any other exit (an error, an interrupt) also sets the challenger back to 0 % before it propagates.

After the last stage the challenger is promoted through :func:`eliverec.registry.promote` (audited,
actor ``ab-ramp``) when it held every guardrail and its primary-metric lift is not negative; the
allocation returns to 0 % either way (the champion serves everyone) and the service reloads.
The decisions are written to ``<data_dir>/experiments/<ab.experiment>/ramp.json`` and ``ramp.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from scipy import stats as sps

from eliverec.config import Settings
from eliverec.data.atomic import write_bytes_atomic
from eliverec.errors import EliverecError
from eliverec.experiments.analysis import analyse, cursor_now, read_since, serving_files, user_table
from eliverec.serving import admin_token, base_url
from eliverec.serving.buckets import with_share

log = logging.getLogger(__name__)
ACTOR = "ab-ramp"
SRM_P_MIN = 0.001


class AdminClient:
    """The service's admin endpoints."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120.0, headers={"Authorization": f"Bearer {token}"})
        self.url = url

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise EliverecError(f"no ranking service at {self.url} ({exc}); start it with `eliverec serve`") from exc
        if r.status_code >= 400:
            raise EliverecError(f"{method} {self.url}{path} failed: {r.status_code} {r.text[:300]}")
        return r.json()

    def health(self) -> dict[str, Any]:
        r = self.http.get("/healthz")
        return r.json()

    def set_share(self, settings: Settings, percent: float, reason: str) -> dict[str, Any]:
        ab = settings.ab
        alloc = with_share(ab.experiment, ab.salt, ab.buckets, percent, by=ACTOR, reason=reason)
        return self._call("PUT", "/admin/allocation", json=alloc.model_dump(mode="json"))

    def reload(self) -> dict[str, Any]:
        return self._call("POST", "/admin/reload")

    def flush(self) -> dict[str, Any]:
        return self._call("POST", "/admin/flush")

    def stats(self, since_ms: float) -> dict[str, Any]:
        return self._call("GET", "/admin/stats", params={"since_ms": since_ms})["variants"]


def judge(settings: Settings, result: dict[str, Any], service: dict[str, Any]) -> tuple[bool, list[str]]:
    """Guardrail verdict of one stage: (held, reasons)."""
    ab = settings.ab
    reasons: list[str] = []
    c = result["comparison"][ab.primary_metric]
    z_crit = float(sps.norm.ppf(1 - ab.alpha))
    if c["z"] == c["z"] and c["z"] < -z_crit:  # NaN-safe
        reasons.append(f"significant loss on {ab.primary_metric}: lift {c['relative_lift']:+.2%}, "
                       f"z {c['z']:.2f} < -{z_crit:.2f}")
    if result["srm"]["p_value"] < SRM_P_MIN:
        reasons.append(f"sample ratio mismatch (chi-square p {result['srm']['p_value']:.2g})")
    ch = service.get("challenger", {})
    if ch.get("error_rate", 0.0) > ab.max_error_rate:
        reasons.append(f"challenger error rate {ch['error_rate']:.2%} > {ab.max_error_rate:.2%}")
    if ch.get("p99_ms") is not None and ch["p99_ms"] > ab.max_p99_ms:
        reasons.append(f"challenger p99 latency {ch['p99_ms']:.1f} ms > {ab.max_p99_ms:.1f} ms")
    return not reasons, reasons


def _enough(settings: Settings, result: dict[str, Any]) -> bool:
    v = result["variants"]
    return all(v[k]["users"] >= settings.ab.min_users and v[k]["impressions"] >= settings.ab.min_impressions
               for k in ("champion", "challenger"))


def run_stage(settings: Settings, admin: AdminClient, percent: float,
              driver: Callable[[], Any] | None, max_rounds: int) -> dict[str, Any]:
    """Hold one stage until enough traffic, then judge it (see module docstring)."""
    ab = settings.ab
    admin.set_share(settings, percent, f"ramp stage {percent}%")
    admin.flush()
    cursor, since = cursor_now(settings.data_dir), time.time() * 1000.0
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + ab.max_stage_minutes * 60.0
    rounds = 0
    while True:
        if driver is not None:
            driver()
        else:
            time.sleep(ab.poll_s)
        rounds += 1
        admin.flush()
        new, cursor = read_since(serving_files(settings.data_dir), cursor)
        rows += new
        result = analyse(user_table(rows, settings.features.min_stay_ms), ab.alpha, percent / 100.0)
        if _enough(settings, result):
            break
        if time.monotonic() > deadline or (driver is not None and rounds >= max_rounds):
            return {"percent": percent, "decision": "rollback", "reason": "not enough traffic in time",
                    "rounds": rounds, "result": _brief(settings, result), "service": admin.stats(since)}
    service = admin.stats(since)
    held, reasons = judge(settings, result, service)
    return {"percent": percent, "decision": "advance" if held else "rollback",
            "reason": "guardrails held" if held else "; ".join(reasons), "rounds": rounds,
            "result": _brief(settings, result), "service": service}


def _brief(settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    p = result["comparison"][settings.ab.primary_metric]
    return {"users": {k: v["users"] for k, v in result["variants"].items()},
            "impressions": {k: v["impressions"] for k, v in result["variants"].items()},
            "primary": p, "srm_p": result["srm"]["p_value"], "comparison": result["comparison"]}


def ramp(settings: Settings, url: str | None = None, token: str | None = None, simulate_traffic: bool = False,
         traffic_users: int | None = None, traffic_minutes: float = 5.0, promote: bool = True,
         driver: Callable[[], Any] | None = None, max_rounds: int = 20) -> dict[str, Any]:
    """Run the ramp against the service at ``url``; returns (and writes) the stage decisions and outcome.

    ``driver`` (or ``simulate_traffic``, which builds one from :mod:`eliverec.experiments.traffic`)
    produces one round of traffic per call; without it the ramp waits for live traffic.
    """
    url = url or base_url(settings)
    admin = AdminClient(url, token or admin_token(settings))
    admin.reload()
    health = admin.health()
    models = health.get("models", {})
    if "champion" not in models or "challenger" not in models:
        raise EliverecError(f"the service at {url} needs a champion and a challenger loaded (has "
                            f"{sorted(models)}); set one with `eliverec gate` / registry.set_challenger")
    champion, challenger = models["champion"]["version"], models["challenger"]["version"]
    if driver is None and simulate_traffic:
        from eliverec.experiments.traffic import driver as make_driver

        driver = make_driver(settings, url, traffic_users, traffic_minutes)
    started = time.time()
    try:
        stages, outcome, promoted = _stages(settings, admin, challenger, driver, max_rounds, promote)
    except BaseException as exc:  # any exit (error, Ctrl-C): the champion serves everyone again
        _reset_share(settings, admin, f"ramp aborted: {type(exc).__name__}")
        raise
    res = {"experiment": settings.ab.experiment, "champion": champion, "challenger": challenger, "stages": stages,
           "outcome": outcome, "promoted": promoted, "final_percent": 0.0,
           "seconds": round(time.time() - started, 1), "url": url}
    res["paths"] = _write(settings, res)
    return res


def _stages(settings: Settings, admin: AdminClient, challenger: str, driver: Callable[[], Any] | None,
            max_rounds: int, promote: bool) -> tuple[list[dict[str, Any]], str, dict[str, Any] | None]:
    """Every stage until a rollback or the end, then the promotion decision: (stages, outcome, promoted)."""
    stages: list[dict[str, Any]] = []
    for percent in settings.ab.stages:
        st = run_stage(settings, admin, float(percent), driver, max_rounds)
        stages.append(st)
        if st["decision"] == "rollback":
            admin.set_share(settings, 0.0, f"rollback at {percent}%: {st['reason']}")
            return stages, "rolled_back", None
    promoted = None
    lift = stages[-1]["result"]["primary"]["relative_lift"]
    if promote and lift == lift and lift >= 0:
        promoted = _promote(settings, challenger, f"A/B ramp passed {settings.ab.stages}%; "
                            f"{settings.ab.primary_metric} lift {lift:+.2%} at {stages[-1]['percent']}%")
        outcome = "promoted"
    else:
        outcome = "completed_not_promoted"
    admin.set_share(settings, 0.0, f"ramp {outcome}")
    admin.reload()
    return stages, outcome, promoted


def _reset_share(settings: Settings, admin: AdminClient, reason: str) -> None:
    """Challenger share back to 0 % on an aborted ramp; a failure here is logged, the original error wins."""
    try:
        admin.set_share(settings, 0.0, reason)
    except Exception:  # noqa: BLE001 - the service may be the thing that failed
        log.exception("could not reset the challenger share to 0 %% at %s: set it with PUT /admin/allocation",
                      admin.url)


def _promote(settings: Settings, version: str, reason: str) -> dict[str, Any]:
    from dataclasses import asdict

    from eliverec import registry

    before = os.environ.get("ELIVEREC_ACTOR")
    os.environ["ELIVEREC_ACTOR"] = ACTOR
    try:
        return asdict(registry.promote(settings, version, reason))
    finally:
        if before is None:
            os.environ.pop("ELIVEREC_ACTOR", None)
        else:
            os.environ["ELIVEREC_ACTOR"] = before


def _write(settings: Settings, res: dict[str, Any]) -> dict[str, str]:
    files = settings.layout.experiment_files(settings.ab.experiment, "ramp")
    files["json"].parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(files["json"]), "markdown": str(files["markdown"])}
    write_bytes_atomic(Path(paths["json"]), json.dumps(res, indent=2, default=float).encode())
    lines = [f"# Ramp: {res['experiment']} (challenger v{res['challenger']} vs champion v{res['champion']})", "",
             f"Outcome: **{res['outcome']}**", "", "| stage | users (champion / challenger) | "
             f"{settings.ab.primary_metric} lift | p(loss) | challenger p99 ms | decision | reason |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for st in res["stages"]:
        u, p = st["result"]["users"], st["result"]["primary"]
        p99 = st["service"].get("challenger", {}).get("p99_ms")
        lines.append(f"| {st['percent']}% | {u['champion']} / {u['challenger']} | {p['relative_lift']:+.2%} | "
                     f"{p['p_loss']:.3g} | {p99 if p99 is None else round(p99, 1)} | {st['decision']} | "
                     f"{st['reason']} |")
    write_bytes_atomic(Path(paths["markdown"]), ("\n".join(lines) + "\n").encode())
    return paths

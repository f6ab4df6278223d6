"""The FastAPI ranking app (``eliverec serve``).

Endpoints:

- ``POST /rank``: variant by the user's bucket, features from the online state, the variant's
  network scores every candidate (candidate-independent parts once per request), ranked by
  P(watch); the returned top ``limit`` are logged as impressions (variant, model version, score,
  position, propensity 1: the ranking is deterministic).
- ``POST /events`` (header ``Authorization: Bearer <producer token>``, distinct from the admin
  token): feedback in the raw-log contract, bounded (finite values, ``ts`` within
  ``serving.event_max_age_s`` / ``event_max_ahead_s`` of the server clock); updates the online state
  and is logged. A rejected batch changes nothing and is counted in ``eliverec_events_rejected``.
- ``GET /healthz``: models and versions, registry reachability, the id of the last reload error
  (its text is in the log), state sizes (200 while a champion is loaded, else 503). No URIs, no
  error texts, no secrets.
- ``GET /metrics``: Prometheus text: requests by variant and status, latency histogram by variant,
  events, rejected events by reason, fallbacks, loaded versions.

Request bodies above ``serving.max_body_bytes`` get 413; a scene outside
``validation.allowed["impression.scene"]`` gets 422 (it would fail the bronze suite); an unexpected
error answers 500 with an ``error_id`` whose text is in the service log.
- ``/admin/*`` (header ``Authorization: Bearer <token>``; 401 without it, 403 with a wrong one):
  ``GET|PUT /admin/allocation``, ``POST /admin/reload``, ``GET /admin/stats?since_ms=``,
  ``POST /admin/flush``.

Scoring (features, forward pass, ranking) runs off the event loop, in one scoring thread per
process (``Service.scorer``): the loop keeps reading and answering requests (JSON in and out,
``/healthz``, ``/events``) while a request is scored, and one thread with one torch thread
(``serving.torch_threads``) does not fight itself over 2 cores. A request's features come from the
state's rows (:mod:`eliverec.serving.features`); the forward pass computes the candidate-independent
user state once per request and runs on ``serving.runtime`` (ONNX Runtime by default, torch under
``torch.inference_mode`` otherwise; :mod:`eliverec.scoring.runtime`).
Model reloads and log writes run in background threads.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import itertools
import logging
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.serving import admin_token, producer_token
from eliverec.serving.buckets import Allocation, allocation_path, load_allocation, save_allocation, with_share
from eliverec.serving.eventlog import LogUnavailable, ServingLog
from eliverec.serving.models import LoadedModel, ModelManager
from eliverec.serving.schemas import EventsRequest, RankRequest, RankResponse
from eliverec.serving.state import OnlineState

log = logging.getLogger(__name__)
RANKED = ("watch", "stay_time", "goods_bag", "product_click")  # task scores per ranked channel
ITEM_KEYS = ("channel_id", "position", *RANKED)  # the fields of schemas.RankedChannel, in order
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPauses:
    """Cyclic garbage collections per generation as the Prometheus histogram ``eliverec_gc_pause_seconds``.

    :meth:`hook` (a ``gc.callbacks`` entry while the app runs) only adds to plain lists: it runs inside
    a collection, which may start in any thread at any allocation, also while that thread holds a
    metric's lock (``prometheus_client`` locks are not reentrant), so it must not take one.
    :meth:`collect` builds the histogram when ``/metrics`` is read.
    """

    def __init__(self, bounds: tuple[float, ...], clock: Callable[[], float] = time.perf_counter) -> None:
        self.bounds, self.clock = bounds, clock
        self.counts = [[0] * (len(bounds) + 1) for _ in range(3)]  # per generation: per bucket, the last is +Inf
        self.sums = [0.0] * 3
        self._started = 0.0

    def hook(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        if not self._started:
            return
        seconds, gen = self.clock() - self._started, min(int(info.get("generation", 2)), 2)
        self.counts[gen][bisect.bisect_left(self.bounds, seconds)] += 1
        self.sums[gen] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        fam = HistogramMetricFamily("eliverec_gc_pause_seconds", "Cyclic garbage collections: every thread of "
                                    "the process waits while one runs", labels=["generation"])
        for gen in range(3):
            cumulative = list(itertools.accumulate(self.counts[gen]))
            les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
            fam.add_metric([str(gen)], list(zip(les, cumulative, strict=True)), self.sums[gen])
        yield fam


class Metrics:
    """Prometheus collectors (one registry per app) and a recent-request window for guardrails."""

    def __init__(self, window: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("eliverec_rank_requests", "Rank requests", ["variant", "status"],
                                registry=self.registry)
        self.latency = Histogram("eliverec_rank_latency_seconds", "Rank latency", ["variant"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("eliverec_events", "Feedback events received", ["event"], registry=self.registry)
        self.rejected = Counter("eliverec_events_rejected", "Feedback events refused (whole requests count 1 "
                                "when unparsed)", ["reason"], registry=self.registry)
        self.log_dropped = Counter("eliverec_log_dropped", "Served impressions not logged (log queue full)",
                                   registry=self.registry)
        self.fallbacks = Counter("eliverec_fallbacks", "Requests served by the champion instead", ["reason"],
                                 registry=self.registry)
        self.version = Gauge("eliverec_model_version", "Loaded registry version", ["alias"], registry=self.registry)
        self.gc_pauses = GcPauses(LATENCY_BUCKETS)
        self.registry.register(self.gc_pauses)
        self.recent: dict[str, deque[tuple[float, float, bool]]] = {
            v: deque(maxlen=window) for v in ("champion", "challenger")}

    def observe(self, variant: str, seconds: float, error: bool) -> None:
        self.requests.labels(variant, "error" if error else "ok").inc()
        if not error:
            self.latency.labels(variant).observe(seconds)
        self.recent[variant].append((time.time() * 1000.0, seconds * 1000.0, error))

    def stats(self, since_ms: float) -> dict[str, Any]:
        """Per assigned variant since ``since_ms`` (wall clock): requests, errors, latency quantiles."""
        out: dict[str, Any] = {}
        for variant, rows in self.recent.items():
            recent = [r for r in list(rows) if r[0] >= since_ms]
            lat = np.array([r[1] for r in recent if not r[2]])
            errors = sum(r[2] for r in recent)
            q = np.percentile(lat, [50, 95, 99]).tolist() if lat.size else [None] * 3
            out[variant] = {"requests": len(recent), "errors": int(errors),
                            "error_rate": errors / len(recent) if recent else 0.0,
                            "p50_ms": q[0], "p95_ms": q[1], "p99_ms": q[2]}
        return out


@dataclass
class Service:
    """Everything one running service holds."""

    settings: Settings
    state: OnlineState
    models: ModelManager
    log: ServingLog
    metrics: Metrics
    allocation: Allocation
    token: str
    producer_token: str
    started_at: float = field(default_factory=time.time)
    allocation_mtime: float = 0.0
    counter: itertools.count = field(default_factory=itertools.count)
    _stop: threading.Event = field(default_factory=threading.Event)
    scorer: ThreadPoolExecutor | None = None  # /rank's work, off the event loop (serving.scoring_threads threads)

    def __post_init__(self) -> None:
        if self.scorer is None:
            self.scorer = ThreadPoolExecutor(self.settings.serving.scoring_threads, thread_name_prefix="eliverec-score")

    # ------------------------------------------------------------------ allocation
    def default_allocation(self) -> Allocation:
        ab = self.settings.ab
        return with_share(ab.experiment, ab.salt, ab.buckets, 0.0, by="default", reason="no allocation stored")

    def reload_allocation(self) -> None:
        """Re-read the stored allocation when its file changed (another replica or a hand edit)."""
        path = allocation_path(self.settings.data_dir)
        try:
            mtime = path.stat().st_mtime if path.exists() else 0.0
            if mtime != self.allocation_mtime:
                self.allocation = load_allocation(path, self.default_allocation())
                self.allocation_mtime = mtime
        except Exception as exc:  # noqa: BLE001 - keep the allocation in memory, report it
            self.models._error(f"allocation file unreadable: {exc}")

    def set_allocation(self, allocation: Allocation) -> Allocation:
        path = allocation_path(self.settings.data_dir)
        save_allocation(path, allocation)
        self.allocation, self.allocation_mtime = allocation, path.stat().st_mtime
        return allocation

    # ------------------------------------------------------------------ ranking
    def choose(self, user_id: str) -> tuple[str, LoadedModel, str | None]:
        """(variant served, model, fallback reason) for a user."""
        models = self.models.models
        assigned = self.allocation.variant_of(user_id)
        model = models.get(assigned)
        if model is not None:
            return assigned, model, None
        champion = models.get("champion")
        if champion is None:
            raise HTTPException(503, "no champion model loaded; see /healthz")
        return "champion", champion, f"no_{assigned}"

    def score(self, model: LoadedModel, req: RankRequest, ts: int) -> dict[str, np.ndarray]:
        batch = self.state.features(model.spec, user_id=req.user_id, ts=ts, scene=req.context.scene,
                                    candidates=req.candidates, position=int(model.network.cfg.serve_position))
        return model.score(batch)  # one request: one user and history for every row

    def rank(self, req: RankRequest) -> dict[str, Any]:
        """The ranked candidates with their task scores (the fields of :class:`RankResponse`), logged as impressions."""
        t0 = time.perf_counter()
        if len(req.candidates) > self.settings.serving.max_candidates:
            raise HTTPException(422, f"candidates: at most {self.settings.serving.max_candidates} per request "
                                     f"(got {len(req.candidates)}); split the request")
        scenes = self.settings.validation.allowed.get("impression.scene")
        if scenes and req.context.scene not in scenes:
            raise HTTPException(422, f"context.scene: '{req.context.scene}' is not a known scene "
                                     f"({', '.join(scenes)}; validation.allowed['impression.scene'])")
        ts = req.context.ts if req.context.ts is not None else int(time.time() * 1000)
        refused = self.outside_window(ts, "context.ts")  # the impressions are logged under this time
        if refused is not None:
            raise refused
        variant, model, fallback = self.choose(req.user_id)
        try:
            scores = self.score(model, req, ts)
        except Exception as exc:
            self.metrics.observe(variant, time.perf_counter() - t0, error=True)
            champion = self.models.models.get("champion")
            if variant != "challenger" or champion is None:
                raise HTTPException(500, {"message": "ranking failed", "error_id": log_error("ranking failed")}) \
                    from exc
            log.exception("challenger failed; the champion answers")
            variant, model, fallback = "champion", champion, "challenger_error"
            scores = self.score(model, req, ts)
        if fallback:
            self.metrics.fallbacks.labels(fallback).inc()
        order = np.argsort(-scores["watch"], kind="stable")[: req.limit or len(req.candidates)]
        cols = [scores[k][order].tolist() for k in RANKED]
        chans = [req.candidates[i] for i in order.tolist()]
        items = [dict(zip(ITEM_KEYS, (c, p, *s), strict=True))
                 for p, (c, *s) in enumerate(zip(chans, *cols, strict=True))]
        prefix = f"srv-{self.log.instance}-{next(self.counter)}"
        self.log_impressions({"event": "impression", "event_id": f"{prefix}-{p}", "ts": ts, "user_id": req.user_id,
                        "request_id": req.request_id, "channel_id": c, "position": p, "scene": req.context.scene,
                        "variant": variant, "model_version": model.version, "score": round(w, 6), "propensity": 1.0}
                       for p, (c, w) in enumerate(zip(chans, cols[0], strict=True)))
        seconds = time.perf_counter() - t0
        self.metrics.observe(variant, seconds, error=False)
        return {"request_id": req.request_id, "user_id": req.user_id, "variant": variant,
                "model_version": model.version, "model_name": model.model_name, "items": items,
                "latency_ms": round(seconds * 1000.0, 3)}

    def rank_json(self, req: RankRequest) -> bytes:
        """:meth:`rank`'s answer as JSON (a :class:`RankResponse`), serialised in the scoring thread."""
        return orjson.dumps(self.rank(req))

    def log_impressions(self, rows: Any) -> None:
        """Queue served impressions; a full log queue drops them (counted) rather than failing the ranking."""
        rows = list(rows)
        try:
            self.log.write(rows)
        except LogUnavailable:
            self.metrics.log_dropped.inc(len(rows))

    # ------------------------------------------------------------------ health
    def health(self) -> tuple[int, dict[str, Any]]:
        st = self.models.status
        models = {a: {"version": m.version, "model_name": m.model_name, "uri": m.uri,
                      "loaded_at": m.loaded_at, "spec_hash": m.spec.spec_hash}
                  for a, m in self.models.models.items()}
        stale = {a: v for a, v in st.aliases.items() if v is not None and models.get(a, {}).get("version") != v}
        ok = "champion" in models and self.log.healthy
        degraded = (not st.reachable) or bool(stale)
        body = {"status": "unavailable" if not ok else ("degraded" if degraded else "ok"), "models": models,
                "registry": {"reachable": st.reachable, "checked_at": st.checked_at,
                             "aliases": st.aliases, "not_loaded": stale, "last_error_id": st.last_error_id,
                             "last_error_at": st.last_error_at, "reloads": st.reloads},
                "allocation": {"experiment": self.allocation.experiment,
                               "challenger_share": self.allocation.share("challenger")},
                "state": self.state.describe(), "log": {"instance": self.log.instance, "written": self.log.written,
                                                       "healthy": self.log.healthy, "pending": self.log.pending,
                                                       "last_error_id": self.log.last_error_id},
                "uptime_s": round(time.time() - self.started_at, 1),
                "process": {"gil_switch_ms": sys.getswitchinterval() * 1000.0, "gc_frozen": gc.get_freeze_count()}}
        return (200 if ok else 503), body

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        torch.set_num_threads(self.settings.serving.torch_threads)
        self.state.warm(self.settings.data_dir, self.settings.serving.warm_days)
        self.reload_allocation()
        self.models.refresh()
        self.models.start(self.settings.serving.reload_poll_s)
        interval = self.settings.serving.reload_poll_s
        if interval > 0:
            threading.Thread(target=self._watch_allocation, args=(interval,), daemon=True).start()

    def _watch_allocation(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.reload_allocation()

    def stop(self) -> None:
        self._stop.set()
        self.scorer.shutdown(wait=True)
        self.models.stop()
        self.log.close()

    # ------------------------------------------------------------------ events
    def outside_window(self, ts: int, where: str) -> HTTPException | None:
        """A 422 for a ``ts`` outside the configured window of the server clock (``None`` inside it)."""
        s = self.settings.serving
        now = time.time() * 1000.0
        low = now - s.event_max_age_s * 1000.0 if s.event_max_age_s > 0 else -np.inf
        if low <= ts <= now + s.event_max_ahead_s * 1000.0:
            return None
        return HTTPException(422, f"{where}: {ts} is outside the accepted window of the server clock "
                                  f"({s.event_max_age_s:g} s back, serving.event_max_age_s; {s.event_max_ahead_s:g} s "
                                  "ahead, serving.event_max_ahead_s); nothing of this request was applied")

    def check_window(self, events: list[dict[str, Any]]) -> None:
        """422 naming the first event whose ``ts`` lies outside the window (the batch is refused whole)."""
        for i, e in enumerate(events):
            refused = self.outside_window(e["ts"], f"events.{i}.ts")
            if refused is not None:
                self.metrics.rejected.labels("ts_window").inc(len(events))
                raise refused


def log_error(what: str) -> str:
    """Log the exception being handled under a fresh error id and return the id (the answer shows only it)."""
    error_id = secrets.token_hex(6)
    log.exception("%s (error id %s)", what, error_id)
    return error_id


def service_tokens(settings: Settings) -> tuple[str, str]:
    """(admin token, producer token); refuses the same secret for both roles."""
    admin, producer = admin_token(settings), producer_token(settings)
    if secrets.compare_digest(admin.encode(), producer.encode()):
        raise EliverecError("serving.producer_token ($ELIVEREC_PRODUCER_TOKEN) equals the admin token: an event "
                            "producer must not hold admin rights; set two different secrets")
    return admin, producer


def build_service(settings: Settings) -> Service:
    """A service for ``settings`` (not started)."""
    s = settings.serving
    admin, producer = service_tokens(settings)
    state = OnlineState(settings.features.seq_len, settings.features.min_stay_ms, s.max_users, s.max_channels)
    svc = Service(settings=settings, state=state,
                  models=ModelManager(settings), log=ServingLog(settings.layout.raw(), s.log_flush_ms,
                                                                retries=s.log_retries, max_pending=s.log_max_pending),
                  metrics=Metrics(s.latency_window), allocation=with_share(
                      settings.ab.experiment, settings.ab.salt, settings.ab.buckets, 0.0), token=admin,
                  producer_token=producer)
    return svc


class BodyLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes (declared length or streamed bytes)."""

    def __init__(self, app: Any, limit: int, on_reject: Any) -> None:
        self.app, self.limit, self.on_reject = app, limit, on_reject
        self.message = f"request body above {limit} bytes (serving.max_body_bytes); send smaller batches"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            self.on_reject(path)
            await JSONResponse(status_code=413, content={"message": self.message})(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # a streamed (chunked) body: FastAPI passes an HTTPException through
                self.on_reject(path)
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)


def _errors_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts)


def freeze_heap() -> int:
    """Move every object alive now out of the cyclic collector's reach (``gc.freeze``, after a full collection).

    A started service holds some 500k container objects (torch, MLflow, pandas, ONNX Runtime, the loaded
    networks, the warmed state) that never become garbage, and CPython's full collection walks all of them:
    measured 0.55 s stalls of the whole process under load in the serving benchmark (every request in flight
    waits). Frozen, they are skipped; objects made afterwards are collected as usual, and frozen ones are
    still freed by reference counting. Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def create_app(settings: Settings, service: Service | None = None, freeze_gc: bool = False) -> FastAPI:
    """The FastAPI app; the service starts (warm state, load models, poll) in the app's lifespan.

    ``freeze_gc`` (the served process, :func:`serve`): :func:`freeze_heap` once the service has started.
    """
    svc = service or build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(None, svc.start)
        if freeze_gc:
            log.info("froze %d objects out of the cyclic garbage collector", freeze_heap())
        gc.callbacks.append(svc.metrics.gc_pauses.hook)
        try:
            yield
        finally:
            gc.callbacks.remove(svc.metrics.gc_pauses.hook)
            svc.stop()

    app = FastAPI(title="eLiveRec ranking service", version="1", lifespan=lifespan)
    app.state.service = svc

    def count_rejected(path: str, reason: str) -> None:
        if path == "/events":
            svc.metrics.rejected.labels(reason).inc()

    app.add_middleware(BodyLimit, limit=settings.serving.max_body_bytes,
                       on_reject=lambda path: count_rejected(path, "too_large"))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        count_rejected(request.url.path, "invalid")
        return JSONResponse(status_code=422, content={"message": f"invalid request: {_errors_text(exc)}",
                                                      "detail": [{k: e.get(k) for k in ("loc", "msg", "type")}
                                                                 for e in exc.errors()]})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = log_error(f"{request.method} {request.url.path} failed")
        return JSONResponse(status_code=500, content={"message": "internal error; the service log has the details",
                                                      "error_id": error_id})

    def bearer(request: Request, expected: str, role: str) -> None:
        header = request.headers.get("authorization", "")
        if not header:
            raise HTTPException(401, f"{role}: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
            raise HTTPException(403, f"{role}: token rejected")

    def require_producer(request: Request) -> None:
        try:
            bearer(request, svc.producer_token, "event producer endpoint")
        except HTTPException:
            count_rejected("/events", "unauthorized")
            raise

    def require_admin(request: Request) -> None:
        bearer(request, svc.token, "admin endpoint")

    @app.post("/rank", response_model=RankResponse)  # the schema of the answer; rank_json writes it (orjson)
    async def rank(req: RankRequest) -> Response:
        body = await asyncio.get_running_loop().run_in_executor(svc.scorer, svc.rank_json, req)
        return Response(body, media_type="application/json")

    @app.post("/events", dependencies=[Depends(require_producer)])
    async def events(req: EventsRequest) -> dict[str, Any]:
        rows = [e.model_dump(exclude_none=True) for e in req.events]
        svc.check_window(rows)
        if not svc.log.healthy:
            svc.metrics.rejected.labels("log_unavailable").inc(len(rows))
            raise HTTPException(503, f"the served log cannot be written (error id {svc.log.last_error_id}); "
                                     "nothing was applied: retry later", headers={"Retry-After": "5"})
        try:
            svc.log.write(rows)  # logged first: an event the log refuses never reaches the state
        except LogUnavailable as exc:
            svc.metrics.rejected.labels("log_unavailable").inc(len(rows))
            raise HTTPException(503, "the served log queue is full (serving.log_max_pending); nothing was applied: "
                                     "retry later", headers={"Retry-After": "5"}) from exc
        used = svc.state.apply(rows)
        for r in rows:
            svc.metrics.events.labels(r["event"]).inc()
        return {"accepted": len(rows), "state_updates": used}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        code, body = svc.health()
        return JSONResponse(status_code=code, content=body)

    @app.get("/metrics")
    async def metrics() -> Response:
        for alias in ("champion", "challenger"):
            m = svc.models.models.get(alias)
            svc.metrics.version.labels(alias).set(float(m.version) if m and m.version.isdigit() else 0.0)
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/allocation", dependencies=[Depends(require_admin)])
    async def get_allocation() -> dict[str, Any]:
        return svc.allocation.model_dump(mode="json") | {"challenger_share": svc.allocation.share("challenger")}

    @app.put("/admin/allocation", dependencies=[Depends(require_admin)])
    async def put_allocation(allocation: Allocation) -> dict[str, Any]:
        a = svc.set_allocation(allocation)
        return a.model_dump(mode="json") | {"challenger_share": a.share("challenger")}

    @app.post("/admin/reload", dependencies=[Depends(require_admin)])
    async def reload() -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, svc.models.refresh)

    @app.get("/admin/stats", dependencies=[Depends(require_admin)])
    async def stats(since_ms: float = 0.0) -> dict[str, Any]:
        return {"since_ms": since_ms, "variants": svc.metrics.stats(since_ms)}

    @app.post("/admin/flush", dependencies=[Depends(require_admin)])
    async def flush() -> dict[str, Any]:
        return {"written": svc.log.flush(), "instance": svc.log.instance}

    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1")
LAPTOP_TOKEN = "change-me-admin-token"  # the params.yaml default: fine on loopback only
LAPTOP_PRODUCER_TOKEN = "change-me-producer-token"  # likewise


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the service with uvicorn until interrupted (one process: the online state lives in it)."""
    import uvicorn

    bind = host or settings.serving.host
    if bind not in LOOPBACK and admin_token(settings) == LAPTOP_TOKEN:
        raise EliverecError(f"refusing to serve on {bind} with the laptop admin token from params.yaml: "
                            "set ELIVEREC_ADMIN_TOKEN (or serving.admin_token) to a secret first")
    if bind not in LOOPBACK and producer_token(settings) == LAPTOP_PRODUCER_TOKEN:
        raise EliverecError(f"refusing to serve on {bind} with the laptop producer token from params.yaml: "
                            "set ELIVEREC_PRODUCER_TOKEN (or serving.producer_token) to a secret first")
    sys.setswitchinterval(settings.serving.gil_switch_ms / 1000.0)
    app = create_app(settings, freeze_gc=True)
    uvicorn.run(app, host=bind, port=port or settings.serving.port, log_level="info",
                access_log=False)

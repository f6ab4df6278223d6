"""Serving benchmark: latency and throughput of ``POST /rank`` over loopback, 100 candidates per request.

The service runs as its own process (``eliverec serve``, default profile, one uvicorn worker);
this script is the load generator in a separate process: an open-loop asyncio + aiohttp client that
sends requests at a fixed rate (so slow answers do not slow the offered load down) and measures
client-side latency; each row also gives the service process's CPU time per request (all threads,
and the event-loop thread alone). The champion is the default-profile eLiveRec architecture; with no trained
default model at hand it is registered with its initial (untrained) weights: the cost of a forward
pass does not depend on the weights' values. Before measuring, the benchmark fills the online
state through ``POST /events`` so every user has full 50-long product and channel sequences and
every channel has stats (the expensive case).

Before and after in the same session (issue 18): ``--baseline REF`` also starts the service of
git revision ``REF`` (a temporary worktree of this repository, same venv, same model, same warm
state) and measures both at every rate, alternating which goes first; each stops at its first rate
with p99 >= 50 ms or an error. The table states each one's sustained maximum rate (the highest
offered rate with p99 < 20 ms and no errors) and the replicas a given rate needs at that maximum.
Last, :func:`stage_profile` times each stage of one request in this process, the code before and
after side by side on the same model and state (request parsing, features, forward pass, whole
``rank``): the profile that says where the remaining time goes.

``--scoring-threads N`` adds this checkout's service with ``serving.scoring_threads=N`` (ONNX Runtime
releases the GIL, so two threads can overlap one request's forward with the next one's features);
``--variant "serving.gil_switch_ms=1"`` adds one with any settings. ``--rates`` and ``--seconds`` pick the
rates and their length (results then go to ``serving_custom.*``).

Output: ``benchmarks/results/serving.json`` and ``serving.md`` (``--quick``: shorter runs, fewer rates).

    .venv/bin/python benchmarks/serving.py [--quick] [--baseline REF] [--scoring-threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
CANDIDATES = 100
USERS = 2000
CHANNELS = 1500
TOKEN = "benchmark-admin-token"
PRODUCER = "bench-producer-token"  # POST /events (distinct from the admin token)
JSON = {"Content-Type": "application/json"}


def machine() -> dict:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "load_avg_at_start": list(os.getloadavg())}


def register_champion(tmp: Path) -> tuple[str, dict]:
    """Register the default-profile eLiveRec (initial weights) as champion in a fresh store."""
    from eliverec import registry
    from eliverec.config import load_settings
    from eliverec.experiments.controls import log_network
    from eliverec.models import build_model

    uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
    s = load_settings("default", overrides=[f"tracking.uri={uri}"], data_dir=tmp / "data")
    net = build_model(s)
    model_uri, run_id = log_network(s, net, run_name="benchmark-default-untrained")
    v = registry.register(s, model_uri, {"model_name": s.model.name, "note": "untrained, default dims"}, run_id)
    registry.set_verdict(s, v, "pass")
    registry.bootstrap_champion(s, v, "serving benchmark")
    n_params = sum(p.numel() for p in net.parameters())
    return uri, {"model": s.model.name, "dim": s.model.dim, "heads": s.model.heads, "layers": s.model.layers,
                 "seq_len": s.features.seq_len, "parameters": int(n_params), "weights": "initial (untrained)"}


def start_service(tmp: Path, uri: str, port: int, code: Path = ROOT, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """``eliverec serve`` of the checkout at ``code`` (this one, or a baseline worktree) on ``port``; ``extra``:
    more ``--set KEY=VALUE`` settings."""
    env = {**os.environ, "ELIVEREC_ADMIN_TOKEN": TOKEN, "ELIVEREC_PRODUCER_TOKEN": PRODUCER,
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-c", "from eliverec.cli import app; app()", "serve", "--profile", "default",
           "--data-dir", str(tmp / f"data-{port}"), "--params", str(code / "params.yaml"),
           "--set", f"tracking.uri={uri}", "--set", "serving.reload_poll_s=0", "--port", str(port),
           "--set", "serving.event_max_age_s=0",  # the warm-up events carry a fixed (past) time
           *(a for kv in extra for a in ("--set", kv))]
    log = tmp / f"service-{port}.log"
    proc = subprocess.Popen(cmd, env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"service of {code} did not become healthy: {log.read_text()[-3000:]}")


def warm_events(ts: int, rng: np.random.Generator) -> list[dict]:
    """Full histories for every user (50 product clicks, 50 watches) and stats for every channel."""
    events: list[dict] = []
    n = 0
    for u in range(USERS):
        t = ts - 3_600_000 + np.sort(rng.integers(0, 3_000_000, 100))
        for i in range(50):
            events.append({"event": "product_click", "event_id": f"w{n}", "ts": int(t[i]), "user_id": f"u{u}",
                           "product_id": f"p{int(rng.integers(40000))}"})
            events.append({"event": "leave", "event_id": f"w{n}b", "ts": int(t[50 + i]), "user_id": f"u{u}",
                           "request_id": "warm", "channel_id": f"c{int(rng.integers(CHANNELS))}", "stay_ms": 60000})
            n += 1
    for c in range(CHANNELS):
        events.append({"event": "channel_stats", "event_id": f"s{c}", "ts": ts - 60_000, "channel_id": f"c{c}",
                       "viewers": int(rng.integers(10, 5000)), "revenue_window": float(rng.uniform(0, 500)),
                       "products_on_sale": [f"p{int(x)}" for x in rng.integers(0, 40000, 5)]})
    return events


def warm_state(url: str, ts: int, rng: np.random.Generator) -> int:
    """:func:`warm_events` through POST /events."""
    events = warm_events(ts, rng)
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {PRODUCER}"}) as c:
        for lo in range(0, len(events), 50_000):
            r = c.post("/events", json={"events": events[lo : lo + 50_000]})
            r.raise_for_status()
    return len(events)


def server_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a service process so far: (event-loop thread, all threads) from /proc (Linux)."""
    loop = total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        total += seconds
        loop += seconds if int(task.name) == pid else 0.0
    return loop, total


def gc_totals(url: str) -> dict[str, float] | None:
    """The service's cyclic-GC pauses so far from ``/metrics`` (``eliverec_gc_pause_seconds``; absent in code
    before it existed): collections of every generation, full (generation 2) ones, their seconds, and pauses
    of at least 10 ms."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"collections": 0.0, "full": 0.0, "seconds": 0.0, "over_10ms": 0.0}
    fams = [f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text)
            if f.name == "eliverec_gc_pause_seconds"]
    if not fams:
        return None
    for fam in fams:
        for smp in fam.samples:
            if smp.name.endswith("_count"):
                out["collections"] += smp.value
                out["full"] += smp.value if smp.labels.get("generation") == "2" else 0.0
                out["over_10ms"] += smp.value
            elif smp.name.endswith("_sum"):
                out["seconds"] += smp.value
            elif smp.name.endswith("_bucket") and smp.labels.get("le") == "0.01":
                out["over_10ms"] -= smp.value
    return out


def service_side(url: str, since_ms: float, gc0: dict[str, float] | None) -> dict:
    """What the service saw of one rate: its own p99 of a request's scoring (from the scoring thread's start, so
    without queueing) and the GC pauses since ``gc0`` (a large client p99 with a small service p99 is queueing)."""
    st = httpx.get(f"{url}/admin/stats", params={"since_ms": since_ms}, timeout=30,
                   headers={"Authorization": f"Bearer {TOKEN}"}).json()["variants"]["champion"]
    gc1 = gc_totals(url)
    out = {"service_p99_ms": round(st["p99_ms"], 2) if st["p99_ms"] is not None else None}
    if gc0 is None or gc1 is None:
        return out
    return out | {"gc_full": int(gc1["full"] - gc0["full"]), "gc_over_10ms": int(gc1["over_10ms"] - gc0["over_10ms"]),
                  "gc_ms": round((gc1["seconds"] - gc0["seconds"]) * 1000, 1)}


def request_bodies(n: int, ts: int, seed: int) -> list[bytes]:
    """``n`` /rank bodies (random user, 100 distinct random candidates, top 8), serialised before the clock starts."""
    rng = np.random.default_rng(seed)
    return [orjson.dumps({"user_id": f"u{int(rng.integers(USERS))}", "request_id": f"b{seed}-{i}",
                          "candidates": [f"c{int(x)}" for x in rng.choice(CHANNELS, CANDIDATES, replace=False)],
                          "context": {"scene": "homepage", "ts": ts}, "limit": 8}) for i in range(n)]


async def run_rate(url: str, rate: float, seconds: float, ts: int, seed: int) -> dict:
    """Open loop: one request every 1/rate s for ``seconds``; client-side latency of each.

    The client is aiohttp with bodies serialised in advance: it shares the machine with the service,
    and httpx's connection pool spent more CPU per request than the service once requests queued.
    """
    n = max(int(rate * seconds), 1)
    bodies = request_bodies(n, ts, seed)
    lat: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            async with session.post(f"{url}/rank", data=body, headers=JSON) as r:
                await r.read()
                ok = r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if ok:
            lat.append((time.perf_counter() - t0) * 1000)
        else:
            errors += 1

    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    q = np.percentile(lat, [50, 95, 99]).tolist() if lat else [float("nan")] * 3
    return {"offered_rps": rate, "achieved_rps": round(len(lat) / elapsed, 1), "requests": n, "errors": errors,
            "p50_ms": round(q[0], 2), "p95_ms": round(q[1], 2), "p99_ms": round(q[2], 2)}


def baseline_tree(ref: str, tmp: Path) -> Path:
    """A worktree of this repository at ``ref`` (removed by :func:`drop_tree`)."""
    path = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                   capture_output=True)
    return path


def register_with(code: Path, store: Path) -> str:
    """Register the champion with the checkout at ``code`` (its own settings schema) in a store of its own."""
    store.mkdir(parents=True)
    script = ("import json, sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); import serving; "
              f"print(json.dumps(serving.register_champion(Path({str(store)!r}))[0]))")
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_DISABLE_TELEMETRY": "true"}
    out = subprocess.run([sys.executable, "-c", script], cwd=code, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def drop_tree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def sustained(results: list[dict], code: str) -> int | None:
    """Highest offered rate with p99 < 20 ms and no errors."""
    return max((r["offered_rps"] for r in results if r["code"] == code and r["p99_ms"] < 20 and not r["errors"]),
               default=None)


def measure(urls: dict[str, str], procs: dict[str, subprocess.Popen], rates: list[int], seconds: float,
            ts: int, stop_at_50ms: bool = True) -> list[dict]:
    """Every code at every rate (alternating which goes first) until its p99 reaches 50 ms or it errs
    (``stop_at_50ms``; off for a chosen list of rates, which may repeat one rate to see its spread)."""
    results: list[dict] = []
    live = list(urls)
    for i, rate in enumerate(rates):
        for code in (live if i % 2 == 0 else live[::-1]):
            gc0, since = gc_totals(urls[code]), time.time() * 1000.0
            cpu0 = server_cpu(procs[code].pid)
            r = {"code": code, **asyncio.run(run_rate(urls[code], rate, seconds, ts, seed=i))}
            cpu = [(b - a) * 1000 / r["requests"] for a, b in zip(cpu0, server_cpu(procs[code].pid), strict=True)]
            r |= {"server_cpu_ms": round(cpu[1], 2), "loop_cpu_ms": round(cpu[0], 2),
                  "load_avg_1min": round(os.getloadavg()[0], 2), **service_side(urls[code], since, gc0)}
            results.append(r)
            print(json.dumps(r), flush=True)
        live = [c for c in live if not stop_at_50ms or not any(
            r["code"] == c and r["offered_rps"] == rate and (r["p99_ms"] >= 50 or r["errors"]) for r in results)]
        if not live:
            break
    return results


def stage_profile(tmp: Path, uri: str, ts: int, n: int, rounds: int) -> list[dict]:
    """Where one request's scoring time goes, before and after, measured in this process on the same state.

    The service of this checkout is built in-process (same model, same warm state) and each stage runs
    on the same ``n`` requests, alternating, ``rounds`` times; the table gives the median per request of
    the thread's CPU time (robust to waiting for a core on a shared machine) and of the wall time.
    """
    from eliverec.config import load_settings
    from eliverec.scoring.runtime import TorchScorer
    from eliverec.serving.app import build_service
    from eliverec.serving.schemas import RankRequest

    os.environ.update({"ELIVEREC_ADMIN_TOKEN": TOKEN, "ELIVEREC_PRODUCER_TOKEN": PRODUCER})
    s = load_settings("default", overrides=[f"tracking.uri={uri}", "serving.reload_poll_s=0",
                                            "serving.event_max_age_s=0"], data_dir=tmp / "data-profile")
    svc = build_service(s)
    svc.start()
    try:
        svc.state.apply(warm_events(ts, np.random.default_rng(0)))
        model = svc.models.models["champion"]
        bodies = request_bodies(n, ts, seed=123)
        reqs = [RankRequest.model_validate_json(b) for b in bodies]
        asks = [{"user_id": r.user_id, "ts": ts, "scene": r.context.scene, "candidates": r.candidates,
                 "position": int(model.network.cfg.serve_position)} for r in reqs]
        batches = [svc.state.features(model.spec, **a) for a in asks]
        eager = TorchScorer(model.network)
        stages = {  # name: (path, work over the n requests)
            "parse and validate the request (pydantic)": ("both", lambda: [RankRequest.model_validate_json(b)
                                                                          for b in bodies]),
            "features: offline builder's code (request_features)": ("before", lambda: [
                svc.state.reference_features(model.spec, **a) for a in asks]),
            "features: from the state's rows (request_batch)": ("after", lambda: [
                svc.state.features(model.spec, **a) for a in asks]),
            "forward: torch eager, inference_mode": ("before", lambda: [eager(b) for b in batches]),
            f"forward: {model.scorer.runtime} runtime": ("after", lambda: [model.score(b) for b in batches]),
            "whole rank() after (features, forward, order, log, JSON)": ("after", lambda: [svc.rank_json(r)
                                                                                         for r in reqs]),
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in stages}
        for i in range(rounds):
            for name, (_, work) in (stages.items() if i % 2 == 0 else list(stages.items())[::-1]):
                c0, w0 = time.thread_time(), time.perf_counter()
                work()
                times[name].append(((time.thread_time() - c0) * 1000 / n, (time.perf_counter() - w0) * 1000 / n))
    finally:
        svc.stop()
    return [{"stage": k, "path": stages[k][0], "cpu_ms": round(float(np.median([t[0] for t in v])), 3),
             "wall_ms": round(float(np.median([t[1] for t in v])), 3)} for k, v in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs and fewer rates")
    ap.add_argument("--baseline", metavar="REF", help="also measure the service of this git revision")
    ap.add_argument("--scoring-threads", type=int, metavar="N",
                    help="also measure this checkout with serving.scoring_threads=N (default service: 1)")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[;KEY=VALUE]",
                    help="also measure this checkout with these settings (repeatable: one service each)")
    ap.add_argument("--rates", metavar="R,R,...", help="offered rates to measure (req/s), instead of the default list")
    ap.add_argument("--seconds", type=float, metavar="S", help="seconds per rate (default 15, --quick 5)")
    args = ap.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    rates = [50, 100, 200, 300] if args.quick else [50, 100, 150, 200, 300, 400, 500, 600]
    if args.rates:
        rates = [int(r) for r in args.rates.split(",")]
    facts = machine()
    ts = 1_788_566_400_000  # 2026-09-09 12:00 UTC
    with tempfile.TemporaryDirectory(prefix="eliverec-bench-serving-") as d:
        tmp = Path(d)
        uri, model = register_champion(tmp)
        codes = {"after": ROOT}
        uris = {"after": uri}
        extra: dict[str, tuple[str, ...]] = {}
        if args.scoring_threads:
            threads = f"after, {args.scoring_threads} scoring threads"
            codes[threads], uris[threads] = ROOT, uri
            extra[threads] = (f"serving.scoring_threads={args.scoring_threads}",)
        for v in args.variant:
            name = f"after, {v}"
            codes[name], uris[name], extra[name] = ROOT, uri, tuple(v.split(";"))
        if args.baseline:
            base = f"before ({args.baseline})"
            codes = {base: baseline_tree(args.baseline, tmp), **codes}
            uris[base] = register_with(codes[base], tmp / "baseline-store")
        port0 = 18000 + os.getpid() % 1000
        procs = {c: start_service(tmp, uris[c], port0 + i, path, extra.get(c, ()))
                 for i, (c, path) in enumerate(codes.items())}
        urls = {c: f"http://127.0.0.1:{port0 + i}" for i, c in enumerate(codes)}
        try:
            warm = {c: warm_state(u, ts, np.random.default_rng(0)) for c, u in urls.items()}
            for u in urls.values():
                asyncio.run(run_rate(u, 50, 2.0, ts, seed=99))  # warm-up (allocator, caches)
            results = measure(urls, procs, rates, seconds, ts, stop_at_50ms=not args.rates)
            server_stats = {c: httpx.get(f"{u}/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
                            ["variants"]["champion"] for c, u in urls.items()}
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
            if args.baseline:
                drop_tree(codes[next(iter(codes))])
        stages = stage_profile(tmp, uri, ts, n=100 if args.quick else 300, rounds=3 if args.quick else 5)
    write_results(args, facts, model, results, server_stats, warm["after"], seconds, list(codes), stages)


def write_results(args: argparse.Namespace, facts: dict, model: dict, results: list[dict], server_stats: dict,
                  warm: int, seconds: float, codes: list[str], stages: list[dict]) -> None:
    """serving.json and serving.md: every rate per code path, targets, sustained rates, replicas, stage profile."""
    after = [r for r in results if r["code"] == "after"]
    at100 = next((r for r in after if r["offered_rps"] == 100), None)
    at200 = next((r for r in after if r["offered_rps"] == 200), None)
    best = {c: sustained(results, c) for c in codes}
    out = {"benchmark": "serving", "quick": args.quick, "custom": bool(args.rates or args.seconds),
           "machine": facts, "model": model,
           "candidates_per_request": CANDIDATES, "users": USERS, "seconds_per_rate": seconds, "warm_events": warm,
           "service": "1 uvicorn worker, scoring threads 1 (unless the code column says otherwise), runtime threads 1, "
                      "same 2-core machine as the client",
           "client": "aiohttp open loop, bodies serialised in advance", "codes": codes,
           "results": results, "target_p99_under_20ms_at_100rps": bool(at100 and at100["p99_ms"] < 20
                                                                        and not at100["errors"]),
           "target_p99_under_10ms_at_200rps": bool(at200 and at200["p99_ms"] < 10 and not at200["errors"]),
           "sustained_rps_p99_under_20ms": best, "server_side_stats": server_stats, "stage_profile": stages,
           "load_avg_at_end": list(os.getloadavg()),
           "note": "machine shared with other jobs during the run (see load_avg_at_start and each row's load)"}
    OUT.mkdir(parents=True, exist_ok=True)
    name = "serving_quick" if args.quick else "serving_custom" if args.rates or args.seconds else "serving"
    (OUT / f"{name}.json").write_text(json.dumps(out, indent=2))
    (OUT / f"{name}.md").write_text("\n".join(markdown(out, best)) + "\n")
    print("\n".join(markdown(out, best)))


def _gc_cell(r: dict) -> str:
    if "gc_ms" not in r:
        return "-"
    return f"{r['gc_full']} / {r['gc_over_10ms']} / {r['gc_ms']}"


def markdown(out: dict, best: dict) -> list[str]:
    """The tables of serving.md."""
    facts, model = out["machine"], out["model"]
    kind = "quick" if out["quick"] else "chosen rates" if out.get("custom") else "full"
    lines = [f"# Serving benchmark ({kind})", "",
             f"{facts['cores']} cores, {facts['cpu']}; load average at start {facts['load_avg_at_start']}, at end "
             f"{[round(x, 2) for x in out['load_avg_at_end']]}. Model: {model['model']} dim {model['dim']}, "
             f"{model['parameters']} parameters, {model['weights']}. {CANDIDATES} candidates per request, "
             f"{out['client']} in a separate process over loopback, one uvicorn worker. Server CPU: CPU time of the "
             "service process per request (all threads; loop: the event-loop thread: HTTP, validation).", "",
             "Service p99: the service's own p99 of scoring a request (from the scoring thread's start: no queueing). "
             "GC: the service's cyclic garbage collections during the rate (full ones; pauses of 10 ms or more; "
             "their total ms; '-' where the code has no GC metric).", "",
             "| code | offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | errors | service p99 ms "
             "| server CPU ms/req | loop CPU ms/req | GC full / >=10 ms / ms | load (1 min) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['code']} | {r['offered_rps']} | {r['achieved_rps']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['errors']} | {r.get('service_p99_ms')} | {r['server_cpu_ms']} | "
              f"{r['loop_cpu_ms']} | {_gc_cell(r)} | {r['load_avg_1min']} |" for r in out["results"]]
    lines += ["", f"p99 < 20 ms at 100 req/s with no errors: **{out['target_p99_under_20ms_at_100rps']}**; "
              f"p99 < 10 ms at 200 req/s with no errors: **{out['target_p99_under_10ms_at_200rps']}**.", "",
              "Sustained maximum rate per worker (p99 < 20 ms, no errors; the highest offered rate measured) and "
              "the workers (one core each) or replicas a rate needs at that maximum:", "",
              "| code | sustained req/s per worker | 500 req/s | 1,000 req/s | 5,000 req/s |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {c} | {b or 'none measured'} | "
              + " | ".join(str(-(-rate // b)) if b else "n/a" for rate in (500, 1000, 5000)) + " |"
              for c, b in best.items()]
    lines += ["", "Where a request's scoring time goes (in-process, same model and state, median per request of "
              "the scoring thread's CPU time and wall time; before and after stages alternate):", "",
              "| stage | path | CPU ms | wall ms |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['stage']} | {r['path']} | {r['cpu_ms']} | {r['wall_ms']} |" for r in out["stage_profile"]]
    return lines


if __name__ == "__main__":
    sys.exit(main())

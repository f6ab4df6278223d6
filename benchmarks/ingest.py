"""Ingest throughput and peak memory (issue 3).

Measures ``eliverec.data.ingest.ingest_day`` in a fresh child process per case (lines/s; peak RSS
of the parent and of its worker processes) on:

- a default-profile day written by the simulator (``eliverec.world.simulate``), when it runs here;
- synthetic contract-valid days (mixed event types) with 1 % bad lines mixed in (blank, truncated
  JSON, wrong types, empty ids, negative stays, out-of-day times, exact duplicates), at 1M and 5M
  lines and two chunk sizes, to show that memory follows ``ingest.chunk_bytes``, not the day.

Each day runs through both parsers in the same run (issue 18): ``line by line`` (orjson per line,
``ingest.fast_parse=false``, the path before issue 18) and ``chunk`` (pyarrow's JSON reader per
chunk, orjson only for the lines it cannot judge); the speed-up column is chunk / line-by-line at
the same workers and chunk size. ``--baseline REF`` adds the chunk parser of git revision ``REF``
(a worktree, same venv) as a third row per day ("chunk @REF"), and the chunk row's speed-up over it.
"same bronze": the row's bronze content hash equals this code's line-by-line one (before 2026-12-02 the
bronze writer's bytes, not the rows, depended on the number of dedup partitions: an older baseline
can differ).
Rounds alternate the order; the fastest run of each is kept. Every row states the 1-min load
average when it ran and its CPU seconds (the process and its workers), which the load inflates
less than wall time. Process start-up is not timed (imports: pyarrow imports pandas at its first
array, 0.1-0.5 s once per process).

Run: ``.venv/bin/python benchmarks/ingest.py [--quick] [--baseline REF]``; writes
``benchmarks/results/ingest.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _baseline import baseline_tree, drop_tree, revision  # sibling modules: run as `python benchmarks/<name>.py`
from _machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
DATE = "2026-09-01"
T0 = 1788220800000


def _synthetic_lines(n: int, seed: int, bad_rate: float = 0.01) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts, u, c = T0 + rnd.randrange(86_400_000), f"u{rnd.randrange(10000)}", f"c{rnd.randrange(1500)}"
        r = rnd.random()
        if r < 0.55:
            s = (
                f'{{"event":"impression","event_id":"{seed}-{i}","ts":{ts},"user_id":"{u}","request_id":"q{i >> 3}",'
                f'"channel_id":"{c}","position":{i & 7},"scene":"homepage","propensity":0.125}}'
            )
        elif r < 0.62:
            s = (f'{{"event":"enter","event_id":"{seed}-{i}","ts":{ts},"user_id":"{u}","request_id":"q{i >> 3}",'
                 f'"channel_id":"{c}"}}')  # fmt: skip
        elif r < 0.69:
            s = (
                f'{{"event":"leave","event_id":"{seed}-{i}","ts":{ts},"user_id":"{u}","request_id":"q{i >> 3}",'
                f'"channel_id":"{c}","stay_ms":{rnd.randrange(200000)}}}'
            )
        elif r < 0.97:
            s = (f'{{"event":"product_click","event_id":"{seed}-{i}","ts":{ts},"user_id":"{u}",'
                 f'"product_id":"p{rnd.randrange(40000)}"}}')  # fmt: skip
        else:
            s = (
                f'{{"event":"channel_stats","event_id":"{seed}-{i}","ts":{ts},"channel_id":"{c}","viewers":{rnd.randrange(999)},'
                f'"revenue_window":12.5,"products_on_sale":["p1","p2","p3"]}}'
            )
        if rnd.random() < bad_rate:
            k = rnd.randrange(7)
            s = ["", s[: len(s) // 2], s.replace(f'"ts":{ts}', '"ts":"soon"'), s.replace(f'"{u}"', '""'),
                 s.replace('"event_id"', '"event_idx"'), s.replace(f'"ts":{ts}', f'"ts":{ts - 3 * 86_400_000}'),
                 out[-1].decode() if out else s][k]  # fmt: skip
        out.append(s.encode())
    return out


def write_synthetic_day(root: Path, n_lines: int, files: int = 2) -> None:
    """Raw day of ``n_lines`` synthetic lines in ``files`` plain jsonl files, plus dimensions."""
    sys.path.insert(0, str(REPO))
    from eliverec.layout import DataLayout, event_log_name
    from tests.data.conftest import write_dims

    folder = DataLayout(root).raw(DATE)
    write_dims(folder)
    per = n_lines // files
    for f in range(files):
        with (folder / event_log_name(f)).open("wb") as out:
            for start in range(0, per, 250_000):
                out.write(b"\n".join(_synthetic_lines(min(250_000, per - start), seed=f * 10**8 + start)) + b"\n")


def child(data_dir: str, overrides: list[str]) -> None:
    """Ingest one day in this process; print lines/s and peak RSS (self and worker children)."""
    import psutil

    from eliverec.config import load_settings
    from eliverec.data.ingest import ingest_day

    s = load_settings("default", overrides=overrides + ["ingest.max_quarantine_rate=0.5"], data_dir=data_dir)
    before_mb = psutil.Process().memory_info().rss / 2**20  # after imports (config pulls in torch)
    r0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    m = ingest_day(s, DATE)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1, strict=True))
    # VmHWM: this process's own peak (ru_maxrss would carry the launching process's peak across exec)
    hwm = [x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM")]
    self_mb = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    tot = m["totals"]
    print(json.dumps({"lines": tot["lines_read"], "seconds": round(dt, 2), "lines_per_s": round(tot["lines_read"] / dt),
                      "cpu_seconds": round(cpu, 2), "content_hash": m["content_hash"],
                      "quarantine_rate": m["quarantine_rate"], "duplicates": tot["duplicates"],
                      "rss_before_mb": round(before_mb), "peak_rss_mb": round(self_mb),
                      "peak_rss_worker_mb": round(kids_mb),
                      "raw_mb": round(sum(f["bytes"] for f in m["files"]) / 2**20)}))  # fmt: skip


#: Runs a checkout's benchmark child after pyarrow's first array (its pandas import), so that neither
#: this code's nor a baseline's timing includes it.
_LAUNCH = ("import os, runpy, sys; import pyarrow as pa; pa.array([0]); sys.argv = sys.argv[1:]; "
           "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")


def run_case(data_dir: Path, overrides: list[str], code: Path = REPO) -> dict:
    """One ingest in a fresh process, with the code of the checkout at ``code`` (this one or a baseline)."""
    script = str(code / "benchmarks" / "ingest.py")
    cmd = [sys.executable, "-c", _LAUNCH, script, "--child", str(data_dir), *overrides]
    env = os.environ | {"PYTHONPATH": str(code)}
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env)
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"case {overrides} failed: {tail}", file=sys.stderr)
        return {"error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"load": round(load, 1)}


def simulated_day(root: Path) -> str | None:
    """Simulate one default-profile day into ``root``; None when the simulator cannot run here."""
    try:
        from eliverec.config import load_settings
        from eliverec.layout import date_folders
        from eliverec.world import simulate

        s = load_settings("default", data_dir=root)
        res = simulate(s, days=1, progress=False)
        dates = res.get("dates") or date_folders(s.layout.raw())
        return dates[-1]
    except Exception as exc:  # the benchmark still runs on synthetic days
        print(f"simulator unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


PARSERS = ("line by line", "chunk")
#: parser label -> (fast_parse, code); "chunk @REF" is added by --baseline
VARIANTS: dict[str, tuple[bool, Path]] = {"line by line": (False, REPO), "chunk": (True, REPO)}


def run_pair(root: Path, overrides: list[str], day: dict, repeat: int) -> list[dict]:
    """Every parser variant on one day, ``repeat`` rounds alternating the order; the fastest run of each
    (the machine is shared: the minimum is the least disturbed)."""
    best: dict[str, dict] = {}
    names = list(VARIANTS)
    for i in range(repeat):
        for parser in (names if i % 2 == 0 else names[::-1]):
            fast, code = VARIANTS[parser]
            r = run_case(root, overrides + [f"ingest.fast_parse={fast}"], code)
            print({"parser": parser, **day, **r}, flush=True)
            if "error" in r or parser not in best or r["seconds"] < best[parser].get("seconds", float("inf")):
                best[parser] = r
    ref = best[PARSERS[0]].get("content_hash")  # this code's line-by-line bronze
    return [{**day, "parser": parser, "runs": repeat, "same_bronze": best[parser].get("content_hash") == ref,
             **best[parser]} for parser in names]


def _speedups(cases: list[dict]) -> None:
    """Chunk-parser lines/s over line-by-line lines/s (and over the baseline's chunk parser) for the
    same day, workers and chunk size."""
    key = lambda c: (c["day"], c["workers"], c["chunk_mb"])  # noqa: E731
    rows = {(key(c), c["parser"]): c for c in cases if "error" not in c}
    for c in cases:
        if c["parser"] != PARSERS[1] or "error" in c:
            continue
        ups = [f"{c['lines_per_s'] / b['lines_per_s']:.2f}x {'vs ' + p if p != PARSERS[0] else ''}".strip()
               for p in VARIANTS if p != PARSERS[1] and (b := rows.get((key(c), p)))]
        c["speedup"] = ", ".join(ups)


def _per_line(c: dict) -> str:
    """CPU microseconds per line (the process and its workers)."""
    return f"{c['cpu_seconds'] / c['lines'] * 1e6:.2f}" if c.get("cpu_seconds") and c.get("lines") else ""


def _busy(c: dict) -> str:
    """Cores kept busy on average: CPU seconds over wall seconds (at most the cores the load left free)."""
    return f"{c['cpu_seconds'] / c['seconds']:.2f}" if c.get("cpu_seconds") and c.get("seconds") else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller days (200k and 1M lines)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds per day (both parsers each), best kept")
    ap.add_argument("--sizes", type=int, nargs="*", help="synthetic day sizes in lines (default 1M and 5M)")
    ap.add_argument("--baseline", metavar="REF", help="also the chunk parser of git revision REF (a worktree)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.child[1:])
    sizes = a.sizes if a.sizes is not None else (200_000, 1_000_000) if a.quick else (1_000_000, 5_000_000)
    cases = []
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    tree = baseline_tree(a.baseline, tmp) if a.baseline else None
    if tree:
        VARIANTS[f"chunk @{revision(a.baseline)}"] = (True, tree)
    try:
        sim_root = tmp / "sim"
        date = simulated_day(sim_root)
        if date is not None:
            global DATE
            saved, DATE = DATE, date
            for workers in (1, 2):
                day = {"day": f"simulated default profile ({date}, gzip)", "workers": workers, "chunk_mb": 32}
                cases += run_pair(sim_root, [f"ingest.workers={workers}"], day, a.repeat)
            DATE = saved
        for n in sizes:
            root = tmp / f"syn{n}"
            write_synthetic_day(root, n)
            for workers, chunk in ((1, 32), (2, 32), (2, 8)):
                over = [f"ingest.workers={workers}", f"ingest.chunk_bytes={chunk * 2**20}"]
                day = {"day": f"synthetic {n:,} lines, 1% bad", "workers": workers, "chunk_mb": chunk}
                cases += run_pair(root, over, day, a.repeat if n <= 1_000_000 else 1)
            shutil.rmtree(root)
    finally:
        if tree:
            drop_tree(tree)
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
               "revision": revision(),
               "note": f"1-min load average at start {load0:.1f}, at the end {os.getloadavg()[0]:.1f}; best of "
                       f"{a.repeat} alternating runs per parser (1 on days above 1M lines)"}  # fmt: skip
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(
        json.dumps({"machine": machine, "quick": a.quick, "cases": cases}, indent=2) + "\n"
    )
    _speedups(cases)
    lines = ["# Ingest throughput", "", f"{machine['cores']} cores, {machine['cpu']} ({machine['note']}; code "
             f"{machine['revision']}).", "",
             "| day | parser | workers | chunk MB | lines | raw MB | s | lines/s | speed-up | CPU s | CPU us/line | "
             "cores busy | load | RSS MB before / peak main / peak worker | quarantine | same bronze |",
             "| --- | --- |" + " ---: |" * 13 + " --- |"]  # fmt: skip
    lines += [f"| {c['day']} | {c['parser']} | {c['workers']} | {c['chunk_mb']} | {c['lines']:,} | {c['raw_mb']} | "
              f"{c['seconds']} | {c['lines_per_s']:,} | {c.get('speedup', '')} | {c.get('cpu_seconds', '')} | "
              f"{_per_line(c)} | {_busy(c)} | "
              f"{c.get('load', '')} | {c['rss_before_mb']} / {c['peak_rss_mb']} / {c['peak_rss_worker_mb']} | "
              f"{c['quarantine_rate']:.2%} | {c['same_bronze']} |" if "error" not in c else
              f"| {c['day']} | {c['parser']} | {c['workers']} | {c['chunk_mb']} | failed: {c['error']} |||||||||||"
              for c in cases]  # fmt: skip
    (out / "ingest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

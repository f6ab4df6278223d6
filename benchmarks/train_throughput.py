"""Training throughput: samples/s, share of the measured fp32 GEMM rate, and the loader's share of a step.

For eLiveRec at the ``default`` and ``paper`` profiles, with 1 process and with 2 processes
(``torchrun --standalone --nproc-per-node 2``, gloo, one thread each), this runs the real trainer
pieces (``build_objects``, ``make_optimizer``, ``train_loader`` over memory-mapped ``.npy`` feature
arrays, DistributedSampler + BatchSampler, the same step as ``train``) on random contract batches.

- model FLOPs per sample: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward
  (the whole training step's counted matmul/conv FLOPs), divided by the batch size;
- machine rate: a large fp32 ``torch.matmul`` timed with all cores (``2 n^3 / t``);
- share = samples/s x FLOPs per sample / machine rate;
- loader share = time waiting for the next batch / step time.

Run: ``.venv/bin/python benchmarks/train_throughput.py [--quick]``; writes
``benchmarks/results/train_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def require_models() -> None:
    """Fail clearly when the model package is not there yet."""
    try:
        from eliverec.models import build_model  # noqa: F401
    except ImportError as exc:
        sys.exit(f"train_throughput: eliverec.models is not available ({exc}); this benchmark needs the models")


def gemm_rate(n: int = 2048, reps: int = 5) -> float:
    """Measured fp32 matmul FLOP/s with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


VARIANTS: dict[str, tuple[bool, bool]] = {  # name -> (sparse embedding gradients, whole-feed batches)
    "dense": (False, False),  # the landed path before this benchmark's changes
    "sparse": (True, False),
    "sparse+feeds": (True, True),  # the default
}
FEED_SIZE = 8  # impressions per feed request (the default world: 7.66, Table I: 7.7)


def settings_for(profile: str, batch: int | None, tmp: Path, variant: str = "sparse+feeds") -> Any:
    from eliverec.config import load_settings

    sparse, feeds = VARIANTS[variant]
    over = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", "train.amp=true",
            f"train.sparse_embeddings={str(sparse).lower()}", f"train.feed_batches={str(feeds).lower()}"]
    if batch:
        over.append(f"train.batch_size={batch}")
    return load_settings(profile, overrides=over, params=REPO / "params.yaml", data_dir=tmp / "data")


def feed_batch(settings: Any, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Random contract samples shaped like logged feeds: FEED_SIZE candidates per request, in
    position order, sharing the request's user and behaviour sequences (as the feature stage writes them)."""
    from eliverec.features.batch import random_batch
    from eliverec.models.base import USER_KEYS

    batch = {k: v.numpy() for k, v in random_batch(settings.features.vocab, rows, settings.features.seq_len,
                                                     seed=seed).items()}
    feed = np.arange(rows) // FEED_SIZE
    for k in USER_KEYS:
        batch[k] = batch[k][feed * FEED_SIZE]
    batch["position"] = (np.arange(rows) % FEED_SIZE + 1).astype(np.int64)
    return batch


def step_batch(settings: Any, rows: int, seed: int) -> dict[str, np.ndarray]:
    """One batch as the variant's sampler hands it to the model: whole feeds, or (row sampler) rows of many feeds."""
    arrays = feed_batch(settings, rows, seed)
    if settings.train.feed_batches:
        return arrays
    perm = np.random.default_rng(0).permutation(rows)
    return {k: v[perm] for k, v in arrays.items()}


def write_arrays(settings: Any, rows: int, folder: Path) -> Any:
    """Feed-shaped random samples as memory-mapped .npy files (what the loader reads in production)."""
    from eliverec.training.data import ArrayDataset

    folder.mkdir(parents=True, exist_ok=True)
    batch = feed_batch(settings, rows, seed=1)
    for k, v in batch.items():
        np.save(folder / f"{k}.npy", v)
    return ArrayDataset({k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in batch})


def flops_per_sample(settings: Any, batch_size: int = 64) -> float:
    """Counted FLOPs of one forward + backward per sample, on a batch as the variant's sampler shapes it
    (whole feeds share one user-state computation; rows of many feeds do not)."""
    from torch.utils.flop_counter import FlopCounterMode

    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, build_objects

    obj = build_objects(settings, {}, DEFAULT_BUILDER, DEFAULT_LOSS)
    arrays = step_batch(settings, batch_size, seed=2)
    counter = FlopCounterMode(display=False)
    with counter:
        total, _ = obj({k: torch.from_numpy(v) for k, v in arrays.items()})
        total.backward()
    return counter.get_total_flops() / batch_size


def measure(profile: str, batch: int | None, steps: int, variant: str, warmup: int = 2) -> dict[str, Any]:
    """Steps/s of this rank (one process, or one torchrun rank)."""
    from eliverec.training.distributed import setup, teardown
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, _Run, build_objects, train_loader

    ctx = setup()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmpdir:
        tmp = Path(tmpdir)
        s = settings_for(profile, batch, tmp, variant)
        bs = s.train.batch_size
        ds = write_arrays(s, bs * (steps + warmup) * ctx.world_size, tmp / "arrays")
        from eliverec.training.data import TrainingData

        data = TrainingData(ds, ds.subset(np.arange(0)), ["bench"], "bench")
        run = _Run(s, data, ctx, build_objects(s, {}, DEFAULT_BUILDER, DEFAULT_LOSS), tmp / "ckpt", DEFAULT_BUILDER)
        loader = iter(train_loader(ds, s, ctx, 0, 0, run.feeds))
        for _ in range(warmup):
            run.step(next(loader))
        ctx.barrier()
        data_t = step_t = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            t = time.perf_counter()
            b = next(loader)
            t1 = time.perf_counter()
            run.step(b)
            data_t += t1 - t
            step_t += time.perf_counter() - t1
        ctx.barrier()
        wall = time.perf_counter() - t0
    out = {"profile": profile, "variant": variant, "batch_size": bs, "procs": ctx.world_size, "steps": steps,
           "samples_per_s": bs * steps * ctx.world_size / wall, "loader_share": data_t / (data_t + step_t),
           "step_s": wall / steps}
    teardown(ctx)
    return out


def measure_ddp(profile: str, batch: int | None, steps: int, variant: str, procs: int = 2) -> dict[str, Any]:
    """Run :func:`measure` under torchrun in a subprocess; rank 0's numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               str(Path(__file__).resolve()), "--worker", "--profile", profile, "--steps", str(steps),
               "--out", str(out)] + (["--batch", str(batch)] if batch else []) + ["--variant", variant]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs)),
               "PYTHONPATH": str(REPO)}
        subprocess.run(cmd, env=env, check=True, timeout=1800)
        return json.loads(out.read_text())


def profile_step(profile: str, variant: str, batch: int | None, steps: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """Where a training step's time goes: the ``top`` operators by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from eliverec.training.data import ArrayDataset, TrainingData
    from eliverec.training.distributed import setup, teardown
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, _Run, build_objects

    ctx = setup()
    with tempfile.TemporaryDirectory() as tmpdir:
        s = settings_for(profile, batch, Path(tmpdir), variant)
        arrays = step_batch(s, s.train.batch_size, seed=3)
        ds = ArrayDataset(arrays)
        run = _Run(s, TrainingData(ds, ds.subset(np.arange(0)), ["bench"], "bench"), ctx,
                   build_objects(s, {}, DEFAULT_BUILDER, DEFAULT_LOSS), Path(tmpdir) / "ckpt", DEFAULT_BUILDER)
        b = {k: torch.from_numpy(v) for k, v in arrays.items()}
        run.step(b)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                run.step(b)
    teardown(ctx)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "ms_per_step": e.self_cpu_time_total / 1e3 / steps}
            for e in events[:top]]


def auc_after_one_epoch(users: int, tmp: Path) -> list[dict[str, Any]]:
    """Validation watch AUC of eLiveRec after exactly one epoch per variant, on one simulated world.

    The default profile's model and batch on a smaller default-like world (``users`` users, same
    days), same seed: the runs differ only in the gradient path and the batching.
    """
    from eliverec.config import load_settings
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.training.trainer import train
    from eliverec.world import simulate

    base = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", "tracking.log_model=false", f"world.n_users={users}",
            "train.epochs=1", "train.max_steps=0", "train.max_minutes=0", "train.patience=0", "train.eval_every=0",
            "ingest.workers=1"]
    s = load_settings("default", overrides=base, params=REPO / "params.yaml", data_dir=tmp / "data")
    summary = simulate(s, progress=False)
    for date in summary["dates"]:
        ingest_day(s, date)
    build_features(s, summary["dates"][-1])
    out = []
    for variant, (sparse, feeds) in VARIANTS.items():
        ss = load_settings("default", overrides=[*base, f"train.sparse_embeddings={str(sparse).lower()}",
                                                 f"train.feed_batches={str(feeds).lower()}"],
                           params=REPO / "params.yaml", data_dir=tmp / "data")
        t = time.perf_counter()
        res = train(ss, "eliverec", run_name=f"auc-{variant.replace('+', '-')}")
        out.append({"variant": variant, "val_auc": res.metrics.get("val/auc"), "steps": res.steps,
                    "seconds": time.perf_counter() - t, "users": users})
        print(json.dumps(out[-1]))
    return out


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else None, "note": f"1-min load average at start {os.getloadavg()[0]:.1f}"}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Training throughput: dense vs sparse embedding gradients, row vs whole-feed batches", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['note']}); measured fp32 GEMM rate "
             f"{res['gemm_flops'] / 1e9:.1f} GFLOP/s (all cores). eLiveRec, random contract batches, "
             f"one torch thread per process; feed-shaped data ({FEED_SIZE} candidates per request). `dense`: dense "
             "embedding gradients and row batches (the path before sparse embeddings); `sparse`: sparse gradients; "
             "`sparse+feeds`: also whole-feed batches (the default). All rows of a profile come from the same run.",
             "",
             "| profile | embeddings | procs | batch | samples/s | x dense | GFLOP/sample (fwd+bwd) "
             "| share of GEMM rate | loader share |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dense = {(r["profile"], r["procs"]): r["samples_per_s"] for r in res["rows"] if r["variant"] == "dense"}
    for r in res["rows"]:
        ratio = r["samples_per_s"] / dense[(r["profile"], r["procs"])] if (r["profile"], r["procs"]) in dense else 0
        lines.append(f"| {r['profile']} | {r['variant']} | {r['procs']} | {r['batch_size']} | "
                     f"{r['samples_per_s']:.0f} | {ratio:.2f} | {r['flops_per_sample'] / 1e9:.4f} | "
                     f"{100 * r['gemm_share']:.1f} % | {100 * r['loader_share']:.1f} % |")
    for key, ops in res.get("profiles", {}).items():
        lines += ["", f"Where a step's time goes, {key} (torch.profiler, self CPU time):", "",
                  "| operator | share | ms/step |", "| --- | --- | --- |"]
        lines += [f"| `{o['op']}` | {100 * o['share']:.1f} % | {o['ms_per_step']:.1f} |" for o in ops]
    if res.get("auc"):
        lines += ["", "Validation watch AUC after one epoch (default profile model and batch, a default-like world "
                  f"of {res['auc'][0]['users']} users, same seed):", "", "| variant | val AUC | steps | seconds |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['variant']} | {r['val_auc']:.4f} | {r['steps']} | {r['seconds']:.0f} |"
                  for r in res["auc"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer steps, smaller paper batch, no AUC check")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="sparse+feeds", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--profile", default="default")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--auc-users", type=int, default=3000, help="world size of the one-epoch AUC check (0: skip)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    require_models()
    if a.worker:
        r = measure(a.profile, a.batch, a.steps, a.variant)
        if int(os.environ.get("RANK", "0")) == 0 and a.out:
            a.out.write_text(json.dumps(r))
        return
    plan = [("default", None, 5 if a.quick else 20), ("paper", 512 if a.quick else None, 3 if a.quick else 6)]
    gemm = gemm_rate()  # all cores: the machine's rate
    torch.set_num_threads(1)  # train.threads: one thread per training process
    rows, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for profile, batch, steps in plan:
            for variant in VARIANTS:
                fps = flops_per_sample(settings_for(profile, batch, Path(tmp), variant))
                for procs in (1, 2):
                    r = (measure(profile, batch, steps, variant) if procs == 1
                         else measure_ddp(profile, batch, steps, variant, procs))
                    r["flops_per_sample"] = fps
                    r["gemm_share"] = r["samples_per_s"] * fps / gemm
                    rows.append(r)
                    print(json.dumps(r))
                profiles[f"{profile} {variant}"] = profile_step(profile, variant, batch)
        auc = [] if a.quick or a.auc_users <= 0 else auc_after_one_epoch(a.auc_users, Path(tmp) / "auc")
    res = {"machine": machine(), "gemm_flops": gemm, "quick": a.quick, "rows": rows, "profiles": profiles, "auc": auc}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_throughput_quick" if a.quick else "train_throughput"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

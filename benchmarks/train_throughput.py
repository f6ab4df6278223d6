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


def settings_for(profile: str, batch: int | None, tmp: Path, sparse: bool = True) -> Any:
    from eliverec.config import load_settings

    over = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", "train.amp=true",
            f"train.sparse_embeddings={str(sparse).lower()}"]
    if batch:
        over.append(f"train.batch_size={batch}")
    return load_settings(profile, overrides=over, params=REPO / "params.yaml", data_dir=tmp / "data")


def write_arrays(settings: Any, rows: int, folder: Path) -> Any:
    """Random contract samples as memory-mapped .npy files (what the loader reads in production)."""
    from eliverec.features.batch import random_batch
    from eliverec.training.data import ArrayDataset

    folder.mkdir(parents=True, exist_ok=True)
    batch = random_batch(settings.features.vocab, rows, settings.features.seq_len, seed=1)
    for k, v in batch.items():
        np.save(folder / f"{k}.npy", v.numpy())
    return ArrayDataset({k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in batch})


def flops_per_sample(settings: Any, batch_size: int = 64) -> float:
    """Counted FLOPs of one forward + backward per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    from eliverec.features.batch import random_batch
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, build_objects

    obj = build_objects(settings, {}, DEFAULT_BUILDER, DEFAULT_LOSS)
    batch = random_batch(settings.features.vocab, batch_size, settings.features.seq_len, seed=2)
    counter = FlopCounterMode(display=False)
    with counter:
        total, _ = obj(batch)
        total.backward()
    return counter.get_total_flops() / batch_size


def measure(profile: str, batch: int | None, steps: int, sparse: bool, warmup: int = 2) -> dict[str, Any]:
    """Steps/s of this rank (one process, or one torchrun rank)."""
    from eliverec.training.distributed import setup, teardown
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, _Run, build_objects, train_loader

    ctx = setup()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmpdir:
        tmp = Path(tmpdir)
        s = settings_for(profile, batch, tmp, sparse)
        bs = s.train.batch_size
        ds = write_arrays(s, bs * (steps + warmup) * ctx.world_size, tmp / "arrays")
        from eliverec.training.data import TrainingData

        data = TrainingData(ds, ds.subset(np.arange(0)), ["bench"], "bench")
        run = _Run(s, data, ctx, build_objects(s, {}, DEFAULT_BUILDER, DEFAULT_LOSS), tmp / "ckpt", DEFAULT_BUILDER)
        loader = iter(train_loader(ds, s, ctx, 0, 0))
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
    out = {"profile": profile, "sparse": sparse, "batch_size": bs, "procs": ctx.world_size, "steps": steps,
           "samples_per_s": bs * steps * ctx.world_size / wall, "loader_share": data_t / (data_t + step_t),
           "step_s": wall / steps}
    teardown(ctx)
    return out


def measure_ddp(profile: str, batch: int | None, steps: int, sparse: bool, procs: int = 2) -> dict[str, Any]:
    """Run :func:`measure` under torchrun in a subprocess; rank 0's numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               str(Path(__file__).resolve()), "--worker", "--profile", profile, "--steps", str(steps),
               "--out", str(out)] + (["--batch", str(batch)] if batch else []) + ([] if sparse else ["--dense"])
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs)),
               "PYTHONPATH": str(REPO)}
        subprocess.run(cmd, env=env, check=True, timeout=1800)
        return json.loads(out.read_text())


def profile_step(profile: str, sparse: bool, batch: int | None, steps: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """Where a training step's time goes: the ``top`` operators by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from eliverec.features.batch import random_batch
    from eliverec.training.data import ArrayDataset, TrainingData
    from eliverec.training.distributed import setup, teardown
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, _Run, build_objects

    ctx = setup()
    with tempfile.TemporaryDirectory() as tmpdir:
        s = settings_for(profile, batch, Path(tmpdir), sparse)
        arrays = {k: v.numpy() for k, v in random_batch(s.features.vocab, s.train.batch_size, s.features.seq_len,
                                                          seed=3).items()}
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
    """Validation watch AUC of eLiveRec after exactly one epoch, dense vs sparse, on one simulated world.

    The default profile's model and batch on a smaller default-like world (``users`` users, same
    days), same seed: the only difference between the two runs is the embedding gradient path.
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
    for sparse in (False, True):
        ss = load_settings("default", overrides=[*base, f"train.sparse_embeddings={str(sparse).lower()}"],
                           params=REPO / "params.yaml", data_dir=tmp / "data")
        t = time.perf_counter()
        res = train(ss, "eliverec", run_name=f"auc-{'sparse' if sparse else 'dense'}")
        out.append({"sparse": sparse, "val_auc": res.metrics.get("val/auc"), "steps": res.steps,
                    "seconds": time.perf_counter() - t, "users": users})
        print(json.dumps(out[-1]))
    return out


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else None, "note": f"1-min load average at start {os.getloadavg()[0]:.1f}"}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Training throughput: dense vs sparse embedding gradients", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['note']}); measured fp32 GEMM rate "
             f"{res['gemm_flops'] / 1e9:.1f} GFLOP/s (all cores). eLiveRec, random contract batches, "
             "one torch thread per process; dense and sparse rows of a profile come from the same run.", "",
             "| profile | embeddings | procs | batch | samples/s | x dense | GFLOP/sample (fwd+bwd) "
             "| share of GEMM rate | loader share |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dense = {(r["profile"], r["procs"]): r["samples_per_s"] for r in res["rows"] if not r["sparse"]}
    for r in res["rows"]:
        ratio = r["samples_per_s"] / dense[(r["profile"], r["procs"])] if (r["profile"], r["procs"]) in dense else 0
        lines.append(f"| {r['profile']} | {'sparse' if r['sparse'] else 'dense'} | {r['procs']} | {r['batch_size']} | "
                     f"{r['samples_per_s']:.0f} | {ratio:.2f} | {r['flops_per_sample'] / 1e9:.4f} | "
                     f"{100 * r['gemm_share']:.1f} % | {100 * r['loader_share']:.1f} % |")
    for key, ops in res.get("profiles", {}).items():
        lines += ["", f"Where a step's time goes, {key} (torch.profiler, self CPU time):", "",
                  "| operator | share | ms/step |", "| --- | --- | --- |"]
        lines += [f"| `{o['op']}` | {100 * o['share']:.1f} % | {o['ms_per_step']:.1f} |" for o in ops]
    if res.get("auc"):
        lines += ["", "Validation watch AUC after one epoch (default profile model and batch, a default-like world "
                  f"of {res['auc'][0]['users']} users, same seed):", "", "| embeddings | val AUC | steps | seconds |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {'sparse' if r['sparse'] else 'dense'} | {r['val_auc']:.4f} | {r['steps']} | {r['seconds']:.0f} |"
                  for r in res["auc"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer steps, smaller paper batch, no AUC check")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile", default="default")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--auc-users", type=int, default=3000, help="world size of the one-epoch AUC check (0: skip)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    require_models()
    if a.worker:
        r = measure(a.profile, a.batch, a.steps, sparse=not a.dense)
        if int(os.environ.get("RANK", "0")) == 0 and a.out:
            a.out.write_text(json.dumps(r))
        return
    torch.set_num_threads(1)
    plan = [("default", None, 5 if a.quick else 20), ("paper", 512 if a.quick else None, 3 if a.quick else 6)]
    gemm = gemm_rate()
    rows, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for profile, batch, steps in plan:
            fps = flops_per_sample(settings_for(profile, batch, Path(tmp)))
            for sparse in (False, True):
                for procs in (1, 2):
                    r = (measure(profile, batch, steps, sparse) if procs == 1
                         else measure_ddp(profile, batch, steps, sparse, procs))
                    r["flops_per_sample"] = fps
                    r["gemm_share"] = r["samples_per_s"] * fps / gemm
                    rows.append(r)
                    print(json.dumps(r))
                profiles[f"{profile} {'sparse' if sparse else 'dense'}"] = profile_step(profile, sparse, batch)
        auc = [] if a.quick or a.auc_users <= 0 else auc_after_one_epoch(a.auc_users, Path(tmp) / "auc")
    res = {"machine": machine(), "gemm_flops": gemm, "quick": a.quick, "rows": rows, "profiles": profiles, "auc": auc}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_throughput_quick" if a.quick else "train_throughput"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

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


def settings_for(profile: str, batch: int | None, tmp: Path) -> Any:
    from eliverec.config import load_settings

    over = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", "train.amp=true"]
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


def measure(profile: str, batch: int | None, steps: int, warmup: int = 2) -> dict[str, Any]:
    """Steps/s of this rank (one process, or one torchrun rank)."""
    from eliverec.training.distributed import setup, teardown
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, _Run, build_objects, train_loader

    ctx = setup()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmpdir:
        tmp = Path(tmpdir)
        s = settings_for(profile, batch, tmp)
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
    out = {"profile": profile, "batch_size": bs, "procs": ctx.world_size, "steps": steps,
           "samples_per_s": bs * steps * ctx.world_size / wall, "loader_share": data_t / (data_t + step_t),
           "step_s": wall / steps}
    teardown(ctx)
    return out


def measure_ddp(profile: str, batch: int | None, steps: int, procs: int = 2) -> dict[str, Any]:
    """Run :func:`measure` under torchrun in a subprocess; rank 0's numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               str(Path(__file__).resolve()), "--worker", "--profile", profile, "--steps", str(steps),
               "--out", str(out)] + (["--batch", str(batch)] if batch else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs)),
               "PYTHONPATH": str(REPO)}
        subprocess.run(cmd, env=env, check=True, timeout=1800)
        return json.loads(out.read_text())


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else None, "note": f"1-min load average at start {os.getloadavg()[0]:.1f}"}


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Training throughput", "", f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; "
             f"measured fp32 GEMM rate {res['gemm_flops'] / 1e9:.1f} GFLOP/s (all cores).", "",
             "| profile | procs | batch | samples/s | GFLOP/sample (fwd+bwd) | share of GEMM rate | loader share |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        lines.append(f"| {r['profile']} | {r['procs']} | {r['batch_size']} | {r['samples_per_s']:.0f} | "
                     f"{r['flops_per_sample'] / 1e9:.4f} | {100 * r['gemm_share']:.1f} % | "
                     f"{100 * r['loader_share']:.1f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer steps, smaller paper batch")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile", default="default")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    require_models()
    if a.worker:
        r = measure(a.profile, a.batch, a.steps)
        if int(os.environ.get("RANK", "0")) == 0 and a.out:
            a.out.write_text(json.dumps(r))
        return
    plan = [("default", None, 5 if a.quick else 20), ("paper", 512 if a.quick else None, 3 if a.quick else 6)]
    gemm = gemm_rate()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile, batch, steps in plan:
            fps = flops_per_sample(settings_for(profile, batch, Path(tmp)))
            for procs in (1, 2):
                r = measure(profile, batch, steps) if procs == 1 else measure_ddp(profile, batch, steps, procs)
                r["flops_per_sample"] = fps
                r["gemm_share"] = r["samples_per_s"] * fps / gemm
                rows.append(r)
                print(json.dumps(r))
    res = {"machine": machine(), "gemm_flops": gemm, "quick": a.quick, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "train_throughput.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

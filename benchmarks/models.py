"""Model size and speed: parameters, forward FLOPs per sample, CPU training samples/s (issue 5).

For every registered model at the ``default`` and ``paper`` profiles, on random batches that follow
the batch contract (``random_batch``), with each profile's batch size, vocabularies and sequence
length, and the profile's optimizer. FLOPs are counted by ``torch.utils.flop_counter`` (matrix
products only: embedding lookups and element-wise work are not counted). Also measured: the extra
cost of the adaptive multi-task loss (eq. 14: four gradients on the shared representation) over the
vanilla one, per training step of eLiveRec.

    .venv/bin/python benchmarks/models.py [--quick]

Writes ``benchmarks/results/models.json`` and ``benchmarks/results/models.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`
from rich.progress import Progress
from torch.utils.flop_counter import FlopCounterMode

from eliverec.config import Settings, load_settings
from eliverec.features.batch import random_batch
from eliverec.models import MultiTaskLoss, build_model, list_models

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_MODELS = ("eliverec", "eliverec_wo_m", "din_dual", "bst_dual", "eta_dual", "dien_dual",
                "can_dual", "minet", "dasl", "conet", "dtcdr", "ddtcdr")  # + the cross-domain group (issue 14)


def with_model(s: Settings, name: str, **model: Any) -> Settings:
    cfg = type(s.model).model_validate({**s.model.model_dump(), "name": name, **model})
    return s.model_copy(update={"model": cfg})


def make_optimizer(s: Settings, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if s.train.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=s.train.lr)
    return torch.optim.Adam(params, lr=s.train.lr)


def train_rate(s: Settings, batch_size: int, steps: int) -> tuple[float, float]:
    """Training samples/s and median seconds per step (after one warm-up step)."""
    model, loss = build_model(s), MultiTaskLoss(s)
    opt = make_optimizer(s, [*model.parameters(), *loss.parameters()])
    batches = [random_batch(s.features.vocab, batch_size, s.features.seq_len, seed=i) for i in range(2)]
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        b = batches[i % 2]
        opt.zero_grad(set_to_none=True)
        total, _ = loss(model(b), b, model)
        total.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times[1:])  # the median resists other jobs on a shared machine
    return batch_size / per_step, per_step


def measure(s: Settings, name: str, batch_size: int, steps: int) -> dict[str, Any]:
    ms = with_model(s, name)
    model = build_model(ms)
    n_emb = sum(p.numel() for n, p in model.named_parameters() if ".tables." in n)
    n_all = sum(p.numel() for p in model.parameters())
    fb = 64
    b = random_batch(s.features.vocab, fb, s.features.seq_len)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(b)
    rate, per_step = train_rate(ms, batch_size, steps)
    return {"profile": s.profile, "model": name, "params": n_all, "params_dense": n_all - n_emb,
            "flops_per_sample": counter.get_total_flops() / fb, "train_samples_per_s": rate,
            "step_s": per_step, "batch_size": batch_size}


def adaptive_cost(s: Settings, batch_size: int, steps: int) -> dict[str, Any]:
    """Seconds per eLiveRec training step with vanilla vs adaptive multi-task loss."""
    out = {}
    for mode in ("vanilla", "adaptive"):
        out[mode] = train_rate(with_model(s, "eliverec", mtl=mode), batch_size, steps)[1]
    out["overhead"] = out["adaptive"] / out["vanilla"] - 1
    return {"profile": s.profile, "batch_size": batch_size, "vanilla_step_s": out["vanilla"],
            "adaptive_step_s": out["adaptive"], "overhead": out["overhead"]}


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version()}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Model size and speed", "",
             f"CPU: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch "
             f"{report['machine']['torch']}, {report['machine']['threads']} threads; 1-min load average at start "
             f"{report['machine']['load_avg_1m']:.1f}. FLOPs: matrix products only.", "",
             "| profile | model | params (M) | dense params (K) | MFLOPs / sample | train samples/s | batch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["models"]:
        lines.append(f"| {r['profile']} | {r['model']} | {r['params'] / 1e6:.2f} | {r['params_dense'] / 1e3:.1f} | "
                     f"{r['flops_per_sample'] / 1e6:.3f} | {r['train_samples_per_s']:.0f} | {r['batch_size']} |")
    lines += ["", "Adaptive multi-task loss (eq. 14, gradients on the shared representation) vs vanilla, eLiveRec:", "",
              "| profile | batch | vanilla s/step | adaptive s/step | overhead |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for r in report["adaptive_cost"]:
        lines.append(f"| {r['profile']} | {r['batch_size']} | {r['vanilla_step_s']:.3f} | {r['adaptive_step_s']:.3f} | "
                     f"{100 * r['overhead']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few models, small batches, few steps")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per model")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the platform trains with train.threads=1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    profiles = ["default", "paper"]
    names = list(QUICK_MODELS) if args.quick else list_models()
    steps = args.steps or (2 if args.quick else 4)
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "steps": steps, "models": [],
                              "adaptive_cost": []}
    with Progress() as progress:
        task = progress.add_task("models", total=len(profiles) * (len(names) + 1))
        for prof in profiles:
            s = load_settings(prof)
            bs = min(s.train.batch_size, 256) if args.quick else s.train.batch_size
            for name in names:
                progress.update(task, description=f"{prof}/{name}")
                report["models"].append(measure(s, name, bs, steps))
                progress.advance(task)
            report["adaptive_cost"].append(adaptive_cost(s, bs, steps))
            progress.advance(task)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "models.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Launching training under torchrun: one machine or many.

One machine, K processes (what ``eliverec train --nproc K`` does: it re-launches itself as)::

    python -m torch.distributed.run --standalone --nproc-per-node K \\
        -m eliverec.training.launch --model eliverec [--end-date D] [--resume] [--profile P] [--set k=v ...]

Several machines (run the same command on every node; node 0's address is the rendezvous point;
NCCL is used automatically on GPUs, gloo on CPUs)::

    torchrun --nnodes 2 --nproc-per-node 8 \\
        --rdzv-backend c10d --rdzv-endpoint node0.example:29400 --rdzv-id eliverec-2026-09-08 \\
        -m eliverec.training.launch --model eliverec --end-date 2026-09-08

or ``eliverec train --nproc 8 --nnodes 2 --rdzv-endpoint node0.example:29400 --rdzv-id JOB`` on each
node. ``eliverec train`` resolves the settings once and hands them to its ranks as a JSON file with
their hash (``--settings FILE``, :func:`eliverec.config.write_settings`): no rank re-reads ``params.yaml``.
Every node needs the same code, ``params.yaml`` and feature days (a shared ``--data-dir`` or
an identical copy); only global rank 0 writes checkpoints, MLflow records and the model, so point
``tracking.uri`` at a shared MLflow server (``MLFLOW_TRACKING_URI=http://...``) and keep the
checkpoint folder on storage that node 0 can write. ``--max-restarts N`` lets torchrun restart a
failed job; with ``--resume`` it continues from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eliverec.config import Settings, add_settings_options, settings_from_options, write_settings
from eliverec.data.atomic import write_bytes_atomic
from eliverec.errors import EliverecError


def child_args(*, model: str | None, end_date: str | None, resume: bool, run_name: str | None,
               profile: str | None = None, data_dir: Path | None = None, overrides: Sequence[str] = (),
               params: Path | None = None, result_file: Path | None = None) -> list[str]:
    """Arguments of ``python -m eliverec.training.launch`` for these options (settings options for a
    command run by hand; :func:`launch` adds ``--settings FILE`` instead).

    >>> child_args(model="din", end_date=None, resume=True, run_name=None, profile="tiny", data_dir=None,
    ...            overrides=["train.lr=0.1"], params=None)
    ['--model', 'din', '--resume', '--profile', 'tiny', '--set', 'train.lr=0.1']
    """
    out: list[str] = []
    pairs = [("--model", model), ("--end-date", end_date), ("--run-name", run_name)]
    out += [x for flag, value in pairs if value for x in (flag, str(value))]
    if resume:
        out.append("--resume")
    for flag, value in (("--profile", profile), ("--data-dir", data_dir), ("--params", params),
                        ("--result-file", result_file)):
        if value:
            out += [flag, str(value)]
    for item in overrides:
        out += ["--set", item]
    return out


def torchrun_command(nproc: int, args: Sequence[str], nnodes: int = 1, rdzv_endpoint: str | None = None,
                     rdzv_id: str | None = None, node_rank: int | None = None) -> list[str]:
    """The torchrun command line (``sys.executable -m torch.distributed.run``).

    >>> torchrun_command(2, ["--model", "x"])[1:7]
    ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2', '-m']
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes <= 1 and not rdzv_endpoint:
        cmd += ["--standalone", "--nproc-per-node", str(nproc)]
    else:
        if not rdzv_endpoint:
            raise EliverecError("multi-node training needs --rdzv-endpoint HOST:PORT (the address of node 0)")
        cmd += ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id or "eliverec"]
        if node_rank is not None:
            cmd += ["--node-rank", str(node_rank)]
    return [*cmd, "-m", "eliverec.training.launch", *args]


def launch(nproc: int, args: Sequence[str], nnodes: int = 1, rdzv_endpoint: str | None = None,
           rdzv_id: str | None = None, timeout: float | None = None, settings: Settings | None = None
           ) -> dict[str, Any]:
    """Run training under torchrun as a subprocess; returns rank 0's result (a dict).

    ``settings`` (resolved by the caller) reach the ranks as one JSON file with their hash; without
    them ``args`` must carry the settings options.
    """
    with tempfile.TemporaryDirectory(prefix="eliverec-train-") as tmp:
        result = Path(tmp) / "result.json"
        handed = ["--settings", str(write_settings(settings, Path(tmp) / "settings.json"))] if settings else []
        cmd = torchrun_command(nproc, [*args, *handed, "--result-file", str(result)], nnodes, rdzv_endpoint,
                               rdzv_id)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, _cores() // nproc)))}
        proc = subprocess.run(cmd, env=env, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise EliverecError(f"distributed training failed (torchrun exit code {proc.returncode}); "
                                "see the rank logs above")
        if not result.exists():
            return {}
        return json.loads(result.read_text())


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def result_dict(result: Any) -> dict[str, Any]:
    """A :class:`TrainResult` as JSON-able dict."""
    return {"run_id": result.run_id, "model_uri": result.model_uri, "metrics": result.metrics,
            "checkpoint_dir": str(result.checkpoint_dir), "steps": result.steps,
            "stopped_early": result.stopped_early}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one torchrun rank."""
    from eliverec.training.trainer import DEFAULT_BUILDER, DEFAULT_LOSS, train

    p = add_settings_options(argparse.ArgumentParser(prog="python -m eliverec.training.launch"))
    p.add_argument("--model")
    p.add_argument("--end-date")
    p.add_argument("--run-name")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--result-file", type=Path)
    p.add_argument("--builder", default=DEFAULT_BUILDER)
    p.add_argument("--loss-builder", default=DEFAULT_LOSS)
    a = p.parse_args(argv)
    try:
        s = settings_from_options(a)
        res = train(s, a.model, a.end_date, a.resume, a.run_name, builder=a.builder, loss_builder=a.loss_builder)
    except EliverecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if a.result_file and int(os.environ.get("RANK", "0")) == 0:
        write_bytes_atomic(Path(a.result_file), json.dumps(result_dict(res)).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

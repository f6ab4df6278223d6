"""The trainer: one code path for one process and for torchrun DDP.

``train(settings, ...)`` reads the training days before the test day, holds out their time-ordered
tail for validation, and runs the loop: DistributedSampler (``set_epoch`` each epoch) under a
BatchSampler feeding batched reads, Adagrad (paper) or Adam, gradient clipping, mixed precision on
GPU only, validation watch AUC for early stopping, atomic checkpoints every ``checkpoint_every``
steps and at epoch ends, and MLflow records written by rank 0 only.

Resuming (``resume=True``) restores model, optimizer, loss module, scaler, RNG states, early
stopping and the position in the data (epoch, batch), then skips the finished batches of the epoch
without reading them: a resumed single-process run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

from eliverec.artifact import BUILDER, NETWORK_BLOB, resolve, write_network
from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.features.dataset import ArrayDataset
from eliverec.scoring.scores import at_position, predict, scored_frame, set_threads
from eliverec.training import checkpoint as ckpt
from eliverec.training.data import TrainingData, load_training_data
from eliverec.training.distributed import DistContext, setup, teardown
from eliverec.training.optim import SplitOptimizer, clip_gradients, make_optimizer, make_sparse, use_sparse
from eliverec.training.progress import ProgressLines

DEFAULT_BUILDER = BUILDER
DEFAULT_LOSS = "eliverec.models.losses:MultiTaskLoss"
STOP_REASONS = ("early_stopping", "time_budget", "max_steps", "epochs")


def stop_reason(metrics: dict[str, float]) -> str:
    """Which limit ended a run, from its ``stop/<reason>`` metrics (``unknown`` for older runs).

    >>> stop_reason({"stop/early_stopping": 0.0, "stop/time_budget": 1.0})
    'time_budget'
    """
    return next((r for r in STOP_REASONS if metrics.get(f"stop/{r}") == 1.0), "unknown")


def describe_stop(metrics: dict[str, float]) -> str:
    """One sentence on how training ended, for reports.

    >>> describe_stop({"stop/early_stopping": 1.0, "steps": 900.0, "best_step": 600.0, "train_seconds": 90.0})
    'early stopping (validation AUC stopped improving) after 900 steps in 1.5 min; kept the weights of step 600'
    """
    why = {"early_stopping": "early stopping (validation AUC stopped improving)",
           "time_budget": "the wall-clock budget (train.max_minutes), before early stopping",
           "max_steps": "the step cap (train.max_steps)", "epochs": "all epochs (train.epochs) done",
           "unknown": "an unrecorded reason"}[stop_reason(metrics)]
    best = metrics.get("best_step", -1.0)
    kept = f"kept the weights of step {best:.0f}" if best >= 0 else "kept the last weights"
    return (f"{why} after {metrics.get('steps', 0.0):.0f} steps in {metrics.get('train_seconds', 0.0) / 60:.1f} min; "
            f"{kept}")


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves behind."""

    run_id: str | None
    model_uri: str | None
    metrics: dict[str, float]
    checkpoint_dir: Path
    steps: int = 0
    stopped_early: bool = False
    stop_reason: str = "epochs"  # early_stopping | time_budget | max_steps | epochs (see LoopState)


@dataclass
class LoopState:
    """Position in the data and early-stopping state (saved in every checkpoint)."""

    epoch: int = 0
    batch: int = 0  # next batch to run within the epoch
    step: int = 0  # optimizer steps done
    best: float = -math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    stop_reason: str = ""  # early_stopping | time_budget (train.max_minutes) | max_steps | epochs (all done)
    seconds: float = 0.0  # training wall-clock time so far (carried over a resume)
    run_id: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # validation records


class Objective(nn.Module):
    """Model and multi-task loss in one module, so DDP syncs the loss module's parameters too."""

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = self.model(batch)
        total, parts = self.loss(outputs, batch, self.model)
        logged = {f"loss/{k}" if not k.startswith(("loss/", "mtl/", "reg/", "weight/", "cos/")) else k: float(v)
                  for k, v in parts.items()}
        logged.update({k: float(v.detach()) for k, v in outputs.items() if k.startswith("reg/")})
        logged["loss/total"] = float(total.detach())
        return total, logged


class SkipBatches(Sampler[list[int]]):
    """A batch sampler that leaves out its first ``skip`` batches (resume mid-epoch without reading them)."""

    def __init__(self, batches: Sampler[list[int]], skip: int = 0) -> None:
        self.batches = batches
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.batches) - self.skip, 0)


# --------------------------------------------------------------------------- building blocks
def build_objects(settings: Settings, spec: Mapping[str, Any], builder: str, loss_builder: str) -> Objective:
    """The network and loss module named by the settings, as one :class:`Objective`."""
    try:
        build = resolve(builder)
        make_loss = resolve(loss_builder)
    except ModuleNotFoundError as exc:
        raise EliverecError(f"cannot import the model code ({exc}); is the eliverec.models package installed?") from exc
    try:
        model = build(settings, vocab=spec.get("vocab"), seq_len=spec.get("seq_len"))
    except (KeyError, ValueError) as exc:
        raise EliverecError(f"cannot build model '{settings.model.name}': {exc}") from exc
    return Objective(model, make_loss(settings))


def autocast(settings: Settings, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 autocast on GPU when ``train.amp``; a no-op on CPU (CPU trains in fp32)."""
    if device.type != "cuda" or not settings.train.amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if settings.train.amp_dtype == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def feed_starts(ds: ArrayDataset) -> np.ndarray:
    """Row offsets where a feed starts (and ``len(ds)`` last): a new user, or a position that does not rise.

    The feature stage writes a request's impressions together, in position order.

    >>> feed_starts(ArrayDataset({"user": np.array([5, 5, 5, 6, 6, 6]), "position": np.array([1, 2, 1, 1, 2, 3])}))
    array([0, 2, 3, 6])
    """
    users, pos = ds.column("user"), ds.column("position")
    new = np.ones(len(users), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (pos[1:] <= pos[:-1])
    return np.append(np.flatnonzero(new), len(users))


class FeedBatchSampler(Sampler[list[int]]):
    """Batches of whole feeds: the feeds are shuffled each epoch (seeded by ``seed`` and ``epoch``), dealt
    to the ranks in turn, and each rank's rows cut into batches of ``batch_size``.

    A batch then holds about ``batch_size / feed size`` distinct user states, which the models compute
    once each (``eliverec.models.base.distinct_user_rows``). Every rank gets the same number of batches
    (the smallest rank's), so DDP never waits on a rank that ran out; a last partial batch is dropped
    when a rank has at least two full ones (as the row sampler does).
    """

    def __init__(self, starts: np.ndarray, batch_size: int, rank: int, world_size: int, seed: int, epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(len(starts) - 1)
        lens = np.diff(starts)
        counts = [int(lens[order[r::world_size]].sum()) for r in range(world_size)]
        full = [c // batch_size if c >= 2 * batch_size else -(-c // batch_size) for c in counts]
        mine = order[rank::world_size]
        mlen = lens[mine]
        rows = np.repeat(starts[mine] - (np.cumsum(mlen) - mlen), mlen) + np.arange(int(mlen.sum()))
        self.batches = [rows[i * batch_size:(i + 1) * batch_size].tolist() for i in range(min(full))]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def train_loader(ds: ArrayDataset, settings: Settings, ctx: DistContext, epoch: int, skip: int,
                 starts: np.ndarray | None = None) -> DataLoader:
    """Batches of one epoch for this rank -> batched reads.

    With ``starts`` (:func:`feed_starts`, ``train.feed_batches``): whole feeds per batch
    (:class:`FeedBatchSampler`); without: DistributedSampler (set_epoch) -> BatchSampler over rows.
    The loader gets its own generator, so creating it never draws from the global torch RNG (a
    resumed run creates it at a different point than an uninterrupted one).
    """
    bs = settings.train.batch_size
    if starts is not None:
        batches: Sampler[list[int]] = FeedBatchSampler(starts, bs, ctx.rank, ctx.world_size, settings.seed, epoch)
    else:
        sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=settings.seed)
        sampler.set_epoch(epoch)
        batches = BatchSampler(sampler, batch_size=bs, drop_last=len(sampler) >= 2 * bs)
    return DataLoader(
        ds,
        sampler=SkipBatches(batches, skip),
        batch_size=None,
        num_workers=settings.train.num_workers,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(settings.seed + epoch),
    )


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validation_auc(model: nn.Module, ds: ArrayDataset, batch_size: int, device: torch.device,
                   position: int | None = None) -> float:
    """Watch AUC on the validation tail (NaN when it is empty or has one class).

    With ``position`` every row is scored at that feed position (the serving position), as the
    evaluation and the gate score: early stopping then keeps the weights that rank best as served,
    not the ones that best reproduce the logging policy's order through the logged position.
    """
    from sklearn.metrics import roc_auc_score

    if len(ds) == 0:
        return math.nan
    labels = ds.column("watch")
    if labels.min() == labels.max():
        return math.nan
    scored = ds if position is None else at_position(ds, position)
    return float(roc_auc_score(labels, predict(model, scored, batch_size, device)["watch"]))


# --------------------------------------------------------------------------- the run
class _Run:
    """One training run's mutable pieces, so the loop functions stay short."""

    def __init__(self, settings: Settings, data: TrainingData, ctx: DistContext, objective: Objective,
                 ckpt_dir: Path, builder: str) -> None:
        self.settings, self.data, self.ctx, self.ckpt_dir, self.builder = settings, data, ctx, ckpt_dir, builder
        self.objective = objective.to(ctx.device)
        sparse = use_sparse(settings, ctx.device, ctx.distributed)
        tables = make_sparse(self.objective.model, sparse) if sparse else []
        table_ids = {id(p) for p in tables}
        dense = [p for p in self.objective.parameters() if id(p) not in table_ids]
        self.optimizer: SplitOptimizer = make_optimizer(settings, dense, tables)
        self.started = time.perf_counter()
        self.feeds = feed_starts(data.train) if settings.train.feed_batches and len(data.train) else None
        fp16 = ctx.device.type == "cuda" and settings.train.amp and settings.train.amp_dtype == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        if ctx.distributed:
            self.wrapped: nn.Module = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=True)
        else:
            self.wrapped = self.objective
        self.state = LoopState()

    # ------------------------------------------------------------------ checkpoints
    def save(self, name: str = ckpt.LATEST) -> None:
        self.state.seconds = time.perf_counter() - self.started
        if not self.ctx.is_main:
            return
        ckpt.save_atomic({
            "model": self.objective.model.state_dict(),
            "loss": self.objective.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loop": self.state.__dict__.copy(),
            "rng": ckpt.rng_state(),
            "settings": self.settings.section_dict(),
            "feature_spec": self.data.spec,
            "dates": self.data.dates,
            "world_size": self.ctx.world_size,
        }, self.ckpt_dir / name)

    def restore(self, blob: Mapping[str, Any]) -> None:
        self.objective.model.load_state_dict(blob["model"])
        self.objective.loss.load_state_dict(blob["loss"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scaler.load_state_dict(blob["scaler"])
        self.state = LoopState(**blob["loop"])
        ckpt.set_rng_state(blob["rng"])

    def save_best(self) -> None:
        if self.ctx.is_main:
            ckpt.save_atomic({"model": self.objective.model.state_dict(), "step": self.state.step},
                             self.ckpt_dir / ckpt.BEST)

    # ------------------------------------------------------------------ loop pieces
    def step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step; returns the logged loss parts."""
        cfg = self.settings.train
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.settings, self.ctx.device):
            total, parts = self.wrapped(to_device(batch, self.ctx.device))
        if not torch.isfinite(total):
            raise EliverecError(f"training diverged at step {self.state.step}: loss is {float(total)}; "
                                "lower train.lr or raise train.grad_clip")
        self.scaler.scale(total).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # type: ignore[arg-type]  # duck-typed optimizer
            parts["grad_norm"] = clip_gradients(self.objective.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)  # type: ignore[arg-type]
        self.scaler.update()
        self.state.step += 1
        return parts

    def validate(self) -> bool:
        """Validation watch AUC; updates early stopping; True when training should stop."""
        cfg = self.settings.train
        auc = validation_auc(self.objective.model, self.data.val, self.settings.evaluation.batch_size,
                             self.ctx.device, self.settings.model.serve_position)
        st = self.state
        st.history.append({"step": float(st.step), "val/auc": auc})
        if math.isnan(auc):
            return False
        if auc > st.best + cfg.min_delta or st.best_step < 0:
            st.best, st.best_step, st.bad_evals = auc, st.step, 0
            self.save_best()
        else:
            st.bad_evals += 1
        st.stopped_early = cfg.patience > 0 and st.bad_evals >= cfg.patience
        if st.stopped_early:
            st.stop_reason = "early_stopping"
        return st.stopped_early

    def out_of_budget(self) -> bool:
        """True (and ``stop_reason`` set) when ``train.max_steps`` or ``train.max_minutes`` is used up.

        The wall-clock decision is rank 0's, broadcast, so every DDP rank stops at the same step.
        """
        cfg, st = self.settings.train, self.state
        if 0 < cfg.max_steps <= st.step:
            st.stop_reason = "max_steps"
            return True
        if cfg.max_minutes <= 0 or st.step == 0:  # at least one step, so a run always leaves trained weights
            return False
        over = torch.tensor([float(time.perf_counter() - self.started >= 60.0 * cfg.max_minutes)])
        if self.ctx.distributed:
            torch.distributed.broadcast(over, src=0)
        if over.item() > 0:
            st.stop_reason = "time_budget"
        return bool(over.item() > 0)


def _reduce_parts(ctx: DistContext, sums: dict[str, float], count: int) -> dict[str, float]:
    """Mean of each logged value over the window and over ranks."""
    keys = sorted(sums)
    if not keys or count == 0:
        return {}
    vec = torch.tensor([sums[k] / count for k in keys], dtype=torch.float64)
    if ctx.distributed:
        torch.distributed.all_reduce(vec)
        vec /= ctx.world_size
    return dict(zip(keys, vec.tolist(), strict=True))


def _run_epochs(run: _Run, tracker: Any, after_step: Callable[[int], None] | None) -> None:
    """The epoch loop (from the restored position)."""
    from rich.console import Console
    from rich.progress import Progress

    cfg, st, ctx = run.settings.train, run.state, run.ctx
    run.started = time.perf_counter() - st.seconds  # the budget counts training, not setup (and earlier segments)
    sums: dict[str, float] = {}
    count, samples, data_time, t_window = 0, 0, 0.0, time.perf_counter()
    console = Console()
    lines = ProgressLines(enabled=ctx.is_main and not console.is_terminal, epochs=cfg.epochs, steps_per_epoch=0,
                          max_minutes=cfg.max_minutes, first_step=st.step, spent_s=st.seconds)
    with Progress(console=console, disable=not ctx.is_main, transient=True) as bar:
        while st.epoch < cfg.epochs and not st.stopped_early and not run.out_of_budget():
            loader = train_loader(run.data.train, run.settings, ctx, st.epoch, st.batch, run.feeds)
            lines.steps_per_epoch = lines.steps_per_epoch or len(loader) + st.batch
            task = bar.add_task(f"epoch {st.epoch + 1}/{cfg.epochs}", total=len(loader) + st.batch,
                                completed=st.batch)
            t_fetch = time.perf_counter()
            for batch in loader:
                data_time += time.perf_counter() - t_fetch
                parts = run.step(batch)
                st.batch += 1
                samples += len(batch["watch"]) * ctx.world_size
                count += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if st.step % cfg.log_every == 0:
                    elapsed = time.perf_counter() - t_window
                    logged = _reduce_parts(ctx, sums, count)
                    logged.update({"perf/samples_per_s": samples / max(elapsed, 1e-9),
                                   "perf/data_share": data_time / max(elapsed, 1e-9), "epoch": float(st.epoch)})
                    tracker.log_metrics(logged, step=st.step)
                    lines.window(st.step, st.epoch, logged)
                    sums, count, samples, data_time, t_window = {}, 0, 0, 0.0, time.perf_counter()
                stop = False
                if cfg.eval_every > 0 and st.step % cfg.eval_every == 0:
                    stop = run.validate()
                    _record_validation(st, tracker, lines, st.epoch)
                if cfg.checkpoint_every > 0 and st.step % cfg.checkpoint_every == 0:
                    run.save()
                bar.advance(task)
                if after_step is not None:
                    after_step(st.step)
                if stop or run.out_of_budget():
                    break
                t_fetch = time.perf_counter()
            else:
                st.epoch, st.batch = st.epoch + 1, 0
                run.validate()
                _record_validation(st, tracker, lines, st.epoch - 1)
            if st.stop_reason in ("max_steps", "time_budget") and (not st.history or st.history[-1]["step"] < st.step):
                reason = st.stop_reason
                run.validate()  # the weights at the budget's end compete with the best ones seen
                st.stop_reason, st.stopped_early = reason, False
                tracker.log_metrics({k: v for k, v in st.history[-1].items() if k != "step"}, step=st.step)
            run.save()
            ctx.barrier()
        st.stop_reason = st.stop_reason or "epochs"


def _record_validation(st: LoopState, tracker: Any, lines: ProgressLines, epoch: int) -> None:
    """Log the latest validation to the tracker and, off a terminal, as a progress line."""
    tracker.log_metrics({k: v for k, v in st.history[-1].items() if k != "step"}, step=st.step)
    best = float(st.best) if st.best_step >= 0 else None
    lines.validation(st.step, epoch, st.history[-1].get("val/auc"), best)


def _final_metrics(run: _Run) -> dict[str, float]:
    """Validation metrics of the kept weights (the best by validation AUC, else the last)."""
    import pandas as pd

    from eliverec.scoring.metrics import compute_metrics

    st = run.state
    best_path = run.ckpt_dir / ckpt.BEST
    if st.best_step >= 0 and best_path.exists():
        run.ctx.barrier()
        run.objective.model.load_state_dict(ckpt.load(best_path)["model"])
    out = {"steps": float(st.step), "epochs_done": float(st.epoch), "stopped_early": float(st.stopped_early),
           "best_step": float(st.best_step), "train_seconds": float(st.seconds),
           **{f"stop/{r}": float(r == st.stop_reason) for r in STOP_REASONS}}
    if len(run.data.val) > 0:
        bs, dev, val = run.settings.evaluation.batch_size, run.ctx.device, run.data.val
        served = predict(run.objective.model, at_position(val, run.settings.model.serve_position), bs, dev)
        logged = predict(run.objective.model, val, bs, dev)
        frame = scored_frame(val, pd.DataFrame(served), pd.DataFrame(logged))
        out.update({f"val/{k}": v for k, v in compute_metrics(frame, k=run.settings.evaluation.k,
                                                              bins=run.settings.evaluation.calibration_bins).items()
                    if isinstance(v, float)})
    return out


def _log_model(run: _Run, tracker: Any) -> str | None:
    """Write the network blob and log the pyfunc model with an input example of a few rows."""
    if not (run.ctx.is_main and run.settings.tracking.log_model):
        return None
    from eliverec.features.batch import LABELS

    path = write_network(run.ckpt_dir / NETWORK_BLOB, run.objective.model, run.settings.section_dict(), run.data.spec,
                         run.builder, run.settings.evaluation.batch_size)
    source = run.data.val if len(run.data.val) >= 2 else run.data.train
    rows = source[[0, 1, 2]] if len(source) >= 3 else source[list(range(len(source)))]
    example = {k: v.numpy() for k, v in rows.items() if k not in LABELS and k != "ts"}
    run.objective.model.eval()
    return tracker.log_model(path, example)


def fit(settings: Settings, data: TrainingData, ctx: DistContext, *, run_name: str, resume: bool = False,
        builder: str = DEFAULT_BUILDER, loss_builder: str = DEFAULT_LOSS,
        after_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train on prepared data (the part of :func:`train` after data loading)."""
    from eliverec.training.tracking import Tracker

    ckpt_dir = settings.layout.checkpoints(run_name)
    latest = ckpt_dir / ckpt.LATEST
    set_threads(settings)
    seed_everything(settings.seed)
    run = _Run(settings, data, ctx, build_objects(settings, data.spec, builder, loss_builder), ckpt_dir, builder)
    if resume and latest.exists():
        run.restore(ckpt.load(latest))
    else:
        seed_everything(settings.seed + 7919 * ctx.rank)  # same init on every rank (DDP broadcasts), own dropout
    tracker = Tracker(settings, enabled=ctx.is_main)
    if ctx.is_main:
        run.state.run_id = tracker.start(run_name, run.state.run_id)
        if run.state.step == 0:
            tracker.log_params({"data.train_days": ",".join(data.dates), "data.end_date": data.end_date,
                                "data.train_rows": len(data.train), "data.val_rows": len(data.val),
                                "dist.world_size": ctx.world_size, "dist.device": str(ctx.device)})
            tracker.log_days("training", f"features {data.dates[0]}..{data.dates[-1]}",
                             {d: settings.layout.features(d) for d in data.dates})
            if data.spec_path is not None:
                tracker.log_artifact(data.spec_path, "features")
            elif data.spec:
                tracker.log_dict(data.spec, "features/feature_spec.json")
    status = "FAILED"
    try:
        _run_epochs(run, tracker, after_step)
        metrics = _final_metrics(run)
        tracker.log_metrics(metrics)
        tracker.log_loss_curve()
        model_uri = _log_model(run, tracker)
        status = "FINISHED"
    finally:
        tracker.end(status)
    return TrainResult(run.state.run_id, model_uri, metrics, ckpt_dir, run.state.step, run.state.stopped_early,
                       run.state.stop_reason)


def with_model(settings: Settings, model_name: str | None) -> Settings:
    """``settings`` for ``model_name`` (default ``model.name``) with that model's ``tuned`` values.

    ``--set`` values win over tuned ones (:func:`eliverec.config.apply_tuned`).
    """
    from eliverec.config import ConfigError, apply_tuned

    name = model_name or settings.model.name
    try:
        return apply_tuned(settings, name)
    except ConfigError as exc:
        raise EliverecError(f"cannot build model '{name}': {exc}") from exc


def train(settings: Settings, model_name: str | None = None, end_date: str | None = None, resume: bool = False,
          run_name: str | None = None, *, builder: str = DEFAULT_BUILDER, loss_builder: str = DEFAULT_LOSS,
          after_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``model_name`` (default ``settings.model.name``) on the days before ``end_date``.

    Runs as one process, or as one rank of a torchrun job (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
    in the environment). Reads ``<data_dir>/features/<day>/`` for the ``features.train_days`` days
    before ``end_date`` (default: the latest feature day is the test day); writes checkpoints to
    ``<data_dir>/checkpoints/<run_name>/`` (default run name ``<model>-<end_date>``) and the MLflow
    run to ``settings.tracking.uri``. ``resume`` continues from ``latest.pt`` there (a fresh start
    when there is none). ``builder``/``loss_builder`` (``module:callable``) choose the model code;
    ``after_step`` is called after every step (tests use it to interrupt a run).
    """
    settings = with_model(settings, model_name)
    ctx = setup()
    try:
        data = load_training_data(settings.data_dir, end_date, settings.features.train_days, settings.train.val_share)
        name = run_name or f"{settings.model.name}-{data.end_date}"
        return fit(settings, data, ctx, run_name=name, resume=resume, builder=builder, loss_builder=loss_builder,
                   after_step=after_step)
    finally:
        teardown(ctx)

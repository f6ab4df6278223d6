"""Training progress for people: the rich bar on a terminal, plain lines everywhere else.

A Prefect worker, CI, ``nohup`` or a pipe gets no live bar, so the trainer writes one line per
logging window (at most one every ``every_s`` seconds) and one per validation, each with the epoch,
the step, the losses, samples/s, the best validation AUC so far and the time left: the smaller of
the steps left at the recent rate and what is left of ``train.max_minutes`` (early stopping may end
the run before either).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO


def _duration(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``4000`` -> ``1h06m``.

    >>> _duration(95), _duration(4000), _duration(7.2)
    ('1m35s', '1h06m', '7s')
    """
    s = max(int(round(seconds)), 0)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class ProgressLines:
    """Writes progress lines to ``stream`` when ``enabled`` (the caller enables it off a terminal).

    >>> import io
    >>> out = io.StringIO()
    >>> p = ProgressLines(enabled=True, epochs=2, steps_per_epoch=100, max_minutes=0, every_s=0, stream=out)
    >>> p.started -= 10.0                                  # 10 s into the run
    >>> p.window(step=50, epoch=0, values={"loss": 0.41, "perf/samples_per_s": 5000.0})
    >>> out.getvalue().strip()
    'train: epoch 1/2 step 50/200 loss 0.4100 5,000 samples/s time left 30s'
    """

    enabled: bool
    epochs: int
    steps_per_epoch: int
    max_minutes: float
    every_s: float = 30.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    started: float = field(default_factory=time.perf_counter)
    first_step: int = 0
    spent_s: float = 0.0  # training seconds of earlier segments (a resumed run): they count against the budget
    last_line: float = -1e18
    best_auc: float | None = None

    def time_left(self, step: int) -> float | None:
        """Seconds left: the planned steps at the rate so far, capped by the wall-clock budget."""
        elapsed = time.perf_counter() - self.started
        done = step - self.first_step
        left = None
        if done > 0 and self.steps_per_epoch > 0:
            left = (self.epochs * self.steps_per_epoch - step) * elapsed / done
        if self.max_minutes > 0:
            budget = 60.0 * self.max_minutes - self.spent_s - elapsed
            left = budget if left is None else min(left, budget)
        return None if left is None else max(left, 0.0)

    def _head(self, step: int, epoch: int) -> str:
        total = self.epochs * self.steps_per_epoch
        return f"train: epoch {epoch + 1}/{self.epochs} step {step}/{total}"

    def _tail(self, step: int) -> str:
        left = self.time_left(step)
        return f" time left {_duration(left)}" if left is not None else ""

    def window(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        """A line for a logging window (throttled to one every ``every_s`` seconds)."""
        now = time.perf_counter()
        if not self.enabled or now - self.last_line < self.every_s:
            return
        self.last_line = now
        losses = " ".join(f"{k} {v:.4f}" for k, v in values.items() if k == "loss" or k.startswith("loss/"))
        rate = values.get("perf/samples_per_s")
        speed = f" {rate:,.0f} samples/s" if rate is not None else ""
        best = f" best val AUC {self.best_auc:.4f}" if self.best_auc is not None else ""
        print(f"{self._head(step, epoch)} {losses}{speed}{best}{self._tail(step)}", file=self.stream, flush=True)

    def validation(self, step: int, epoch: int, auc: float | None, best: float | None) -> None:
        """A line for every validation (never throttled)."""
        self.best_auc = best
        if not self.enabled:
            return
        shown = f"{auc:.4f}" if auc is not None else "n/a"
        kept = f" (best {best:.4f})" if best is not None else ""
        print(f"{self._head(step, epoch)} validation AUC {shown}{kept}{self._tail(step)}", file=self.stream,
              flush=True)

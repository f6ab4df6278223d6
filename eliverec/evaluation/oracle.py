"""The oracle's ceiling on a test day and how much of the policy-to-oracle gap a model closes.

The simulated world knows every impression's true watch probability (``World.oracle``), so the
AUC of that score on the test day is the most any model can reach on those labels (the Bayes
ranking; the labels are coin flips of it). The floor is the *logging policy*: the world's own
scoring that chose the feeds (``World.policy_scores``: popularity, heat as the last stats snapshot
showed it, the user's true live-domain intents and favourite anchors). We score each logged
impression with that policy logit rather than its recorded Plackett-Luce propensity: the propensity
of position ``p`` is conditional on the channels placed above it, so it is not comparable across
positions and requests, while the logit is the policy's own ranking score.

"Gap closed" by a model (AUC, and gAUC the same way):

    gap_closed = (model AUC - policy AUC) / (oracle AUC - policy AUC)

1 means the model ranks as well as the truth, 0 no better than the logging policy, < 0 worse.

Test rows are mapped back to the world through ``features/<date>/samples.parquet`` (``user_id`` "u12",
``channel_id`` "c3", ``ts``, ``position``); row ``i`` there is tensor row ``i`` of the day, so
model scores from :func:`eliverec.scoring.scores.predict` on ``load_days([date])`` align with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eliverec.config import Settings
from eliverec.errors import DataError
from eliverec.features.dataset import day_dir
from eliverec.scoring.metrics import auc, gauc

SAMPLE_COLUMNS = ["user_id", "channel_id", "ts", "position", "watch"]


@dataclass(frozen=True)
class DayImpressions:
    """World indices, times, positions and watch labels of a test day's impressions (row order of the day)."""

    date: str
    users: np.ndarray  # world user index (int64)
    channels: np.ndarray  # world channel index (int64)
    ts: np.ndarray  # epoch ms
    position: np.ndarray  # 0-based feed position
    watch: np.ndarray  # label (0/1)

    def __len__(self) -> int:
        return int(self.users.size)


def world_index(ids: pd.Series | np.ndarray, prefix: str) -> np.ndarray:
    """World indices of simulated ids such as ``u12`` / ``c3`` (a :class:`DataError` on foreign ids).

    >>> world_index(np.array(["u3", "u10"]), "u").tolist()
    [3, 10]
    """
    s = pd.Series(np.asarray(ids, dtype=object)).astype(str)
    ok = s.str.fullmatch(rf"{prefix}\d+")
    if not ok.all():
        bad = s[~ok].iloc[0]
        raise DataError(f"id '{bad}' is not a simulated-world id ('{prefix}<n>'): the oracle needs simulated data")
    return s.str.slice(len(prefix)).astype(np.int64).to_numpy()


def load_test_day(settings: Settings, date: str) -> DayImpressions:
    """The test day's impressions from ``<data_dir>/features/<date>/samples.parquet``."""
    day_dir(settings.data_dir, date)  # a clear error when the day was never built
    path = settings.layout.samples(date)
    if not path.is_file():
        raise DataError(f"{path} is missing; rebuild the day with `eliverec features --end-date {date}`")
    t = pq.read_table(path, columns=SAMPLE_COLUMNS).to_pandas()
    if t.empty:
        raise DataError(f"{path}: the test day has no samples")
    return DayImpressions(date, world_index(t["user_id"], "u"), world_index(t["channel_id"], "c"),
                   t["ts"].to_numpy(np.int64), t["position"].to_numpy(np.int64), t["watch"].to_numpy(np.float64))


def oracle_scores(world: Any, day: DayImpressions) -> np.ndarray:
    """True watch probability of every impression (position bias included, as the labels were drawn)."""
    return world.oracle(day.users, day.channels, day.ts, day.position)["watch"]


def policy_scores(world: Any, day: DayImpressions) -> np.ndarray:
    """The logging policy's own logit for every impression (see the module docstring), one call per slot."""
    out = np.zeros(len(day))
    days = world.day_of(day.ts)
    for d in np.unique(days).tolist():
        state = world.day(int(d))
        intents = world.intents_on(int(d))
        rows_d = np.flatnonzero(days == d)
        slot = (day.ts[rows_d] - state.start_ms) // state.slot_ms
        order = np.argsort(slot, kind="stable")
        slots, starts = np.unique(slot[order], return_index=True)
        for s, idx in zip(slots.tolist(), np.split(rows_d[order], starts[1:]), strict=True):
            cand, col = np.unique(day.channels[idx], return_inverse=True)
            scores = world.policy_scores(day.users[idx], cand, int(s), state, intents[day.users[idx]])
            out[idx] = scores[np.arange(idx.size), col]
    return out


def _ranked(name: str, day: DayImpressions, scores: np.ndarray) -> dict[str, float]:
    return {f"{name}_auc": auc(day.watch, scores), f"{name}_gauc": gauc(day.users, day.watch, scores)}


def ceiling(settings: Settings, date: str, world: Any | None = None, seed: int = 0) -> dict[str, float]:
    """Oracle, logging-policy and random-scorer AUC / gAUC on the test day ``date``.

    ``world`` defaults to ``World.from_settings(settings)`` (the world that wrote the data).
    """
    from eliverec.world import World

    day = load_test_day(settings, date)
    world = world if world is not None else World.from_settings(settings)
    rand = np.random.default_rng(seed).random(len(day))
    out: dict[str, float] = {"rows": float(len(day)), "watch_rate": float(day.watch.mean())}
    out.update(_ranked("oracle", day, oracle_scores(world, day)))
    out.update(_ranked("policy", day, policy_scores(world, day)))
    out.update(_ranked("random", day, rand))
    return out


def gap_closed(model: float, policy: float, oracle: float) -> float:
    """Share of the policy-to-oracle gap a model closes (NaN when the gap is not positive).

    >>> gap_closed(0.75, 0.7, 0.8), gap_closed(0.7, 0.7, 0.8), math.isnan(gap_closed(0.7, 0.8, 0.8))
    (0.5, 0.0, True)
    """
    gap = oracle - policy
    if not (gap > 0) or any(math.isnan(v) for v in (model, policy, oracle)):
        return float("nan")
    return round((model - policy) / gap, 12)


def gaps(model_metrics: dict[str, float], ceil: dict[str, float]) -> dict[str, float]:
    """``gap_closed/auc`` and ``gap_closed/gauc`` of one model's metrics (``auc``, ``gauc``) against a ceiling."""
    return {f"gap_closed/{m}": gap_closed(float(model_metrics[m]), ceil[f"policy_{m}"], ceil[f"oracle_{m}"])
            for m in ("auc", "gauc")}

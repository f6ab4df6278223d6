"""Linear probes: do eLiveRec's consistent parts ``z_c`` hold the users' consistent intents?

The world knows each user's intent categories on a day (``World.intents_on``): ``consistent``
(active in both domains), ``product`` (product domain only) and ``live`` (live domain only). For
every test-day impression we read the four retrieved parts ``z_cV, z_sV, z_cS, z_sS`` (eq. 6-7)
from a trained eLiveRec, average them per user over the user's test impressions (they are
target-dependent: eq. 6 queries with the candidate channel), and fit, per part and per intent set,
a multilabel one-vs-rest logistic regression (scikit-learn) from the user's mean part to the
multi-hot intent categories, trained on a random share of users and scored on the others.

The parts are read with a forward pre-hook on the watch tower: its input is
``[e_c, e_vt, z_cV, z_sV, z_cS, z_sS, e_d, position]`` (eq. 11), split by the model's ``dims``;
the model code is not touched.

Reported per (part, intent set): ``auc`` (macro ROC AUC over categories with both classes among the
test users) and ``precision@k`` (k = the set's size per user: the share of the probe's top-k
categories that are true intents), next to ``prior_precision@k`` (top-k by training-user frequency),
the chance level a probe must beat given the skewed category popularity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.evaluation.metrics import auc
from eliverec.evaluation.oracle import load_test_day
from eliverec.training.data import ArrayDataset, load_days
from eliverec.training.pyfunc import to_tensor_batch

PARTS: tuple[str, ...] = ("z_cV", "z_sV", "z_cS", "z_sS")  # order of ELiveRec.encode: live (c, s), product (c, s)
INTENT_SETS: tuple[str, ...] = ("consistent", "product", "live")


def load_trained(checkpoint_dir: str | Path) -> nn.Module:
    """The network of a finished training run (``TrainResult.checkpoint_dir``), in eval mode: the best
    validation weights (``best.pt``) when there are any, else the last (``latest.pt``)."""
    from eliverec.training import checkpoint as ckpt
    from eliverec.training.pyfunc import rebuild
    from eliverec.training.trainer import DEFAULT_BUILDER

    folder = Path(checkpoint_dir)
    if not (folder / ckpt.LATEST).is_file():
        raise EliverecError(f"{folder / ckpt.LATEST} is missing: train the model first (`eliverec train`)")
    latest = ckpt.load(folder / ckpt.LATEST)
    best = folder / ckpt.BEST
    weights = ckpt.load(best)["model"] if best.is_file() else latest["model"]
    return rebuild({"settings": latest["settings"], "feature_spec": latest["feature_spec"],
                    "builder": DEFAULT_BUILDER, "state_dict": weights})


def check_probeable(model: nn.Module) -> None:
    """A clear error unless ``model`` is a dual, disentangled eLiveRec (it has the four parts)."""
    cfg = getattr(model, "cfg", None)
    if not (hasattr(model, "tower") and hasattr(model, "dims") and cfg is not None
            and getattr(cfg, "disentangle", False) and getattr(model, "domains", ()) == ("live", "product")
            and len(model.dims) == 7):
        raise EliverecError(f"the probe needs a dual, disentangled eLiveRec model with z_c / z_s parts "
                            f"(got {getattr(model, 'name', type(model).__name__)})")


@contextmanager
def capture_parts(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the watch tower's input of each forward call (a forward pre-hook, removed on exit)."""
    seen: list[torch.Tensor] = []
    handle = model.tower.register_forward_pre_hook(lambda _mod, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        handle.remove()


def split_parts(model: nn.Module, tower_inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """``{part: (N, d)}`` from the watch tower inputs captured by :func:`capture_parts` (in call order)."""
    check_probeable(model)
    widths = [*model.dims, model.cfg.dim]  # intra-channel features + e_d, then the position embedding
    chunks: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for x in tower_inputs:
        for name, piece in zip(PARTS, x.split(widths, dim=-1)[2:6], strict=True):
            chunks[name].append(piece.float().cpu().numpy())
    return {p: np.concatenate(c) if c else np.zeros((0, model.cfg.dim), np.float32) for p, c in chunks.items()}


@torch.no_grad()
def extract_parts(model: nn.Module, ds: ArrayDataset, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """``{part: (N, d)}`` for every row of ``ds`` (dataset order)."""
    check_probeable(model)
    was_training = model.training
    model.eval()
    try:
        with capture_parts(model) as seen:
            for start in range(0, len(ds), batch_size):
                rows = np.arange(start, min(start + batch_size, len(ds)))
                model(to_tensor_batch({k: v.numpy() for k, v in ds[rows].items()}))
    finally:
        model.train(was_training)
    return split_parts(model, seen)


def user_means(users: np.ndarray, parts: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Distinct users (sorted) and each part averaged over the user's rows.

    >>> u, m = user_means(np.array([5, 2, 5]), {"z": np.array([[1.0], [3.0], [3.0]])})
    >>> u.tolist(), m["z"].ravel().tolist()
    ([2, 5], [3.0, 2.0])
    """
    uniq, inv = np.unique(users, return_inverse=True)
    counts = np.bincount(inv, minlength=uniq.size)[:, None]
    out = {}
    for name, x in parts.items():
        sums = np.zeros((uniq.size, x.shape[1]))
        np.add.at(sums, inv, x)
        out[name] = sums / counts
    return uniq, out


def intent_labels(world: Any, users: np.ndarray, date: str) -> dict[str, np.ndarray]:
    """Multi-hot ``(U, n_categories)`` intent matrices per set for world users on ``date``."""
    rows = world.intents_on(world.dates.index(date))[users].astype(np.int64)
    n_cat = world.catalog.n_categories
    out = {}
    for name, cols in world.intent_groups.items():
        y = np.zeros((users.size, n_cat), np.int8)
        y[np.arange(users.size)[:, None], rows[:, cols]] = 1
        out[name] = y
    return out


def precision_at_set(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over users of (true categories among the top-|set| scores) / |set|.

    >>> precision_at_set(np.array([[0.9, 0.1, 0.5]]), np.array([[1, 0, 1]]))
    1.0
    """
    k = y.sum(1)
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    hits = ((rank < k[:, None]) & (y > 0)).sum(1)
    has = k > 0
    return float(np.mean(hits[has] / k[has])) if has.any() else float("nan")


def fit_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int = 0) -> dict[str, float]:
    """One multilabel one-vs-rest logistic probe: train on rows ``train`` (bool), score the others."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test = ~train
    keep = y[train].any(0) & ~y[train].all(0)  # categories the probe can learn (both classes in training)
    scores = np.zeros((int(test.sum()), y.shape[1]))
    if keep.any():
        clf = OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=seed)))
        clf.fit(x[train], y[train][:, keep])
        scores[:, keep] = clf.predict_proba(x[test])
    prior = np.broadcast_to(y[train].mean(0), scores.shape)
    yt = y[test]
    aucs = [auc(yt[:, j], scores[:, j]) for j in np.flatnonzero(keep)]
    aucs = [a for a in aucs if not np.isnan(a)]
    return {"auc": float(np.mean(aucs)) if aucs else float("nan"), "precision@k": precision_at_set(scores, yt),
            "prior_precision@k": precision_at_set(prior + 1e-9 * np.arange(y.shape[1])[::-1], yt),
            "categories": float(len(aucs))}


def probe(settings: Settings, model: nn.Module, date: str, world: Any | None = None, test_share: float = 0.3,
          seed: int = 0, parts: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Fit every (part, intent set) probe on the test day ``date``; returns the results table.

    ``parts`` may carry the day's parts already read (:func:`split_parts` during scoring) to skip a pass.

    Result: ``{"users", "train_users", "test_users", "results": {part: {set: {auc, precision@k, ...}}}}``.
    """
    from eliverec.world import World

    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1) (got {test_share})")
    check_probeable(model)
    day = load_test_day(settings, date)
    ds = load_days(settings.data_dir, [date])
    if len(ds) != len(day):
        raise EliverecError(f"features/{date}: samples.parquet has {len(day)} rows but the tensors {len(ds)}")
    world = world if world is not None else World.from_settings(settings)
    parts = parts if parts is not None else extract_parts(model, ds, settings.evaluation.batch_size)
    if any(len(v) != len(day) for v in parts.values()):
        raise EliverecError(f"parts have {len(next(iter(parts.values())))} rows, the test day {len(day)}")
    users, means = user_means(day.users, parts)
    if users.size < 10:
        raise EliverecError(f"features/{date}: only {users.size} users on the test day; the probe needs >= 10")
    labels = intent_labels(world, users, date)
    train = np.random.default_rng(seed).random(users.size) >= test_share
    train[0], train[-1] = True, False  # both splits non-empty
    results = {p: {s: fit_probe(means[p], labels[s], train, seed) for s in INTENT_SETS} for p in PARTS}
    return {"date": date, "users": int(users.size), "train_users": int(train.sum()),
            "test_users": int((~train).sum()), "results": results}


"""Linear probes: do eLiveRec's consistent parts ``z_c`` hold the users' consistent intents?

The world knows each user's intent categories on a day (``World.intents_on``): ``consistent``
(active in both domains), ``product`` (product domain only) and ``live`` (live domain only). For
every test-day impression we read the four retrieved parts ``z_cV, z_sV, z_cS, z_sS`` (eq. 6-7)
from a trained eLiveRec, average them per user over the user's test impressions (they are
target-dependent: eq. 6 queries with the candidate channel), and fit, per part and per intent set,
a multilabel one-vs-rest logistic regression (scikit-learn) from the user's mean part to the
multi-hot intent categories, trained on a random share of users and scored on the others.

The parts are read with a forward pre-hook on the watch tower: its input is
``[e_c, e_vt, z_cV, z_sV, z_cS, z_sS, e_d]`` (eq. 11; then the position embedding when
``model.position_bias: input``), split by the model's ``dims``;
the model code is not touched.

Reported per (part, intent set): ``auc`` (macro ROC AUC over categories with both classes among the
test users) and ``precision@k`` (k = the set's size per user: the share of the probe's top-k
categories that are true intents), next to ``prior_precision@k`` (top-k by training-user frequency),
the chance level a probe must beat given the skewed category popularity. With ``folds >= 2`` the
probe is cross-fitted instead: every user is scored by the probe fitted on the other folds, so all
users count (less noise than one held-out share on a small world).

:func:`disentanglement` condenses a result: per domain, how much more the consistent part predicts the
consistent intents than the specific part does, plus how much more the specific part predicts the
domain-specific intents than the consistent part does (AUC points; 0 = no disentanglement).
:func:`intention_weights_by_truth` reads eq. 5 itself: the mean ``p(z_c | item)`` of sequence events
whose category is one of the user's consistent intents, of its domain-specific intents, or neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eliverec.artifact import to_tensor_batch
from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.evaluation.oracle import load_test_day
from eliverec.features.dataset import ArrayDataset, load_days
from eliverec.scoring.metrics import auc

PARTS: tuple[str, ...] = ("z_cV", "z_sV", "z_cS", "z_sS")  # order of ELiveRec.encode: live (c, s), product (c, s)
INTENT_SETS: tuple[str, ...] = ("consistent", "product", "live")


def load_trained(checkpoint_dir: str | Path) -> nn.Module:
    """The network of a finished training run (``TrainResult.checkpoint_dir``), in eval mode: the best
    validation weights (``best.pt``) when there are any, else the last (``latest.pt``)."""
    from eliverec.artifact import BUILDER, rebuild
    from eliverec.training import checkpoint as ckpt

    folder = Path(checkpoint_dir)
    if not (folder / ckpt.LATEST).is_file():
        raise EliverecError(f"{folder / ckpt.LATEST} is missing: train the model first (`eliverec train`)")
    latest = ckpt.load(folder / ckpt.LATEST)
    best = folder / ckpt.BEST
    weights = ckpt.load(best)["model"] if best.is_file() else latest["model"]
    return rebuild({"settings": latest["settings"], "feature_spec": latest["feature_spec"],
                    "builder": BUILDER, "state_dict": weights})


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
    widths = [*model.dims]  # intra-channel features + e_d, then the position embedding when it is a tower input
    if getattr(model.cfg, "position_bias", "input") == "input":
        widths.append(model.cfg.dim)
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


def _fit_predict(x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the rows not in ``train`` (bool) by a one-vs-rest logistic probe fitted on ``train``, and
    the mask of categories it could learn (both classes among the training rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = y[train].any(0) & ~y[train].all(0)
    scores = np.zeros((int((~train).sum()), y.shape[1]))
    if keep.any():
        clf = OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=seed)))
        clf.fit(x[train], y[train][:, keep])
        scores[:, keep] = clf.predict_proba(x[~train])
    return scores, keep


def _summary(scores: np.ndarray, prior: np.ndarray, y: np.ndarray, keep: np.ndarray) -> dict[str, float]:
    aucs = [auc(y[:, j], scores[:, j]) for j in np.flatnonzero(keep)]
    aucs = [a for a in aucs if not np.isnan(a)]
    return {"auc": float(np.mean(aucs)) if aucs else float("nan"), "precision@k": precision_at_set(scores, y),
            "prior_precision@k": precision_at_set(prior + 1e-9 * np.arange(y.shape[1])[::-1], y),
            "categories": float(len(aucs))}


def fit_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int = 0) -> dict[str, float]:
    """One multilabel one-vs-rest logistic probe: train on rows ``train`` (bool), score the others."""
    scores, keep = _fit_predict(x, y, train, seed)
    return _summary(scores, np.broadcast_to(y[train].mean(0), scores.shape), y[~train], keep)


def cross_fit_probe(x: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The probe cross-fitted over folds (``fold`` (N,) int): each row scored by the fit on the other folds.

    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random((200, 3)) < 0.3).astype(np.int8)
    >>> r = cross_fit_probe(y + 0.1 * rng.standard_normal((200, 3)), y, np.arange(200) % 4)
    >>> r["auc"] > 0.95, r["categories"]
    (True, 3.0)
    """
    scores, prior = np.zeros(y.shape), np.zeros(y.shape)
    learned = np.zeros(y.shape[1], bool)
    for k in np.unique(fold):
        train = fold != k
        scores[~train], keep = _fit_predict(x, y, train, seed)
        prior[~train] = y[train].mean(0)
        learned |= keep
    return _summary(scores, prior, y, learned)


def disentanglement(results: dict[str, dict[str, dict[str, float]]], metric: str = "auc") -> dict[str, float]:
    """Per domain: ``(m(z_c, consistent) - m(z_s, consistent)) + (m(z_s, specific) - m(z_c, specific))``.

    >>> r = {"z_cV": {"consistent": {"auc": 0.7}, "live": {"auc": 0.5}}, "z_sV": {"consistent": {"auc": 0.5},
    ...      "live": {"auc": 0.6}}, "z_cS": {"consistent": {"auc": 0.6}, "product": {"auc": 0.6}},
    ...      "z_sS": {"consistent": {"auc": 0.6}, "product": {"auc": 0.6}}}
    >>> {k: round(v, 3) for k, v in disentanglement(r).items()}
    {'live': 0.3, 'product': 0.0}
    """
    out = {}
    for dom, key, specific in (("live", "V", "live"), ("product", "S", "product")):
        c, s = results[f"z_c{key}"], results[f"z_s{key}"]
        out[dom] = (c["consistent"][metric] - s["consistent"][metric]) + (s[specific][metric] - c[specific][metric])
    return out


def probe(settings: Settings, model: nn.Module, date: str, world: Any | None = None, test_share: float = 0.3,
          seed: int = 0, parts: dict[str, np.ndarray] | None = None, folds: int = 0) -> dict[str, Any]:
    """Fit every (part, intent set) probe on the test day ``date``; returns the results table.

    ``parts`` may carry the day's parts already read (:func:`split_parts` during scoring) to skip a pass.
    ``folds >= 2`` cross-fits the probe over that many user folds (every user scored; ``test_share`` unused).

    Result: ``{"users", "train_users", "test_users", "results": {part: {set: {auc, precision@k, ...}}},
    "disentanglement": {domain: AUC points}}``.
    """
    if folds == 1 or folds < 0:
        raise ValueError(f"folds must be 0 (one held-out share) or >= 2 (got {folds})")
    from eliverec.world import World

    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1) (got {test_share})")
    check_probeable(model)
    day = load_test_day(settings, date)
    ds = load_days(settings.data_dir, [date])
    if len(ds) != len(day):
        raise EliverecError(f"{settings.layout.samples(date)} has {len(day)} rows but the tensors {len(ds)}")
    world = world if world is not None else World.from_settings(settings)
    parts = parts if parts is not None else extract_parts(model, ds, settings.evaluation.batch_size)
    if any(len(v) != len(day) for v in parts.values()):
        raise EliverecError(f"parts have {len(next(iter(parts.values())))} rows, the test day {len(day)}")
    users, means = user_means(day.users, parts)
    if users.size < 10:
        raise EliverecError(f"features/{date}: only {users.size} users on the test day; the probe needs >= 10")
    labels = intent_labels(world, users, date)
    rng = np.random.default_rng(seed)
    if folds:
        fold = rng.permutation(users.size) % folds
        results = {p: {s: cross_fit_probe(means[p], labels[s], fold, seed) for s in INTENT_SETS} for p in PARTS}
        return {"date": date, "users": int(users.size), "train_users": int(users.size), "test_users": int(users.size),
                "folds": folds, "results": results, "disentanglement": disentanglement(results)}
    train = rng.random(users.size) >= test_share
    train[0], train[-1] = True, False  # both splits non-empty
    results = {p: {s: fit_probe(means[p], labels[s], train, seed) for s in INTENT_SETS} for p in PARTS}
    return {"date": date, "users": int(users.size), "train_users": int(train.sum()),
            "test_users": int((~train).sum()), "results": results, "disentanglement": disentanglement(results)}


def category_lookup(settings: Settings, n_categories: int) -> np.ndarray:
    """Hashed category id -> world category index (-1: padding, unused or a collision of two categories)."""
    from eliverec.features.hashing import hash_strings

    f = settings.features
    hashed = hash_strings([f"cat{c}" for c in range(n_categories)], f.hash_salt, "category", f.vocab["category"])
    out = np.full(int(f.vocab["category"]), -1, np.int64)
    ids, counts = np.unique(hashed, return_counts=True)
    for c, h in enumerate(hashed.tolist()):
        out[h] = c if counts[np.searchsorted(ids, h)] == 1 else -1
    return out


def item_truth(cats: np.ndarray, intents: dict[str, np.ndarray], specific: str) -> np.ndarray:
    """Per sequence event (B, L) of world categories ``cats`` (-1 unknown): 0 consistent intent of the row's user,
    1 ``specific`` intent, 2 neither, -1 unknown.

    >>> item_truth(np.array([[3, 5, 7, -1]]), {"consistent": np.array([[1, 0, 0, 1, 0, 0, 0, 0]]),
    ...            "live": np.array([[0, 0, 0, 0, 0, 1, 0, 0]])}, "live").tolist()
    [[0, 1, 2, -1]]
    """
    rows = np.arange(cats.shape[0])[:, None]
    safe = np.where(cats >= 0, cats, 0)
    out = np.where(intents["consistent"][rows, safe] > 0, 0, np.where(intents[specific][rows, safe] > 0, 1, 2))
    return np.where(cats >= 0, out, -1)


@torch.no_grad()
def intention_weights_by_truth(settings: Settings, model: nn.Module, date: str, world: Any | None = None,
                               max_rows: int = 20000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Eq. 5 against the world's truth: mean ``p(z_c | item)`` over the sequence events of (at most
    ``max_rows`` random) test-day impressions, by whether the event's category is one of the user's
    consistent intents, domain-specific intents or neither; ``gap`` = consistent - specific."""
    from eliverec.models.base import DOMAINS
    from eliverec.world import World

    check_probeable(model)
    world = world if world is not None else World.from_settings(settings)
    day, ds = load_test_day(settings, date), load_days(settings.data_dir, [date])
    rows = np.sort(np.random.default_rng(seed).permutation(len(ds))[:max_rows])
    lookup = category_lookup(settings, world.catalog.n_categories)
    labels = intent_labels(world, np.arange(int(day.users.max()) + 1), date)
    was_training = model.training
    model.eval()
    sums = {dom: np.zeros((2, 3)) for dom in model.domains}  # (sum p, count) x (consistent, specific, neither)
    for start in range(0, rows.size, settings.evaluation.batch_size):
        idx = rows[start:start + settings.evaluation.batch_size]
        batch = to_tensor_batch({k: v.numpy() for k, v in ds[idx].items()})
        state = model.user_state(model.embed_sequences(batch))
        users = day.users[idx]
        for dom in model.domains:
            seq_key, _, fields = DOMAINS[dom]
            cats = lookup[batch[seq_key][..., fields.index("category")].numpy()]
            specific = "live" if dom == "live" else "product"
            truth = item_truth(cats, {k: v[users] for k, v in labels.items()}, specific)
            truth[~state[f"{dom}_mask"].numpy()] = -1
            pc = state[f"{dom}_pc"].float().numpy()
            for j in range(3):
                sums[dom][0, j] += pc[truth == j].sum()
                sums[dom][1, j] += (truth == j).sum()
    model.train(was_training)
    out = {}
    for dom, (total, count) in sums.items():
        mean = total / np.maximum(count, 1)
        out[dom] = {"consistent": float(mean[0]), "specific": float(mean[1]), "neither": float(mean[2]),
                    "gap": float(mean[0] - mean[1]), "events": float(count.sum())}
    return out


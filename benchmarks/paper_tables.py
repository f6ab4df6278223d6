"""The paper's Tables II-IV on the simulated world: paired differences against ETA dual and the logging policy.

For each seed, one world is simulated, ingested and featured once (``<data_dir>/paper_tables/<name>/
seed<k>/``, rebuilt when the world or feature settings change); every cell (a model and its
multi-task mode) is trained on the train days (:func:`eliverec.training.trainer.train`, which
applies the model's ``tuned`` values, stops early on the validation AUC and at ``train.max_minutes``)
and scores the test day **at its serving position** (``model.serve_position``, what serving does;
see :mod:`eliverec.evaluation.evaluate`). The logged-position metrics are kept as ``logged_pos/...``.
A table row shared by several tables (BST dual in II, III and IV) is one cell.

Statistics. Every row is compared with two references on the same seed's test day, **paired**
(same impressions, same labels): ETA dual (the paper's online baseline) and the logging policy
(the world's own ranking score of each impression, :func:`eliverec.evaluation.oracle.policy_scores`).
Per seed, the users of the test day are resampled with replacement ``--bootstrap`` times (the same
draws for every model of that seed: :func:`eliverec.evaluation.gate.user_draws`, the gate's paired
bootstrap) and each model's AUC and gAUC are recomputed under every draw; the difference of two
models' replicates gives the per-seed 95 % percentile interval. Over seeds the point is the mean of
the per-seed differences and the combined interval is the percentile interval of the mean of the
per-seed replicate differences (draw b of every seed averaged; users resampled independently per
seed): the bootstrap distribution of the seed-averaged difference. It covers the users' sampling
noise given the trained models, not the training noise between seeds (the std column shows that).
A difference is flagged ``above`` / ``below`` only when the combined interval excludes 0, else ``n.s.``.

Inputs. Every cell trains with the settings' ``model.match_features`` (on in ``params.yaml``: the
user-candidate match counts of ``eliverec/models/layers/match.py`` beside the dynamic context). The
paper's own inputs are the run ``--set model.match_features=false`` (its cells keep the fingerprints
they had before the option existed), and ``benchmarks/paper_tables_diff.py`` pairs the two runs row
by row on the same seeds, test days and user draws.

Reference rows need no training: the logging policy, and the oracle (the world's true watch
probability) at the serving position (the best position-free ranking; ``gap`` = share of the
policy-to-this-oracle AUC gap a model closes) and at the logged position (the Bayes ceiling of the
labels, which were drawn with the position bias).

Files. Per seed in ``benchmarks/results/paper_tables/<name>/seed<k>/``: ``_ceiling.json`` and
``_day.npz`` (test-day world user index, watch label, policy and oracle scores, in the day's row
order), ``<cell>.json`` (metrics, training facts, settings fingerprint), ``<cell>.npy`` (float32
watch predictions at the serving position, aligned with ``_day.npz``) and ``<cell>.boot.npz`` /
``_<reference>.boot.npz`` (the model's AUC and gAUC under every bootstrap draw: enough to redo
every paired comparison without the predictions). A cell is skipped when its files are there with
the current settings fingerprint (resumable; changing the profile or ``tuned`` values retrains).
``benchmarks/results/paper_tables.{json,md}`` are rewritten after every cell.

Sizing of the ``bench`` profile (arithmetic for the first 9 headline cells + the reference rows, 3
seeds; ``--rows headline`` now also trains CAN dual and the five cross-domain models, 15 cells, about
1.6x the time below; target about two hours for one process on the 2-core machine,
measured 2026-12-01 on the working tree with sparse embeddings, 1 torch thread, batch 512, d=16):

- step time (ms, median of a synthetic-batch loop, the other core busy): eLiveRec 60, wo.M 52,
  wo.D 38, WDL dual 12, DIN dual 54, DIEN dual 102, HGN dual 32, BST dual 71, ETA dual 36: about
  0.45 s for one step of each of the 9 cells. In real runs (validation included, load 2):
  ETA dual 26, HGN dual 32, eLiveRec 73.
- proposed world (``--set`` values of the measurement): 3,000 users, 450 channels, 360 anchors,
  15,000 products, 600 brands; ``world.days: 6`` (4 training days + the test day + 1, as now),
  ``features.train_days: 4``, vocab user 30,011, product 150,001, brand 6,007. Measured: 86k
  impressions per day (28.7 per user), 345k training rows, 2,354 users on the test day (87k rows);
  simulate + ingest + features 15 s, reference scores 8 s per seed.
- 345k rows - 10 % validation = 310k / 512 = 605 steps per epoch.
- convergence, measured (validation AUC every 150 steps, no early stopping): best validation AUC
  at step 1,210 (ETA dual), 1,050 (HGN dual), 1,800 (eLiveRec), i.e. epochs 2-3; all overfit after
  (ETA dual and HGN dual fall by 0.03-0.05 by epoch 6). So ``epochs: 4``, validation at epoch
  ends (``eval_every: 0``), ``patience: 1``: a cell stops one epoch after its best, about 1,800-2,400
  steps, 2,000 on average; ``max_minutes: 6`` caps a slow cell on a loaded machine (DIEN dual at
  2,420 steps x 0.15 s).
- per seed: training 2,000 x 0.45 s = 900 s; validation 4 passes x 34k rows x 9 cells, about
  200 s; scoring the test day twice (serving + logged position) about 25 s per cell, 220 s;
  bootstrap replicates (1,000 draws, 87k rows) about 4 s per model, 50 s; data 25 s. About 1,400 s.
- total for 3 seeds: about 70 min with one core free, up to about 2 h 20 min when the cores are
  shared (x 1.5-2 measured). The full 39-cell table (default ``--rows all``) is about 4.5x that (the nine
  cells of CAN, the cross-domain group and MiNet's MTL variants estimated at the dual baselines' speed).
- power: per seed, the 95 % interval of a paired AUC difference is about +-0.0035 between two
  models and +-0.005 against the logging policy (measured: HGN dual - ETA dual +0.0113
  [+0.0076, +0.0154]); combined over 3 seeds about +-0.002 and +-0.003.

Run: ``.venv/bin/python benchmarks/paper_tables.py [--quick] [--rows all|headline] [--seeds 0 1 2]
[--only II|III|IV] [--max-minutes M] [--profile bench] [--set key=value ...] [--bootstrap 1000]
[--report-only]``. ``--set`` runs write to ``paper_tables/<profile>-<hash>/`` and
``paper_tables_<profile>-<hash>.{json,md}`` (never over the committed tables).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
METRICS = ("auc", "gauc", "prec@10", "ndcg@10")
PAIRED = ("auc", "gauc")  # metrics with a paired bootstrap
REFERENCE = ("eta_dual", "single")  # ETA dual: the paper's online baseline
POLICY, ORACLE_SERVING, ORACLE_LOGGED = "_policy", "_oracle_serving", "_oracle_logged"
TREES = "_trees"  # gradient-boosted trees on hand-made match features (eliverec/evaluation/reference.py)
REFERENCE_ROWS: list[tuple[str, str]] = [(POLICY, "logging policy"), (ORACLE_SERVING, "oracle (serving position)"),
                                         (ORACLE_LOGGED, "oracle (logged position)"),
                                         (TREES, "feature trees (GBDT, 15 match features)")]
CONFIDENCE = 0.95
BOOT_SEED = 12345  # the bootstrap's own seed (the same draws for every model of a seed)
# train settings that do not change what a cell learns (left out of its fingerprint)
NOT_LEARNING = ("threads", "num_workers", "log_every", "checkpoint_every")
# feature settings that do not change the features: how the build is sharded (tests/features: the sharded
# build is byte-identical to the single-process one)
NOT_DATA = ("shards", "shard_rows")
# model settings only ETA reads, left out of the other cells' fingerprints (a new ETA setting reruns ETA
# alone; eta_topk and eta_hash_bits stay in every fingerprint: the recorded cells were made with them)
ETA_ONLY = ("eta_retrieve_above",)

# Table II's groups, in the paper's order: (row label, registry model name)
CTR_MODELS = (("WDL+", "wdl"), ("DIN", "din"), ("DIEN", "dien"), ("HGN", "hgn"), ("BST", "bst"), ("CAN", "can"),
              ("ETA", "eta"))
CROSS_DOMAIN = (("MiNet", "minet"), ("DASL", "dasl"), ("CoNet+", "conet"), ("DTCDR+", "dtcdr"), ("DDTCDR+", "ddtcdr"))
# (table, group, row label, registry model name, model.mtl)
ROWS: list[tuple[str, str, str, str, str]] = [
    *[("II", "Single CTR", label, name, "single") for label, name in CTR_MODELS],
    *[("II", "Dual CTR", label, f"{name}_dual", "single") for label, name in CTR_MODELS],
    *[("II", "Cross-domain", label, name, "single") for label, name in CROSS_DOMAIN],
    ("II", "Ours", "eLiveRec wo.M", "eliverec_wo_m", "single"),
    ("II", "Ours", "eLiveRec", "eliverec", "adaptive"),
    ("II", "Ours", "eLiveRec cross (not in the paper)", "eliverec_cross", "adaptive"),
    ("III", "", "BST_Dual", "bst_dual", "single"),
    ("III", "", "ETA_Dual", "eta_dual", "single"),
    *[("III", "", f"eLiveRec {v}", f"eliverec_{k}", "adaptive") for k, v in
      (("wo_p", "wo.P"), ("wo_c", "wo.C"), ("wo_n", "wo.N"), ("wo_d", "wo.D"), ("cos", "Cos"), ("euc", "Euc"),
       ("sr", "SR"))],
    ("III", "", "eLiveRec", "eliverec", "adaptive"),
    *[("IV", label, variant, name, mode) for label, name in
      (("DIN", "din_dual"), ("HGN", "hgn_dual"), ("BST", "bst_dual"), ("ETA", "eta_dual"), ("MiNet", "minet"))
      for variant, mode in (("single task", "single"), ("vanilla MTL", "vanilla"), ("adaptive MTL", "adaptive"))],
    ("IV", "eLiveRec", "single task", "eliverec_wo_m", "single"),
    ("IV", "eLiveRec", "vanilla MTL", "eliverec_vanilla", "vanilla"),
    ("IV", "eLiveRec", "adaptive MTL", "eliverec", "adaptive"),
]
DUALS = [(f"{n}_dual", "single") for n in ("wdl", "din", "dien", "hgn", "bst", "eta")]
#: ``--rows headline``: eLiveRec, its wo.M and wo.D ablations, the dual baselines, the cross-domain group and
#: eliverec_cross (the cross-domain prototypes of benchmarks/results/mechanism.md) (+ reference rows).
HEADLINE = {("eliverec", "adaptive"), ("eliverec_cross", "adaptive"), ("eliverec_wo_m", "single"),
            ("eliverec_wo_d", "adaptive"), *DUALS,
            ("can_dual", "single"), *[(name, "single") for _, name in CROSS_DOMAIN]}
#: The acceptance check: these must beat the logging policy on the serving-position AUC.
MUST_BEAT_POLICY = [("eliverec", "adaptive"), *DUALS]
#: Run first: the reference, then eLiveRec, then the rest of the headline (partial runs say the most).
FIRST = [REFERENCE, ("eliverec", "adaptive"), ("eliverec_wo_m", "single"), ("bst_dual", "single"),
         ("hgn_dual", "single"), ("wdl_dual", "single"), ("din_dual", "single"), ("eliverec_wo_d", "adaptive"),
         ("dien_dual", "single")]
#: Cells whose z parts get the linear probe (eliverec/evaluation/probe.py): the paper's eLiveRec and the cross form.
PROBED = ("eliverec", "eliverec_cross")
#: Paired comparisons between two rows other than the references: (a, b, what a - b measures).
PAIRS: list[tuple[tuple[str, str], tuple[str, str], str]] = [
    (("eliverec_cross", "adaptive"), ("eliverec", "adaptive"), "cross-domain prototypes (eLiveRec cross - eLiveRec)"),
    (("eliverec", "adaptive"), ("eliverec_wo_d", "adaptive"), "the disentangled encoder (eLiveRec - wo.D)"),
    (("eliverec", "adaptive"), ("eliverec_wo_m", "single"), "adaptive multi-task learning (eLiveRec - wo.M)"),
]
QUICK_CELLS = {REFERENCE, ("wdl_dual", "single"), ("eliverec", "adaptive")}
TITLES = {"II": "Table II: recommendation performance", "III": "Table III: ablation of the disentangled encoder",
          "IV": "Table IV: ablation of the adaptive multi-task learning"}


def cell_key(model: str, mtl: str) -> str:
    """File name of a cell (model and multi-task mode)."""
    return f"{model}__{mtl}"


def selected(table: str, model: str, mtl: str, only: str | None, rows: str, quick: bool) -> bool:
    """Whether a table row is part of this invocation (``--only``, ``--rows``, ``--quick``)."""
    if only and table != only:
        return False
    if quick:
        return (model, mtl) in QUICK_CELLS
    return rows == "all" or (model, mtl) in HEADLINE


def cells_for(only: str | None, rows: str, quick: bool) -> list[tuple[str, str]]:
    """Distinct (model, mtl) cells: the reference and headline cells first, then table order."""
    out: list[tuple[str, str]] = []
    for table, _, _, model, mtl in ROWS:
        if selected(table, model, mtl, only, rows, quick) and (model, mtl) not in out:
            out.append((model, mtl))
    return sorted(out, key=lambda c: FIRST.index(c) if c in FIRST else len(FIRST))


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ data
def seed_settings(profile: str, seed: int, root: Path, sets: list[str]) -> Any:
    """Settings of one seed: its own data root and MLflow store; no model logging (scored in-process)."""
    from eliverec.config import load_settings

    return load_settings(profile, overrides=[*sets, f"seed={seed}", f"tracking.uri=sqlite:///{root}/mlflow.db",
                                             "tracking.log_model=false", "tracking.experiment=paper-tables"],
                         data_dir=root / "data")


def data_fingerprint(settings: Any) -> str:
    """What the seed's data depend on: the seed, the world and the feature settings."""
    tree = settings.section_dict()
    features = {k: v for k, v in tree["features"].items() if k not in NOT_DATA}
    return fingerprint({"seed": tree["seed"], "world": tree["world"], "features": features})


def reference_fingerprint(settings: Any) -> str:
    """What the reference rows depend on: the data and the serving position (of the serving-position oracle)."""
    return fingerprint({"data": data_fingerprint(settings), "serve_position": settings.model.serve_position})


def cell_settings(settings: Any, model: str, mtl: str) -> Any:
    """The settings a cell trains with: ``model.mtl`` set, then the model and its tuned values applied."""
    from eliverec.config import Settings
    from eliverec.training.trainer import with_model

    tree = settings.section_dict()
    tree["model"]["mtl"] = mtl
    return with_model(Settings.model_validate(tree), model)


def cell_fingerprint(settings: Any, model: str, mtl: str) -> str:
    """What a cell's result depends on: its data, model and training settings (not threads or logging)."""
    tree = cell_settings(settings, model, mtl).section_dict()
    train = {k: v for k, v in tree["train"].items() if k not in NOT_LEARNING}
    own = {k: v for k, v in tree["model"].items() if k not in ETA_ONLY or model.startswith("eta")}
    if not own.get("match_features", False):  # off: the fingerprint of the cells recorded before the option
        own.pop("match_features", None)
    return fingerprint({"data": data_fingerprint(settings), "model": own, "train": train})


def prepare(settings: Any) -> str:
    """Simulate, ingest and feature one seed's world once (again when its settings changed); the test day."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import World, simulate

    data = Path(settings.data_dir)
    done = data / "_prepared.json"
    fp = data_fingerprint(settings)
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
        return json.loads(done.read_text())["test_day"]
    if data.parent.exists():
        shutil.rmtree(data.parent)  # data, MLflow store and checkpoints of other settings
    summary = simulate(settings, progress=False)
    for date in summary["dates"]:
        ingest_day(settings, date)
    test_day = summary["dates"][-1]
    build = build_features(settings, test_day)
    info = {"test_day": test_day, "fingerprint": fp, "world": World.from_settings(settings).describe(),
            "train_rows": build["train_rows"], "test_rows": build["test_rows"]}
    done.write_text(json.dumps(info, indent=2))
    return test_day


def seed_references(settings: Any, test_day: str, folder: Path, samples: int) -> dict[str, Any]:
    """Policy and oracle scores of the seed's test day (``_day.npz``), their metrics and bootstrap replicates."""
    from eliverec.evaluation.oracle import load_test_day, oracle_scores, policy_scores
    from eliverec.scoring.metrics import auc, gauc, topk_metrics
    from eliverec.world import World

    path, arrays = folder / "_ceiling.json", folder / "_day.npz"
    fp = reference_fingerprint(settings)
    serve = settings.model.serve_position
    if path.is_file() and arrays.is_file() and json.loads(path.read_text()).get("fingerprint") == fp:
        return json.loads(path.read_text())
    day = load_test_day(settings, test_day)
    world = World.from_settings(settings)
    scores = {POLICY: policy_scores(world, day), ORACLE_LOGGED: oracle_scores(world, day),
              ORACLE_SERVING: world.oracle(day.users, day.channels, day.ts, np.full_like(day.position, serve))["watch"]}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(arrays, users=day.users.astype(np.int32), watch=day.watch.astype(np.uint8),
                        **{k.lstrip("_"): v.astype(np.float32) for k, v in scores.items()})
    rand = np.random.default_rng(settings.seed).random(len(day))
    out: dict[str, Any] = {"test_day": test_day, "fingerprint": fp, "serve_position": serve, "rows": float(len(day)),
                           "users": int(np.unique(day.users).size), "watch_rate": float(day.watch.mean()),
                           "random_auc": auc(day.watch, rand), "random_gauc": gauc(day.users, day.watch, rand)}
    for name, s in scores.items():
        prec, ndcg = topk_metrics(day.users, day.watch, s, 10)
        out[name.lstrip("_")] = {"auc": auc(day.watch, s), "gauc": gauc(day.users, day.watch, s),
                                 "prec@10": prec, "ndcg@10": ndcg}
        boot_replicates(folder / f"{name}.boot.npz", scores[name], folder, samples, fp)
    out.update(json.loads((Path(settings.data_dir) / "_prepared.json").read_text()))
    out["fingerprint"] = fp
    atomic_json(path, out)
    return out


def tree_reference(settings: Any, test_day: str, folder: Path, samples: int, ceil: dict[str, Any]) -> dict[str, Any]:
    """Add the feature-trees reference to a seed's ``_day.npz`` and ``_ceiling.json`` (once per data fingerprint).

    The trees are fitted on all the training days the networks read (train and validation split alike;
    scikit-learn holds out its own random tenth for early stopping) and score the test day.
    """
    from eliverec.evaluation.reference import INPUT_KEYS, tree_scores
    from eliverec.features.dataset import load_days
    from eliverec.layout import previous_days
    from eliverec.scoring.metrics import auc, gauc, topk_metrics

    if TREES.lstrip("_") in ceil:
        return ceil
    keys = (*INPUT_KEYS, "watch")
    dates = previous_days(test_day, settings.features.train_days)
    train = load_days(settings.data_dir, dates)
    test = load_days(settings.data_dir, [test_day])
    scores = tree_scores({k: train.column(k) for k in keys}, {k: test.column(k) for k in keys}, settings.seed)
    day = load_day(folder)
    if len(scores) != len(day["watch"]):
        raise RuntimeError(f"{test_day}: {len(scores)} feature rows but {len(day['watch'])} test-day samples")
    np.savez_compressed(folder / "_day.npz", **day, **{TREES.lstrip("_"): scores})
    prec, ndcg = topk_metrics(day["users"], day["watch"], scores, 10)
    ceil[TREES.lstrip("_")] = {"auc": auc(day["watch"], scores), "gauc": gauc(day["users"], day["watch"], scores),
                               "prec@10": prec, "ndcg@10": ndcg}
    boot_replicates(folder / f"{TREES}.boot.npz", scores, folder, samples, ceil["fingerprint"])
    atomic_json(folder / "_ceiling.json", ceil)
    return ceil


def load_day(folder: Path) -> dict[str, np.ndarray]:
    """A seed's ``_day.npz`` (users, watch and the reference scores)."""
    with np.load(folder / "_day.npz") as z:
        return {k: z[k] for k in z.files}


# ------------------------------------------------------------------------------------------------ bootstrap
def boot_replicates(path: Path, scores: np.ndarray | None, folder: Path, samples: int, fp: str) -> dict[str, Any]:
    """A model's AUC and gAUC on the seed's test day and under every bootstrap draw (cached in ``path``).

    The draws resample the day's users (:func:`eliverec.evaluation.gate.user_draws` with
    ``BOOT_SEED``), so every model of a seed gets the same draws and differences of replicates are
    paired. The cache is reused when ``samples`` and ``fp`` (the model's fingerprint) match and, given
    ``scores``, when it was made from these very scores (their digest); without ``scores``
    (predictions not on disk) the cache is all there is.
    """
    digest = scores_digest(scores) if scores is not None else None
    if path.is_file():
        with np.load(path) as z:
            cached = {k: z[k] for k in z.files}
        fresh = digest is None or str(cached.get("scores_digest", "")) == digest
        if int(cached["samples"]) == samples and str(cached["fingerprint"]) == fp and fresh:
            return cached
        if scores is None:
            raise FileNotFoundError(f"{path} holds {int(cached['samples'])} draws of other settings and the "
                                    "predictions to redo it are missing")
    if scores is None:
        raise FileNotFoundError(f"{path} and the predictions it comes from are missing")
    from eliverec.evaluation.gate import replicates, user_draws

    day = load_day(folder)
    codes, draws = user_draws(day["users"], samples, BOOT_SEED)
    reps = replicates(codes, draws, day["watch"], scores)
    out = {"samples": np.int64(samples), "fingerprint": np.str_(fp), "scores_digest": np.str_(digest)}
    for key, (value, draws_) in reps.items():
        out[f"{key}_point"], out[key] = np.float64(value), draws_.astype(np.float64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def scores_digest(scores: np.ndarray) -> str:
    """A short digest of a score vector: the replicates cached for it are stale when it changes."""
    return hashlib.blake2b(np.ascontiguousarray(scores, np.float32).tobytes(), digest_size=8).hexdigest()


def paired(a: dict[str, Any], b: dict[str, Any], metric: str) -> dict[str, Any]:
    """Per-seed paired difference ``a - b`` of ``metric`` with its percentile interval (replicates of one seed)."""
    from eliverec.evaluation.gate import percentile_interval

    lo, hi = percentile_interval(a[metric] - b[metric], CONFIDENCE)
    return {"diff": float(a[f"{metric}_point"] - b[f"{metric}_point"]), "lo": lo, "hi": hi}


def combine(per_seed: dict[int, tuple[dict[str, Any], dict[str, Any]]], metric: str) -> dict[str, Any]:
    """Paired ``a - b`` over seeds: per-seed intervals, the mean difference and the combined interval.

    ``per_seed`` maps a seed to the replicates of ``a`` and ``b`` on that seed. The combined
    interval is the percentile interval of the seed-averaged replicate differences (module docstring).

    >>> r = {"auc": np.linspace(0.6, 0.7, 201), "auc_point": 0.65}
    >>> c = combine({0: (r, r), 1: (r, r)}, "auc")
    >>> (c["diff"], c["lo"], c["hi"], c["sig"])
    (0.0, 0.0, 0.0, 'n.s.')
    """
    from eliverec.evaluation.gate import percentile_interval

    if not per_seed:
        return {"diff": None, "lo": None, "hi": None, "sig": "n/a", "seeds": {}}
    seeds = {s: paired(a, b, metric) for s, (a, b) in sorted(per_seed.items())}
    n = min(len(a[metric]) for a, _ in per_seed.values())
    mean_draws = np.mean([a[metric][:n] - b[metric][:n] for a, b in per_seed.values()], axis=0)
    lo, hi = percentile_interval(mean_draws, CONFIDENCE)
    diff = float(np.mean([v["diff"] for v in seeds.values()]))
    return {"diff": diff, "lo": lo, "hi": hi, "sig": significance(lo, hi), "seeds": seeds}


def significance(lo: float, hi: float) -> str:
    """``above`` / ``below`` when the interval excludes 0, else ``n.s.`` (``n/a`` without one).

    >>> significance(0.001, 0.01), significance(-0.02, -0.001), significance(-0.01, 0.01)
    ('above', 'below', 'n.s.')
    """
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return "above" if lo > 0 else "below" if hi < 0 else "n.s."


# ------------------------------------------------------------------------------------------------ cells
def at_serving_position(ds: Any, net: Any) -> Any:
    """The test day with every row at the network's serving position (what serving scores)."""
    from eliverec.scoring.scores import at_position

    return at_position(ds, int(net.cfg.serve_position))


def run_cell(settings: Any, model: str, mtl: str, test_day: str, ceil: dict[str, Any], folder: Path,
             samples: int) -> dict[str, Any]:
    """Train one cell, score the test day at the serving and the logged position, save the predictions.

    Writes ``<cell>.npy`` (serving-position watch predictions) and ``<cell>.boot.npz`` in ``folder``;
    returns the cell's record (written by the caller as ``<cell>.json``).
    """
    import pandas as pd
    import torch

    from eliverec.evaluation.oracle import gap_closed
    from eliverec.evaluation.probe import capture_parts, load_trained, probe, split_parts
    from eliverec.features.dataset import load_days
    from eliverec.scoring.metrics import compute_metrics
    from eliverec.scoring.scores import predict, scored_frame
    from eliverec.training.trainer import train

    fp = cell_fingerprint(settings, model, mtl)
    key = cell_key(model, mtl)
    t0 = time.perf_counter()
    result = train(cell_settings(settings, model, mtl), model_name=model, end_date=test_day,
                   run_name=f"{key}-{fp}", resume=True)
    train_s = time.perf_counter() - t0
    net = load_trained(result.checkpoint_dir)
    test = load_days(settings.data_dir, [test_day])
    day = load_day(folder)
    if not np.array_equal(test.column("watch") > 0, day["watch"] > 0):
        raise RuntimeError(f"{test_day}: the feature tensors and samples.parquet disagree on the labels")
    device, bs = torch.device("cpu"), settings.evaluation.batch_size
    probed = model in PROBED
    with capture_parts(net) if probed else contextlib.nullcontext([]) as seen:  # z parts for the probe, same pass
        serving = predict(net, at_serving_position(test, net), bs, device)
    logged = predict(net, test, bs, device)
    frame = scored_frame(test, pd.DataFrame(serving), pd.DataFrame(logged))
    metrics = compute_metrics(frame, settings.evaluation.k, settings.evaluation.calibration_bins)
    for m in PAIRED:  # share of the policy-to-oracle (serving position) gap closed
        metrics[f"gap_closed/{m}"] = gap_closed(float(metrics[m]), ceil["policy"][m], ceil["oracle_serving"][m])
    watch = serving["watch"].astype(np.float32)
    np.save(folder / f"{key}.npy", watch)
    boot_replicates(folder / f"{key}.boot.npz", watch, folder, samples, fp)
    out: dict[str, Any] = {"model": model, "mtl": mtl, "seed": settings.seed, "test_day": test_day,
                           "fingerprint": fp, "steps": result.steps,
                           "stop_reason": getattr(result, "stop_reason", "n/a"),
                           "train_seconds": round(train_s, 1), "val_auc": result.metrics.get("val/auc"),
                           "run_id": result.run_id, "metrics": {k: _num(v) for k, v in metrics.items()}}
    if probed:
        out["probe"] = probe(settings, net, test_day, seed=settings.seed, parts=split_parts(net, seen))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def cell_done(folder: Path, key: str, fp: str) -> bool:
    """A cell's record is on disk with the current fingerprint and its predictions or replicates beside it."""
    path = folder / f"{key}.json"
    if not path.is_file() or json.loads(path.read_text()).get("fingerprint") != fp:
        return False
    return (folder / f"{key}.npy").is_file() or (folder / f"{key}.boot.npz").is_file()


# ------------------------------------------------------------------------------------------------ report
def _num(v: Any) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and math.isnan(v) else v


def atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def machine() -> dict[str, Any]:
    """Machine facts for the record."""
    import torch

    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "torch": torch.__version__, "torch_threads":
            torch.get_num_threads(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg(),
            "note": f"1-min load average at start {os.getloadavg()[0]:.1f}; cells train with train.threads"}


def collect(folder: Path, fps: dict[int, dict[str, str]]) -> tuple[dict[str, dict[int, Any]], dict[int, Any]]:
    """Finished cells ``{cell: {seed: record}}`` with the current fingerprints, and the seeds' references."""
    cells: dict[str, dict[int, Any]] = {}
    ceilings: dict[int, Any] = {}
    for seed, cell_fps in fps.items():
        sd = folder / f"seed{seed}"
        if (sd / "_ceiling.json").is_file():
            c = json.loads((sd / "_ceiling.json").read_text())
            if c.get("fingerprint") == cell_fps.get("_data"):
                ceilings[seed] = c
        for key, fp in cell_fps.items():
            if key != "_data" and cell_done(sd, key, fp):
                cells.setdefault(key, {})[seed] = json.loads((sd / f"{key}.json").read_text())
    return cells, ceilings


def replicates_of(folder: Path, seed: int, name: str, fp: str, samples: int) -> dict[str, Any] | None:
    """The bootstrap replicates of a cell or reference (``name``) on one seed; None when unavailable."""
    sd = folder / f"seed{seed}"
    preds = sd / f"{name}.npy"
    if not name.startswith("_") and not cell_done(sd, name, fp):
        return None  # not finished with these settings: predictions on disk may be another setting's
    try:
        if name.startswith("_"):
            scores = load_day(sd).get(name.lstrip("_")) if (sd / "_day.npz").is_file() else None
        else:
            scores = np.load(preds) if preds.is_file() else None
        return boot_replicates(sd / f"{name}.boot.npz", scores, sd, samples, fp)
    except FileNotFoundError:
        return None


def _stat(values: list[Any]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def load_replicates(folder: Path, fps: dict[int, dict[str, str]], ceilings: dict[int, Any], names: set[str],
                    samples: int) -> dict[tuple[int, str], dict[str, Any] | None]:
    """``{(seed, name): bootstrap replicates}`` of every row ``name`` on every seed with a reference."""
    reps: dict[tuple[int, str], dict[str, Any] | None] = {}
    for seed in ceilings:
        for name in names:
            fp = fps[seed]["_data"] if name.startswith("_") else fps[seed].get(name, "")
            reps[(seed, name)] = replicates_of(folder, seed, name, fp, samples)
    return reps


def paired_rows(reps: dict[tuple[int, str], dict[str, Any] | None], a: str, b: str) -> dict[str, dict[str, Any]]:
    """``{metric: combined paired a - b}`` over the seeds where both rows have replicates."""
    per_seed = {s: (reps[(s, a)], reps[(s, b)]) for s, n in reps
                if n == a and reps.get((s, a)) is not None and reps.get((s, b)) is not None}
    return {m: combine(per_seed, m) for m in PAIRED}


def comparisons(reps: dict[tuple[int, str], dict[str, Any] | None],
                names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row name: {"<metric>/vs_eta_dual" | "<metric>/vs_policy": combined paired result}}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in names:
        out[name] = {}
        for other, label in ((cell_key(*REFERENCE), "vs_eta_dual"), (POLICY, "vs_policy")):
            out[name].update({f"{m}/{label}": c for m, c in paired_rows(reps, name, other).items()})
    return out


def row_pairs(reps: dict[tuple[int, str], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The :data:`PAIRS` comparisons (paired like the reference columns) whose two rows are both on disk."""
    out = []
    for a, b, what in PAIRS:
        metrics = paired_rows(reps, cell_key(*a), cell_key(*b))
        if metrics[PAIRED[0]]["seeds"]:
            out.append({"a": cell_key(*a), "b": cell_key(*b), "what": what, **metrics})
    return out


def pairs_markdown(pairs: list[dict[str, Any]]) -> list[str]:
    """The section of the :data:`PAIRS` comparisons."""
    if not pairs:
        return []
    lines = ["## Paired comparisons between rows", "",
             "Same seeds, test days and bootstrap draws as the tables; `a - b`, mean over seeds [95 % CI].", "",
             "| what | a | b | Δ AUC | sig. | Δ gAUC | sig. | seeds |", "|" + " --- |" * 8]
    for p in pairs:
        auc, gauc = _ci(p["auc"]), _ci(p["gauc"])
        lines.append(f"| {p['what']} | {p['a']} | {p['b']} | {auc[0]} | {auc[1]} | {gauc[0]} | {gauc[1]} | "
                     f"{len(p['auc']['seeds'])} |")
    return [*lines, ""]


def tables(cells: dict[str, dict[int, Any]], ceilings: dict[int, Any], paired_: dict[str, Any],
           args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Rows of each table: mean and std over the finished seeds and the paired comparisons."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table in ("II", "III", "IV"):
        if args.only and table != args.only:
            continue
        rows = []
        for name, label in REFERENCE_ROWS:
            row = {"group": "Reference", "row": label, "model": name, "mtl": "", "seeds": sorted(ceilings)}
            for m in METRICS:
                row[m] = _stat([c.get(name.lstrip("_"), {}).get(m) for c in ceilings.values()])
            rows.append({**row, "paired": paired_.get(name, {})})
        for t, group, label, model, mtl in ROWS:
            chosen = selected(t, model, mtl, args.only, args.rows, args.quick) or (model, mtl) in args.cells
            if t != table or not chosen:
                continue
            key = cell_key(model, mtl)
            done = cells.get(key, {})
            row = {"group": group, "row": label, "model": model, "mtl": mtl, "seeds": sorted(done)}
            for m in (*METRICS, "logged_pos/auc", "logged_pos/gauc", "gap_closed/auc", "gap_closed/gauc"):
                row[m] = _stat([r["metrics"].get(m) for r in done.values()])
            row["train_seconds"] = _stat([r["train_seconds"] for r in done.values()])
            row["steps"] = _stat([r["steps"] for r in done.values()])
            row["stop_reasons"] = sorted({str(r.get("stop_reason", "n/a")) for r in done.values()})
            rows.append({**row, "paired": paired_.get(key, {})})
        out[table] = rows
    return out


def acceptance(paired_: dict[str, Any]) -> dict[str, Any]:
    """eLiveRec and every dual baseline above the logging policy on the serving-position AUC?"""
    verdicts = {cell_key(*c): paired_.get(cell_key(*c), {}).get("auc/vs_policy", {}).get("sig", "n/a")
                for c in MUST_BEAT_POLICY}
    missing = [k for k, v in verdicts.items() if v == "n/a"]
    return {"all_above_policy": not missing and all(v == "above" for v in verdicts.values()),
            "complete": not missing, "verdicts": verdicts}


def _pm(s: dict[str, Any], digits: int = 4) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" if s["std"] is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _ci(c: dict[str, Any] | None, reference: bool = False) -> tuple[str, str]:
    """``+0.0012 [-0.0003, +0.0030]`` and the flag of one combined comparison."""
    if reference:
        return "reference", ""
    if not c or c.get("diff") is None:
        return "n/a", ""
    return f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]", c["sig"]


def markdown(report: dict[str, Any]) -> str:
    """The tables in the paper's layout with the paired comparisons, then the other metrics and facts."""
    ref = cell_key(*REFERENCE)
    lines = [f"# Paper tables on the simulated world ({report['run']}; rows: {report['rows']})", "",
             f"Seeds requested: {report['seeds']}; cells finished: {report['cells_finished']} of "
             f"{report['cells_planned']}; wall time of the last invocation {report['wall_seconds']:.0f} s, "
             f"training + scoring time of all finished cells {report.get('cell_seconds_total', 0):.0f} s; "
             f"status: {report['status']}.", "",
             "Every model is scored at its **serving position** (`model.serve_position`, what serving does). "
             "AUC and gAUC: mean ± sample std over the seeds finished (column `n`). "
             "Δ: the **paired** difference with ETA dual (the paper's online baseline) or the logging policy on "
             "the same seed's test day, mean over seeds, with a 95 % user-level bootstrap interval "
             f"({report['bootstrap']} draws per seed, the test day's users resampled with replacement, the same "
             "draws for every model of a seed; the combined interval is the percentile interval of the "
             "seed-averaged replicate differences, users resampled independently per seed; it reflects the users' "
             "sampling noise given the trained models, not the training noise between seeds). "
             "`sig.`: `above` / `below` when the interval excludes 0, else `n.s.`.", ""]
    acc = report["acceptance"]
    verdicts = ", ".join(f"{k.split('__')[0]} {v}" for k, v in acc["verdicts"].items())
    lines += [f"**Acceptance** (eLiveRec and every dual baseline significantly above the logging policy on the "
              f"serving-position AUC): **{'yes' if acc['all_above_policy'] else 'no'}**"
              f"{'' if acc['complete'] else ' (incomplete)'}; {verdicts}.", ""]
    head = ("| group | model | AUC | Δ AUC vs ETA dual [95% CI] | sig. | Δ AUC vs logging policy [95% CI] | sig. | "
            "gAUC | Δ gAUC vs ETA dual [95% CI] | sig. | Δ gAUC vs logging policy [95% CI] | sig. | n |")
    for table, rows in report["tables"].items():
        lines += [f"## {TITLES[table]}", "", head, "|" + " --- |" * 13]
        for r in rows:
            p, is_ref, is_pol = r["paired"], cell_key(r["model"], r["mtl"]) == ref, r["model"] == POLICY
            cols = []
            for m in PAIRED:
                cols += [_pm(r[m]), *_ci(p.get(f"{m}/vs_eta_dual"), is_ref), *_ci(p.get(f"{m}/vs_policy"), is_pol)]
            lines.append(f"| {r['group']} | {r['row']} | {' | '.join(cols)} | {len(r['seeds'])} |")
        lines.append("")
    lines += ["## Other metrics (serving position unless said)", "",
              "| model | Prec@10 | NDCG@10 | AUC (logged pos.) | gAUC (logged pos.) | gap closed (AUC) | steps | "
              "train s | stopped by |", "|" + " --- |" * 9]
    seen: set[str] = set()
    for rows in report["tables"].values():
        for r in rows:
            key = f"{r['model']}__{r['mtl']}"
            if r["group"] == "Reference" or key in seen:
                continue
            seen.add(key)
            lines.append(f"| {r['model']} ({r['mtl']}) | {_pm(r['prec@10'])} | {_pm(r['ndcg@10'])} | "
                         f"{_pm(r['logged_pos/auc'])} | {_pm(r['logged_pos/gauc'])} | {_pm(r['gap_closed/auc'])} | "
                         f"{_pm(r['steps'], 0)} | {_pm(r['train_seconds'], 0)} | {', '.join(r['stop_reasons'])} |")
    lines += ["", "`gap closed` = (model AUC - policy AUC) / (oracle AUC at the serving position - policy AUC).", "",
              "## Test days per seed", "",
              "| seed | rows | users | watch rate | policy AUC | oracle AUC (serving pos.) | oracle AUC (logged pos.) "
              "| random AUC |", "|" + " --- |" * 8]
    for seed, c in sorted(report["ceilings"].items()):
        lines.append(f"| {seed} | {int(c['rows'])} | {c['users']} | {c['watch_rate']:.4f} | {c['policy']['auc']:.4f} "
                     f"| {c['oracle_serving']['auc']:.4f} | {c['oracle_logged']['auc']:.4f} | "
                     f"{c['random_auc']:.4f} |")
    lines.append("")
    lines += pairs_markdown(report.get("pairs", []))
    for model, seed, pr in [(m, s, pr) for m, per in report["probes"].items() for s, pr in sorted(per.items())]:
        lines += [f"## Linear probe of {model}'s parts (seed {seed}, {pr['test_users']} held-out users)", "",
                  "Macro AUC / precision@k of a one-vs-rest logistic probe from the user's mean part to the "
                  "intent categories (prior precision@k in brackets).", "",
                  "| part | consistent | product-specific | live-specific |", "| --- | --- | --- | --- |"]
        for part, sets in pr["results"].items():
            cols = [f"{r['auc']:.3f} / {r['precision@k']:.3f} ({r['prior_precision@k']:.3f})" for r in sets.values()]
            lines.append(f"| {part} | {' | '.join(cols)} |")
        lines.append("")
    m = report["machine"]
    lines += [f"Machine: {m['cores']} cores, {m['cpu_model']}, torch {m['torch']} ({m['torch_threads']} threads); "
              f"{m['note']}. Wall time of the last invocation: {report['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def fingerprints(args: argparse.Namespace, data_root: Path) -> dict[int, dict[str, str]]:
    """``{seed: {"_data": data fingerprint, cell: cell fingerprint}}`` for the current settings."""
    out: dict[int, dict[str, str]] = {}
    for seed in args.seeds:
        s = seed_settings(args.profile, seed, data_root / f"seed{seed}", args.set)
        out[seed] = {"_data": reference_fingerprint(s), **{cell_key(*c): cell_fingerprint(s, *c) for c in args.cells}}
    return out


def write_report(args: argparse.Namespace, folder: Path, fps: dict[int, dict[str, str]], started: float,
                 status: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Collect the finished cells, compute the paired comparisons, write ``<stem>.json`` and ``.md``."""
    cells, ceilings = collect(folder, fps)
    finished = sum(len(v) for v in cells.values())
    names = [name for name, _ in REFERENCE_ROWS] + [cell_key(*c) for c in args.cells]
    reps = load_replicates(folder, fps, ceilings, {*names, cell_key(*REFERENCE), POLICY}, args.bootstrap)
    paired_ = comparisons(reps, names)
    probes = {m: {s: r["probe"] for s, r in cells.get(cell_key(m, "adaptive"), {}).items() if "probe" in r}
              for m in PROBED}
    report = {"run": args.run, "profile": args.profile, "set": args.set, "rows": args.rows, "seeds": args.seeds,
              "only": args.only, "quick": args.quick, "bootstrap": args.bootstrap, "confidence": CONFIDENCE,
              "status": status, "cells_planned": len(args.cells) * len(args.seeds), "cells_finished": finished,
              "wall_seconds": time.time() - started, "machine": facts,
              "cell_seconds_total": sum(r.get("seconds", 0.0) for v in cells.values() for r in v.values()),
              "acceptance": acceptance(paired_), "tables": tables(cells, ceilings, paired_, args),
              "ceilings": ceilings, "probes": probes, "pairs": row_pairs(reps),
              "cells": {k: {s: {kk: vv for kk, vv in r.items() if kk != "probe"} for s, r in v.items()}
                        for k, v in cells.items()}}
    atomic_json(RESULTS / f"{args.stem}.json", report)
    (RESULTS / f"{args.stem}.md").write_text(markdown(report))
    return report


# ------------------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="world seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--only", choices=["II", "III", "IV"], default=None, help="only this table's cells")
    ap.add_argument("--rows", choices=["all", "headline"], default="all",
                    help="all rows (default) or the headline: eLiveRec, wo.M, wo.D and the six dual baselines")
    ap.add_argument("--models", nargs="+", default=None, help="only the cells of these registered models")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 cells, the tiny profile, 200 draws")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly before this wall time (0: none)")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the report from the cells on disk")
    ap.add_argument("--profile", default=None, help="settings profile (default bench; quick: tiny)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="settings override (repeatable); results go to their own folder and report")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap draws per seed (default 1000; quick: 200)")
    ap.add_argument("--data-root", type=Path, default=None, help="where the seeds' data go "
                    "(default <data_dir>/paper_tables/<run>)")
    args = ap.parse_args(argv)
    args.profile = args.profile or ("tiny" if args.quick else "bench")
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.bootstrap = args.bootstrap or (200 if args.quick else 1000)
    args.cells = cells_for(args.only, args.rows, args.quick)
    if args.models:
        unknown = sorted(set(args.models) - {m for m, _ in cells_for(None, "all", False)})
        if unknown:
            ap.error(f"--models: {', '.join(unknown)} are not rows of the tables")
        # --quick --models: those models' rows on the tiny profile (and the reference they are paired with)
        pool = cells_for(args.only, "all", False) if args.quick else args.cells
        args.cells = [c for c in pool if c[0] in args.models or (args.quick and c == REFERENCE)]
    args.run = args.profile if not args.set else f"{args.profile}-{fingerprint(sorted(args.set))[:8]}"
    args.stem = ("paper_tables_quick" if args.quick else "paper_tables") + ("" if not args.set else f"_{args.run}")
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from eliverec.config import load_settings

    args = parse(argv)
    console = Console(stderr=True)
    started = time.time()
    facts = machine()
    data_root = args.data_root or Path(load_settings(args.profile).data_dir) / "paper_tables" / args.run
    folder = RESULTS / "paper_tables" / args.run
    fps = fingerprints(args, data_root)
    budget = args.max_minutes * 60.0
    longest = 0.0  # the longest cell so far: a cell starts only if one that long still fits the budget
    status = "finished"
    if args.report_only:
        report = write_report(args, folder, fps, started, "report only (cells on disk)", facts)
        console.print(f"{report['cells_finished']}/{report['cells_planned']} cells on disk; report rewritten")
        return 0
    write_report(args, folder, fps, started, "running", facts)
    for seed in args.seeds:
        settings = seed_settings(args.profile, seed, data_root / f"seed{seed}", args.set)
        sd = folder / f"seed{seed}"
        todo = [c for c in args.cells if not cell_done(sd, cell_key(*c), fps[seed][cell_key(*c)])]
        ceiling_ok = (sd / "_ceiling.json").is_file() and \
            json.loads((sd / "_ceiling.json").read_text()).get("fingerprint") == fps[seed]["_data"]
        ceiling_ok = ceiling_ok and TREES.lstrip("_") in json.loads((sd / "_ceiling.json").read_text())
        if not todo and ceiling_ok:
            continue
        if budget and time.time() - started + max(longest, 60.0) > budget:
            status = "stopped (--max-minutes)"
            break
        t0 = time.perf_counter()
        test_day = prepare(settings)
        ceil = tree_reference(settings, test_day, sd, args.bootstrap, seed_references(settings, test_day, sd,
                                                                                   args.bootstrap))
        console.print(f"seed {seed}: data ready in {time.perf_counter() - t0:.0f} s; policy AUC "
                      f"{ceil['policy']['auc']:.4f}, oracle AUC {ceil['oracle_serving']['auc']:.4f} (serving pos.), "
                      f"{ceil['oracle_logged']['auc']:.4f} (logged pos.); feature trees AUC {ceil['trees']['auc']:.4f}")
        for model, mtl in todo:
            if budget and time.time() - started + longest > budget:
                status = "stopped (--max-minutes)"
                break
            t1 = time.perf_counter()
            res = run_cell(settings, model, mtl, test_day, ceil, sd, args.bootstrap)
            atomic_json(sd / f"{cell_key(model, mtl)}.json", res)
            last_cell = time.perf_counter() - t1
            longest = max(longest, last_cell)
            m = res["metrics"]
            console.print(f"seed {seed} {model} ({mtl}): AUC {m['auc']:.4f} (logged pos. {m['logged_pos/auc']:.4f}) "
                          f"gAUC {m['gauc']:.4f}, {res['steps']} steps ({res['stop_reason']}) in {last_cell:.0f} s")
            write_report(args, folder, fps, started, "running", facts)
        if status != "finished":
            break
    report = write_report(args, folder, fps, started, status, facts)
    console.print(f"{report['cells_finished']}/{report['cells_planned']} cells; {status}; "
                  f"{RESULTS / args.stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

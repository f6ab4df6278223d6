"""Typed, frozen settings loaded from ``params.yaml``.

``params.yaml`` is the single source of truth: its top-level sections are the
``default`` profile; ``profiles.<name>`` holds deep overrides for the other
profiles (``tiny`` for tests, ``paper`` for the paper's hyper-parameters).
``$MLFLOW_TRACKING_URI``, ``$ELIVEREC_DATA_DIR`` and ``$ELIVEREC_PROFILE`` override the file
(for containers); overrides ``a.b=c`` (CLI ``--set``) are applied last. Unknown keys and bad
values are errors that name the key.

A data root is a whole world (:mod:`eliverec.layout`): with ``tracking.uri`` and
``monitor.workspace`` unset (null), the MLflow store and the Evidently workspace live under it.
``--data-dir`` and ``$ELIVEREC_DATA_DIR`` resolve against the current directory, like any path
on a command line; relative paths written in ``params.yaml`` resolve against its folder.

The ``tuned`` table holds per-model values chosen by ``eliverec tune``; loading validates it but
applies nothing: :func:`apply_tuned` (called by the trainer for the model it trains) does, leaving
alone every key that was given with ``--set`` (``Settings.explicit``), so the command line wins.

The search order for ``params.yaml``: the explicit path, ``$ELIVEREC_PARAMS``,
``./params.yaml``, then the repository root next to the package.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eliverec.errors import EliverecError
from eliverec.layout import DataLayout

PROFILES = ("tiny", "default", "paper")


class ConfigError(EliverecError, ValueError):
    """A configuration problem; the message names the file and the key."""


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- world
class WorldConfig(Section):
    """The simulated Taobao-Live world (DESIGN section 4)."""

    start_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    days: int = Field(ge=1)
    n_users: int = Field(ge=10)
    n_channels: int = Field(ge=5)
    n_anchors: int = Field(ge=2)
    n_products: int = Field(ge=10)
    n_categories: int = Field(ge=4)
    n_brands: int = Field(ge=2)
    shift_days: list[str] = Field(default_factory=list)
    shift_strength: float = Field(ge=0.0, le=1.0)
    files_per_day: int = Field(ge=1)
    gzip: bool
    gzip_level: int = Field(default=1, ge=1, le=9)
    warmup_days: int = Field(default=2, ge=0)
    n_consistent: int = Field(default=2, ge=1)
    n_product_specific: int = Field(default=2, ge=1)
    n_live_specific: int = Field(default=2, ge=1)
    feed_size: int = Field(default=8, ge=1, le=32)
    watches_per_feed: float = Field(default=0.9, gt=0.0)
    feeds_per_day: float = Field(default=4.0, gt=0.0)
    product_clicks_per_day: float = Field(default=10.0, gt=0.0)
    activity_sigma: float = Field(default=0.6, ge=0.0)
    low_activity_share: float = Field(default=0.25, ge=0.0, le=1.0)
    low_activity_factor: float = Field(default=0.08, gt=0.0, le=1.0)
    zipf_exponent: float = Field(default=1.0, ge=0.0)
    live_hours: float = Field(default=6.0, gt=0.0, le=24.0)
    stats_interval_min: int = Field(default=5, ge=1, le=60)
    drift_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    chunk_users: int = Field(default=10000, ge=1)


# --------------------------------------------------------------------------- ingest
class IngestConfig(Section):
    """Raw-log ingestion into bronze (DESIGN section 3)."""

    ts_tolerance_ms: int = Field(ge=0)
    max_id_len: int = Field(ge=1)
    max_quarantine_rate: float = Field(ge=0.0, le=1.0)
    chunk_bytes: int = Field(ge=1024)
    workers: int = Field(default=2, ge=1)  # parse/dedup/write threads (line-by-line parser: processes)
    fast_parse: bool = True  # pyarrow's JSON reader per chunk, orjson only for lines it cannot judge


# --------------------------------------------------------------------------- validate
class ValidateConfig(Section):
    """Great Expectations gates on bronze (``eliverec.data.suites``)."""

    trailing_days: int = Field(default=7, ge=1)  # days before the partition that give the row-count mean
    row_count_band: float = Field(default=0.5, gt=0.0)  # allowed relative deviation from that mean
    watch_rate_min: float = Field(default=0.01, ge=0.0, le=1.0)  # enter / impression
    watch_rate_max: float = Field(default=0.6, ge=0.0, le=1.0)
    max_examples: int = Field(default=5, ge=1)  # failing values shown per expectation
    allowed: dict[str, list[str]] = Field(default_factory=dict)  # "table.column" -> allowed values


# --------------------------------------------------------------------------- features
# the vocabulary spaces features.vocab must size (eliverec.features.hashing hashes into them)
#: Spaces hashed from string ids.
HASHED: tuple[str, ...] = (
    "user", "product", "category", "brand", "channel", "anchor", "scene", "gender", "age_bucket", "city_tier",
)
#: Fixed-range fields and the smallest vocabulary that holds all their values.
FIXED_MIN: dict[str, int] = {"hour": 25, "weekday": 8, "register_bucket": 3, "position": 2}

def check_vocab(vocab: Mapping[str, int]) -> None:
    """Raise ``ValueError`` naming the key when a vocabulary is missing or too small.

    >>> check_vocab({"hour": 10})
    Traceback (most recent call last):
    ...
    ValueError: features.vocab: missing user, product, category, brand, channel, anchor, scene, gender, \
age_bucket, city_tier, weekday, register_bucket, position; hour must be >= 25 (got 10)
    """
    missing = [k for k in (*HASHED, *FIXED_MIN) if k not in vocab]
    small = [f"{k} must be >= {FIXED_MIN.get(k, 2)} (got {v})" for k, v in vocab.items()
             if v < FIXED_MIN.get(k, 2)]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + small
    if problems:
        raise ValueError("features.vocab: " + "; ".join(problems))


class FeaturesConfig(Section):
    """Point-in-time samples and hashing (DESIGN section 3, "Samples")."""

    seq_len: int = Field(ge=1)
    min_stay_ms: int = Field(ge=0)
    lookback_days: int = Field(ge=0)
    train_days: int = Field(ge=1)
    hash_salt: str
    vocab: dict[str, int]
    chunk_rows: int = Field(default=131072, ge=1)
    # sharded build (flows/scale.py): user shards; 0 = enough that none holds more than shard_rows
    # impressions of a day (at least one per cluster worker)
    shards: int = Field(default=0, ge=0)
    shard_rows: int = Field(default=2_000_000, ge=1)
    label_rate_bands: dict[str, tuple[float, float]] = Field(default_factory=dict)
    min_mean_seq_len: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_vocab(self) -> FeaturesConfig:
        """Every hashed field needs a vocabulary; fixed-range fields need room for their values."""
        check_vocab(self.vocab)
        return self


# --------------------------------------------------------------------------- model
ModelName = Literal[
    "eliverec", "eliverec_wo_m", "eliverec_vanilla", "eliverec_wo_p", "eliverec_wo_c", "eliverec_wo_n",
    "eliverec_wo_d", "eliverec_cos", "eliverec_euc", "eliverec_sr", "eliverec_din", "eliverec_hgn",
    "eliverec_cross", "wdl", "wdl_dual", "din", "din_dual", "dien", "dien_dual", "hgn", "hgn_dual", "bst",
    "bst_dual", "eta", "eta_dual", "can", "can_dual", "minet", "dasl", "conet", "dtcdr", "ddtcdr",
]
"""Registered model names (``eliverec.models.MODELS`` has exactly these keys; a test checks it)."""


class ModelConfig(Section):
    """Model hyper-parameters (paper sections IV and V-D; ``eliverec/models``).

    A registered name may pin some of these (for example ``eliverec_wo_c`` sets ``dcor: false``);
    ``eliverec.models.effective_model_config`` gives the values a model really uses.
    """

    name: ModelName
    dim: int = Field(ge=2)
    heads: int = Field(ge=1)
    layers: int = Field(ge=1)
    mlp: list[int]
    dropout: float = Field(ge=0.0, lt=1.0)
    emb_std: float = Field(gt=0.0)  # std of each field's embedding init (not the tiny CTR-library default)
    backbone: Literal["transformer", "din", "hgn"]  # eLiveRec basic sequence encoder (Fig. 5)
    disentangle: bool  # False: eLiveRec wo.D
    prototypes: Literal["pooled", "learned", "cross"]  # learned: wo.P; cross: o_c from the other domain
    dcor: bool  # False: wo.C (eq. 8 off)
    consistency: Literal["infonce", "cos", "euc", "none"]  # eq. 9 or the Cos / Euc variants; none: wo.N
    specific_reg: bool  # SR: also penalise dependence between z_sV and z_sS
    lambda1: float = Field(ge=0.0)  # eq. 10, distance correlation
    lambda2: float = Field(ge=0.0)  # eq. 10, InfoNCE (or its cos/euc replacement)
    lambda_sr: float = Field(ge=0.0)  # weight of the SR term
    tau: float = Field(gt=0.0)  # eq. 9 temperature
    reg_on: Literal["retrieved", "pooled"] = "retrieved"  # eq. 8-9 on the retrieved z (eq. 7) or target-free pools
    nce_negatives: Literal["batch", "batch_specific"] = "batch"  # eq. 9; + the row's z_s of the other domain
    mtl_grad_on: Literal["activation", "parameters"] = "activation"  # eq. 14 cosines on S or shared params
    mtl: Literal["single", "vanilla", "adaptive"]  # multi-task mode (eq. 15 / 14)
    mtl_weights: list[float]  # vanilla weights of stay_time, goods_bag, product_click; their sum is the adaptive budget
    aux_scope: Literal["watched", "all"]  # auxiliary losses on watched impressions only, or on all
    weight_hidden: int = Field(ge=1)  # eq. 14 weighting network hidden units
    weight_entropy: float = Field(gt=0.0)  # entropy strength of the weighting-network objective
    experts: int = Field(ge=1)  # MMoE experts (eq. 13)
    expert_dim: int = Field(ge=1)
    eta_topk: int = Field(ge=1)  # ETA: behaviours kept by SimHash retrieval
    eta_hash_bits: int = Field(ge=1, le=1024)
    eta_retrieve_above: int = Field(default=64, ge=1)  # ETA: SimHash retrieval only for longer sequences
    serve_position: int = Field(ge=0)  # feed position used at serving (trained with the real one)
    position_bias: Literal["input", "additive", "pal"] = "input"  # how the position enters (models/base.py)
    match_features: bool = False  # explicit user-candidate match counts in the dynamic context (models/layers/match.py)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if len(self.mtl_weights) != 3 or min(self.mtl_weights) < 0 or sum(self.mtl_weights) <= 0:
            raise ValueError("mtl_weights needs 3 non-negative weights (stay_time, goods_bag, product_click), sum > 0")
        if not self.mlp or min(self.mlp) < 1:
            raise ValueError("mlp needs at least one layer width >= 1")
        return self


# --------------------------------------------------------------------------- train
class TrainConfig(Section):
    """Training loop settings."""

    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    optimizer: Literal["adagrad", "adam"]
    lr: float = Field(gt=0.0)
    grad_clip: float = Field(ge=0.0)
    nproc: int = Field(ge=1)
    weight_decay: float = Field(default=0.0, ge=0.0)
    checkpoint_every: int = Field(default=500, ge=0)  # steps between checkpoints (0: epoch ends only)
    eval_every: int = Field(default=0, ge=0)  # steps between validations (0: epoch ends only)
    patience: int = Field(default=2, ge=0)  # validations without improvement before stopping (0: off)
    min_delta: float = Field(default=0.0, ge=0.0)  # smallest validation AUC gain that counts
    val_share: float = Field(default=0.1, ge=0.0, lt=1.0)  # time-ordered tail of the training days
    amp: bool = True  # mixed precision, on GPU only
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    num_workers: int = Field(default=0, ge=0)  # DataLoader worker processes per rank
    log_every: int = Field(default=50, ge=1)  # steps between MLflow metric writes
    max_steps: int = Field(default=0, ge=0)  # stop after this many steps in total (0: no limit)
    max_minutes: float = Field(default=0.0, ge=0.0)  # wall-clock training budget per run (0: none)
    sparse_embeddings: bool = True  # embedding tables take sparse gradients (eliverec/training/optim.py)
    feed_batches: bool = True  # batches of whole feeds (shuffled by feed); the user state is computed once per feed
    threads: int = Field(default=1, ge=0)  # torch intra-op threads per process (0: torch's default)


# --------------------------------------------------------------------------- tracking
class TrackingConfig(Section):
    """MLflow tracking and registry."""

    uri: str  # null in params.yaml: the data root's own store (eliverec.layout.DataLayout.mlflow_uri)
    experiment: str
    registered_model: str
    log_model: bool = True  # log the trained model as an MLflow pyfunc
    retries: int = Field(default=3, ge=0)  # registry reads retried this often before "unreachable"
    retry_delay_s: float = Field(default=1.0, ge=0.0)  # first wait between retries (doubles each time)


# --------------------------------------------------------------------------- evaluation
class EvaluationConfig(Section):
    """Offline metrics (paper section V-C) and their report."""

    k: int = Field(default=10, ge=1)  # cut-off of Prec@K and NDCG@K
    calibration_bins: int = Field(default=10, ge=2)
    batch_size: int = Field(default=4096, ge=1)  # scoring batch size


# --------------------------------------------------------------------------- monitor
# The columns monitoring compares between the training window and day D (eliverec.monitoring.frames builds
# them; monitor.column_thresholds may name only these). Model inputs come from features/<date>/samples.parquet
# and, for the sequences, from summaries of the tensors. ``weekday`` is left out on purpose: the reference
# window always holds other weekdays than day D, so it would "drift" every day.
#: Numerical model inputs: sequence lengths and category-mix summaries, dynamic context, feed context.
NUMERICAL: tuple[str, ...] = (
    "product_len", "channel_len",  # non-pad length of the last-50 sequences
    "product_novelty", "channel_novelty",  # share of the 10 latest behaviours in a category absent before
    "product_target_share", "channel_target_share",  # share of the sequence in the target's top category
    "log_viewers", "log_revenue_window", "log_n_on_sale", "log_stats_age_min", "dynamic_cats_n",  # channel_stats
    "position", "hour",
)
#: Categorical model inputs: target category, scene, user profile (hashed ids), latest behaviour categories.
CATEGORICAL: tuple[str, ...] = (
    "top_category", "scene", "gender_h", "age_bucket_h", "city_tier_h", "register_bucket", "has_stats",
    "last_product_category", "last_channel_category",
)
#: Labels (target drift): binary rates compared as categories, stay time as a number.
TARGETS_BINARY: tuple[str, ...] = ("watch", "goods_bag", "product_click")
TARGETS_NUMERICAL: tuple[str, ...] = ("stay_time",)
#: The served score (prediction drift), present when the ranking service logged impressions.
PREDICTION = "score"

ALL_COLUMNS: tuple[str, ...] = (*NUMERICAL, *CATEGORICAL, *TARGETS_BINARY, *TARGETS_NUMERICAL, PREDICTION)


def check_thresholds(thresholds: Mapping[str, float]) -> None:
    """Per-column drift thresholds must name monitored columns and be positive.

    >>> check_thresholds({"product_len": 0.4})
    >>> check_thresholds({"produkt_len": 0.4})
    Traceback (most recent call last):
    ...
    ValueError: monitor.column_thresholds: unknown column 'produkt_len' (known: product_len, channel_len, ...)
    """
    for name, value in thresholds.items():
        if name not in ALL_COLUMNS:
            raise ValueError(f"monitor.column_thresholds: unknown column '{name}' "
                             f"(known: {', '.join(ALL_COLUMNS[:2])}, ...)")
        if not value > 0:
            raise ValueError(f"monitor.column_thresholds.{name}: must be > 0 (got {value})")


class MonitorConfig(Section):
    """Daily monitoring with Evidently (``eliverec monitor``; ``eliverec.monitoring``).

    Relative ``workspace`` / ``dashboards`` paths resolve against the folder of ``params.yaml``;
    ``workspace`` null (the default) is the data root's ``monitoring/workspace``.
    """

    reference_days: int = Field(default=0, ge=0)  # days before D forming the drift reference (0: features.train_days)
    sample_rows: int = Field(default=20000, ge=100)  # rows sampled from the reference and from day D for drift
    num_method: str = "wasserstein"  # Evidently stat test of numerical columns
    cat_method: str = "jensenshannon"  # Evidently stat test of categorical columns
    false_alarm_rate: float = Field(default=0.05, gt=0.0, lt=1.0)  # drift: family-wise rate per quiet day (Bonferroni)
    threshold_floor: float = Field(default=0.05, gt=0.0)  # learned per-column thresholds never go below this
    min_null_draws: int = Field(default=6, ge=2)  # fewer reference-day pairs: drift reported, not tested
    drift_threshold: float | None = Field(default=None, gt=0.0)  # hand-set threshold for every column (overrides)
    column_thresholds: dict[str, float] = Field(default_factory=dict)  # hand-set per column (overrides)
    alarm_webhook: str | None = None  # the monitor flow POSTs its alarm table (JSON) here on an alarm
    max_rate_change: float = Field(default=0.25, gt=0.0)  # |label rate or mean score / reference - 1| allowed
    windows: list[int] = Field(default_factory=lambda: [7, 14, 30])  # exposure discoverability windows (days)
    popularity_days: int = Field(default=7, ge=1)  # trailing days whose impressions rank channels into tiers
    activity_days: int = Field(default=7, ge=1)  # trailing days whose impressions + product clicks rank users
    low_activity_share: float = Field(default=0.5, gt=0.0, lt=1.0)  # bottom share of D's users that is "low"
    min_coverage: float | None = Field(default=None, ge=0.0, le=1.0)  # gate: channels exposed on D / catalogue
    max_gini: float | None = Field(default=None, ge=0.0, le=1.0)  # gate: Gini of impressions over channels
    workspace: str | None = None
    dashboards: str = "monitoring/dashboards.yaml"
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _check(self) -> MonitorConfig:
        check_thresholds(self.column_thresholds)
        if not self.windows or min(self.windows) < 1:
            raise ValueError("windows needs at least one window of >= 1 day")
        return self


class GateConfig(Section):
    """Evaluation gate thresholds (DESIGN section 6; ``eliverec.evaluation.gate``)."""

    auc_tolerance: float = Field(ge=0.0)  # non-inferiority margin on the bootstrap CI lower bound
    gauc_tolerance: float = Field(ge=0.0)
    aux_tolerance: float = Field(ge=0.0)  # aux AUC drop (absolute) / stay-time RMSE growth (relative)
    segment_tolerance: float = Field(ge=0.0)
    calibration_band: tuple[float, float]
    latency_budget_ms: float = Field(gt=0.0)
    latency_candidates: int = Field(ge=1)
    bootstrap_samples: int = Field(ge=10)
    confidence: float = Field(gt=0.5, lt=1.0)
    ope: bool = False  # also reject a candidate whose off-policy watch estimate is significantly below the champion's


# --------------------------------------------------------------------------- off-policy evaluation
class OpeConfig(Section):
    """Off-policy estimates from logged propensities (``eliverec ope``; ``eliverec.evaluation.offpolicy``)."""

    estimator: Literal["ips", "snips", "dr"] = "snips"  # the one the gate uses (best measured coverage)
    clip: float = Field(default=100.0, gt=0.0)  # importance weights are cut at this
    level: float = Field(default=0.9, gt=0.5, lt=1.0)  # two-sided level of the bootstrap intervals
    bootstrap: int = Field(default=200, ge=10)  # user-level bootstrap resamples
    mc_samples: int = Field(default=512, ge=16)  # PL rankings per matched feed for marginals of feeds > 10 wide
    max_feeds: int = Field(default=20000, ge=1)  # feeds of the day used (whole users, seeded sample above this)


# --------------------------------------------------------------------------- serving
class ServingConfig(Section):
    """The ranking service (``eliverec serve``; ``eliverec/serving``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    admin_token: str = Field(min_length=8)  # $ELIVEREC_ADMIN_TOKEN wins (eliverec.serving.admin_token)
    reload_poll_s: float = Field(default=10.0, ge=0.0)  # registry alias polling (0: admin call only)
    warm_days: int = Field(default=2, ge=0)  # latest bronze days that warm the online state
    max_candidates: int = Field(default=1000, ge=1)  # per /rank request
    torch_threads: int = Field(default=1, ge=1)  # intra-op threads for scoring (torch or ONNX Runtime)
    runtime: Literal["onnx", "torch"] = "onnx"  # scoring runtime (eliverec/scoring/runtime.py; torch if export fails)
    scoring_threads: int = Field(default=1, ge=1)  # /rank requests scored at the same time per process
    # how long a thread holding the GIL runs before a waiting thread may take it (sys.setswitchinterval), in the
    # served process: the event loop and the scoring thread hand the GIL back and forth on every request
    gil_switch_ms: float = Field(default=1.0, gt=0.0, le=100.0)
    log_flush_ms: int = Field(default=200, ge=1)  # served impressions and events reach disk within this
    log_retries: int = Field(default=3, ge=1)  # failed log writes in a row before /healthz and /events say 503
    log_max_pending: int = Field(default=1_000_000, ge=1)  # unwritten log rows held; beyond: /events 503
    latency_window: int = Field(default=20000, ge=100)  # recent requests kept per variant for /admin/stats
    producer_token: str = Field(min_length=8)  # POST /events; $ELIVEREC_PRODUCER_TOKEN wins; never the admin token
    event_max_age_s: float = Field(default=172800.0, ge=0.0)  # events older than this vs the server clock: 422
    #                                            (0: no lower bound, for simulated traffic replaying world time)
    event_max_ahead_s: float = Field(default=300.0, ge=0.0)  # events ahead of the server clock by more: 422
    max_body_bytes: int = Field(default=16_777_216, ge=1024)  # request bodies above this: 413
    max_users: int = Field(default=1_000_000, ge=1)  # users with online history kept (least recent evicted)
    max_channels: int = Field(default=200_000, ge=1)  # channels with online stats kept (least recent evicted)


# --------------------------------------------------------------------------- A/B
class ABConfig(Section):
    """A/B buckets, the ramp policy and its guardrails (``eliverec/experiments``)."""

    experiment: str = Field(min_length=1)
    salt: str = Field(min_length=1)  # per-experiment hash salt: a new salt reshuffles users
    buckets: int = Field(default=1000, ge=2)
    stages: list[float] = Field(min_length=1)  # challenger share per stage, percent, increasing
    min_users: int = Field(ge=1)  # users per variant before a stage is judged
    min_impressions: int = Field(ge=1)  # impressions per variant before a stage is judged
    primary_metric: Literal["watch_rate", "ctr", "stay_time", "goods_bag_ctr", "product_ctr", "conversion"]
    alpha: float = Field(gt=0.0, lt=0.5)  # one-sided significance level of the loss test
    max_error_rate: float = Field(ge=0.0, le=1.0)  # guardrail: challenger error share
    max_p99_ms: float = Field(gt=0.0)  # guardrail: challenger p99 latency
    poll_s: float = Field(default=30.0, gt=0.0)  # ramp re-checks traffic this often (live traffic)
    max_stage_minutes: float = Field(default=1440.0, gt=0.0)  # give up (roll back) if a stage starves
    traffic_candidates: int = Field(default=100, ge=1)  # candidates per simulated feed request
    traffic_rate: float = Field(default=0.2, gt=0.0)  # feed requests per simulated user per world minute
    traffic_concurrency: int = Field(default=8, ge=1)  # requests in flight from `eliverec traffic`

    @model_validator(mode="after")
    def _check(self) -> ABConfig:
        if any(not 0 < s <= 50 for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ValueError(f"stages must increase strictly within (0, 50] percent (got {self.stages})")
        return self


class FlowsConfig(Section):
    """Prefect flows and their schedules (``flows/``)."""

    timezone: str
    nightly_cron: str
    monitor_cron: str
    baseline_model: str  # the first champion when none exists: the paper's online baseline
    challenger_model: str  # what the nightly flow trains every night
    train_timeout_s: int = Field(ge=60)  # training runs as a subprocess with this limit
    # the nightly's raw data: "collect" reads the days under <data_dir>/raw (served, imported), "simulate"
    # writes the simulated world first (demo, tests; refuses days that hold served or imported logs)
    source: Literal["simulate", "collect"] = "collect"
    # where the sharded data stages run (flows/scale.py): "local" (a Dask LocalCluster of cluster_workers
    # processes on this machine) or a Dask scheduler address such as tcp://10.0.0.5:8786
    cluster: str = "local"
    cluster_workers: int = Field(default=2, ge=1)  # worker processes of the local cluster (1 thread each)

    @field_validator("cluster")
    @classmethod
    def _check_cluster(cls, value: str) -> str:
        """``local`` or ``<scheme>://<host>:<port>`` (a running Dask scheduler)."""
        if value == "local" or re.fullmatch(r"(tcp|tls|ucx|inproc)://[^\s/:]+:\d{1,5}", value):
            return value
        raise ValueError(f"flows.cluster: '{value}' is neither 'local' nor a Dask scheduler address like "
                         "tcp://10.0.0.5:8786 (start one with `dask scheduler`)")


# --------------------------------------------------------------------------- tuned
class TunedTrain(Section):
    """Tunable training values (``tuned.<model>.train``); ranges are checked when applied."""

    lr: float | None = None
    weight_decay: float | None = None


class TunedModel(Section):
    """Tunable model values (``tuned.<model>.model``); ``heads`` only to keep ``dim`` divisible."""

    dim: int | None = None
    heads: int | None = None
    dropout: float | None = None
    lambda1: float | None = None
    lambda2: float | None = None
    tau: float | None = None


class TunedValues(Section):
    """The values ``eliverec tune`` chose for one model (``tuned.<model>`` in params.yaml)."""

    train: TunedTrain = TunedTrain()
    model: TunedModel = TunedModel()

    def overrides(self) -> dict[str, Any]:
        """The values that are set, as dotted keys.

        >>> TunedValues(train={"lr": 0.01}, model={"dim": 16}).overrides()
        {'train.lr': 0.01, 'model.dim': 16}
        """
        return {f"{name}.{key}": value for name, part in (("train", self.train), ("model", self.model))
                for key, value in part.model_dump(exclude_none=True).items()}


MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


#: Settings that are secrets: never logged, never saved with runs or models (section_dict redacts them).
SECRET_KEYS: tuple[str, ...] = ("serving.admin_token", "serving.producer_token")
REDACTED = "<redacted>"  # long enough to pass the token fields' own checks when a saved tree is read back


class Settings(Section):
    """All settings of one run, resolved for one profile.

    ``tuned`` holds the per-model values chosen by ``eliverec tune``; :func:`apply_tuned` applies one
    model's. ``explicit`` (the keys given with ``--set``) and ``untuned`` (what ``apply_tuned``
    replaced) are bookkeeping filled in by :func:`load_settings` / :func:`apply_tuned`, not params.yaml.
    """

    profile: str
    seed: int
    data_dir: Path
    world: WorldConfig
    ingest: IngestConfig
    features: FeaturesConfig
    model: ModelConfig
    train: TrainConfig
    tracking: TrackingConfig
    serving: ServingConfig
    ab: ABConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig
    flows: FlowsConfig
    validation: ValidateConfig = ValidateConfig()
    monitor: MonitorConfig = MonitorConfig()
    ope: OpeConfig = OpeConfig()
    tuned: dict[str, TunedValues] = Field(default_factory=dict)  # model name -> values from `eliverec tune`
    explicit: tuple[str, ...] = ()  # dotted keys set by --set overrides: they win over tuned values
    untuned: dict[str, Any] = Field(default_factory=dict)  # dotted key -> the value apply_tuned replaced

    @field_validator("tuned", mode="before")
    @classmethod
    def _known_models(cls, value: Any) -> Any:
        """``tuned`` keys are registered model names; an empty entry means no values."""
        if value is None:
            return {}
        if isinstance(value, Mapping):
            unknown = sorted(str(k) for k in value if k not in MODEL_NAMES)
            if unknown:
                raise ValueError(f"unknown model '{unknown[0]}' (known: {', '.join(MODEL_NAMES)})")
            return {k: {} if v is None else v for k, v in value.items()}
        return value

    @property
    def layout(self) -> DataLayout:
        """Paths under this run's data root."""
        return DataLayout(self.data_dir)

    def section_dict(self, secrets: bool = False) -> dict[str, Any]:
        """Plain JSON-able dict (for logging with runs and models): the values of :data:`SECRET_KEYS`
        are :data:`REDACTED` unless ``secrets`` (only for building settings again from the tree)."""
        tree = self.model_dump(mode="json")
        if not secrets:
            for key in SECRET_KEYS:
                section, name = key.split(".")
                if name in tree.get(section, {}):
                    tree[section][name] = REDACTED
        return tree


# --------------------------------------------------------------------------- loading
def find_params(path: str | Path | None = None) -> Path:
    """Locate ``params.yaml`` (see module docstring for the order)."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get("ELIVEREC_PARAMS"):
        candidates.append(Path(os.environ["ELIVEREC_PARAMS"]))
    else:
        candidates += [Path.cwd() / "params.yaml", Path(__file__).resolve().parents[1] / "params.yaml"]
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"params.yaml not found (tried {tried}); pass --params FILE or set ELIVEREC_PARAMS")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in; an override of an unknown key is an error."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        dotted = f"{where}{key}"
        if key not in out:
            raise ConfigError(f"unknown key '{dotted}'")
        if isinstance(out[key], dict) and isinstance(value, Mapping):
            out[key] = deep_merge(out[key], value, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (["a", "b"], yaml-parsed c)."""
    if "=" not in text:
        raise ConfigError(f"bad override '{text}': expected KEY=VALUE, for example world.n_users=500")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"bad override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"bad override '{text}': value is not valid YAML ({exc})") from exc
    return parts, value


def _apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown key '{'.'.join(parts[: i + 1])}' in override")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ConfigError(f"unknown key '{'.'.join(parts)}' in override")
    node[parts[-1]] = value


def load_settings(
    profile: str | None = None,
    overrides: Sequence[str] = (),
    params: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Settings:
    """Load ``params.yaml``, apply the profile and overrides, validate.

    ``data_dir`` (the argument, else ``$ELIVEREC_DATA_DIR``) resolves against the current directory;
    the file's ``data_dir`` against the folder of ``params.yaml``. Unset ``tracking.uri`` and
    ``monitor.workspace`` point into the data root (see the module docstring).
    """
    path = find_params(params)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    profiles = raw.pop("profiles", {}) or {}
    chosen = profile or os.environ.get("ELIVEREC_PROFILE") or raw.get("profile") or "default"
    if chosen not in profiles and chosen != "default":
        known = ", ".join(sorted({"default", *profiles}))
        raise ConfigError(f"{path}: unknown profile '{chosen}' (known: {known})")
    over, tuned = _split_tuned(path, raw, profiles.get(chosen))
    tree = deep_merge(raw, over, "")
    tree["profile"], tree["tuned"] = chosen, tuned
    if os.environ.get("MLFLOW_TRACKING_URI") and isinstance(tree.get("tracking"), dict):
        tree["tracking"]["uri"] = os.environ["MLFLOW_TRACKING_URI"]
    explicit: set[str] = set()
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(tree, parts, value)
        explicit.add(".".join(parts))
    tree["explicit"] = sorted(explicit)
    given = data_dir if data_dir is not None else os.environ.get("ELIVEREC_DATA_DIR") or None
    root = _resolve(Path(given), Path.cwd()) if given is not None else _resolve(Path(tree.get("data_dir") or "data"),
                                                                                   path.parent)
    tree["data_dir"] = str(root)
    tree["tracking"] = _resolve_tracking(tree.get("tracking"), path.parent, DataLayout(root))
    tree["monitor"] = _resolve_monitor(tree.get("monitor") or {}, path.parent, DataLayout(root))
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from exc
    for name in settings.tuned:  # a bad tuned value fails now, not when that model trains
        try:
            apply_tuned(settings, name)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return settings


# --------------------------------------------------------------------------- hand-off to child processes
SETTINGS_FILE_VERSION = 1


def settings_hash(settings: Settings) -> str:
    """Short sha256 of the settings' canonical JSON (secrets included): names one resolved configuration."""
    blob = json.dumps(settings.section_dict(secrets=True), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_settings(settings: Settings, path: str | Path) -> Path:
    """Write the resolved settings for a child process: ``{"version", "hash", "settings"}`` JSON, mode 0600
    (it holds the secrets). :func:`read_settings` gives them back without reading ``params.yaml``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": SETTINGS_FILE_VERSION, "hash": settings_hash(settings),
               "settings": settings.section_dict(secrets=True)}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(payload, sort_keys=True))
    tmp.replace(path)
    return path


def read_settings(path: str | Path) -> Settings:
    """The settings :func:`write_settings` wrote, checked against their hash (no ``params.yaml`` involved)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        settings = Settings.model_validate(payload["settings"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a settings file written by eliverec ({exc}); pass --profile/--set "
                          "instead or write it again") from exc
    if payload.get("version") != SETTINGS_FILE_VERSION or payload.get("hash") != settings_hash(settings):
        raise ConfigError(f"{path}: settings hash {payload.get('hash')} does not match its content "
                          f"({settings_hash(settings)}); the file was changed after it was written, write it again")
    return settings


def add_settings_options(parser: argparse.ArgumentParser, resolved: bool = True) -> argparse.ArgumentParser:
    """The settings options of every argparse command line (flows, the torchrun launcher).

    ``--profile``, ``--set`` (repeatable), ``--data-dir``, ``--params`` resolve ``params.yaml``; with
    ``resolved``, ``--settings FILE`` instead reads settings a parent process resolved (:func:`write_settings`).
    The user-facing command line is the Typer CLI (``eliverec``); these parsers sit behind it.
    """
    parser.add_argument("--profile")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir")
    parser.add_argument("--params")
    if resolved:
        parser.add_argument("--settings", dest="settings_file", help="resolved settings (JSON) of a parent process")
    return parser


def settings_from_options(args: argparse.Namespace) -> Settings:
    """The settings named by :func:`add_settings_options`' options: ``--settings FILE`` when given, else resolved."""
    return resolve_settings(args.profile, args.overrides, args.params, args.data_dir,
                            getattr(args, "settings_file", None))


def resolve_settings(profile: str | None = None, overrides: Sequence[str] = (), params: str | Path | None = None,
                     data_dir: str | Path | None = None, settings_file: str | Path | None = None) -> Settings:
    """Settings a parent process resolved (``settings_file``, :func:`read_settings`), else :func:`load_settings`."""
    if settings_file:
        if profile or overrides or data_dir or params:
            raise ConfigError("--settings FILE holds resolved settings: drop --profile/--set/--data-dir/--params")
        return read_settings(settings_file)
    return load_settings(profile, overrides, params, data_dir)


def secret_overrides(overrides: Sequence[str]) -> list[str]:
    """The ``--set`` overrides that set a secret (:data:`SECRET_KEYS`, or a section holding one).

    >>> secret_overrides(["train.lr=0.1", "serving.admin_token=x", "serving={}"])
    ['serving.admin_token', 'serving']
    """
    keys = [".".join(parse_override(text)[0]) for text in overrides]
    return [k for k in keys if any(is_explicit(secret, [k]) for secret in SECRET_KEYS)]


def _split_tuned(path: Path, raw: dict[str, Any], over: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """The profile's overrides without ``tuned``, and the tuned table in force.

    A profile's ``tuned`` replaces the top-level table as a whole (values tuned on one world do not
    carry over to another); ``raw`` loses its ``tuned`` too. ``explicit``/``untuned`` are not settings.
    """
    for key in ("explicit", "untuned"):
        if key in raw or key in (over or {}):
            raise ConfigError(f"{path}: '{key}' is not a setting (it is filled in from --set overrides)")
    over = dict(over or {})
    top = raw.pop("tuned", None)
    return over, copy.deepcopy(over.pop("tuned") if "tuned" in over else top)


def is_explicit(key: str, explicit: Sequence[str]) -> bool:
    """Whether dotted ``key`` was given with ``--set`` (itself or a section above it).

    >>> is_explicit("train.lr", ["train.lr"]), is_explicit("train.lr", ["train"]), is_explicit("train.lr", [])
    (True, True, False)
    """
    return any(key == e or key.startswith(f"{e}.") for e in explicit)


def apply_tuned(settings: Settings, model_name: str) -> Settings:
    """``settings`` for ``model_name``: ``model.name`` set and that model's ``tuned`` values applied.

    Keys given with ``--set`` (``settings.explicit``) keep their value: explicit beats tuned. The
    values an earlier ``apply_tuned`` replaced (``settings.untuned``) are restored first, so switching
    from one model to another never carries the first model's tuned values along.
    """
    if model_name not in MODEL_NAMES:
        raise ConfigError(f"unknown model '{model_name}' (known: {', '.join(MODEL_NAMES)})")
    tree = settings.section_dict(secrets=True)
    for key, value in settings.untuned.items():
        section, name = key.split(".")
        tree[section][name] = value
    tree["model"]["name"], tree["untuned"] = model_name, {}
    entry = settings.tuned.get(model_name)
    for key, value in (entry.overrides() if entry else {}).items():
        if not is_explicit(key, settings.explicit):
            section, name = key.split(".")
            tree["untuned"][key], tree[section][name] = tree[section][name], value
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(f"tuned.{model_name} (model {model_name})", exc)) from exc


def _resolve(p: Path, root: Path) -> Path:
    return p if p.is_absolute() else (root / p).resolve()


def _resolve_tracking(section: Any, root: Path, layout: DataLayout) -> Any:
    """A relative ``sqlite:///`` path resolves against ``root`` (the folder of params.yaml); none is the data root's."""
    if not isinstance(section, dict):
        return section
    section = dict(section)
    uri = str(section.get("uri") or layout.mlflow_uri())
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        uri = prefix + str(_resolve(Path(uri[len(prefix) :]), root))
    section["uri"] = uri
    return section


def _resolve_monitor(section: Any, root: Path, layout: DataLayout) -> Any:
    """Absolute ``workspace`` (none: the data root's) and ``dashboards`` (relative to ``root``)."""
    if not isinstance(section, dict):
        return section
    section = dict(section)
    ws = section.get("workspace")
    section["workspace"] = str(_resolve(Path(ws), root) if ws else layout.evidently_workspace())
    if section.get("dashboards"):
        section["dashboards"] = str(_resolve(Path(section["dashboards"]), root))
    return section


def _format_errors(path: Path | str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid settings"]
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        got = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {err.get('input')!r})"
        lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)

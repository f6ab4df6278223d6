"""Typed, frozen settings loaded from ``params.yaml``.

``params.yaml`` is the single source of truth: its top-level sections are the
``default`` profile; ``profiles.<name>`` holds deep overrides for the other
profiles (``tiny`` for tests, ``paper`` for the paper's hyper-parameters).
``$MLFLOW_TRACKING_URI``, ``$ELIVEREC_DATA_DIR`` and ``$ELIVEREC_PROFILE`` override the file
(for containers); overrides ``a.b=c`` (CLI ``--set``) are applied last. Unknown keys and bad
values are errors that name the key.

The search order for ``params.yaml``: the explicit path, ``$ELIVEREC_PARAMS``,
``./params.yaml``, then the repository root next to the package.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eliverec.errors import EliverecError

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


# --------------------------------------------------------------------------- ingest
class IngestConfig(Section):
    """Raw-log ingestion into bronze (DESIGN section 3)."""

    ts_tolerance_ms: int = Field(ge=0)
    max_id_len: int = Field(ge=1)
    max_quarantine_rate: float = Field(ge=0.0, le=1.0)
    chunk_bytes: int = Field(ge=1024)


# --------------------------------------------------------------------------- features
class FeaturesConfig(Section):
    """Point-in-time samples and hashing (DESIGN section 3, "Samples")."""

    seq_len: int = Field(ge=1)
    min_stay_ms: int = Field(ge=0)
    lookback_days: int = Field(ge=0)
    train_days: int = Field(ge=1)
    hash_salt: str
    vocab: dict[str, int]


# --------------------------------------------------------------------------- model
class ModelConfig(Section):
    """Model hyper-parameters (paper section V-D)."""

    name: str
    dim: int = Field(ge=2)
    heads: int = Field(ge=1)
    layers: int = Field(ge=1)
    mlp: list[int]
    dropout: float = Field(ge=0.0, lt=1.0)


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


# --------------------------------------------------------------------------- tracking
class TrackingConfig(Section):
    """MLflow tracking and registry."""

    uri: str
    experiment: str
    registered_model: str
    log_model: bool = True  # log the trained model as an MLflow pyfunc


# --------------------------------------------------------------------------- evaluation
class EvaluationConfig(Section):
    """Offline metrics (paper section V-C) and their report."""

    k: int = Field(default=10, ge=1)  # cut-off of Prec@K and NDCG@K
    calibration_bins: int = Field(default=10, ge=2)
    batch_size: int = Field(default=4096, ge=1)  # scoring batch size


class Settings(Section):
    """All settings of one run, resolved for one profile."""

    profile: str
    seed: int
    data_dir: Path
    world: WorldConfig
    ingest: IngestConfig
    features: FeaturesConfig
    model: ModelConfig
    train: TrainConfig
    tracking: TrackingConfig
    evaluation: EvaluationConfig = EvaluationConfig()

    def section_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for logging with runs and models)."""
        return self.model_dump(mode="json")


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

    Relative ``data_dir`` values resolve against the folder of ``params.yaml``,
    so a stage finds the same data whatever the current directory is.
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
    tree = deep_merge(raw, profiles.get(chosen) or {}, "") if chosen in profiles else copy.deepcopy(raw)
    tree["profile"] = chosen
    if os.environ.get("MLFLOW_TRACKING_URI") and isinstance(tree.get("tracking"), dict):
        tree["tracking"]["uri"] = os.environ["MLFLOW_TRACKING_URI"]
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(tree, parts, value)
    if data_dir is not None:
        tree["data_dir"] = str(data_dir)
    elif os.environ.get("ELIVEREC_DATA_DIR"):
        tree["data_dir"] = os.environ["ELIVEREC_DATA_DIR"]
    tree["data_dir"] = str(_resolve(Path(tree.get("data_dir", "data")), path.parent))
    tree["tracking"] = _resolve_tracking(tree.get("tracking"), path.parent)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from exc


def _resolve(p: Path, root: Path) -> Path:
    return p if p.is_absolute() else (root / p).resolve()


def _resolve_tracking(section: Any, root: Path) -> Any:
    """A relative ``sqlite:///`` path resolves against ``root`` (the folder of params.yaml)."""
    if not isinstance(section, dict):
        return section
    section = dict(section)
    uri = str(section.get("uri", ""))
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        uri = prefix + str(_resolve(Path(uri[len(prefix) :]), root))
    section["uri"] = uri
    return section


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid settings"]
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        got = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {err.get('input')!r})"
        lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)

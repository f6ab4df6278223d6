"""The saved network: its one writer, its one loader, and what its outputs mean.

A trained network is saved as a ``network`` blob (:func:`write_network`: state dict, resolved
settings, feature spec, builder, batch size) and logged as an MLflow ``pyfunc`` model
(:func:`log_network`: signature, input example, pinned requirements, and the ``eliverec`` package
itself as ``code_paths``, so the model loads in a fresh environment built from its own
requirements: no index serves ``eliverec``). :func:`load_network` is the one loader, used by
evaluation, the gate and serving. Outputs become task scores in one place,
:func:`eliverec.features.batch.task_scores` (also behind ``RankingModel.score``): probabilities for
the binary tasks, stay time clamped at 0, and 0 for the auxiliary tasks of a network without
auxiliary heads.

Input: a ``dict`` of numpy arrays that follows the batch contract (:mod:`eliverec.features.batch`,
feature keys only, labels are ignored), or a pandas DataFrame with one row per sample and one
column per key (vector fields such as ``product_seq`` hold nested lists or arrays per cell).
Output: a DataFrame with one row per sample and the columns ``watch``, ``goods_bag`` and
``product_click`` (probabilities) and ``stay_time`` (predicted log1p stay seconds, >= 0).

The artifact ``network`` holds the state dict, the resolved settings, the feature spec and the
builder (``module:function``) that rebuilds the network, so loading needs only the ``eliverec``
package, not a pickled class. The blob is read with ``torch.load(weights_only=True)`` and its
builder must be on the allow-list (:func:`trusted_builder`). Blobs and training checkpoints share one
file format: plain data written atomically (:func:`save_atomic`) and read with ``weights_only``
(:func:`load`).
"""

from __future__ import annotations

import importlib
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from eliverec.errors import EliverecError
from eliverec.features.batch import LABELS, task_scores

NETWORK_BLOB = "network.pt"  # the blob's file name (the pyfunc artifact ``network``)
#: The builder of every platform network (``module:function``).
BUILDER = "eliverec.models:build_model"
#: Builders a model blob may name (loading imports only these); more through $ELIVEREC_TRUSTED_BUILDERS.
TRUSTED_BUILDERS: frozenset[str] = frozenset({BUILDER})
TRUSTED_ENV = "ELIVEREC_TRUSTED_BUILDERS"


class UntrustedModel(EliverecError):
    """A model blob asks for code outside the allow-list."""


# --------------------------------------------------------------------------- plain-data torch files
# The one file format of model blobs and training checkpoints (eliverec.training.checkpoint).
class CheckpointError(EliverecError):
    """A checkpoint or model file that cannot be read as plain data."""


def save_atomic(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``.

    >>> import tempfile
    >>> p = save_atomic({"a": 1}, Path(tempfile.mkdtemp()) / "x.pt")
    >>> torch.load(p)["a"]
    1
    """
    path = Path(path)
    obj = plain(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a save a killed process did not finish
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and numpy arrays as tensors (what
    ``weights_only`` loading accepts); containers are rebuilt, tensors kept.

    >>> plain({"a": np.float32(0.5), "b": [np.int64(2)], "c": (np.arange(2),)})
    {'a': 0.5, 'b': [2], 'c': (tensor([0, 1]),)}
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return type(obj)((k, plain(v)) for k, v in obj.items())
    if type(obj) in (list, tuple):  # exactly: subclasses (torch.Size, named tuples) are kept as they are
        return type(obj)(plain(v) for v in obj)
    return obj


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint or model blob: ``weights_only=True``, so the file can carry data, never code."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: not a plain-data checkpoint ({str(exc).splitlines()[0]}); files written "
                              "before weights-only loading must be re-created (retrain or re-export), they are "
                              "not unpickled") from exc


OUTPUTS: tuple[str, ...] = LABELS  # the model's output columns: one score per task
#: Third-party packages the logged model needs (pinned to the running versions by :func:`requirements`).
REQUIRED_PACKAGES: tuple[str, ...] = ("torch", "mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "xxhash")


def resolve(path: str) -> Callable[..., Any]:
    """Import ``module:attr``.

    >>> resolve("math:sqrt")(4.0)
    2.0
    """
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def to_numpy_batch(model_input: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A DataFrame (row per sample) or a dict of arrays as a dict of stacked numpy arrays.

    >>> df = pd.DataFrame({"user": [1, 2], "channel": [[1, 2, 3], [4, 5, 6]]})
    >>> {k: v.shape for k, v in to_numpy_batch(df).items()}
    {'user': (2,), 'channel': (2, 3)}
    """
    if isinstance(model_input, pd.DataFrame):
        out = {}
        for col in model_input.columns:
            values = model_input[col].to_numpy()
            out[col] = np.stack([np.asarray(v) for v in values]) if values.dtype == object else values
        return out
    return {k: np.asarray(v) for k, v in model_input.items()}


def to_tensor_batch(arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Numpy arrays as tensors of the contract's dtypes (float32 for ``dynamic``, int64 for ids)."""
    out = {}
    for key, value in arrays.items():
        if key in LABELS:
            continue
        dtype = torch.float32 if key == "dynamic" or np.issubdtype(value.dtype, np.floating) else torch.int64
        out[key] = torch.as_tensor(np.ascontiguousarray(value)).to(device=device, dtype=dtype)
    return out


def predict_batch(network: torch.nn.Module, arrays: Mapping[str, np.ndarray],
                  device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Task scores of one batch (logged positions kept), as numpy: what the pyfunc model returns."""
    with torch.no_grad():
        out = task_scores(network(to_tensor_batch(arrays, device)), has_aux=getattr(network, "heads", True) is not None)
    return {k: v.detach().float().cpu().numpy() for k, v in out.items()}


def stored_settings(raw: Mapping[str, Any]) -> Any:
    """Settings saved with a model, read by today's code.

    Sections the network needs are validated; sections added to the platform after the model was
    trained (serving, A/B, ...) may be absent, and sections since removed are ignored, so a model
    logged yesterday still loads after an upgrade.
    """
    from pydantic import BaseModel

    from eliverec.config import Settings

    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        if name not in raw:
            continue
        kind = info.annotation
        is_section = isinstance(kind, type) and issubclass(kind, BaseModel)
        values[name] = kind.model_validate(raw[name]) if is_section else raw[name]
    return Settings.model_construct(**values)


def trusted_builder(path: str) -> Callable[..., Any]:
    """The builder named in a model blob, only when it is on the allow-list: :data:`TRUSTED_BUILDERS`
    plus ``$ELIVEREC_TRUSTED_BUILDERS`` (comma-separated ``module:function``). A blob never picks
    arbitrary code to import."""
    extra = {b.strip() for b in os.environ.get(TRUSTED_ENV, "").split(",") if b.strip()}
    if path not in TRUSTED_BUILDERS | extra:
        raise UntrustedModel(f"model blob names builder {path!r}, which is not on the allow-list "
                             f"({', '.join(sorted(TRUSTED_BUILDERS | extra))}); add it to ${TRUSTED_ENV} only "
                             "if you trust where the model came from")
    return resolve(path)


def rebuild(blob: Mapping[str, Any]) -> torch.nn.Module:
    """The network described by a saved ``network`` blob, weights loaded, in eval mode."""
    settings = stored_settings(blob["settings"])
    spec = blob.get("feature_spec") or {}
    model = trusted_builder(blob["builder"])(settings, vocab=spec.get("vocab"), seq_len=spec.get("seq_len"))
    model.load_state_dict(blob["state_dict"])
    return model.eval()


# MLflow warns about the missing type hints on predict (hints would turn on its own input conversion).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class RankerModel(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper around any eLiveRec-platform network (they all return the same output dict)."""

        def load_context(self, context: Any) -> None:
            blob = load(Path(context.artifacts["network"]))
            self.model = rebuild(blob)
            self.batch_size = int(blob.get("batch_size", 4096))
            self.spec: dict[str, Any] = blob.get("feature_spec") or {}
            self.settings: dict[str, Any] = blob.get("settings") or {}

        def predict(self, context, model_input, params=None):
            """Score a batch of samples; returns one row per sample with every task output."""
            arrays = to_numpy_batch(model_input)
            n = len(next(iter(arrays.values())))
            parts = [predict_batch(self.model, {k: v[start : start + self.batch_size] for k, v in arrays.items()})
                     for start in range(0, n, self.batch_size)]
            return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS})


def score_request(network: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The serving call: ``network.score`` (serving position, shared user state) on one request's batch."""
    with torch.inference_mode():
        out = network.score(batch)
    return {k: v.float().numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- the one writer
def write_network(path: Path, network: torch.nn.Module, settings_tree: Mapping[str, Any],
                  spec: Mapping[str, Any], builder: str = BUILDER, batch_size: int = 4096) -> Path:
    """Save the ``network`` blob (plain types only: it is read back with ``weights_only=True``)."""
    blob = {"state_dict": network.state_dict(), "settings": dict(settings_tree), "feature_spec": dict(spec),
            "builder": builder, "batch_size": int(batch_size)}
    return save_atomic(blob, Path(path))


def requirements() -> list[str]:
    """The logged model's pip requirements: :data:`REQUIRED_PACKAGES` pinned to the running versions."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIRED_PACKAGES]


def code_paths() -> list[str]:
    """The ``eliverec`` package folder, logged with the model (MLflow puts it on ``sys.path`` on load)."""
    return [str(Path(__file__).resolve().parent)]


def log_network(blob_path: Path, example: Mapping[str, np.ndarray], predictions: pd.DataFrame | None = None) -> str:
    """Log the blob as the run's ``model`` (pyfunc, signature, input example, requirements, code); returns its URI.

    Call inside an active MLflow run. ``predictions`` default to the network's own on ``example``.
    """
    from mlflow.models import infer_signature

    if predictions is None:
        predictions = pd.DataFrame(predict_batch(rebuild(load(Path(blob_path))), example))
    with warnings.catch_warnings():  # MLflow asks for predict type hints; see RankerModel
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(name="model", python_model=RankerModel(), artifacts={"network": str(blob_path)},
                                       signature=infer_signature(dict(example), predictions),
                                       input_example=dict(example), pip_requirements=requirements(),
                                       code_paths=code_paths())
    return str(info.model_uri)


# --------------------------------------------------------------------------- the one loader
@dataclass(frozen=True)
class LoadedNetwork:
    """A logged model: the pyfunc model (``predict``), the network inside it, and what it was built with."""

    uri: str
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    network: torch.nn.Module
    spec: dict[str, Any] = field(default_factory=dict)  # the feature spec saved with it
    settings: dict[str, Any] = field(default_factory=dict)  # the settings it was built with


def load_network(tracking_uri: str, model_uri: str) -> LoadedNetwork:
    """Load ``model_uri`` (``runs:/``, ``models:/name@alias``, ...) from the store at ``tracking_uri``.

    The blob's builder must be trusted (:func:`trusted_builder`); a model that is not a pyfunc ranker
    is refused. Errors name the URI and the store.
    """
    from eliverec.store import use_store

    use_store(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except UntrustedModel:
        raise
    except Exception as exc:  # MLflow raises several types for a bad URI
        raise EliverecError(f"cannot load model '{model_uri}' from {tracking_uri}: {exc}") from exc
    wrapper = model.unwrap_python_model()
    network = getattr(wrapper, "model", None)
    if not isinstance(network, torch.nn.Module):
        raise EliverecError(f"{model_uri} is not an eLiveRec ranker (a pyfunc RankerModel around a ranking network)")
    return LoadedNetwork(model_uri, model, network.eval(), dict(getattr(wrapper, "spec", {}) or {}),
                         dict(getattr(wrapper, "settings", {}) or {}))

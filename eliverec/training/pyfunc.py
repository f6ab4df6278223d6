"""The trained network as an MLflow ``pyfunc`` model: a batch of samples in, every task output out.

Input: a ``dict`` of numpy arrays that follows the batch contract (:mod:`eliverec.features.batch`,
feature keys only, labels are ignored), or a pandas DataFrame with one row per sample and one
column per key (vector fields such as ``product_seq`` hold nested lists or arrays per cell).
Output: a DataFrame with one row per sample and the columns ``watch``, ``goods_bag`` and
``product_click`` (probabilities) and ``stay_time`` (predicted log1p stay seconds).

The artifact ``network`` holds the state dict, the resolved settings, the feature spec and the
builder (``module:function``) that rebuilds the network, so loading needs only the ``eliverec``
package, not a pickled class. The blob is read with ``torch.load(weights_only=True)`` and its
builder must be on the allow-list (:func:`trusted_builder`).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from eliverec.errors import EliverecError
from eliverec.features.batch import LABELS
from eliverec.training.checkpoint import load

#: Builders a model blob may name (loading imports only these); more through $ELIVEREC_TRUSTED_BUILDERS.
TRUSTED_BUILDERS: frozenset[str] = frozenset({"eliverec.models:build_model"})
TRUSTED_ENV = "ELIVEREC_TRUSTED_BUILDERS"


class UntrustedModel(EliverecError):
    """A model blob asks for code outside the allow-list."""


OUTPUTS: tuple[str, ...] = ("watch", "stay_time", "goods_bag", "product_click")
PROBABILITY_OUTPUTS: frozenset[str] = frozenset({"watch", "goods_bag", "product_click"})


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


def task_outputs(outputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Model outputs as numpy: sigmoid on the binary tasks' logits, stay time as is."""
    return {
        k: (torch.sigmoid(outputs[k]) if k in PROBABILITY_OUTPUTS else outputs[k]).detach().float().cpu().numpy()
        for k in OUTPUTS
    }


def stored_settings(raw: Mapping[str, Any]) -> Any:
    """Settings saved with a model, read by today's code.

    Sections the network needs are validated; sections added to the platform after the model was
    trained (serving, A/B, ...) may be absent, and sections since removed are ignored, so a model
    logged yesterday still loads after an upgrade.
    """
    from pydantic import BaseModel

    from eliverec.config import Settings

    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name not in raw:
            continue
        kind = field.annotation
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

        def predict(self, context, model_input, params=None):
            """Score a batch of samples; returns one row per sample with every task output."""
            arrays = to_numpy_batch(model_input)
            n = len(next(iter(arrays.values())))
            parts: list[dict[str, np.ndarray]] = []
            with torch.no_grad():
                for start in range(0, n, self.batch_size):
                    chunk = {k: v[start : start + self.batch_size] for k, v in arrays.items()}
                    parts.append(task_outputs(self.model(to_tensor_batch(chunk))))
            return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS})

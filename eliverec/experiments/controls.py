"""Control variants for checking the experiment machinery itself.

- an **A/A** control: the champion's network registered again as a new version (same weights):
  an A/B test of it must show no effect and no sample-ratio mismatch;
- a **negative control**: the same network with its watch tower's output layer negated, so it ranks
  every candidate list in reverse order of the original. A ramp must roll it back. It is the
  "deliberately worse challenger" of the platform's end-to-end test and of ``make demo``.

Both are logged as ordinary ``mlflow.pyfunc`` ranker models (the same wrapper and network blob as
training writes) and registered as new versions of ``tracking.registered_model``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch

from eliverec.config import Settings
from eliverec.features.hashing import FeatureSpec


def log_network(settings: Settings, network: torch.nn.Module, spec: FeatureSpec | dict[str, Any] | None = None,
                run_name: str = "control", tags: dict[str, str] | None = None,
                network_settings: dict[str, Any] | None = None) -> tuple[str, str]:
    """Log ``network`` as a pyfunc ranker into ``settings.tracking``; returns ``(model_uri, run_id)``.

    ``network_settings`` are the settings the network was built with (default: ``settings``), so
    loading rebuilds the same architecture with ``eliverec.models.build_model``.
    """
    import mlflow

    from eliverec.artifact import NETWORK_BLOB, log_network, write_network
    from eliverec.features.batch import LABELS, random_batch
    from eliverec.training.tracking import setup_experiment

    spec_dict = json.loads(spec.to_json()) if isinstance(spec, FeatureSpec) else dict(spec or {})
    if not spec_dict:
        spec_dict = json.loads(FeatureSpec.from_settings(settings).to_json())
    example = {k: v.numpy() for k, v in random_batch(spec_dict["vocab"], 3, int(spec_dict["seq_len"])).items()
               if k not in LABELS}
    exp_id = setup_experiment(settings.tracking)
    with tempfile.TemporaryDirectory(prefix="eliverec-control-") as tmp:
        path = write_network(Path(tmp) / NETWORK_BLOB, network, network_settings or settings.section_dict(), spec_dict,
                             batch_size=settings.evaluation.batch_size)
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
            mlflow.set_tags(tags or {})
            uri = log_network(path, example)
    return uri, run.info.run_id


def negate_watch(network: torch.nn.Module) -> torch.nn.Module:
    """Negate the last linear layer of the watch tower in place: the watch logit changes sign.

    Refuses models with an additive wide part (WDL), whose logit the tower alone does not carry.
    """
    from eliverec.models.base import RankingModel

    if type(network).extra_logit is not RankingModel.extra_logit:
        raise ValueError(f"negate_watch needs a model without a wide part (got {type(network).__name__})")
    linears = [m for m in network.tower.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        linears[-1].weight.neg_()
        if linears[-1].bias is not None:
            linears[-1].bias.neg_()
    return network


def register_control(settings: Settings, version: str, kind: Literal["aa", "negative"], reason: str = "") -> str:
    """Register a control built from registry ``version``; returns the new version (gate verdict ``pass``).

    ``aa``: the same weights; ``negative``: the watch ranking reversed (:func:`negate_watch`).
    """
    from eliverec import registry
    from eliverec.serving.models import load_version

    base = load_version(settings, "control", str(version))
    network = base.network
    if kind == "negative":
        import copy

        network = negate_watch(copy.deepcopy(network))
    elif kind != "aa":
        raise ValueError(f"kind must be 'aa' or 'negative' (got {kind!r})")
    tags = {"control": kind, "control_of": str(version), "model_name": base.model_name}
    uri, run_id = log_network(settings, network, base.spec, run_name=f"control-{kind}-of-v{version}", tags=tags,
                              network_settings=base.settings)
    new = registry.register(settings, uri, tags, run_id=run_id)
    registry.set_verdict(settings, new, "pass", report=reason or f"{kind} control of version {version}")
    return new

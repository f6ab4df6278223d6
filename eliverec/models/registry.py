"""Model registry: name -> class. A name may pin config values (``preset``) and the dual form.

Names (also ``eliverec.config.ModelName``):

| name | model |
| --- | --- |
| ``eliverec`` | full model, everything from ``model:`` config (Table II) |
| ``eliverec_wo_m`` | single task (Table II ``wo.M``); ``eliverec_vanilla``: vanilla MTL (Table IV) |
| ``eliverec_wo_p`` / ``_wo_c`` / ``_wo_n`` / ``_wo_d`` | Table III: learned prototypes / no dCor / no InfoNCE / |
| | no disentangled encoder |
| ``eliverec_cos`` / ``_euc`` / ``_sr`` | Table III: cosine / euclidean instead of InfoNCE / extra SR regulariser |
| ``eliverec_din`` / ``eliverec_hgn`` | Fig. 5: DIN- or HGN-style basic sequence encoder |
| ``eliverec_cross`` | not in the paper: cross-domain prototypes (o_c from the other domain) and eq. 8-9 on |
| | the target-free pooled parts, what made z_c carry the consistent intents (benchmarks/results/mechanism.md) |
| ``wdl``, ``din``, ``dien``, ``hgn``, ``bst``, ``eta``, ``can`` | single-sequence (live only) baselines (Table II) |
| ``<baseline>_dual`` | the same with the product sequence too ("Dual CTR Model") |
| ``minet``, ``dasl``, ``conet``, ``dtcdr``, ``ddtcdr`` | cross-domain baselines (Table II; MiNet also Table IV): |
| | MiNet, DASL, CoNet+, DTCDR+, DDTCDR+, always with both sequences |

Baselines take ``model.mtl`` from config like eLiveRec (``single`` for Table II, ``vanilla`` /
``adaptive`` for Table IV: MMoE heads on the shared representation).
"""

from __future__ import annotations

from typing import Any, get_args

from eliverec.config import ModelConfig, ModelName
from eliverec.models.base import RankingModel
from eliverec.models.bst import BST
from eliverec.models.can import CAN
from eliverec.models.conet import CoNet
from eliverec.models.dasl import DASL
from eliverec.models.ddtcdr import DDTCDR
from eliverec.models.dien import DIEN
from eliverec.models.din import DIN
from eliverec.models.dtcdr import DTCDR
from eliverec.models.eliverec import ELiveRec
from eliverec.models.eta import ETA
from eliverec.models.hgn import HGN
from eliverec.models.minet import MiNet
from eliverec.models.wdl import WDL


def _variant(base: type[RankingModel], name: str, dual: bool | None = None, **preset: Any) -> type[RankingModel]:
    attrs: dict[str, Any] = {"name": name, "preset": preset, "__doc__": base.__doc__}
    if dual is not None:
        attrs["dual"] = dual
    return type(f"{base.__name__}_{name}", (base,), attrs)


ELIVEREC_VARIANTS: dict[str, dict[str, Any]] = {
    "eliverec_wo_m": {"mtl": "single"},
    "eliverec_vanilla": {"mtl": "vanilla"},
    "eliverec_wo_p": {"prototypes": "learned"},
    "eliverec_wo_c": {"dcor": False},
    "eliverec_wo_n": {"consistency": "none"},
    "eliverec_wo_d": {"disentangle": False},
    "eliverec_cos": {"consistency": "cos"},
    "eliverec_euc": {"consistency": "euc"},
    "eliverec_sr": {"specific_reg": True},
    "eliverec_din": {"backbone": "din"},
    "eliverec_hgn": {"backbone": "hgn"},
    "eliverec_cross": {"prototypes": "cross", "reg_on": "pooled"},
}


def _registry() -> dict[str, type[RankingModel]]:
    models: dict[str, type[RankingModel]] = {"eliverec": ELiveRec}
    models.update({n: _variant(ELiveRec, n, **p) for n, p in ELIVEREC_VARIANTS.items()})
    for base in (WDL, DIN, DIEN, HGN, BST, ETA, CAN):
        models[base.name] = base
        models[f"{base.name}_dual"] = _variant(base, f"{base.name}_dual", dual=True)
    for cross in (MiNet, DASL, CoNet, DTCDR, DDTCDR):  # cross-domain models: both domains by design
        models[cross.name] = cross
    return models


MODELS: dict[str, type[RankingModel]] = _registry()
if set(MODELS) != set(get_args(ModelName)):  # the config's Literal and the registry must agree
    raise RuntimeError(f"ModelName and MODELS differ: {sorted(set(MODELS) ^ set(get_args(ModelName)))}")


def list_models() -> list[str]:
    """Registered model names, in registry order."""
    return list(MODELS)


def effective_model_config(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the preset of its model name applied (what the model and the loss really use)."""
    preset = MODELS[cfg.name].preset
    return ModelConfig.model_validate({**cfg.model_dump(), **preset}) if preset else cfg

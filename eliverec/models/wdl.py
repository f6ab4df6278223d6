"""WDL+ (Cheng et al. 2016): wide linear part + deep MLP, "+" = mean-pooled behaviour sequences."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from eliverec.config import ModelConfig
from eliverec.features.batch import CHANNEL_FIELDS, CONTEXT_FIELDS, PROFILE_FIELDS
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import EmbeddingBank, masked_mean

WIDE_KEYS: tuple[str, ...] = ("user", "position", *PROFILE_FIELDS, *CONTEXT_FIELDS, *CHANNEL_FIELDS)


class WDL(RankingModel):
    """Deep: tower over ``[e_c, e_vt, mean(E_V) (, mean(E_S)), e_d]``; wide: ``sum_f w_f[x_f]`` over the
    sparse ids of user, profile, context, target channel and position, added to the watch logit."""

    name = "wdl"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.wide = EmbeddingBank({k: int(vocab[k]) for k in WIDE_KEYS}, 1, std=0.0)  # linear part starts at 0
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * len(self.domains))

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        pooled = [masked_mean(state[f"{d}_e"], state[f"{d}_mask"]) for d in self.domains]
        return [x.static, x.target, *pooled], {}, None

    def extra_logit(self, batch: Mapping[str, Tensor]) -> Tensor:
        w = self.wide
        parts = [w.field(batch["user"], "user"), w.field(batch["position"], "position")]
        parts += [w.field(batch["profile"][:, i], f) for i, f in enumerate(PROFILE_FIELDS)]
        parts += [w.field(batch["context"][:, i], f) for i, f in enumerate(CONTEXT_FIELDS)]
        parts += [w.field(batch["channel"][:, i], f) for i, f in enumerate(CHANNEL_FIELDS)]
        return torch.cat(parts, dim=-1).sum(-1)

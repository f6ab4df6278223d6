"""CAN (Bian, Wu, Zhang et al., "CAN: Feature Co-Action Network for Click-Through Rate Prediction",
WSDM 2022): DIEN plus the co-action unit between the target channel and each behaviour."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from torch import Tensor

from eliverec.config import ModelConfig
from eliverec.features.batch import CHANNEL_FIELDS
from eliverec.models.base import DOMAINS, Context
from eliverec.models.dien import DIEN
from eliverec.models.layers import EmbeddingBank
from eliverec.models.layers.coaction import CAN_LAYERS, CoActionUnit


@dataclass
class CoActionContext(Context):
    """The per-candidate inputs plus the target's induction-side parameters ``P_induction`` (B, P)."""

    induction: Tensor


class CAN(DIEN):
    """The paper builds CAN on DIEN (section II: "CAN explores ... feature co-action based on DIEN"),
    as open-source ports do (ReChorus' CAN extends its DIEN): DIEN's features plus, per domain, the
    co-action unit ``H_K = sum_i sum_c MLP_can(p_i^c; P_induction)`` (``CoActionUnit``): the target's own
    parameter vector ``P_induction`` (a separate table, summed over the channel's fields, like every
    item embedding here) is reshaped into the weights of a micro-MLP applied to each behaviour's
    feed-side vector ``p_i`` (another separate, 16-wide table). Co-action parameters are separate from
    the representation embeddings, as in CAN. The feed-side vectors are candidate-independent
    (``user_state``); the unit runs per candidate. ``can_dual`` applies a second unit (its own slice of
    ``P_induction``) to the product sequence. CAN also co-acts the target with user-profile fields;
    only the behaviour sequences are co-acted here (the unit the paper's description names).
    """

    name = "can"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        n = 2 if self.dual else 1
        super().__init__(cfg, vocab, seq_len, extra_dims=[sum(o for _, o in CAN_LAYERS)] * n)
        self.unit = CoActionUnit()
        # induction weights: roughly Xavier for the 16-wide first layer, over the three summed fields
        std = 1.0 / math.sqrt(len(CHANNEL_FIELDS) * self.unit.feed_dim)
        self.induction = EmbeddingBank({f: int(vocab[f]) for f in CHANNEL_FIELDS}, self.unit.param_dim * n, std)
        feed_fields = {f for k in self.domains for f in DOMAINS[k][2]}
        self.feed = EmbeddingBank({f: int(vocab[f]) for f in sorted(feed_fields)}, self.unit.feed_dim, cfg.emb_std)

    def embed_context(self, batch: Mapping[str, Tensor]) -> Context:
        ctx = super().embed_context(batch)
        return CoActionContext(**vars(ctx), induction=self.induction.item(batch["channel"], CHANNEL_FIELDS))

    def embed_sequences(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = super().embed_sequences(batch)
        for k in self.domains:
            seq_key, _, fields = DOMAINS[k]
            out[f"{k}_feed"] = self.feed.item(batch[seq_key], fields)  # p_i, (B, L, 16)
        return out

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        feats, regs, reg = super().encode(x, state, with_reg)
        params = cast(CoActionContext, x).induction.chunk(len(self.domains), dim=-1)
        co = [self.unit(p, state[f"{k}_feed"], state[f"{k}_mask"]) for p, k in zip(params, self.domains, strict=True)]
        return [*feats, *co], regs, reg

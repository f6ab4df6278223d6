"""DIEN (Zhou et al. 2019): GRU interest extractor + attention-driven AUGRU interest evolution."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import AUGRU, MaskedGRU, masked_softmax


class DIEN(RankingModel):
    """Per domain: ``h_t = GRU(e_t)`` (candidate-independent); ``a_t = softmax_t(h_t W e_vt)``;
    ``u = AUGRU(h, a)`` final state. The auxiliary loss of DIEN (``h_t`` predicts ``e_{t+1}`` against
    a behaviour of another user as negative) is added to ``reg`` with DIEN's alpha = 1."""

    name = "dien"
    dual = False
    AUX_ALPHA = 1.0

    def __init__(
        self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int, extra_dims: Sequence[int] = ()
    ) -> None:
        """``extra_dims``: widths of features a subclass appends to ``encode``'s (CAN's co-action)."""
        super().__init__(cfg, vocab, seq_len)
        d = cfg.dim
        self.gru = nn.ModuleDict({k: MaskedGRU(d) for k in self.domains})
        self.att_w = nn.ModuleDict({k: nn.Linear(d, d, bias=False) for k in self.domains})
        self.augru = nn.ModuleDict({k: AUGRU(d) for k in self.domains})
        self.finish([STATIC_FIELDS * d, d] + [d] * len(self.domains) + list(extra_dims))

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = dict(seqs)
        for k in self.domains:
            state[f"{k}_h"] = self.gru[k](seqs[f"{k}_e"], seqs[f"{k}_mask"])  # interest extractor
        return state

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        users, regs = [], {}
        for k in self.domains:
            h, mask = state[f"{k}_h"], state[f"{k}_mask"]
            s = (h @ self.att_w[k](x.target).unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1])
            users.append(self.augru[k](h, masked_softmax(s, mask)))  # interest evolution
            if with_reg:
                regs[f"dien_aux_{k}"] = self.aux_loss(h, state[f"{k}_e"], mask)
        reg = self.AUX_ALPHA * sum(regs.values()) if regs else None
        return [x.static, x.target, *users], regs, reg

    @staticmethod
    def aux_loss(h: Tensor, e: Tensor, mask: Tensor) -> Tensor:
        """``-log sig(h_t . e_{t+1}) - log(1 - sig(h_t . e~_{t+1}))`` over consecutive real steps."""
        valid = (mask[:, :-1] & mask[:, 1:]).float()
        pos = (h[:, :-1] * e[:, 1:]).sum(-1)
        neg = (h[:, :-1] * e.roll(1, dims=0)[:, 1:]).sum(-1)  # next behaviour of another row
        loss = F.softplus(-pos) + F.softplus(neg)
        return (loss * valid).sum() / valid.sum().clamp(min=1.0)



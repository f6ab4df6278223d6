"""Shared part of the cross-domain baselines: the user's sequences as a feature (the paper's "+").

The paper extends CoNet, DTCDR and DDTCDR ("+") by "incorporating sequential information into the
model as user's general feature", encoded with multi-head attention (section V-B and the discussion of
Table II). Here that feature is candidate-independent (``user_state``): per domain, a Transformer
(eq. 3-4) over the behaviour sequence, mean-pooled over the real events, ``s_K`` (B, d). Models with
``domain_users`` also get a per-domain user representation ``u_K = MLP_K([e_u, s_K])`` (the
"domain user embedding" these papers transfer; their original inputs are ratings or reviews).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import RankingModel
from eliverec.models.layers import MLP, SequenceTransformer, masked_mean


class SequencePlus(RankingModel):
    """Adds ``<domain>_seq`` (and with ``domain_users`` also ``<domain>_user``) to the user state."""

    dual = True
    domain_users: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        d = cfg.dim
        self.seq_enc = nn.ModuleDict(
            {k: SequenceTransformer(d, cfg.heads, cfg.layers, seq_len, cfg.dropout) for k in self.domains}
        )
        if self.domain_users:
            self.user_net = nn.ModuleDict({k: MLP(2 * d, [d], dropout=cfg.dropout) for k in self.domains})

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = dict(seqs)
        for k in self.domains:
            m = seqs[f"{k}_mask"]
            state[f"{k}_seq"] = masked_mean(self.seq_enc[k](seqs[f"{k}_e"], m), m)  # s_K, (B, d)
            if self.domain_users:
                state[f"{k}_user"] = self.user_net[k](torch.cat([seqs["user"], state[f"{k}_seq"]], -1))  # u_K
        return state

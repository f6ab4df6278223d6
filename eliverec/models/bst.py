"""BST (Chen et al. 2019): a Transformer over the behaviour sequence with the target appended."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import SequenceTransformer, masked_mean


class BST(RankingModel):
    """Per domain: ``T = Transformer([e_1..e_L, e_vt])`` (eq. 3-4, positions); features: the output at
    the target position and the masked mean of the behaviour outputs."""

    name = "bst"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.enc = nn.ModuleDict(
            {k: SequenceTransformer(cfg.dim, cfg.heads, cfg.layers, seq_len + 1, cfg.dropout) for k in self.domains}
        )
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * 2 * len(self.domains))

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        feats = [x.static, x.target]
        for k in self.domains:
            e, mask = state[f"{k}_e"], state[f"{k}_mask"]
            seq = torch.cat([e, x.target.unsqueeze(1)], dim=1)  # target is the newest "event"
            full = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            t = self.enc[k](seq, full)
            feats += [t[:, -1], masked_mean(t[:, :-1], mask)]
        return feats, {}, None

"""ETA (Chen et al. 2021): SimHash retrieval of the top-k behaviours, then multi-head target attention."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import MultiHeadTargetAttention, SimHashTopK


class ETA(RankingModel):
    """Per domain: ``idx = topk_i(-Hamming(sig(e_i), sig(e_vt)))`` (``model.eta_topk`` of them),
    ``u = MHTA(e_vt, E[idx])``; tower over ``[e_c, e_vt, u_V (, u_S), e_d]``. The paper's online
    variant drops ETA's long-term unit: here the retrieval runs over the last ``seq_len`` events."""

    name = "eta"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.hash = nn.ModuleDict({k: SimHashTopK(cfg.dim, cfg.eta_hash_bits, cfg.eta_topk) for k in self.domains})
        self.att = nn.ModuleDict({k: MultiHeadTargetAttention(cfg.dim, cfg.heads) for k in self.domains})
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * len(self.domains))

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        feats = [x.static, x.target]
        for k in self.domains:
            e, mask = state[f"{k}_e"], state[f"{k}_mask"]
            idx, keep = self.hash[k](x.target, e, mask)  # (B, k)
            top = e.gather(1, idx.unsqueeze(-1).expand(-1, -1, e.shape[-1]))  # (B, k, d)
            feats.append(self.att[k](x.target, top, keep)[0])
        return feats, {}, None

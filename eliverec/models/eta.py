"""ETA (Chen, Pei, Ou et al., "End-to-End User Behavior Retrieval in Click-Through Rate Prediction
Model", 2021) as the paper uses it: target attention over the recent sequence."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import MultiHeadTargetAttention, SimHashTopK


class ETA(RankingModel):
    """Per domain ``u = MHTA(e_vt, E)``: multi-head target attention of the candidate over the recent
    behaviours; tower over ``[e_c, e_vt, u_V (, u_S), e_d]``.

    How the paper's ETA differs from the original: original ETA has two units, a long-term one that
    retrieves the top-k of thousands of behaviours by the Hamming distance of SimHash signatures and
    attends over them, and a short-term one (target attention over the recent behaviours). The paper
    drops the long-term unit ("due to online inference real-time constraints", section V-B), so its
    ETA is the short-term unit over the recent sequence. Here the SimHash retrieval
    (``idx = topk_i(-Hamming(sig(e_i), sig(e_vt)))``, ``model.eta_topk`` of them) runs only when the
    sequence is longer than ``model.eta_retrieve_above``; with the shipped profiles it never is, which
    is the paper's reading. Retrieval depends on the target, so all of it runs per candidate.
    """

    name = "eta"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.retrieve = seq_len > cfg.eta_retrieve_above
        if self.retrieve:  # the long-term unit's retrieval, only for long sequences
            self.hash = nn.ModuleDict({k: SimHashTopK(cfg.dim, cfg.eta_hash_bits, cfg.eta_topk) for k in self.domains})
        self.att = nn.ModuleDict({k: MultiHeadTargetAttention(cfg.dim, cfg.heads) for k in self.domains})
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * len(self.domains))

    def behaviours(self, k: str, target: Tensor, e: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The behaviours the target attends over: all recent ones, or the SimHash top-k of a long sequence."""
        if not self.retrieve:
            return e, mask
        idx, keep = self.hash[k](target, e, mask)  # (B, k)
        return e.gather(1, idx.unsqueeze(-1).expand(-1, -1, e.shape[-1])), keep  # (B, k, d)

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        feats = [x.static, x.target]
        for k in self.domains:
            e, mask = self.behaviours(k, x.target, state[f"{k}_e"], state[f"{k}_mask"])
            feats.append(self.att[k](x.target, e, mask)[0])
        return feats, {}, None

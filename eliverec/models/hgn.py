"""HGN (Ma et al. 2019) as a CTR model: gated behaviours pooled and matched with the target."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import HGNEncoder, masked_mean


class HGN(RankingModel):
    """Per domain: ``H = HGN(E, user)`` (feature + instance gating), features ``mean(H)`` and the
    HGN item-item term ``mean(E) * e_vt``; tower over ``[e_c, e_vt, ..., e_d]``."""

    name = "hgn"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.enc = nn.ModuleDict({k: HGNEncoder(cfg.dim, seq_len) for k in self.domains})
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * 2 * len(self.domains))

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = dict(seqs)
        for k in self.domains:
            m = seqs[f"{k}_mask"]
            state[f"{k}_pool"] = masked_mean(self.enc[k](seqs[f"{k}_e"], m, seqs["user"]), m)
            state[f"{k}_items"] = masked_mean(seqs[f"{k}_e"], m)
        return state

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        feats = [x.static, x.target]
        for k in self.domains:
            feats += [state[f"{k}_pool"], state[f"{k}_items"] * x.target]
        return feats, {}, None

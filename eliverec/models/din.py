"""DIN (Zhou et al. 2018): target attention of the candidate channel over each behaviour sequence."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import DinAttention


class DIN(RankingModel):
    """``u_K = sum_i a(e_vt, e_i) e_i`` per domain (activation unit, unnormalised weights as in DIN's
    paper: ``u_K`` keeps how many behaviours match, see ``DinAttention``); tower over
    ``[e_c, e_vt, u_V (, u_S), e_d]``."""

    name = "din"
    dual = False

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.att = nn.ModuleDict({d: DinAttention(cfg.dim, normalize=False) for d in self.domains})
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim] + [cfg.dim] * len(self.domains))

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        users = [self.att[d](x.target, state[f"{d}_e"], state[f"{d}_mask"])[0] for d in self.domains]
        return [x.static, x.target, *users], {}, None
